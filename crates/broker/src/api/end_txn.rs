//! EndTxn: commit or abort the producer's transaction. Answered once the
//! decision is stored through Raft (it is final from then on) and the
//! markers are written, or the coordinator's marker wait has passed. From
//! v5, under transaction version 2 (the cluster's feature level allows it),
//! the end bumps the producer epoch and the answer carries the producer id
//! and epoch to go on with (KIP-890 part 2).

use runnel_controller::Metadata;
use runnel_controller::features::TRANSACTIONS_V2_LEVEL;
use runnel_coordinator::TransactionCoordinator;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::code;
use crate::acl::{Access, Resource, op};

pub(crate) async fn handle(access: &Access, txns: &TransactionCoordinator, metadata: &Metadata, request: EndTxnRequest, version: i16) -> EndTxnResponse {
    let version2 = version >= 5 && metadata.state().image.finalized_level() >= TRANSACTIONS_V2_LEVEL;
    let outcome = if !access.allowed(Resource::TransactionalId, &request.transactional_id, op::WRITE) {
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    } else {
        txns.end(&request.transactional_id, request.producer_id.0, request.producer_epoch, request.committed, version2).await
    };
    match outcome {
        Ok((producer_id, epoch)) => EndTxnResponse::default().with_producer_id(ProducerId(producer_id)).with_producer_epoch(epoch),
        Err(e) => EndTxnResponse::default().with_error_code(code(e)).with_producer_id(ProducerId(-1)).with_producer_epoch(-1),
    }
}
