//! ListTransactions v0-2 (KIP-664): the transactional ids this node
//! coordinates (all of them on the controller leader, none elsewhere, so a
//! client that asks every broker and merges gets each once), filtered by
//! state, producer id, (v1) how long the transaction has been open and (v2,
//! KIP-1152) a regular expression the whole transactional id must match.

use runnel_controller::records::TransactionRecord;
use runnel_coordinator::TransactionCoordinator;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::list_transactions_response::TransactionState;
use runnel_protocol::kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};

use super::{now_ms, str_bytes, transaction_state_name};
use crate::acl::{Access, Resource, op};

/// Kafka's names of the transaction states.
const STATES: [&str; 6] = ["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"];

pub(crate) fn handle(access: &Access, txns: &TransactionCoordinator, request: ListTransactionsRequest) -> ListTransactionsResponse {
    let pattern = match id_pattern(request.transactional_id_pattern.as_deref()) {
        Ok(pattern) => pattern,
        Err(message) => {
            tracing::debug!(%message, "ListTransactions: transactional id pattern refused");
            return ListTransactionsResponse::default().with_error_code(ResponseError::InvalidRegularExpression.code());
        }
    };
    let unknown: Vec<_> = request.state_filters.iter().filter(|s| !STATES.contains(&s.as_str())).cloned().collect();
    let wanted = |id: &str, r: &TransactionRecord| {
        let state = transaction_state_name(r.state);
        (request.state_filters.is_empty() || request.state_filters.iter().any(|s| s.as_str() == state))
            && (request.producer_id_filters.is_empty() || request.producer_id_filters.contains(&ProducerId(r.producer_id)))
            && (request.duration_filter < 0 || now_ms() - r.started_ms >= request.duration_filter)
            && pattern.as_ref().is_none_or(|p| p.is_match(id))
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

/// The v2 filter: none when absent or empty (everything is listed, as in
/// Kafka), else the expression anchored at both ends, since Kafka matches it
/// against the whole transactional id (RE2/J's `matches`), not a substring.
fn id_pattern(pattern: Option<&str>) -> Result<Option<regex::Regex>, regex::Error> {
    match pattern {
        None | Some("") => Ok(None),
        Some(p) => regex::Regex::new(&format!("^(?:{p})$")).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::id_pattern;

    fn matches(pattern: &str, id: &str) -> bool {
        id_pattern(Some(pattern)).unwrap().is_some_and(|p| p.is_match(id))
    }

    #[test]
    fn a_pattern_must_match_the_whole_transactional_id() {
        assert!(matches("orders-.*", "orders-7"));
        assert!(!matches("orders", "orders-7"), "a prefix alone is not a match");
        assert!(!matches("rders-.*", "orders-7"), "nor is a suffix");
        assert!(matches("a|orders-7", "orders-7"), "alternation stays inside the anchors");
        assert!(!matches("a|orders", "orders-7"));
    }

    #[test]
    fn no_pattern_or_an_empty_one_lists_everything_and_a_bad_one_is_refused() {
        assert!(id_pattern(None).unwrap().is_none());
        assert!(id_pattern(Some("")).unwrap().is_none());
        assert!(id_pattern(Some("orders-(")).is_err());
    }
}
