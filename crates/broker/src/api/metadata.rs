//! Metadata: live brokers, the controller leader, topics and partition
//! leadership, from the controller's metadata. Unknown topics are created here
//! when auto-creation is on and the client allows it.

use std::collections::BTreeMap;

use runnel_controller::metadata::{MetadataImage, NodeId, validate_topic_name};
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use runnel_protocol::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use runnel_controller::Metadata;
use runnel_controller::metadata::{PartitionRecord, TopicRecord};
use runnel_replica::ReplicaManager;

use super::{code, str_bytes};
use crate::acl::{Access, CLUSTER, Resource, op};
use crate::config::BrokerConfig;
use crate::topics;

pub(crate) async fn handle(
    access: &Access,
    config: &BrokerConfig,
    metadata: &Metadata,
    replicas: &ReplicaManager,
    request: MetadataRequest,
    version: i16,
    client: super::Client,
) -> MetadataResponse {
    // Before v4 a client could not opt out of auto-creation.
    let may_create = config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    // v0 asks for every topic with an empty list; later versions with null.
    let wanted: Option<Vec<(Option<String>, Uuid)>> = match request.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()),
    };
    let mut created_or_failed: BTreeMap<String, ResponseError> = BTreeMap::new();
    let may_describe = |name: &str| access.allowed(Resource::Topic, name, op::DESCRIBE);
    if let Some(wanted) = &wanted {
        let state = metadata.state();
        let cluster_create = may_create && access.decide(Resource::Cluster, CLUSTER, op::CREATE);
        for (name, _) in wanted {
            let Some(name) = name else { continue };
            if state.image.topics.contains_key(name) || !may_create || validate_topic_name(name).is_err() {
                continue;
            }
            if !cluster_create && !access.allowed(Resource::Topic, name, op::CREATE) {
                continue;
            }
            let factor = 1;
            match topics::create_topic(metadata, name, config.default_partitions, factor, BTreeMap::new(), config.replicas_per_broker_max).await {
                Ok(_) => {}
                Err(e) if e.code == ResponseError::TopicAlreadyExists => {}
                Err(e) => {
                    tracing::warn!(topic = %name, error = %e.message, "auto-creation failed");
                    created_or_failed.insert(name.clone(), e.code);
                }
            }
        }
    }
    let state = metadata.state();
    let image = &state.image;
    let me = config.node_id;
    let serves = |t: &TopicRecord, p: &PartitionRecord| replicas.serves_as_leader(image, t, p);
    let operations = |t: MetadataResponseTopic| match (request.include_topic_authorized_operations, &t.name) {
        (true, Some(name)) => {
            let bits = access.authorized_operations(Resource::Topic, name);
            t.with_topic_authorized_operations(bits)
        }
        _ => t,
    };
    let topics: Vec<MetadataResponseTopic> = match wanted {
        // Every topic: those it may not describe are left out, uncounted.
        None => image.topics.keys().filter(|name| access.decide(Resource::Topic, name, op::DESCRIBE)).map(|name| topic(image, name, me, &serves)).collect(),
        Some(wanted) => wanted
            .into_iter()
            .map(|(name, id)| {
                let name = match name {
                    Some(n) => n,
                    None => match image.topics.iter().find(|(_, t)| t.id == id) {
                        Some((n, _)) => n.clone(),
                        None => return MetadataResponseTopic::default().with_topic_id(id).with_error_code(code(ResponseError::UnknownTopicId)),
                    },
                };
                let error = |e: ResponseError| MetadataResponseTopic::default().with_name(Some(TopicName(str_bytes(name.clone())))).with_error_code(code(e));
                if !may_describe(&name) {
                    // Whether it exists is not for this principal to learn.
                    error(ResponseError::TopicAuthorizationFailed)
                } else if image.topics.contains_key(&name) {
                    topic(image, &name, me, &serves)
                } else if validate_topic_name(&name).is_err() {
                    error(ResponseError::InvalidTopicException)
                } else {
                    error(created_or_failed.get(&name).copied().unwrap_or(ResponseError::UnknownTopicOrPartition))
                }
            })
            .collect(),
    };
    let topics = topics.into_iter().map(operations).collect();
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            let (host, port) = b.kafka_endpoint(client.external);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id.broker_id()))
                .with_host(str_bytes(host))
                .with_port(i32::from(port))
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    let controller = controller_id(config, metadata, image);
    let cluster_operations = if request.include_cluster_authorized_operations { access.authorized_operations(Resource::Cluster, CLUSTER) } else { i32::MIN };
    MetadataResponse::default()
        .with_cluster_authorized_operations(cluster_operations)
        .with_brokers(brokers)
        .with_cluster_id(image.cluster_id.clone().map(str_bytes))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
}

/// The controller a client is told of. Clients send admin requests to it;
/// as in KRaft, that must be a broker: the Raft leader when it is a live
/// broker, otherwise this node, which forwards to the leader.
pub(crate) fn controller_id(config: &BrokerConfig, metadata: &Metadata, image: &MetadataImage) -> i32 {
    match metadata.leader().0 {
        Some(l) if image.brokers.get(&l).is_some_and(|b| !b.fenced) => l.broker_id(),
        _ => config.node_id.broker_id(),
    }
}

/// This broker names itself leader only of the partitions it serves
/// (`serves`, see `ReplicaManager::serves_as_leader`): without a lease it
/// may have been fenced without knowing and its metadata may be old, so
/// clients look for the leader elsewhere instead of coming back here.
pub(crate) fn topic(image: &MetadataImage, name: &str, me: NodeId, serves: &dyn Fn(&TopicRecord, &PartitionRecord) -> bool) -> MetadataResponseTopic {
    let t = &image.topics[name];
    let fenced = |id: &NodeId| image.brokers.get(id).is_none_or(|b| b.fenced);
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let leader = p.leader.filter(|l| *l != me || serves(t, p));
            let ids = |v: &[NodeId]| v.iter().map(|r| BrokerId(r.broker_id())).collect::<Vec<_>>();
            let offline: Vec<NodeId> = p.replicas.iter().copied().filter(fenced).collect();
            MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_error_code(if leader.is_none() { code(ResponseError::LeaderNotAvailable) } else { 0 })
                .with_leader_id(BrokerId(leader.map_or(-1, NodeId::broker_id)))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    MetadataResponseTopic::default().with_name(Some(TopicName(str_bytes(name)))).with_topic_id(t.id).with_partitions(partitions)
}
