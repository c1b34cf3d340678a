//! The classic consumer-group protocol: FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat and LeaveGroup. The broker only carries the
//! assignors' metadata; clients run range, roundrobin or cooperative-sticky
//! themselves.

use std::sync::Arc;
use std::time::Duration;

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use runnel_protocol::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use runnel_protocol::kafka_protocol::messages::leave_group_response::MemberResponse;
use runnel_protocol::kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};

use super::{Client, code, str_bytes};
use crate::broker::Broker;
use crate::groups::group::JoinRequest;

/// Kafka's key types: 0 for groups, 1 for transactions.
const KEY_TYPE_GROUP: i8 = 0;

pub(crate) fn find_coordinator(broker: &Arc<Broker>, request: FindCoordinatorRequest, version: i16, client: Client) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 { request.coordinator_keys.iter().map(|k| k.to_string()).collect() } else { vec![request.key.to_string()] };
    let node = broker.groups.coordinator_node();
    let answer = |key: &str| -> Result<(i32, String, i32), (ResponseError, String)> {
        if request.key_type != KEY_TYPE_GROUP {
            return Err((ResponseError::InvalidRequest, "Runnel has no transaction coordinator: transactions are not supported".into()));
        }
        if key.is_empty() {
            return Err((ResponseError::InvalidRequest, "the group id must not be empty".into()));
        }
        match &node {
            Some(b) => {
                let (host, port) = b.kafka_endpoint(client.external);
                Ok((b.id as i32, host.to_string(), i32::from(port)))
            }
            None => Err((ResponseError::CoordinatorNotAvailable, "no live broker leads the controller quorum right now".into())),
        }
    };
    if version >= 4 {
        let coordinators = keys
            .iter()
            .map(|key| {
                let entry = CoordinatorEntry::default().with_key(str_bytes(key.clone()));
                match answer(key) {
                    Ok((id, host, port)) => entry.with_node_id(BrokerId(id)).with_host(str_bytes(host)).with_port(port).with_error_message(None),
                    Err((e, message)) => entry.with_node_id(BrokerId(-1)).with_port(-1).with_error_code(code(e)).with_error_message(Some(str_bytes(message))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match answer(&keys[0]) {
        Ok((id, host, port)) => response.with_node_id(BrokerId(id)).with_host(str_bytes(host)).with_port(port).with_error_message(None),
        Err((e, message)) => {
            let response = response.with_node_id(BrokerId(-1)).with_port(-1).with_error_code(code(e));
            if version >= 1 { response.with_error_message(Some(str_bytes(message))) } else { response }
        }
    }
}

pub(crate) async fn join_group(broker: &Arc<Broker>, request: JoinGroupRequest, version: i16, client_id: String, client: Client) -> JoinGroupResponse {
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
    let result = broker.groups.join(&request.group_id, join).await;
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

pub(crate) async fn sync_group(broker: &Arc<Broker>, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let assignments = request.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
    let result = broker.groups.sync(&request.group_id, &request.member_id, instance.as_deref(), request.generation_id, assignments).await;
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

pub(crate) fn heartbeat(broker: &Arc<Broker>, request: HeartbeatRequest) -> HeartbeatResponse {
    let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
    match broker.groups.heartbeat(&request.group_id, &request.member_id, instance.as_deref(), request.generation_id) {
        Ok(()) => HeartbeatResponse::default(),
        Err(e) => HeartbeatResponse::default().with_error_code(code(e)),
    }
}

pub(crate) fn leave_group(broker: &Arc<Broker>, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request.members.iter().map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string()))).collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    match broker.groups.leave(&request.group_id, &members) {
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
