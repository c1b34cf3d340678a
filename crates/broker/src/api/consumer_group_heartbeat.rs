//! ConsumerGroupHeartbeat (KIP-848, `group.protocol=consumer`): a member
//! joins, stays, reconciles towards the assignment the coordinator computed,
//! or leaves, all through this one request. See
//! `runnel_coordinator::group::consumer` for the rules.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use runnel_coordinator::GroupCoordinator;
use runnel_coordinator::group::consumer::Heartbeat;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use runnel_protocol::kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use super::{Client, code, str_bytes};
use crate::acl::{Access, Resource, op};

pub(crate) async fn handle(
    access: &Access,
    groups: &Arc<GroupCoordinator>,
    request: ConsumerGroupHeartbeatRequest,
    client_id: String,
    client: Client,
) -> ConsumerGroupHeartbeatResponse {
    let refuse = |e: ResponseError, message: String| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code(e))
            .with_error_message((!message.is_empty()).then(|| str_bytes(message)))
            .with_member_epoch(-1)
    };
    // A member may subscribe by name only to topics it may describe.
    if let Some(denied) = request.subscribed_topic_names.iter().flatten().find(|t| !access.allowed(Resource::Topic, t, op::DESCRIBE)) {
        return refuse(ResponseError::TopicAuthorizationFailed, format!("{} may not describe topic {:?}", access.principal(), denied.to_string()));
    }
    let heartbeat = Heartbeat {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|i| i.to_string()),
        rack_id: request.rack_id.map(|r| r.to_string()),
        client_id,
        client_host: format!("/{}", client.peer.ip()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        topics: request.subscribed_topic_names.map(|ts| ts.into_iter().map(|t| t.to_string()).collect()),
        regex: request.subscribed_topic_regex.map(|r| r.to_string()),
        assignor: request.server_assignor.map(|a| a.to_string()),
        owned: request.topic_partitions.map(|ts| ts.into_iter().flat_map(|t| t.partitions.into_iter().map(move |p| (t.topic_id, p))).collect()),
        hidden: Default::default(),
    };
    let outcome = {
        // Topics matched by a regex stay unassigned unless the member may describe them.
        let may_describe = |topic: &str| access.decide(Resource::Topic, topic, op::DESCRIBE);
        let filter: Option<&dyn Fn(&str) -> bool> = access.enforcing().then_some(&may_describe);
        groups.consumer_heartbeat(&request.group_id, heartbeat, filter)
    };
    // The group's change, if any, is committed before the member hears of it.
    let outcome = match outcome {
        Ok((reply, persisting)) => persisting.wait().await.map(|()| reply).map_err(|e| (e, String::new())),
        Err(refusal) => Err(refusal),
    };
    match outcome {
        Err((e, message)) => refuse(e, message),
        Ok(reply) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(reply.member_id)))
            .with_member_epoch(reply.member_epoch)
            .with_heartbeat_interval_ms(groups.consumer_heartbeat_interval().as_millis() as i32)
            .with_assignment(reply.assignment.map(assignment)),
    }
}

/// An assignment as the response carries it: partitions grouped by topic id.
fn assignment(partitions: BTreeSet<(uuid::Uuid, i32)>) -> Assignment {
    let mut by_topic: BTreeMap<uuid::Uuid, Vec<i32>> = BTreeMap::new();
    for (id, p) in partitions {
        by_topic.entry(id).or_default().push(p);
    }
    Assignment::default().with_topic_partitions(by_topic.into_iter().map(|(id, ps)| TopicPartitions::default().with_topic_id(id).with_partitions(ps)).collect())
}
