//! AddOffsetsToTxn: the producer will commit a group's offsets inside its
//! transaction (TxnOffsetCommit follows, sent to the group coordinator,
//! which is this same node).

use runnel_coordinator::TransactionCoordinator;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::code;
use crate::acl::{Access, Resource, op};

pub(crate) async fn handle(access: &Access, txns: &TransactionCoordinator, request: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let error = if !access.allowed(Resource::TransactionalId, &request.transactional_id, op::WRITE) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !access.allowed(Resource::Group, &request.group_id, op::READ) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        txns.add_offsets(&request.transactional_id, request.producer_id.0, request.producer_epoch, &request.group_id).await.err()
    };
    AddOffsetsToTxnResponse::default().with_error_code(error.map_or(0, code))
}
