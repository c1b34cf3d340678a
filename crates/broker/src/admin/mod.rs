//! The admin gRPC service behind `runnelctl`. Any node answers reads from its
//! metadata; changes go through the controller leader.

use std::collections::BTreeMap;
use std::sync::Arc;

use runnel_controller::ProposeError;
use runnel_controller::metadata::{Command, MetadataImage, NodeId, TopicRecord};
use runnel_rpc::admin::admin_client::AdminClient;
use runnel_rpc::admin::admin_server::Admin;
use runnel_rpc::admin::{
    AddPartitionsRequest, AlterTopicConfigRequest, Broker as BrokerMsg, BrokerLoad, BrokerRef, ClusterStatusReply, ConfigEntry, CreateTopicRequest,
    DeleteUserRequest, ElectLeaderRequest, Empty, FeaturesReply, GroupName, GroupReply, ListBrokersReply, ListGroupsReply, ListTopicsReply, NodeFeatures,
    NodeStatus, OngoingReassignment, Partition, PartitionOffsetsReply, PartitionOffsetsRequest, PlanRebalanceRequest, PlannedMove, ReassignPartitionRequest,
    ReassignmentsReply, RebalancePlan, ReportedSize, ReportedSizesReply, ResetOffsetsRequest, TopicConfigsReply, TopicName, TopicReply, UpgradeFeaturesRequest,
    UpsertUserRequest, UserCredential, UsersReply, VoterRequest,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

mod features;
mod groups;

pub use groups::sample_group_high_watermarks;

use crate::acl::{ANONYMOUS, Access, CLUSTER, Resource, op};
use crate::broker::Broker;
use crate::topics::{self, TopicError};

pub struct AdminService {
    pub broker: Arc<Broker>,
}

fn status(e: TopicError) -> Status {
    use runnel_protocol::kafka_protocol::error::ResponseError as E;
    let code = match e.code {
        E::TopicAlreadyExists => tonic::Code::AlreadyExists,
        E::UnknownTopicOrPartition => tonic::Code::NotFound,
        E::RequestTimedOut => tonic::Code::Unavailable,
        E::PolicyViolation => tonic::Code::ResourceExhausted,
        _ => tonic::Code::InvalidArgument,
    };
    Status::new(code, e.message)
}

fn denied(access: &Access, resource: Resource, name: &str, operation: i8) -> Status {
    Status::permission_denied(format!(
        "{} may not do this: it needs {} on {resource:?} {name:?} (runnelctl acl create; or list it in --super-users)",
        access.principal(),
        crate::acl::operation_name(operation)
    ))
}

fn propose_status(e: ProposeError) -> Status {
    match e {
        ProposeError::NotLeader { .. } | ProposeError::NoQuorum | ProposeError::Timeout(_) => Status::unavailable(e.to_string()),
        ProposeError::Other(m) => Status::internal(m),
    }
}

/// A topic as `describe` shows it; `offsets` holds what the partitions'
/// leaders reported.
fn topic_reply(name: &str, t: &TopicRecord, offsets: &BTreeMap<(String, i32), runnel_rpc::admin::PartitionOffset>, metadata_stale: bool) -> TopicReply {
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| Partition {
            index: i as i32,
            leader: p.leader.map_or(-1, |l| l.0 as i64),
            replicas: p.replicas.iter().map(|r| r.0).collect(),
            isr: p.isr.iter().map(|r| r.0).collect(),
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            high_watermark: offsets.get(&(name.to_string(), i as i32)).map_or(-1, |o| o.high_watermark),
            leader_serving: offsets.contains_key(&(name.to_string(), i as i32)),
        })
        .collect();
    TopicReply { name: name.to_string(), id: t.id.to_string(), configs: t.configs.clone().into_iter().collect(), partitions, metadata_stale }
}

impl AdminService {
    /// The admin API under the ACLs, when there is an authorizer and the
    /// request came over the gRPC port's mutual TLS: the caller is its
    /// client certificate's subject (`User:CN=...`), and needs what the
    /// Kafka API doing the same would need. Without TLS on the gRPC port no
    /// caller is authenticated there, and the admin API stays open (keep
    /// that port private); requests this node makes to itself pass.
    fn authorize<T>(&self, request: &Request<T>, resource: Resource, name: &str, operation: i8) -> Result<(), Status> {
        match self.access(request) {
            Some(access) if !access.allowed(resource, name, operation) => Err(denied(&access, resource, name, operation)),
            _ => Ok(()),
        }
    }

