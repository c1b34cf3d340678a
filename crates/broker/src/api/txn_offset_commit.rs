//! TxnOffsetCommit: a consumer group's offsets sent inside a transaction.
//! They are kept with the transaction and take effect in the same Raft
//! entry that decides its commit (nothing, if it aborts). From v3 the
//! consumer's member id and generation come along and are checked against
//! the group (KIP-447 zombie fencing). From v5, under transaction version
//! 2, the producer sends no AddOffsetsToTxn first: the commit opens the
//! transaction itself.

use runnel_controller::Metadata;
use runnel_coordinator::TransactionCoordinator;
use runnel_coordinator::group::{GroupCoordinator, offset_commit};
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use runnel_protocol::kafka_protocol::messages::{TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::{PartitionOutcome, code, str_bytes};
use crate::acl::{Access, Resource, op};

pub(crate) async fn handle(
    access: &Access,
    txns: &TransactionCoordinator,
    groups: &GroupCoordinator,
    metadata: &Metadata,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let version2 = version >= 5 && metadata.state().image.finalized_level() >= runnel_controller::features::TRANSACTIONS_V2_LEVEL;
    let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
    let request_error = if !access.allowed(Resource::TransactionalId, &request.transactional_id, op::WRITE) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !access.allowed(Resource::Group, &request.group_id, op::READ) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        groups.check_txn_commit(&request.group_id, request.generation_id, &request.member_id, instance.as_deref()).err()
    };
    // Per partition: its own error, if it has one.
    let mut checked: Vec<(String, Vec<PartitionOutcome>)> = Vec::new();
    let mut commits = Vec::new();
    {
        let state = metadata.state();
        for topic in &request.topics {
            let name = topic.name.0.to_string();
            let topic_allowed = access.allowed(Resource::Topic, &name, op::READ);
            let count = state.image.topics.get(&name).map_or(0, |t| t.partitions.len());
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let error = if request_error.is_some() {
                    request_error
                } else if !topic_allowed {
                    Some(ResponseError::TopicAuthorizationFailed)
                } else if p.partition_index < 0 || p.partition_index as usize >= count {
                    Some(ResponseError::UnknownTopicOrPartition)
                } else {
                    let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
                    match offset_commit(&name, p.partition_index, p.committed_offset, p.committed_leader_epoch, metadata) {
                        Ok(c) => {
                            commits.push(c);
                            None
                        }
                        Err(e) => Some(e),
                    }
                };
                partitions.push((p.partition_index, error));
            }
            checked.push((name, partitions));
        }
    }
    let outcome = match (request_error, commits.is_empty()) {
        (Some(_), _) | (None, true) => Ok(()),
        (None, false) => {
            txns.commit_offsets(&request.transactional_id, request.producer_id.0, request.producer_epoch, &request.group_id, &commits, version2).await
        }
    };
    let topics = checked
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(p, error)| {
                    let error = error.or(outcome.err());
                    TxnOffsetCommitResponsePartition::default().with_partition_index(p).with_error_code(error.map_or(0, code))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default().with_name(TopicName(str_bytes(name))).with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
