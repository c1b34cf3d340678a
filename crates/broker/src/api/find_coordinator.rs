//! FindCoordinator: the node that coordinates a key (one key, or the
//! batched keys of v4+), as the coordinators resolve it.

use runnel_coordinator::{CoordinatorKind, Coordinators};
use runnel_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use runnel_protocol::kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use runnel_protocol::kafka_protocol::error::ResponseError;

use super::{Client, code, str_bytes};
use crate::acl::{Access, Resource, op};

pub(crate) fn handle(access: &Access, coordinators: &Coordinators, request: FindCoordinatorRequest, version: i16, client: Client) -> FindCoordinatorResponse {
    let kind = CoordinatorKind::from_key_type(request.key_type);
    let answer = |key: &str| {
        let (resource, denied) = match request.key_type {
            1 => (Resource::TransactionalId, ResponseError::TransactionalIdAuthorizationFailed),
            _ => (Resource::Group, ResponseError::GroupAuthorizationFailed),
        };
        if !access.allowed(resource, key, op::DESCRIBE) {
            return Err(runnel_coordinator::FindError { code: denied, message: format!("{} may not describe {key}", access.principal()) });
        }
        coordinators.find(kind, key).map(|b| {
            let (host, port) = b.kafka_endpoint(client.external);
            (b.id.broker_id(), host.to_string(), i32::from(port))
        })
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let entry = CoordinatorEntry::default().with_key(key.clone());
                match answer(key) {
                    Ok((id, host, port)) => entry.with_node_id(BrokerId(id)).with_host(str_bytes(host)).with_port(port).with_error_message(None),
                    Err(e) => entry.with_node_id(BrokerId(-1)).with_port(-1).with_error_code(code(e.code)).with_error_message(Some(str_bytes(e.message))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match answer(&request.key) {
        Ok((id, host, port)) => response.with_node_id(BrokerId(id)).with_host(str_bytes(host)).with_port(port).with_error_message(None),
        Err(e) => {
            let response = response.with_node_id(BrokerId(-1)).with_port(-1).with_error_code(code(e.code));
            if version >= 1 { response.with_error_message(Some(str_bytes(e.message))) } else { response }
        }
    }
}
