//! OffsetFetch: one group's committed offsets (v1-7), or several groups'
//! (v8+). With require_stable (v7+, KIP-447), a partition whose offset an
//! open transaction has sent answers UNSTABLE_OFFSET_COMMIT (retriable)
//! until that transaction ends. A member of a KIP-848 group that names
//! itself (v9+) must be in the group at its current epoch.

use std::collections::BTreeMap;

use runnel_coordinator::Coordinators;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use runnel_protocol::kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{code, str_bytes};
use crate::acl::{Access, Resource, op};

type Partitions = Vec<(String, i32)>;

/// A committed offset as OffsetFetch reports it: (partition, offset, leader epoch, metadata, error).
type FetchedRow = (i32, i64, i32, String, i16);

/// One group's committed offsets as OffsetFetch reports them, grouped by
/// topic: (partition, offset, leader epoch, metadata, error).
type FetchedTopics = Vec<(String, Vec<FetchedRow>)>;

/// A group's offsets for the partitions asked (all when `None`) that
/// `access` may describe: a topic it may not is left out of "all", and
/// answered TOPIC_AUTHORIZATION_FAILED when asked by name.
fn fetch_group(
    access: &Access,
    coordinators: &Coordinators,
    group: &str,
    partitions: Option<Partitions>,
    stable: bool,
) -> Result<FetchedTopics, ResponseError> {
    if !access.allowed(Resource::Group, group, op::DESCRIBE) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let named = partitions.is_some();
    let fetched = coordinators.groups.fetch_offsets(group, partitions)?;
    let unstable = if stable { coordinators.transactions.pending_offsets(group) } else { Default::default() };
    let mut by_topic: BTreeMap<String, Vec<FetchedRow>> = BTreeMap::new();
    let mut order = Vec::new();
    let mut allowed: BTreeMap<String, bool> = BTreeMap::new();
    for ((topic, partition), record) in fetched {
        if !*allowed.entry(topic.clone()).or_insert_with(|| access.allowed(Resource::Topic, &topic, op::DESCRIBE)) {
            if named {
                if !by_topic.contains_key(&topic) {
                    order.push(topic.clone());
                }
                by_topic.entry(topic).or_default().push((partition, -1, -1, String::new(), code(ResponseError::TopicAuthorizationFailed)));
            }
            continue;
        }
        if !by_topic.contains_key(&topic) {
            order.push(topic.clone());
        }
        let row = match record {
            _ if unstable.contains(&(topic.clone(), partition)) => (partition, -1, -1, String::new(), code(ResponseError::UnstableOffsetCommit)),
            Some(r) => (partition, r.offset, r.leader_epoch, r.metadata.unwrap_or_default(), 0),
            None => (partition, -1, -1, String::new(), 0),
        };
        by_topic.entry(topic).or_default().push(row);
    }
    Ok(order
        .into_iter()
        .map(|t| {
            let rows = by_topic.remove(&t).unwrap_or_default();
            (t, rows)
        })
        .collect())
}

pub(crate) fn handle(access: &Access, coordinators: &Coordinators, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let stable = request.require_stable;
    if version >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|ts| ts.iter().flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p))).collect());
                let response = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                let member = g.member_id.as_deref().unwrap_or_default();
                let fetched = if version >= 9 && access.allowed(Resource::Group, &g.group_id, op::DESCRIBE) {
                    coordinators.groups.check_offset_fetch(&g.group_id, member, g.member_epoch)
                } else {
                    Ok(())
                };
                match fetched.and_then(|()| fetch_group(access, coordinators, &g.group_id, wanted, stable)) {
                    Err(e) => response.with_error_code(code(e)),
                    Ok(topics) => response.with_topics(
                        topics
                            .into_iter()
                            .map(|(name, rows)| {
                                OffsetFetchResponseTopics::default().with_name(TopicName(str_bytes(name))).with_partitions(
                                    rows.into_iter()
                                        .map(|(p, offset, epoch, metadata, error)| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(epoch)
                                                .with_metadata(Some(str_bytes(metadata)))
                                                .with_error_code(error)
                                        })
                                        .collect(),
                                )
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.as_ref().map(|ts| ts.iter().flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p))).collect::<Vec<_>>());
    match fetch_group(access, coordinators, &request.group_id, wanted.clone(), stable) {
        Ok(topics) => {
            let topics = topics
                .into_iter()
                .map(|(name, rows)| {
                    OffsetFetchResponseTopic::default().with_name(TopicName(str_bytes(name))).with_partitions(
                        rows.into_iter()
                            .map(|(p, offset, epoch, metadata, error)| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(if version >= 5 { epoch } else { -1 })
                                    .with_metadata(Some(str_bytes(metadata)))
                                    .with_error_code(error)
                            })
                            .collect(),
                    )
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
        // v1 has no top-level error: each requested partition carries it.
        Err(e) if version < 2 => {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in wanted.unwrap_or_default() {
                by_topic.entry(t).or_default().push(p);
            }
            let topics = by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default().with_name(TopicName(str_bytes(t))).with_partitions(
                        ps.into_iter()
                            .map(|p| OffsetFetchResponsePartition::default().with_partition_index(p).with_committed_offset(-1).with_error_code(code(e)))
                            .collect(),
                    )
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
        Err(e) => OffsetFetchResponse::default().with_error_code(code(e)),
    }
}