    /// Creating a topic: CREATE on the cluster or on the topic, as CreateTopics.
    fn authorize_create<T>(&self, request: &Request<T>, topic: &str) -> Result<(), Status> {
        match self.access(request) {
            Some(access) if !access.decide(Resource::Cluster, CLUSTER, op::CREATE) && !access.allowed(Resource::Topic, topic, op::CREATE) => {
                Err(denied(&access, Resource::Topic, topic, op::CREATE))
            }
            _ => Ok(()),
        }
    }

    /// The caller's `Access`, when the ACLs apply to it (see `authorize`).
    fn access<T>(&self, request: &Request<T>) -> Option<Access> {
        let certificates = request.peer_certs()?;
        let authorizer = self.broker.config.authorizer.as_ref()?;
        let principal = certificates.first().and_then(crate::tls::certificate_principal).map_or_else(|| ANONYMOUS.to_string(), |p| format!("User:{p}"));
        let ip = request.remote_addr().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        Some(Access::new(Arc::from(principal), ip, Some(authorizer), || self.broker.metadata.state()).counting(&self.broker.metrics.authorization_denied))
    }

    /// Topics as `describe` shows them, with each partition's high
    /// watermark from its leader (this node or another).
    async fn topic_replies(&self, topics: &[(&String, &TopicRecord)]) -> Vec<TopicReply> {
        let all: Vec<(String, i32)> = topics.iter().flat_map(|(n, t)| (0..t.partitions.len() as i32).map(|i| ((*n).clone(), i))).collect();
        let offsets = groups::leader_offsets(&self.broker, &all, None).await;
        let b = &self.broker;
        let metadata_stale = b.replicas.membership().controller_unreachable() || b.metadata.leader().0.is_none();
        topics.iter().map(|(n, t)| topic_reply(n, t, &offsets, metadata_stale)).collect()
    }

    async fn topic_reply(&self, name: &String, t: &TopicRecord) -> TopicReply {
        self.topic_replies(&[(name, t)]).await.pop().expect("one topic in, one reply out")
    }

    /// An admin client for a controller node, for requests a broker-only node
    /// cannot answer itself. `node` picks a given controller.
    async fn controller_admin(&self, node: Option<NodeId>) -> Result<AdminClient<Channel>, Status> {
        let state = self.broker.metadata.state();
        let addresses: Vec<String> = match node {
            Some(id) => state.membership.membership().get_node(&id).map(|n| vec![n.addr.clone()]).unwrap_or_default(),
            None => self.broker.metadata.controller_addresses(),
        };
        for addr in addresses {
            let Ok(endpoint) = runnel_controller::network::endpoint(&addr) else { continue };
            if let Ok(channel) = runnel_controller::network::connect(endpoint.connect_timeout(std::time::Duration::from_secs(2))).await {
                return Ok(AdminClient::new(channel));
            }
        }
        Err(Status::unavailable("no controller node is reachable from this broker-only node"))
    }

    /// The partition log sizes the brokers last reported to the controller
    /// leader: this node's own when it leads, else the leader's, asked over
    /// gRPC (none when the leader cannot be reached: plans and listings go
    /// on without bytes).
    async fn reported_sizes(&self) -> Vec<runnel_controller::balance::Reported> {
        if let Some(c) = self.broker.metadata.local().filter(|c| c.is_leader()) {
            return c.reported_sizes();
        }
        let (Some(_), Some(address)) = self.broker.metadata.leader() else { return Vec::new() };
        let Ok(endpoint) = runnel_controller::network::endpoint(&address) else { return Vec::new() };
        let Ok(channel) = runnel_controller::network::connect(endpoint.connect_timeout(std::time::Duration::from_secs(2))).await else { return Vec::new() };
        match AdminClient::new(channel).reported_sizes(Empty {}).await {
            Ok(reply) => reply.into_inner().sizes.into_iter().map(|s| (NodeId(s.node_id), (s.topic, s.partition), s.bytes)).collect(),
            Err(e) => {
                tracing::debug!(leader = %address, error = %e, "could not ask the controller leader for partition sizes");
                Vec::new()
            }
        }
    }

