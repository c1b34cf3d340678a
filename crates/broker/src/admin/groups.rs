//! The consumer-group part of the admin API (`runnelctl group ...`). The
//! coordinator answers; any other node forwards to it. Log end offsets come
//! from each partition's leader.

use std::collections::{BTreeMap, BTreeSet};

use runnel_controller::groups::OffsetCommit;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_rpc::admin::admin_client::AdminClient;
use runnel_rpc::admin::reset_offsets_request::To;
use runnel_rpc::admin::{
    GroupListing, GroupMember, GroupName, GroupOffset, GroupReply, ListGroupsReply, PartitionOffset, PartitionOffsetsReply, PartitionOffsetsRequest,
    ResetOffsetsRequest, TopicPartitionRef,
};
use tonic::Status;
use tonic::transport::Channel;

use runnel_coordinator::group::{decode_assignment, offset_commit};

use runnel_controller::metadata::NodeId;

use crate::broker::Broker;

type Tp = (String, i32);

fn group_status(e: ResponseError, group: &str) -> Status {
    match e {
        ResponseError::NotCoordinator | ResponseError::CoordinatorLoadInProgress | ResponseError::CoordinatorNotAvailable => {
            Status::unavailable(format!("the group coordinator is not available ({e:?}); try again"))
        }
        ResponseError::GroupIdNotFound => Status::not_found(format!("group {group:?} does not exist")),
        ResponseError::NonEmptyGroup => Status::failed_precondition(format!("group {group:?} has active members")),
        ResponseError::InvalidGroupId => Status::invalid_argument(format!("invalid group id {group:?}")),
        other => Status::internal(format!("{other:?}")),
    }
}

async fn connect(addr: &str) -> Result<AdminClient<Channel>, Status> {
    let endpoint = runnel_controller::network::endpoint(addr).map_err(|e| Status::internal(e.to_string()))?;
    let channel = runnel_controller::network::connect(endpoint.connect_timeout(std::time::Duration::from_secs(2)).timeout(std::time::Duration::from_secs(10)))
        .await
        .map_err(|e| Status::unavailable(format!("cannot reach {addr}: {e}")))?;
    Ok(AdminClient::new(channel))
}

/// The coordinator's admin client when that is another node; None when
/// this node coordinates.
pub(super) async fn coordinator_admin(broker: &Broker) -> Result<Option<AdminClient<Channel>>, Status> {
    if broker.coordinators.groups.is_active() {
        return Ok(None);
    }
    let Some(node) = broker.coordinators.coordinator_node() else {
        return Err(Status::unavailable("no group coordinator: no live broker leads the controller quorum"));
    };
    if node.id == broker.config.node_id {
        return Err(Status::unavailable("this node is becoming the group coordinator; try again"));
    }
    connect(&node.rpc_address).await.map(Some)
}

pub(super) fn list_groups_here(broker: &Broker) -> Result<ListGroupsReply, Status> {
    let groups = broker.coordinators.groups.list().map_err(|e| group_status(e, ""))?;
    let groups = groups
        .into_iter()
        .map(|(group, protocol_type, state, _)| {
            let members = broker.coordinators.groups.describe(&group).ok().flatten().map_or(0, |s| s.members.len() as i32);
            GroupListing { group, state: state.to_string(), protocol_type, members }
        })
        .collect();
    Ok(ListGroupsReply { groups })
}

/// Offsets of `partitions` from their leaders, at `timestamp_ms` if given.
pub(super) async fn leader_offsets(broker: &Broker, partitions: &[Tp], timestamp_ms: Option<i64>) -> BTreeMap<Tp, PartitionOffset> {
    let state = broker.metadata.state();
    let image = &state.image;
    let mut by_leader: BTreeMap<NodeId, Vec<TopicPartitionRef>> = BTreeMap::new();
    for (topic, partition) in partitions {
        let leader = image.topics.get(topic).and_then(|t| t.partitions.get(*partition as usize)).and_then(|p| p.leader);
        if let Some(l) = leader {
            by_leader.entry(l).or_default().push(TopicPartitionRef { topic: topic.clone(), partition: *partition });
        }
    }
    let mut out = BTreeMap::new();
    for (leader, refs) in by_leader {
        let request = PartitionOffsetsRequest { partitions: refs, timestamp_ms };
        let reply = if leader == broker.config.node_id {
            Ok(partition_offsets_here(broker, &request))
        } else {
            match image.brokers.get(&leader) {
                Some(b) => match connect(&b.rpc_address).await {
                    Ok(mut client) => client.partition_offsets(request).await.map(|r| r.into_inner()),
                    Err(e) => Err(e),
                },
                None => Err(Status::unavailable(format!("broker {leader} is not registered"))),
            }
        };
        match reply {
            Ok(r) => out.extend(r.partitions.into_iter().filter(|p| p.error.is_empty()).map(|p| ((p.topic.clone(), p.partition), p))),
            Err(e) => tracing::debug!(%leader, error = %e, "a partition leader did not report its offsets"),
        }
    }
    out
}

