//! DescribeTransactions v0 (KIP-664): a transactional id's state as the
//! coordinator keeps it: producer id and epoch, timeout, start time and the
//! partitions of the transaction in progress.

use std::collections::BTreeMap;

use runnel_coordinator::TransactionCoordinator;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use runnel_protocol::kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName};

use super::{code, str_bytes, transaction_state_name};
use crate::acl::{Access, Resource, op};

pub(crate) fn handle(access: &Access, txns: &TransactionCoordinator, request: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let listed = txns.list();
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let state = TransactionState::default().with_transactional_id(id.clone()).with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
            if !access.allowed(Resource::TransactionalId, &id, op::DESCRIBE) {
                return state.with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed));
            }
            let record = match &listed {
                Err(e) => return state.with_error_code(code(*e)),
                Ok(all) => all.iter().find(|(t, _)| t.as_str() == id.as_str()).map(|(_, r)| r),
            };
            let Some(r) = record else { return state.with_error_code(code(ResponseError::TransactionalIdNotFound)) };
            let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in &r.partitions {
                topics.entry(topic).or_default().push(*partition);
            }
            state
                .with_transaction_state(str_bytes(transaction_state_name(r.state)))
                .with_transaction_timeout_ms(r.timeout_ms)
                .with_transaction_start_time_ms(if r.state == runnel_controller::records::TransactionState::Ongoing { r.started_ms } else { -1 })
                .with_producer_id(ProducerId(r.producer_id))
                .with_producer_epoch(r.producer_epoch)
                .with_topics(topics.into_iter().map(|(t, ps)| TopicData::default().with_topic(TopicName(str_bytes(t))).with_partitions(ps)).collect())
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
