//! OffsetCommit: checked against the group's member and generation, then
//! committed through Raft on the coordinator before it is acknowledged.

use runnel_controller::Metadata;
use std::sync::Arc;

use runnel_coordinator::GroupCoordinator;
use runnel_coordinator::group::offset_commit;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use runnel_protocol::kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};

use super::{PartitionOutcome, code, str_bytes};
use crate::acl::{Access, Resource, op};

pub(crate) async fn handle(access: &Access, groups: &Arc<GroupCoordinator>, metadata: &Metadata, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_allowed = access.allowed(Resource::Group, &request.group_id, op::READ);
    // Per partition: the offset to commit, or the error it already has.
    let mut outcomes: Vec<(String, Vec<PartitionOutcome>)> = Vec::new();
    let mut commits = Vec::new();
    let state = metadata.state();
    let image = &state.image;
    for topic in &request.topics {
        let name = topic.name.to_string();
        let partitions = topic.partitions.len();
        let mut results = Vec::with_capacity(partitions);
        let topic_allowed = access.allowed(Resource::Topic, &name, op::READ);
        for p in &topic.partitions {
            let exists = image.topics.get(&name).is_some_and(|t| p.partition_index >= 0 && (p.partition_index as usize) < t.partitions.len());
            let outcome = if !group_allowed {
                Some(ResponseError::GroupAuthorizationFailed)
            } else if !topic_allowed {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if !exists {
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
    if !group_allowed {
        return respond(outcomes, &Ok(Vec::new()));
    }
    let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
    let committed = groups.commit_offsets(&request.group_id, request.generation_id_or_member_epoch, &request.member_id, instance.as_deref(), commits).await;
    respond(outcomes, &committed)
}

/// The response: each partition's own error, else the commit's.
fn respond(outcomes: Vec<(String, Vec<PartitionOutcome>)>, committed: &Result<Vec<(String, i32)>, ResponseError>) -> OffsetCommitResponse {
    let topics = outcomes
        .into_iter()
        .map(|(name, results)| {
            let partitions = results
                .into_iter()
                .map(|(index, outcome)| {
                    let error = outcome.or_else(|| match committed {
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
