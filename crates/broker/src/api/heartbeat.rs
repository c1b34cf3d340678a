//! Heartbeat: keeps a member's session alive and tells it of rebalances.

use runnel_coordinator::GroupCoordinator;
use runnel_protocol::kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::code;

pub(crate) fn handle(groups: &GroupCoordinator, request: HeartbeatRequest) -> HeartbeatResponse {
    let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
    match groups.heartbeat(&request.group_id, &request.member_id, instance.as_deref(), request.generation_id) {
        Ok(()) => HeartbeatResponse::default(),
        Err(e) => HeartbeatResponse::default().with_error_code(code(e)),
    }
}