/// On the group coordinator: every few seconds, asks the leaders of the
/// partitions that groups committed offsets for what their high watermarks
/// are, so `runnel_consumer_group_lag` covers partitions led elsewhere.
/// Returns at shutdown.
pub async fn sample_group_high_watermarks(broker: std::sync::Arc<Broker>) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = broker.shutdown.cancelled() => return,
        }
        if !broker.coordinators.groups.is_active() {
            broker.metrics.set_sampled_high_watermarks(BTreeMap::new());
            continue;
        }
        let state = broker.metadata.state();
        let partitions: Vec<Tp> = state.image.groups.values().flat_map(|g| g.offsets.keys().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
        let offsets = leader_offsets(&broker, &partitions, None).await;
        broker.metrics.set_sampled_high_watermarks(offsets.into_iter().filter(|(_, o)| o.high_watermark >= 0).map(|(tp, o)| (tp, o.high_watermark)).collect());
    }
}

pub(super) fn partition_offsets_here(broker: &Broker, request: &PartitionOffsetsRequest) -> PartitionOffsetsReply {
    let partitions = request
        .partitions
        .iter()
        .map(|r| {
            let mut out = PartitionOffset { topic: r.topic.clone(), partition: r.partition, ..Default::default() };
            match broker.replicas.leader(&r.topic, r.partition) {
                Err(e) => out.error = format!("{e:?}"),
                Ok(partition) => {
                    let log = partition.log();
                    out.log_start = log.log_start_offset();
                    // KIP-207: none from a new leader below its epoch's start.
                    out.high_watermark = partition.exposed_high_watermark(partition.epochs().0).map_or(-1, |hw| hw.0);
                    out.at_timestamp = out.high_watermark;
                    if let Some(t) = request.timestamp_ms {
                        match crate::api::list_offsets::lookup(log, t, log.high_watermark()) {
                            Ok((offset, _)) if offset >= 0 => out.at_timestamp = offset,
                            Ok(_) => {}
                            Err(e) => out.error = e.to_string(),
                        }
                    }
                }
            }
            out
        })
        .collect();
    PartitionOffsetsReply { partitions }
}

pub(super) async fn describe_group_here(broker: &Broker, group: &str) -> Result<GroupReply, Status> {
    let summary = broker.coordinators.groups.describe(group).map_err(|e| group_status(e, group))?;
    let committed = broker.coordinators.groups.fetch_offsets(group, None).map_err(|e| group_status(e, group))?;
    let Some(summary) = summary else { return Err(Status::not_found(format!("group {group:?} does not exist"))) };
    let mut owner: BTreeMap<Tp, String> = BTreeMap::new();
    let members = summary
        .members
        .into_iter()
        .map(|m| {
            let assignment = decode_assignment(&m.assignment);
            for tp in &assignment {
                owner.insert(tp.clone(), m.member_id.clone());
            }
            GroupMember {
                member_id: m.member_id,
                instance_id: m.instance_id.unwrap_or_default(),
                client_id: m.client_id,
                client_host: m.client_host,
                assignment: assignment.into_iter().map(|(topic, partition)| TopicPartitionRef { topic, partition }).collect(),
            }
        })
        .collect();
    let committed: BTreeMap<Tp, i64> = committed.into_iter().filter_map(|(tp, r)| r.map(|r| (tp, r.offset))).collect();
    let partitions: Vec<Tp> = committed.keys().chain(owner.keys()).cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let ends = leader_offsets(broker, &partitions, None).await;
    let offsets = partitions
        .into_iter()
        .map(|tp| {
            let committed = committed.get(&tp).copied().unwrap_or(-1);
            let log_end = ends.get(&tp).map_or(-1, |p| p.high_watermark);
            let lag = if committed >= 0 && log_end >= 0 { (log_end - committed).max(0) } else { -1 };
            GroupOffset { member_id: owner.get(&tp).cloned().unwrap_or_default(), topic: tp.0, partition: tp.1, committed, log_end, lag, previous: -1 }
        })
        .collect();
    Ok(GroupReply {
        group: group.to_string(),
        state: summary.state.to_string(),
        protocol_type: summary.protocol_type,
        protocol: summary.protocol,
        generation: summary.generation,
        members,
        offsets,
    })
}

