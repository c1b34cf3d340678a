//! JoinGroup: the classic protocol's join phase. The broker only carries the
//! assignors' metadata; clients run range, roundrobin or cooperative-sticky
//! themselves.

use std::sync::Arc;
use std::time::Duration;

use runnel_coordinator::GroupCoordinator;
use runnel_coordinator::group::state::JoinRequest;
use runnel_protocol::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use runnel_protocol::kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{Client, code, str_bytes};

pub(crate) async fn handle(groups: &Arc<GroupCoordinator>, request: JoinGroupRequest, version: i16, client_id: String, client: Client) -> JoinGroupResponse {
    let session_timeout = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
    // v0 has no rebalance timeout: the session timeout serves as both.
    let rebalance_timeout = if request.rebalance_timeout_ms > 0 { Duration::from_millis(request.rebalance_timeout_ms as u64) } else { session_timeout };
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id,
        client_host: format!("/{}", client.peer.ip()),
        session_timeout,
        rebalance_timeout,
        protocol_type: request.protocol_type.to_string(),
        protocols: request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
    };
    let result = groups.join(&request.group_id, join).await;
    let mut response = JoinGroupResponse::default()
        .with_error_code(result.error.map_or(0, code))
        .with_generation_id(result.generation)
        .with_leader(str_bytes(result.leader))
        .with_member_id(str_bytes(result.member_id));
    if version >= 7 {
        response = response.with_protocol_type(result.protocol_type.map(str_bytes)).with_protocol_name(result.protocol.map(str_bytes));
    } else {
        response = response.with_protocol_name(Some(str_bytes(result.protocol.unwrap_or_default())));
    }
    let members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(id))
                .with_group_instance_id(if version >= 5 { instance.map(str_bytes) } else { None })
                .with_metadata(metadata)
        })
        .collect();
    response.with_members(members)
}
