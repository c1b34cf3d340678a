//! ListTransactions v0-1 (KIP-664): the transactional ids this node
//! coordinates (all of them on the controller leader, none elsewhere, so a
//! client that asks every broker and merges gets each once), filtered by
//! state, producer id and (v1) how long the transaction has been open.

use runnel_controller::records::TransactionRecord;
use runnel_coordinator::TransactionCoordinator;
use runnel_protocol::kafka_protocol::messages::list_transactions_response::TransactionState;
use runnel_protocol::kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};

use super::{now_ms, str_bytes, transaction_state_name};
use crate::acl::{Access, Resource, op};

/// Kafka's names of the transaction states.
const STATES: [&str; 6] = ["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"];

pub(crate) fn handle(access: &Access, txns: &TransactionCoordinator, request: ListTransactionsRequest) -> ListTransactionsResponse {
    let unknown: Vec<_> = request.state_filters.iter().filter(|s| !STATES.contains(&s.as_str())).cloned().collect();
    let wanted = |id: &str, r: &TransactionRecord| {
        let state = transaction_state_name(r.state);
        (request.state_filters.is_empty() || request.state_filters.iter().any(|s| s.as_str() == state))
            && (request.producer_id_filters.is_empty() || request.producer_id_filters.contains(&ProducerId(r.producer_id)))
            && (request.duration_filter < 0 || now_ms() - r.started_ms >= request.duration_filter)
            && access.allowed(Resource::TransactionalId, id, op::DESCRIBE)
    };
    // Not the coordinator (or not yet): nothing to list here.
    let listed = txns.list().unwrap_or_default();
    let states = listed
        .iter()
        .filter(|(id, r)| wanted(id, r))
        .map(|(id, r)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(id.clone())))
                .with_producer_id(ProducerId(r.producer_id))
                .with_transaction_state(str_bytes(transaction_state_name(r.state)))
        })
        .collect();
    ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(states)
}
