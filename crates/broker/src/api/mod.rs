//! One module per Kafka API. [`dispatch`] routes a decoded request to its
//! handler, giving each the narrow handles it needs (the replica manager,
//! the coordinators, the metadata), and encodes the response frame.
//!
//! Handlers run their ordered part synchronously inside `dispatch` (so two
//! produce requests on one connection append in the order they arrived) and
//! return a future for any waiting (fsync, long poll).

mod alter_configs;
mod alter_partition_reassignments;
mod alter_user_scram_credentials;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_topics;
mod describe_cluster;
pub(crate) mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_user_scram_credentials;
mod elect_leaders;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
pub(crate) mod list_offsets;
mod list_partition_reassignments;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sync_group;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use runnel_protocol::Request;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::{RequestKind, ResponseKind};
use runnel_protocol::kafka_protocol::protocol::StrBytes;
use runnel_protocol::{EncodeError, encode_response};
use runnel_replica::LeaderError;
use runnel_storage::LeaderEpoch;

use crate::broker::Broker;

/// Why a request gets no response and its connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum ResponseFailure {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("no handler for {0}")]
    NoHandler(String),
}

/// A response being computed: `Ok(None)` for requests that get no response
/// (acks=0 produce), `Err` to close the connection.
pub(crate) type PendingResponse = BoxFuture<'static, Result<Option<Bytes>, ResponseFailure>>;

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
    let metrics = broker.metrics.clone();
    Box::pin(async move {
        let response = pending.await;
        metrics.request_done(api_name(api), started.elapsed(), response.is_ok());
        response
    })
}

