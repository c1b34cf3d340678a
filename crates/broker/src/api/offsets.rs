//! Committed offsets: OffsetCommit, OffsetFetch (single group, and the
//! multi-group form of v8+) and OffsetDelete. Commits go through Raft on the
//! coordinator before they are acknowledged.

use std::collections::BTreeMap;
use std::sync::Arc;

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use runnel_protocol::kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use runnel_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use runnel_protocol::kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::groups::offset_commit;

type Partitions = Vec<(String, i32)>;

/// A partition of an OffsetCommit and the error it already has, if any.
type PartitionOutcome = (i32, Option<ResponseError>);

/// A committed offset as OffsetFetch reports it: (partition, offset, leader epoch, metadata, error).
type FetchedRow = (i32, i64, i32, String, i16);

pub(crate) async fn offset_commit_handle(broker: &Arc<Broker>, request: OffsetCommitRequest) -> OffsetCommitResponse {
    // Per partition: the offset to commit, or the error it already has.
    let mut outcomes: Vec<(String, Vec<PartitionOutcome>)> = Vec::new();
    let mut commits = Vec::new();
    let image = broker.image();
    for topic in &request.topics {
        let name = topic.name.to_string();
        let partitions = topic.partitions.len();
        let mut results = Vec::with_capacity(partitions);
        for p in &topic.partitions {
            let exists = image.topics.get(&name).is_some_and(|t| p.partition_index >= 0 && (p.partition_index as usize) < t.partitions.len());
            let outcome = if !exists {
                Some(ResponseError::UnknownTopicOrPartition)
            } else {
                match offset_commit(
                    &name,
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.committed_metadata.as_ref().map(|m| m.to_string()),
                ) {
                    Ok(c) => {
                        commits.push(c);
                        None
                    }
                    Err(e) => Some(e),
                }
            };
            results.push((p.partition_index, outcome));
        }
        outcomes.push((name, results));
    }
    let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
    let committed =
        broker.groups.commit_offsets(&request.group_id, request.generation_id_or_member_epoch, &request.member_id, instance.as_deref(), commits).await;
    let topics = outcomes
        .into_iter()
        .map(|(name, results)| {
            let partitions = results
                .into_iter()
                .map(|(index, outcome)| {
                    let error = outcome.or_else(|| match &committed {
                        Err(e) => Some(*e),
                        Ok(unknown) if unknown.iter().any(|(t, p)| *t == name && *p == index) => Some(ResponseError::UnknownTopicOrPartition),
                        Ok(_) => None,
                    });
                    OffsetCommitResponsePartition::default().with_partition_index(index).with_error_code(error.map_or(0, code))
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(TopicName(str_bytes(name))).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's committed offsets as OffsetFetch reports them, grouped by
/// topic: (partition, offset, leader epoch, metadata, error).
type FetchedTopics = Vec<(String, Vec<FetchedRow>)>;

fn fetch_group(broker: &Arc<Broker>, group: &str, partitions: Option<Partitions>) -> Result<FetchedTopics, ResponseError> {
    let fetched = broker.groups.fetch_offsets(group, partitions)?;
    let mut by_topic: BTreeMap<String, Vec<FetchedRow>> = BTreeMap::new();
    let mut order = Vec::new();
    for ((topic, partition), record) in fetched {
        if !by_topic.contains_key(&topic) {
            order.push(topic.clone());
        }
        let row = match record {
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

pub(crate) fn offset_fetch(broker: &Arc<Broker>, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|ts| ts.iter().flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p))).collect());
                let response = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch_group(broker, &g.group_id, wanted) {
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
    match fetch_group(broker, &request.group_id, wanted.clone()) {
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

pub(crate) async fn offset_delete(broker: &Arc<Broker>, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group: &GroupId = &request.group_id;
    let partitions: Partitions = request.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index))).collect();
    let image = broker.image();
    let (known, unknown): (Partitions, Partitions) =
        partitions.into_iter().partition(|(t, p)| image.topics.get(t).is_some_and(|r| *p >= 0 && (*p as usize) < r.partitions.len()));
    let mut results: Vec<((String, i32), i16)> = unknown.into_iter().map(|tp| (tp, code(ResponseError::UnknownTopicOrPartition))).collect();
    match broker.groups.delete_offsets(group, known).await {
        Err(e) => return OffsetDeleteResponse::default().with_error_code(code(e)),
        Ok(outcomes) => results.extend(outcomes.into_iter().map(|(tp, r)| (tp, r.err().map_or(0, code)))),
    }
    let mut by_topic: BTreeMap<String, Vec<(i32, i16)>> = BTreeMap::new();
    for ((t, p), error) in results {
        by_topic.entry(t).or_default().push((p, error));
    }
    let topics = by_topic
        .into_iter()
        .map(|(t, ps)| {
            OffsetDeleteResponseTopic::default()
                .with_name(TopicName(str_bytes(t)))
                .with_partitions(ps.into_iter().map(|(p, e)| OffsetDeleteResponsePartition::default().with_partition_index(p).with_error_code(e)).collect())
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
