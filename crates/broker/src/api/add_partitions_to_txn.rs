//! AddPartitionsToTxn v0-3 (from producers): the partitions join the
//! producer's transaction on the coordinator before it writes to them. A
//! partition the producer may not write, or that does not exist, fails the
//! request; the others then answer OPERATION_NOT_ATTEMPTED, as Kafka does.

use runnel_controller::Metadata;
use runnel_coordinator::TransactionCoordinator;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::add_partitions_to_txn_response::{AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult};
use runnel_protocol::kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName};

use super::{PartitionOutcome, code, str_bytes};
use crate::acl::{Access, Resource, op};

pub(crate) async fn handle(
    access: &Access,
    txns: &TransactionCoordinator,
    metadata: &Metadata,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let transactional_id = request.v3_and_below_transactional_id.to_string();
    let id_allowed = access.allowed(Resource::TransactionalId, &transactional_id, op::WRITE);
    // Per partition: its own error, if it has one.
    let mut checked: Vec<(&str, Vec<PartitionOutcome>)> = Vec::new();
    {
        let state = metadata.state();
        for topic in &request.v3_and_below_topics {
            let name = topic.name.0.as_str();
            let topic_allowed = access.allowed(Resource::Topic, name, op::WRITE);
            let count = state.image.topics.get(name).map_or(0, |t| t.partitions.len());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let error = if !id_allowed {
                        Some(ResponseError::TransactionalIdAuthorizationFailed)
                    } else if !topic_allowed {
                        Some(ResponseError::TopicAuthorizationFailed)
                    } else if *p < 0 || *p as usize >= count {
                        Some(ResponseError::UnknownTopicOrPartition)
                    } else {
                        None
                    };
                    (*p, error)
                })
                .collect();
            checked.push((name, partitions));
        }
    }
    let any_failed = checked.iter().any(|(_, ps)| ps.iter().any(|(_, e)| e.is_some()));
    let outcome = if any_failed {
        Err(ResponseError::OperationNotAttempted)
    } else {
        let partitions: Vec<(String, i32)> = checked.iter().flat_map(|(t, ps)| ps.iter().map(move |(p, _)| (t.to_string(), *p))).collect();
        txns.add_partitions(&transactional_id, request.v3_and_below_producer_id.0, request.v3_and_below_producer_epoch, &partitions).await
    };
    let results = checked
        .into_iter()
        .map(|(name, partitions)| {
            let results = partitions
                .into_iter()
                .map(|(p, error)| {
                    let error = error.or(outcome.err());
                    AddPartitionsToTxnPartitionResult::default().with_partition_index(p).with_partition_error_code(error.map_or(0, code))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default().with_name(TopicName(str_bytes(name))).with_results_by_partition(results)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