    fn cluster_status(&self) -> ClusterStatusReply {
        let Some(controller) = self.broker.metadata.local() else {
            return ClusterStatusReply::default();
        };
        let metrics = controller.raft.metrics().borrow().clone();
        let state = self.broker.metadata.state();
        let image: &MetadataImage = &state.image;
        let membership = metrics.membership_config.membership().clone();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let mut nodes: BTreeMap<NodeId, NodeStatus> = BTreeMap::new();
        for (id, node) in membership.nodes() {
            let role = if Some(*id) == metrics.current_leader {
                "leader"
            } else if voters.contains(id) {
                "follower"
            } else {
                "learner"
            };
            let lag = metrics.replication.as_ref().and_then(|r| {
                let matched = r.get(id).copied().flatten().map_or(0, |l| l.index);
                metrics.last_log_index.map(|last| last.saturating_sub(matched))
            });
            nodes.insert(
                *id,
                NodeStatus { node_id: id.0, rpc_address: node.addr.clone(), raft_role: role.into(), voter: voters.contains(id), lag, ..Default::default() },
            );
        }
        for b in image.brokers.values() {
            let n = nodes.entry(b.id).or_insert_with(|| NodeStatus {
                node_id: b.id.0,
                rpc_address: b.rpc_address.clone(),
                raft_role: "broker-only".into(),
                ..Default::default()
            });
            n.broker_registered = true;
            n.fenced = b.fenced;
            n.kafka_address = format!("{}:{}", b.kafka_host, b.kafka_port);
        }
        if metrics.state == openraft::ServerState::Candidate
            && let Some(n) = nodes.get_mut(&controller.node_id)
        {
            n.raft_role = "candidate".into();
        }
        ClusterStatusReply {
            cluster_id: image.cluster_id.clone().unwrap_or_default(),
            leader_id: metrics.current_leader.map(|l| l.0),
            term: metrics.current_term,
            // openraft 0.9's metrics expose the applied index, not the commit
            // index; applied never passes committed, so it is a safe floor.
            commit_index: metrics.last_applied.map_or(0, |l| l.index),
            applied_index: metrics.last_applied.map_or(0, |l| l.index),
            nodes: nodes.into_values().collect(),
        }
    }
}

