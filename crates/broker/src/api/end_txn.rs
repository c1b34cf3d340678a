//! EndTxn: commit or abort the producer's transaction. Answered once the
//! decision is stored through Raft (it is final from then on) and the
//! markers are written, or the coordinator's marker wait has passed.

use runnel_coordinator::TransactionCoordinator;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::code;
use crate::acl::{Access, Resource, op};

pub(crate) async fn handle(access: &Access, txns: &TransactionCoordinator, request: EndTxnRequest) -> EndTxnResponse {
    let error = if !access.allowed(Resource::TransactionalId, &request.transactional_id, op::WRITE) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else {
        txns.end(&request.transactional_id, request.producer_id.0, request.producer_epoch, request.committed).await.err()
    };
    EndTxnResponse::default().with_error_code(error.map_or(0, code))
}
