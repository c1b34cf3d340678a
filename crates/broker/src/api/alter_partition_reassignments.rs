//! AlterPartitionReassignments (v0-1, KIP-455): each partition's move is a
//! controller command of its own, answered per partition: a replica list
//! starts or replaces a move, a null one cancels it (NO_REASSIGNMENT_IN_PROGRESS
//! if there is none), unknown brokers or duplicates are
//! INVALID_REPLICA_ASSIGNMENT, and with v1's `allow_replication_factor_change`
//! false a change of size is INVALID_REPLICATION_FACTOR.

use runnel_controller::Metadata;
use runnel_controller::metadata::NodeId;
use runnel_protocol::kafka_protocol::messages::alter_partition_reassignments_response::{ReassignablePartitionResponse, ReassignableTopicResponse};
use runnel_protocol::kafka_protocol::messages::{AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse};

use super::{code, str_bytes};
use crate::topics;

pub(crate) async fn handle(metadata: &Metadata, request: AlterPartitionReassignmentsRequest, version: i16) -> AlterPartitionReassignmentsResponse {
    let allow_change = version < 1 || request.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let bad_id = p.replicas.as_ref().is_some_and(|r| r.iter().any(|b| b.0 < 0));
            let target = p.replicas.map(|r| r.iter().map(|b| NodeId(b.0.max(0) as u64)).collect());
            let result = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            let outcome = if bad_id {
                Err(topics::TopicError::new(runnel_protocol::kafka_protocol::error::ResponseError::InvalidReplicaAssignment, "broker ids are not negative"))
            } else {
                topics::reassign(metadata, &t.name, p.partition_index, target, allow_change).await
            };
            partitions.push(match outcome {
                Ok(()) => result,
                Err(e) => result.with_error_code(code(e.code)).with_error_message(Some(str_bytes(e.message))),
            });
        }
        responses.push(ReassignableTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    AlterPartitionReassignmentsResponse::default().with_allow_replication_factor_change(allow_change).with_responses(responses)
}