/// Why broker `id` may not be unregistered, if it may not: it must be
/// registered, stopped (fenced: a live broker would only register again),
/// and hold no replica, nor be a target of a move in progress.
fn unregistrable(image: &MetadataImage, id: NodeId) -> Result<(), String> {
    let Some(b) = image.brokers.get(&id) else { return Err(format!("broker {id} is not registered")) };
    if !b.fenced {
        return Err(format!("broker {id} is live: stop it first (a running broker registers again)"));
    }
    let held = image.topics.values().flat_map(|t| &t.partitions).filter(|p| p.replicas.contains(&id)).count();
    let moving = image.reassignments.values().filter(|r| r.target.contains(&id)).count();
    if held + moving > 0 {
        return Err(format!("broker {id} holds {held} replicas ({moving} moving to it): `runnelctl broker decommission {id} --wait` first"));
    }
    Ok(())
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn cluster_status(&self, request: Request<Empty>) -> Result<Response<ClusterStatusReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::DESCRIBE)?;
        if self.broker.metadata.local().is_none() {
            return self.controller_admin(None).await?.cluster_status(request.into_inner()).await;
        }
        Ok(Response::new(self.cluster_status()))
    }

    async fn list_brokers(&self, request: Request<Empty>) -> Result<Response<ListBrokersReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::DESCRIBE)?;
        let state = self.broker.metadata.state();
        let (mut replicas, mut leaders) = (BTreeMap::<NodeId, u32>::new(), BTreeMap::<NodeId, u32>::new());
        for p in state.image.topics.values().flat_map(|t| t.partitions.iter()) {
            for r in &p.replicas {
                *replicas.entry(*r).or_default() += 1;
            }
            if let Some(l) = p.leader {
                *leaders.entry(l).or_default() += 1;
            }
        }
        let bytes = runnel_controller::balance::broker_bytes(&self.reported_sizes().await);
        let brokers = state
            .image
            .brokers
            .values()
            .map(|b| BrokerMsg {
                bytes: bytes.get(&b.id).copied().unwrap_or(0),
                replicas: replicas.get(&b.id).copied().unwrap_or(0),
                leaders: leaders.get(&b.id).copied().unwrap_or(0),
                node_id: b.id.0,
                kafka_address: format!("{}:{}", b.kafka_host, b.kafka_port),
                rpc_address: b.rpc_address.clone(),
                rack: b.rack.clone().unwrap_or_default(),
                epoch: b.epoch,
                fenced: b.fenced,
            })
            .collect();
        Ok(Response::new(ListBrokersReply { brokers }))
    }

    async fn unregister_broker(&self, request: Request<BrokerRef>) -> Result<Response<ListBrokersReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::ALTER)?;
        let id = NodeId(request.into_inner().node_id);
        unregistrable(&self.broker.metadata.state().image, id).map_err(Status::failed_precondition)?;
        topics::propose(&self.broker.metadata, Command::UnregisterBroker { id }).await.map_err(|e| Status::failed_precondition(e.message))?;
        self.list_brokers(Request::new(Empty {})).await
    }

    async fn create_topic(&self, request: Request<CreateTopicRequest>) -> Result<Response<TopicReply>, Status> {
        self.authorize_create(&request, &request.get_ref().name)?;
        let r = request.into_inner();
        let partitions = r.partitions.unwrap_or(self.broker.config.default_partitions);
        let factor = r.replication_factor.unwrap_or(1);
        let max = self.broker.config.replicas_per_broker_max;
        topics::create_topic(&self.broker.metadata, &r.name, partitions, factor, r.configs.into_iter().collect(), max).await.map_err(status)?;
        self.describe_topic(Request::new(TopicName { name: r.name })).await
    }

    async fn list_topics(&self, request: Request<Empty>) -> Result<Response<ListTopicsReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::DESCRIBE)?;
        let state = self.broker.metadata.state();
        let topics: Vec<_> = state.image.topics.iter().map(|(n, t)| (n, &**t)).collect();
        let topics = self.topic_replies(&topics).await;
        Ok(Response::new(ListTopicsReply { topics }))
    }

    async fn describe_topic(&self, request: Request<TopicName>) -> Result<Response<TopicReply>, Status> {
        self.authorize(&request, Resource::Topic, &request.get_ref().name, op::DESCRIBE)?;
        let name = request.into_inner().name;
        let state = self.broker.metadata.state();
        let t = state.image.topics.get(&name).ok_or_else(|| Status::not_found(format!("topic {name:?} does not exist")))?;
        Ok(Response::new(self.topic_reply(&name, t).await))
    }

    async fn describe_topic_config(&self, request: Request<TopicName>) -> Result<Response<TopicConfigsReply>, Status> {
        self.authorize(&request, Resource::Topic, &request.get_ref().name, op::DESCRIBE_CONFIGS)?;
        let name = request.into_inner().name;
        let state = self.broker.metadata.state();
        let t = state.image.topics.get(&name).ok_or_else(|| Status::not_found(format!("topic {name:?} does not exist")))?;
        let factor = t.partitions.first().map_or(1, |p| p.replicas.len());
        // The entries Kafka's DescribeConfigs answers, on the same path.
        let entries = crate::api::describe_configs::topic_entries(&self.broker.config, &self.broker.replicas.config().log, &state.image, &t.configs, factor);
        let configs = entries
            .into_iter()
            .map(|e| ConfigEntry {
                name: e.name.to_string(),
                value: e.value.map(|v| v.to_string()).unwrap_or_default(),
                source: crate::api::describe_configs::source_name(e.config_source).to_string(),
                documentation: e.documentation.map(|d| d.to_string()).unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(TopicConfigsReply { name, configs }))
    }

    async fn add_partitions(&self, request: Request<AddPartitionsRequest>) -> Result<Response<TopicReply>, Status> {
        self.authorize(&request, Resource::Topic, &request.get_ref().name, op::ALTER)?;
        let r = request.into_inner();
        topics::add_partitions(&self.broker.metadata, &r.name, r.count, self.broker.config.replicas_per_broker_max).await.map_err(status)?;
        self.describe_topic(Request::new(TopicName { name: r.name })).await
    }

    async fn delete_topic(&self, request: Request<TopicName>) -> Result<Response<Empty>, Status> {
        self.authorize(&request, Resource::Topic, &request.get_ref().name, op::DELETE)?;
        topics::delete_topic(&self.broker.metadata, &request.into_inner().name).await.map_err(status)?;
        Ok(Response::new(Empty {}))
    }

    async fn alter_topic_config(&self, request: Request<AlterTopicConfigRequest>) -> Result<Response<TopicReply>, Status> {
        self.authorize(&request, Resource::Topic, &request.get_ref().name, op::ALTER_CONFIGS)?;
        let r = request.into_inner();
        let configs = r.configs.into_iter().map(|(k, v)| (k, Some(v).filter(|v| !v.is_empty()))).collect();
        // The same path as Kafka's IncrementalAlterConfigs.
        topics::alter_configs(&self.broker.metadata, &r.name, configs, false).await.map_err(status)?;
        self.describe_topic(Request::new(TopicName { name: r.name })).await
    }

    async fn elect_leader(&self, request: Request<ElectLeaderRequest>) -> Result<Response<TopicReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::ALTER)?;
        let r = request.into_inner();
        let state = self.broker.metadata.state();
        let t = state.image.topics.get(&r.topic).ok_or_else(|| Status::not_found(format!("topic {:?} does not exist", r.topic)))?;
        let partitions: Vec<i32> = if r.partition < 0 { (0..t.partitions.len() as i32).collect() } else { vec![r.partition] };
        let mut refused = Vec::new();
        for p in partitions {
            if let Err(e) = topics::propose(&self.broker.metadata, Command::ElectPreferredLeader { topic: r.topic.clone(), partition: p }).await {
                refused.push(format!("partition {p}: {}", e.message));
            }
        }
        if !refused.is_empty() {
            return Err(Status::failed_precondition(refused.join("; ")));
        }
        self.describe_topic(Request::new(TopicName { name: r.topic })).await
    }

    async fn reassign_partition(&self, request: Request<ReassignPartitionRequest>) -> Result<Response<TopicReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::ALTER)?;
        let r = request.into_inner();
        let target = match (r.cancel, r.replicas.is_empty()) {
            (true, true) => None,
            (false, false) => Some(r.replicas.iter().map(|id| NodeId(*id)).collect()),
            (true, false) => return Err(Status::invalid_argument("either cancel or a replica list, not both")),
            (false, true) => return Err(Status::invalid_argument("name the target replicas (or cancel)")),
        };
        use runnel_protocol::kafka_protocol::error::ResponseError as E;
        topics::reassign(&self.broker.metadata, &r.topic, r.partition, target, true).await.map_err(|e| match e.code {
            E::UnknownTopicOrPartition => Status::not_found(e.message),
            E::RequestTimedOut => Status::unavailable(e.message),
            _ => Status::failed_precondition(e.message),
        })?;
        self.describe_topic(Request::new(TopicName { name: r.topic })).await
    }

    async fn list_reassignments(&self, request: Request<Empty>) -> Result<Response<ReassignmentsReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::DESCRIBE)?;
        let state = self.broker.metadata.state();
        let reassignments = topics::reassignments(&state.image, None)
            .into_iter()
            .map(|r| OngoingReassignment {
                topic: r.topic,
                partition: r.partition,
                replicas: r.replicas.iter().map(|n| n.0).collect(),
                adding: r.adding.iter().map(|n| n.0).collect(),
                removing: r.removing.iter().map(|n| n.0).collect(),
            })
            .collect();
        Ok(Response::new(ReassignmentsReply { reassignments }))
    }

    async fn plan_rebalance(&self, request: Request<PlanRebalanceRequest>) -> Result<Response<RebalancePlan>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::DESCRIBE)?;
        let state = self.broker.metadata.state();
        let exclude: Vec<NodeId> = request.into_inner().exclude.into_iter().map(NodeId).collect();
        if let Some(unknown) = exclude.iter().find(|id| !state.image.brokers.contains_key(id)) {
            return Err(Status::not_found(format!("broker {unknown} is not registered")));
        }
        let sizes = runnel_controller::balance::partition_sizes(&self.reported_sizes().await);
        let plan = runnel_controller::balance::plan(&state.image, &exclude, &sizes);
        let loads = |m: &BTreeMap<NodeId, runnel_controller::balance::Load>| {
            m.iter().map(|(id, l)| BrokerLoad { node_id: id.0, replicas: l.replicas as u32, leaders: l.leaders as u32, bytes: l.bytes }).collect()
        };
        let ids = |v: &[NodeId]| v.iter().map(|n| n.0).collect();
        Ok(Response::new(RebalancePlan {
            moves: plan.moves.iter().map(|m| PlannedMove { topic: m.topic.clone(), partition: m.partition, from: ids(&m.from), to: ids(&m.to) }).collect(),
            before: loads(&plan.before),
            after: loads(&plan.after),
        }))
    }

    async fn reported_sizes(&self, request: Request<Empty>) -> Result<Response<ReportedSizesReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::DESCRIBE)?;
        let sizes = self.broker.metadata.local().map(|c| c.reported_sizes()).unwrap_or_default();
        let sizes = sizes.into_iter().map(|(id, (topic, partition), bytes)| ReportedSize { node_id: id.0, topic, partition, bytes }).collect();
        Ok(Response::new(ReportedSizesReply { sizes }))
    }

    async fn upsert_user(&self, request: Request<UpsertUserRequest>) -> Result<Response<UsersReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::ALTER)?;
        let r = request.into_inner();
        let mechanism = crate::sasl::Mechanism::parse(&r.mechanism)
            .filter(|m| *m != crate::sasl::Mechanism::Plain)
            .ok_or_else(|| Status::invalid_argument(format!("mechanism {:?}: use SCRAM-SHA-256 or SCRAM-SHA-512", r.mechanism)))?;
        if r.password.is_empty() {
            return Err(Status::invalid_argument("a password is needed"));
        }
        let iterations = if r.iterations == 0 { 4096 } else { r.iterations };
        let salt: [u8; 16] = rand::random();
        let credential = mechanism.credential(&r.password, salt.to_vec(), iterations);
        let command = Command::UpsertScramCredential { user: r.user, mechanism: mechanism.name().to_string(), credential };
        topics::propose(&self.broker.metadata, command).await.map_err(|e| Status::failed_precondition(e.message))?;
        self.list_users(Request::new(Empty {})).await
    }

    async fn delete_user(&self, request: Request<DeleteUserRequest>) -> Result<Response<UsersReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::ALTER)?;
        let r = request.into_inner();
        let mechanisms: Vec<String> = if r.mechanism.is_empty() {
            self.broker.metadata.state().image.scram.keys().filter(|(u, _)| *u == r.user).map(|(_, m)| m.clone()).collect()
        } else {
            vec![r.mechanism.to_ascii_uppercase()]
        };
        if mechanisms.is_empty() {
            return Err(Status::not_found(format!("user {:?} has no SCRAM credential", r.user)));
        }
        for mechanism in mechanisms {
            let command = Command::DeleteScramCredential { user: r.user.clone(), mechanism };
            topics::propose(&self.broker.metadata, command).await.map_err(|e| Status::not_found(e.message))?;
        }
        self.list_users(Request::new(Empty {})).await
    }

    async fn list_users(&self, request: Request<Empty>) -> Result<Response<UsersReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::DESCRIBE)?;
        let state = self.broker.metadata.state();
        let users = state
            .image
            .scram
            .iter()
            .map(|((user, mechanism), c)| UserCredential { user: user.clone(), mechanism: mechanism.clone(), iterations: c.iterations })
            .collect();
        Ok(Response::new(UsersReply { users }))
    }

    async fn add_voter(&self, request: Request<VoterRequest>) -> Result<Response<ClusterStatusReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::ALTER)?;
        let r = request.into_inner();
        if r.rpc_address.is_empty() {
            return Err(Status::invalid_argument("add-voter needs the new node's gRPC address"));
        }
        let Some(controller) = self.broker.metadata.local() else {
            return self.controller_admin(None).await?.add_voter(r).await;
        };
        controller.add_voter(NodeId(r.node_id), r.rpc_address).await.map_err(propose_status)?;
        Ok(Response::new(self.cluster_status()))
    }

    async fn remove_voter(&self, request: Request<VoterRequest>) -> Result<Response<ClusterStatusReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::ALTER)?;
        let r = request.into_inner();
        let Some(controller) = self.broker.metadata.local() else {
            return self.controller_admin(None).await?.remove_voter(r).await;
        };
        controller.remove_voter(NodeId(r.node_id)).await.map_err(propose_status)?;
        Ok(Response::new(self.cluster_status()))
    }

    async fn transfer_leader(&self, request: Request<VoterRequest>) -> Result<Response<ClusterStatusReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::ALTER)?;
        let r = request.into_inner();
        let target = NodeId(r.node_id);
        let controller = match self.broker.metadata.local() {
            Some(c) if c.node_id == target => c,
            // Only the target can campaign for itself: pass the request on.
            _ => return self.controller_admin(Some(target)).await?.transfer_leader(r).await,
        };
        controller.campaign().await.map_err(|e| Status::internal(e.to_string()))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !controller.is_leader() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(Response::new(self.cluster_status()))
    }

    async fn list_groups(&self, request: Request<Empty>) -> Result<Response<ListGroupsReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::DESCRIBE)?;
        match groups::coordinator_admin(&self.broker).await? {
            Some(mut c) => c.list_groups(request.into_inner()).await,
            None => groups::list_groups_here(&self.broker).map(Response::new),
        }
    }

    async fn describe_group(&self, request: Request<GroupName>) -> Result<Response<GroupReply>, Status> {
        self.authorize(&request, Resource::Group, &request.get_ref().group, op::DESCRIBE)?;
        match groups::coordinator_admin(&self.broker).await? {
            Some(mut c) => c.describe_group(request.into_inner()).await,
            None => groups::describe_group_here(&self.broker, &request.get_ref().group).await.map(Response::new),
        }
    }

    async fn reset_offsets(&self, request: Request<ResetOffsetsRequest>) -> Result<Response<GroupReply>, Status> {
        self.authorize(&request, Resource::Group, &request.get_ref().group, op::READ)?;
        match groups::coordinator_admin(&self.broker).await? {
            Some(mut c) => c.reset_offsets(request.into_inner()).await,
            None => groups::reset_offsets_here(&self.broker, request.get_ref()).await.map(Response::new),
        }
    }

    async fn delete_group(&self, request: Request<GroupName>) -> Result<Response<Empty>, Status> {
        self.authorize(&request, Resource::Group, &request.get_ref().group, op::DELETE)?;
        match groups::coordinator_admin(&self.broker).await? {
            Some(mut c) => c.delete_group(request.into_inner()).await,
            None => groups::delete_group_here(&self.broker, request.get_ref()).await.map(|()| Response::new(Empty {})),
        }
    }

    async fn partition_offsets(&self, request: Request<PartitionOffsetsRequest>) -> Result<Response<PartitionOffsetsReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::DESCRIBE)?;
        Ok(Response::new(groups::partition_offsets_here(&self.broker, request.get_ref())))
    }

    async fn features(&self, request: Request<Empty>) -> Result<Response<FeaturesReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::DESCRIBE)?;
        Ok(Response::new(features::features(&self.broker).await))
    }

    async fn local_features(&self, request: Request<Empty>) -> Result<Response<NodeFeatures>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::DESCRIBE)?;
        Ok(Response::new(features::local(self.broker.config.node_id, self.broker.metadata.identity().address())))
    }

    async fn upgrade_features(&self, request: Request<UpgradeFeaturesRequest>) -> Result<Response<FeaturesReply>, Status> {
        self.authorize(&request, Resource::Cluster, CLUSTER, op::ALTER)?;
        features::upgrade(&self.broker, request.get_ref()).await.map(Response::new)
    }
}
