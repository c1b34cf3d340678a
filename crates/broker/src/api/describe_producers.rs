//! DescribeProducers v0 (KIP-664), at partition leaders: the producers each
//! partition knows, with their epoch, last sequence and timestamp, and the
//! first offset of the transaction each has open there (-1 for none).

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use runnel_protocol::kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use runnel_replica::ReplicaManager;

use super::{code, leader_error};
use crate::acl::{Access, Resource, op};

pub(crate) fn handle(access: &Access, replicas: &ReplicaManager, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let allowed = access.allowed(Resource::Topic, &t.name, op::READ);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|p| {
                    let response = PartitionResponse::default().with_partition_index(*p);
                    if !allowed {
                        return response.with_error_code(code(ResponseError::TopicAuthorizationFailed));
                    }
                    match replicas.leader(&t.name, *p) {
                        Err(e) => response.with_error_code(code(leader_error(&e))),
                        Ok(partition) => response.with_active_producers(
                            partition
                                .log()
                                .producers()
                                .into_iter()
                                .map(|s| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(s.producer_id))
                                        .with_producer_epoch(i32::from(s.epoch))
                                        .with_last_sequence(s.last_sequence)
                                        .with_last_timestamp(s.last_timestamp)
                                        .with_coordinator_epoch(s.coordinator_epoch)
                                        .with_current_txn_start_offset(s.transaction_start)
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            TopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
