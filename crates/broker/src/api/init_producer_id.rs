//! InitProducerId for idempotent producers: a producer id never handed out
//! before, with epoch 0. Transactions are not supported, so a request with a
//! transactional id is refused.

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use runnel_coordinator::ProducerIdManager;

use super::code;
use crate::acl::{Access, CLUSTER, Resource, op};

pub(crate) async fn handle(access: &Access, producer_ids: &ProducerIdManager, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if request.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
        return response.with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed));
    }
    // KIP-679: an idempotent producer needs IDEMPOTENT_WRITE on the cluster
    // or WRITE on some topic.
    if !access.decide(Resource::Cluster, CLUSTER, op::IDEMPOTENT_WRITE) && !access.may_write_some_topic() {
        return response.with_error_code(code(ResponseError::ClusterAuthorizationFailed));
    }
    // As Kafka does for producers without a transactional id (also when one
    // asks to bump its epoch, KIP-360): a fresh id at epoch 0.
    match producer_ids.next().await {
        Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "could not allocate a producer id");
            response.with_error_code(code(ResponseError::CoordinatorNotAvailable))
        }
    }
}