fn route(broker: &Arc<Broker>, request: Request, client: Client) -> PendingResponse {
    let Request { api_key, version, header, body } = request;
    let correlation_id = header.correlation_id;
    let encode = move |response: ResponseKind| encode_response(api_key, version, correlation_id, &response).map(Some).map_err(ResponseFailure::from);
    let ready = |response: ResponseKind| -> PendingResponse {
        let frame = encode(response);
        Box::pin(async move { frame })
    };
    let b = broker;
    let groups = || b.coordinators.groups.clone();
    match body {
        RequestKind::ApiVersions(r) => ready(ResponseKind::ApiVersions(api_versions::handle(r, version))),
        // On a PLAINTEXT listener, or once authenticated (no re-authentication yet).
        RequestKind::SaslHandshake(_) => ready(ResponseKind::SaslHandshake(
            runnel_protocol::kafka_protocol::messages::SaslHandshakeResponse::default().with_error_code(code(ResponseError::IllegalSaslState)),
        )),
        RequestKind::SaslAuthenticate(_) => ready(ResponseKind::SaslAuthenticate(
            runnel_protocol::kafka_protocol::messages::SaslAuthenticateResponse::default()
                .with_error_code(code(ResponseError::IllegalSaslState))
                .with_error_message(Some(str_bytes("SASL is not expected here: the listener is PLAINTEXT, or this connection is authenticated"))),
        )),
        RequestKind::Metadata(r) => {
            let broker = b.clone();
            Box::pin(
                async move { encode(ResponseKind::Metadata(metadata::handle(&broker.config, &broker.metadata, &broker.replicas, r, version, client).await)) },
            )
        }
        RequestKind::CreateTopics(r) => {
            let broker = b.clone();
            Box::pin(async move {
                encode(ResponseKind::CreateTopics(create_topics::handle(&broker.config, &broker.replicas.config().log, &broker.metadata, r, version).await))
            })
        }
        RequestKind::DeleteTopics(r) => {
            let metadata = b.metadata.clone();
            Box::pin(async move { encode(ResponseKind::DeleteTopics(delete_topics::handle(&metadata, r, version).await)) })
        }
        RequestKind::CreatePartitions(r) => {
            let metadata = b.metadata.clone();
            let max = b.config.replicas_per_broker_max;
            Box::pin(async move { encode(ResponseKind::CreatePartitions(create_partitions::handle(&metadata, r, max).await)) })
        }
        RequestKind::InitProducerId(r) => {
            let coordinators = b.coordinators.clone();
            Box::pin(async move { encode(ResponseKind::InitProducerId(init_producer_id::handle(&coordinators.producer_ids, r).await)) })
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            let metadata = b.metadata.clone();
            Box::pin(async move { encode(ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(&metadata, r).await)) })
        }
        RequestKind::AlterConfigs(r) => {
            let metadata = b.metadata.clone();
            Box::pin(async move { encode(ResponseKind::AlterConfigs(alter_configs::handle(&metadata, r).await)) })
        }
        RequestKind::ElectLeaders(r) => {
            let metadata = b.metadata.clone();
            Box::pin(async move { encode(ResponseKind::ElectLeaders(elect_leaders::handle(&metadata, r, version).await)) })
        }
        RequestKind::AlterPartitionReassignments(r) => {
            let metadata = b.metadata.clone();
            Box::pin(async move { encode(ResponseKind::AlterPartitionReassignments(alter_partition_reassignments::handle(&metadata, r, version).await)) })
        }
        RequestKind::AlterUserScramCredentials(r) => {
            let metadata = b.metadata.clone();
            Box::pin(async move { encode(ResponseKind::AlterUserScramCredentials(alter_user_scram_credentials::handle(&metadata, r).await)) })
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            ready(ResponseKind::DescribeUserScramCredentials(describe_user_scram_credentials::handle(&b.metadata, r)))
        }
        RequestKind::ListPartitionReassignments(r) => ready(ResponseKind::ListPartitionReassignments(list_partition_reassignments::handle(&b.metadata, r))),
        RequestKind::DescribeLogDirs(r) => ready(ResponseKind::DescribeLogDirs(describe_log_dirs::handle(&b.replicas, r))),
        RequestKind::DescribeCluster(r) => ready(ResponseKind::DescribeCluster(describe_cluster::handle(&b.config, &b.metadata, r, version, client))),
        RequestKind::DescribeConfigs(r) => {
            ready(ResponseKind::DescribeConfigs(describe_configs::handle(&b.config, &b.replicas.config().log, &b.metadata, r, version)))
        }
        RequestKind::OffsetForLeaderEpoch(r) => ready(ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(&b.replicas, r))),
        RequestKind::ListOffsets(r) => ready(ResponseKind::ListOffsets(list_offsets::handle(&b.replicas, r, version))),
        RequestKind::Produce(r) => {
            let pending = produce::handle(&b.replicas, &b.metrics, b.config.message_max_bytes, r);
            Box::pin(async move {
                match pending.await {
                    Some(response) => encode(ResponseKind::Produce(response)),
                    None => Ok(None),
                }
            })
        }
        RequestKind::Fetch(r) => {
            let (replicas, metrics) = (b.replicas.clone(), b.metrics.clone());
            Box::pin(async move { encode(ResponseKind::Fetch(fetch::handle(&replicas, &metrics, r).await)) })
        }
        RequestKind::FindCoordinator(r) => ready(ResponseKind::FindCoordinator(find_coordinator::handle(&b.coordinators, r, version, client))),
        RequestKind::JoinGroup(r) => {
            let groups = groups();
            let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
            Box::pin(async move { encode(ResponseKind::JoinGroup(join_group::handle(&groups, r, version, client_id, client).await)) })
        }
        RequestKind::SyncGroup(r) => {
            let groups = groups();
            Box::pin(async move { encode(ResponseKind::SyncGroup(sync_group::handle(&groups, r, version).await)) })
        }
        RequestKind::Heartbeat(r) => ready(ResponseKind::Heartbeat(heartbeat::handle(&b.coordinators.groups, r))),
        RequestKind::LeaveGroup(r) => {
            let groups = groups();
            Box::pin(async move { encode(ResponseKind::LeaveGroup(leave_group::handle(&groups, r, version).await)) })
        }
        RequestKind::OffsetCommit(r) => {
            let (groups, metadata) = (groups(), b.metadata.clone());
            Box::pin(async move { encode(ResponseKind::OffsetCommit(offset_commit::handle(&groups, &metadata, r).await)) })
        }
        RequestKind::OffsetFetch(r) => ready(ResponseKind::OffsetFetch(offset_fetch::handle(&b.coordinators.groups, r, version))),
        RequestKind::OffsetDelete(r) => {
            let (groups, metadata) = (groups(), b.metadata.clone());
            Box::pin(async move { encode(ResponseKind::OffsetDelete(offset_delete::handle(&groups, &metadata, r).await)) })
        }
        RequestKind::ListGroups(r) => ready(ResponseKind::ListGroups(list_groups::handle(&b.coordinators.groups, r, version))),
        RequestKind::DescribeGroups(r) => ready(ResponseKind::DescribeGroups(describe_groups::handle(&b.coordinators.groups, r, version))),
        RequestKind::DeleteGroups(r) => {
            let groups = groups();
            Box::pin(async move { encode(ResponseKind::DeleteGroups(delete_groups::handle(&groups, r).await)) })
        }
        // decode_request only lets through the keys listed in versions::SUPPORTED.
        other => {
            let name = format!("{other:?}").split('(').next().unwrap_or_default().to_string();
            Box::pin(async move { Err(ResponseFailure::NoHandler(name)) })
        }
    }
}

/// The API a frame names (its first two bytes), for metrics; "unknown"
/// when it names none Runnel serves.
pub(crate) fn name_of_frame(frame: &[u8]) -> &'static str {
    match frame {
        [a, b, ..] => runnel_protocol::kafka_protocol::messages::ApiKey::try_from(i16::from_be_bytes([*a, *b])).map_or("unknown", api_name),
        _ => "unknown",
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

/// The Kafka error for a partition that cannot be served as leader here.
pub(crate) fn leader_error(e: &LeaderError) -> ResponseError {
    match e {
        LeaderError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        LeaderError::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
        LeaderError::LeaderNotAvailable => ResponseError::LeaderNotAvailable,
        LeaderError::Storage(_) => ResponseError::KafkaStorageError,
    }
}

/// KIP-320: a client's view of the leader epoch against the leader's. -1
/// means the client does not know it and skips the check.
pub(crate) fn check_leader_epoch(client_epoch: i32, leader_epoch: LeaderEpoch) -> Option<ResponseError> {
    if client_epoch < 0 || client_epoch == leader_epoch.0 {
        None
    } else if client_epoch < leader_epoch.0 {
        Some(ResponseError::FencedLeaderEpoch)
    } else {
        Some(ResponseError::UnknownLeaderEpoch)
    }
}
