//! One module per Kafka API. [`dispatch`] routes a decoded request to its
//! handler and encodes the response frame.
//!
//! Handlers run their ordered part synchronously inside `dispatch` (so two
//! produce requests on one connection append in the order they arrived) and
//! return a future for any waiting (fsync, long poll).

mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_topics;
mod describe_configs;
mod fetch;
mod group_admin;
mod groups;
mod init_producer_id;
pub(crate) mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod offsets;
mod produce;

use std::net::SocketAddr;
use std::sync::Arc;

use runnel_protocol::Request;
use runnel_protocol::encode_response;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::{RequestKind, ResponseKind};
use runnel_protocol::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::server::PendingResponse;

/// Who sent a request: its address, and whether it came in on the external listener.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub peer: SocketAddr,
    pub external: bool,
}

/// Routes a request and counts it, with its latency, once its response is ready.
pub(crate) fn dispatch(broker: &Arc<Broker>, request: Request, client: Client) -> PendingResponse {
    let started = std::time::Instant::now();
    let api = request.api_key;
    let pending = route(broker, request, client);
    let broker = broker.clone();
    Box::pin(async move {
        let response = pending.await;
        broker.metrics.request_done(api_name(api), started.elapsed(), response.is_ok());
        response
    })
}

fn route(broker: &Arc<Broker>, request: Request, client: Client) -> PendingResponse {
    let Request { api_key, version, header, body } = request;
    let correlation_id = header.correlation_id;
    let encode = move |response: ResponseKind| encode_response(api_key, version, correlation_id, &response).map(Some);
    let ready = |response: ResponseKind| -> PendingResponse {
        let frame = encode(response);
        Box::pin(async move { frame })
    };
    match body {
        RequestKind::ApiVersions(r) => ready(ResponseKind::ApiVersions(api_versions::handle(r, version))),
        RequestKind::Metadata(r) => {
            let broker = broker.clone();
            Box::pin(async move { encode(ResponseKind::Metadata(metadata::handle(&broker, r, version, client).await)) })
        }
        RequestKind::CreateTopics(r) => {
            let broker = broker.clone();
            Box::pin(async move { encode(ResponseKind::CreateTopics(create_topics::handle(&broker, r, version).await)) })
        }
        RequestKind::DeleteTopics(r) => {
            let broker = broker.clone();
            Box::pin(async move { encode(ResponseKind::DeleteTopics(delete_topics::handle(&broker, r, version).await)) })
        }
        RequestKind::CreatePartitions(r) => {
            let broker = broker.clone();
            Box::pin(async move { encode(ResponseKind::CreatePartitions(create_partitions::handle(&broker, r).await)) })
        }
        RequestKind::InitProducerId(r) => {
            let broker = broker.clone();
            Box::pin(async move { encode(ResponseKind::InitProducerId(init_producer_id::handle(&broker, r).await)) })
        }
        RequestKind::DescribeConfigs(r) => ready(ResponseKind::DescribeConfigs(describe_configs::handle(broker, r, version))),
        RequestKind::OffsetForLeaderEpoch(r) => ready(ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, r))),
        RequestKind::ListOffsets(r) => ready(ResponseKind::ListOffsets(list_offsets::handle(broker, r, version))),
        RequestKind::Produce(r) => {
            let pending = produce::handle(broker, r);
            Box::pin(async move {
                match pending.await {
                    Some(response) => encode(ResponseKind::Produce(response)),
                    None => Ok(None),
                }
            })
        }
        RequestKind::Fetch(r) => {
            let broker = broker.clone();
            Box::pin(async move { encode(ResponseKind::Fetch(fetch::handle(&broker, r).await)) })
        }
        RequestKind::FindCoordinator(r) => ready(ResponseKind::FindCoordinator(groups::find_coordinator(broker, r, version, client))),
        RequestKind::JoinGroup(r) => {
            let broker = broker.clone();
            let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
            Box::pin(async move { encode(ResponseKind::JoinGroup(groups::join_group(&broker, r, version, client_id, client).await)) })
        }
        RequestKind::SyncGroup(r) => {
            let broker = broker.clone();
            Box::pin(async move { encode(ResponseKind::SyncGroup(groups::sync_group(&broker, r, version).await)) })
        }
        RequestKind::Heartbeat(r) => ready(ResponseKind::Heartbeat(groups::heartbeat(broker, r))),
        RequestKind::LeaveGroup(r) => ready(ResponseKind::LeaveGroup(groups::leave_group(broker, r, version))),
        RequestKind::OffsetCommit(r) => {
            let broker = broker.clone();
            Box::pin(async move { encode(ResponseKind::OffsetCommit(offsets::offset_commit_handle(&broker, r).await)) })
        }
        RequestKind::OffsetFetch(r) => ready(ResponseKind::OffsetFetch(offsets::offset_fetch(broker, r, version))),
        RequestKind::OffsetDelete(r) => {
            let broker = broker.clone();
            Box::pin(async move { encode(ResponseKind::OffsetDelete(offsets::offset_delete(&broker, r).await)) })
        }
        RequestKind::ListGroups(r) => ready(ResponseKind::ListGroups(group_admin::list_groups(broker, r, version))),
        RequestKind::DescribeGroups(r) => ready(ResponseKind::DescribeGroups(group_admin::describe_groups(broker, r, version))),
        RequestKind::DeleteGroups(r) => {
            let broker = broker.clone();
            Box::pin(async move { encode(ResponseKind::DeleteGroups(group_admin::delete_groups(&broker, r).await)) })
        }
        // decode_request only lets through the keys listed in versions::SUPPORTED.
        other => {
            let name = format!("{other:?}").split('(').next().unwrap_or_default().to_string();
            Box::pin(async move { Err(format!("no handler for {name}")) })
        }
    }
}

/// An API's name for metrics, formatted once per API rather than per request.
fn api_name(key: runnel_protocol::kafka_protocol::messages::ApiKey) -> &'static str {
    static NAMES: std::sync::OnceLock<std::collections::HashMap<i16, &'static str>> = std::sync::OnceLock::new();
    let names = NAMES
        .get_or_init(|| runnel_protocol::versions::SUPPORTED.iter().map(|r| (r.key as i16, &*Box::leak(format!("{:?}", r.key).into_boxed_str()))).collect());
    names.get(&(key as i16)).copied().unwrap_or("Other")
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) fn code(e: ResponseError) -> i16 {
    e.code()
}

/// KIP-320: a client's view of the leader epoch against the leader's. -1
/// means the client does not know it and skips the check.
pub(crate) fn check_leader_epoch(client_epoch: i32, leader_epoch: i32) -> Option<ResponseError> {
    if client_epoch < 0 || client_epoch == leader_epoch {
        None
    } else if client_epoch < leader_epoch {
        Some(ResponseError::FencedLeaderEpoch)
    } else {
        Some(ResponseError::UnknownLeaderEpoch)
    }
}
