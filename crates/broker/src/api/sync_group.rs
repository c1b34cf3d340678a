//! SyncGroup: the leader's assignment in, every member's share out, once
//! the generation is stored through Raft.

use std::sync::Arc;

use runnel_coordinator::GroupCoordinator;
use runnel_protocol::kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::code;

pub(crate) async fn handle(groups: &Arc<GroupCoordinator>, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let assignments = request.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
    let result = groups.sync(&request.group_id, &request.member_id, instance.as_deref(), request.generation_id, assignments).await;
    let mut response = SyncGroupResponse::default();
    if version >= 5 {
        // The group's protocol is the one the member was told at join.
        response = response.with_protocol_type(request.protocol_type.clone()).with_protocol_name(request.protocol_name.clone());
    }
    match result {
        Ok(assignment) => response.with_assignment(assignment),
        Err(e) => response.with_error_code(code(e)),
    }
}