pub(super) async fn reset_offsets_here(broker: &Broker, r: &ResetOffsetsRequest) -> Result<GroupReply, Status> {
    let committed: BTreeMap<Tp, i64> = broker
        .coordinators
        .groups
        .fetch_offsets(&r.group, None)
        .map_err(|e| group_status(e, &r.group))?
        .into_iter()
        .filter_map(|(tp, c)| c.map(|c| (tp, c.offset)))
        .collect();
    let partitions: Vec<Tp> = if r.all_topics {
        if !r.topic.is_empty() || !r.partitions.is_empty() {
            return Err(Status::invalid_argument("all topics or one topic (with its partitions), not both"));
        }
        if committed.is_empty() {
            return Err(Status::not_found(format!("group {:?} has no committed offsets", r.group)));
        }
        committed.keys().cloned().collect()
    } else {
        let state = broker.metadata.state();
        let Some(topic) = state.image.topics.get(&r.topic) else { return Err(Status::not_found(format!("topic {:?} does not exist", r.topic))) };
        let count = topic.partitions.len() as i32;
        if let Some(bad) = r.partitions.iter().find(|p| **p < 0 || **p >= count) {
            return Err(Status::invalid_argument(format!("topic {:?} has partitions 0 to {}; {bad} is not one", r.topic, count - 1)));
        }
        if r.partitions.is_empty() { (0..count).map(|p| (r.topic.clone(), p)).collect() } else { r.partitions.iter().map(|p| (r.topic.clone(), *p)).collect() }
    };
    let Some(to) = &r.to else { return Err(Status::invalid_argument("say where to: earliest, latest, a datetime, an offset or a shift")) };
    if let To::ShiftBy(_) = to {
        let missing: Vec<String> = partitions.iter().filter(|tp| !committed.contains_key(*tp)).map(|(t, p)| format!("{t}-{p}")).collect();
        if !missing.is_empty() {
            return Err(Status::invalid_argument(format!("cannot shift {}: the group has no committed offset there", missing.join(", "))));
        }
    }
    let timestamp = if let To::DatetimeMs(t) = to { Some(*t) } else { None };
    let ends = leader_offsets(broker, &partitions, timestamp).await;
    let mut commits: Vec<OffsetCommit> = Vec::new();
    for tp in &partitions {
        let Some(p) = ends.get(tp).filter(|p| p.high_watermark >= 0) else {
            return Err(Status::unavailable(format!("the leader of {}-{} did not report its offsets; nothing was changed", tp.0, tp.1)));
        };
        let offset = match to {
            To::Earliest(_) => p.log_start,
            To::Latest(_) => p.high_watermark,
            To::DatetimeMs(_) => p.at_timestamp,
            To::Offset(o) => (*o).clamp(p.log_start, p.high_watermark),
            To::ShiftBy(n) => committed[tp].saturating_add(*n).clamp(p.log_start, p.high_watermark),
        };
        commits.push(offset_commit(&tp.0, tp.1, offset, -1, None).map_err(|e| Status::internal(format!("{e:?}")))?);
    }
    if !r.dry_run {
        broker.coordinators.groups.reset_offsets(&r.group, commits.clone()).await.map_err(|(e, message)| match e {
            ResponseError::NonEmptyGroup => Status::failed_precondition(message),
            other => group_status(other, &r.group),
        })?;
    }
    let offsets = commits
        .into_iter()
        .map(|c| {
            let log_end = ends.get(&(c.topic.clone(), c.partition)).map_or(-1, |p| p.high_watermark);
            let previous = committed.get(&(c.topic.clone(), c.partition)).copied().unwrap_or(-1);
            GroupOffset {
                topic: c.topic,
                partition: c.partition,
                committed: c.record.offset,
                log_end,
                lag: (log_end - c.record.offset).max(0),
                member_id: String::new(),
                previous,
            }
        })
        .collect();
    Ok(GroupReply { group: r.group.clone(), state: if r.dry_run { "dry run".into() } else { "Empty".into() }, offsets, ..Default::default() })
}

pub(super) async fn delete_group_here(broker: &Broker, r: &GroupName) -> Result<(), Status> {
    let outcome = broker.coordinators.groups.delete_groups(std::slice::from_ref(&r.group)).await;
    match outcome.into_iter().next().map(|(_, o)| o) {
        Some(Ok(())) | None => Ok(()),
        Some(Err(ResponseError::NonEmptyGroup)) => {
            Err(Status::failed_precondition(format!("group {:?} has active members; stop its consumers before deleting it", r.group)))
        }
        Some(Err(e)) => Err(group_status(e, &r.group)),
    }
}
