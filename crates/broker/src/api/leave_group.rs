//! LeaveGroup: one member (v0-2) or a batch by member or instance id (v3+).

use std::sync::Arc;

use runnel_coordinator::GroupCoordinator;
use runnel_protocol::kafka_protocol::messages::leave_group_response::MemberResponse;
use runnel_protocol::kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{code, str_bytes};

pub(crate) async fn handle(groups: &Arc<GroupCoordinator>, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request.members.iter().map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string()))).collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    match groups.leave(&request.group_id, &members).await {
        Err(e) => LeaveGroupResponse::default().with_error_code(code(e)),
        Ok(outcomes) if version >= 3 => {
            let results = members
                .into_iter()
                .zip(outcomes)
                .map(|((member_id, instance), outcome)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(member_id))
                        .with_group_instance_id(instance.map(str_bytes))
                        .with_error_code(outcome.err().map_or(0, code))
                })
                .collect();
            LeaveGroupResponse::default().with_members(results)
        }
        Ok(outcomes) => LeaveGroupResponse::default().with_error_code(outcomes.into_iter().next().and_then(Result::err).map_or(0, code)),
    }
}
