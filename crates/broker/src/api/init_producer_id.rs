//! InitProducerId. Without a transactional id (idempotent producers): a
//! producer id never handed out before, with epoch 0. With one: the
//! transaction coordinator's producer id and bumped epoch for it, which
//! fences the previous instance and aborts what it left open.

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use runnel_coordinator::Coordinators;

use super::code;
use crate::acl::{Access, CLUSTER, Resource, op};

pub(crate) async fn handle(access: &Access, coordinators: &Coordinators, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if let Some(transactional_id) = request.transactional_id.as_ref().filter(|t| !t.is_empty()) {
        if !access.allowed(Resource::TransactionalId, transactional_id, op::WRITE) {
            return response.with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed));
        }
        let producer = (request.producer_id.0, request.producer_epoch);
        return match coordinators.transactions.init_producer_id(transactional_id, request.transaction_timeout_ms, producer).await {
            Ok((id, epoch)) => response.with_producer_id(ProducerId(id)).with_producer_epoch(epoch),
            Err(e) => response.with_error_code(code(e)),
        };
    }
    // KIP-679: an idempotent producer needs IDEMPOTENT_WRITE on the cluster
    // or WRITE on some topic.
    if !access.decide(Resource::Cluster, CLUSTER, op::IDEMPOTENT_WRITE) && !access.may_write_some_topic() {
        access.refused(Resource::Cluster, CLUSTER, op::IDEMPOTENT_WRITE);
        return response.with_error_code(code(ResponseError::ClusterAuthorizationFailed));
    }
    // As Kafka does for producers without a transactional id (also when one
    // asks to bump its epoch, KIP-360): a fresh id at epoch 0.
    match coordinators.producer_ids.next().await {
        Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "could not allocate a producer id");
            response.with_error_code(code(ResponseError::CoordinatorNotAvailable))
        }
    }
}
