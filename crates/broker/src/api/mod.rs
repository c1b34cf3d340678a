//! One module per Kafka API. [`dispatch`] routes a decoded request to its
//! handler, giving each the narrow handles it needs (the replica manager,
//! the coordinators, the metadata), and encodes the response frame.
//!
//! Handlers run their ordered part synchronously inside `dispatch` (so two
//! produce requests on one connection append in the order they arrived) and
//! return a future for any waiting (fsync, long poll).

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod alter_partition_reassignments;
mod alter_user_scram_credentials;
mod api_versions;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_acls;
mod create_partitions;
mod create_topics;
mod delete_acls;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_acls;
mod describe_cluster;
pub(crate) mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_topic_partitions;
mod describe_transactions;
mod describe_user_scram_credentials;
mod elect_leaders;
mod end_txn;
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
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use runnel_controller::metadata::{MetadataImage, NodeId};
use runnel_protocol::Request;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::{BrokerId, RequestKind, ResponseKind};
use runnel_protocol::kafka_protocol::protocol::StrBytes;
use runnel_protocol::{EncodeError, encode_response};
use runnel_replica::LeaderError;
use runnel_storage::LeaderEpoch;

use crate::acl::{Access, Resource, op};
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

/// Routes a request and counts it, with its latency, once its response is
/// ready. `principal` is who the connection is at this request (see
/// [`crate::acl`]).
pub(crate) fn dispatch(broker: &Arc<Broker>, request: Request, client: Client, principal: &Arc<str>) -> PendingResponse {
    let started = std::time::Instant::now();
    let api = request.api_key;
    let access = Access::new(principal.clone(), client.peer.ip(), broker.config.authorizer.as_ref(), || broker.metadata.state())
        .counting(&broker.metrics.authorization_denied);
    let pending = match refused(&access, &request.body) {
        Some(e) => {
            tracing::debug!(peer = %client.peer, principal = %access.principal(), api = ?api, error = ?e, "request refused");
            let (api_key, version, correlation_id) = (request.api_key, request.version, request.header.correlation_id);
            let frame = denial(request.body, e, version).map(|response| encode_response(api_key, version, correlation_id, &response));
            Box::pin(async move {
                match frame {
                    Some(frame) => frame.map(Some).map_err(ResponseFailure::from),
                    None => Err(ResponseFailure::NoHandler(format!("{api:?} (not authorized)"))),
                }
            })
        }
        None => route(broker, request, client, access),
    };
    let metrics = broker.metrics.clone();
    Box::pin(async move {
        let response = pending.await;
        metrics.request_done(api_name(api), started.elapsed(), response.is_ok());
        response
    })
}

/// The error for a request its principal may not make at all (or no one
/// may, as ACL requests without an authorizer): the APIs
/// that act on the cluster as a whole (cluster ALTER or DESCRIBE) or on one
/// group (READ). APIs that name topics check each topic in their handlers.
fn refused(access: &Access, body: &RequestKind) -> Option<ResponseError> {
    let cluster = |operation| (!access.cluster(operation)).then_some(ResponseError::ClusterAuthorizationFailed);
    let group = |id: &str| (!access.allowed(Resource::Group, id, op::READ)).then_some(ResponseError::GroupAuthorizationFailed);
    match body {
        // As Kafka: ACLs cannot be managed on a node without an authorizer.
        RequestKind::CreateAcls(_) | RequestKind::DeleteAcls(_) | RequestKind::DescribeAcls(_) if !access.enforcing() => Some(ResponseError::SecurityDisabled),
        RequestKind::ElectLeaders(_)
        | RequestKind::AlterPartitionReassignments(_)
        | RequestKind::AlterUserScramCredentials(_)
        | RequestKind::CreateAcls(_)
        | RequestKind::DeleteAcls(_) => cluster(op::ALTER),
        RequestKind::ListPartitionReassignments(_)
        | RequestKind::DescribeUserScramCredentials(_)
        | RequestKind::DescribeAcls(_)
        | RequestKind::DescribeLogDirs(_) => cluster(op::DESCRIBE),
        RequestKind::WriteTxnMarkers(_) => cluster(op::CLUSTER_ACTION),
        RequestKind::JoinGroup(r) => group(&r.group_id),
        RequestKind::SyncGroup(r) => group(&r.group_id),
        RequestKind::Heartbeat(r) => group(&r.group_id),
        RequestKind::LeaveGroup(r) => group(&r.group_id),
        RequestKind::ConsumerGroupHeartbeat(r) => group(&r.group_id),
        _ => None,
    }
}

/// The response to a request [`refused`] refused, with the error where the
/// API (at this version) carries one; `None` for an API without any.
fn denial(body: RequestKind, e: ResponseError, version: i16) -> Option<ResponseKind> {
    use runnel_protocol::kafka_protocol::messages as m;
    let e = code(e);
    Some(match body {
        // v0 has no top-level error: each partition asked carries it.
        RequestKind::ElectLeaders(r) if version == 0 => {
            let results = r
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .into_iter()
                        .map(|p| m::elect_leaders_response::PartitionResult::default().with_partition_id(p).with_error_code(e))
                        .collect();
                    m::elect_leaders_response::ReplicaElectionResult::default().with_topic(t.topic).with_partition_result(partitions)
                })
                .collect();
            ResponseKind::ElectLeaders(m::ElectLeadersResponse::default().with_replica_election_results(results))
        }
        RequestKind::ElectLeaders(_) => ResponseKind::ElectLeaders(m::ElectLeadersResponse::default().with_error_code(e)),
        RequestKind::AlterPartitionReassignments(_) => {
            ResponseKind::AlterPartitionReassignments(m::AlterPartitionReassignmentsResponse::default().with_error_code(e))
        }
        RequestKind::ListPartitionReassignments(_) => {
            ResponseKind::ListPartitionReassignments(m::ListPartitionReassignmentsResponse::default().with_error_code(e))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            let users = r.deletions.iter().map(|d| d.name.clone()).chain(r.upsertions.iter().map(|u| u.name.clone()));
            let results = users
                .map(|user| m::alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default().with_user(user).with_error_code(e))
                .collect();
            ResponseKind::AlterUserScramCredentials(m::AlterUserScramCredentialsResponse::default().with_results(results))
        }
        RequestKind::DescribeUserScramCredentials(_) => {
            ResponseKind::DescribeUserScramCredentials(m::DescribeUserScramCredentialsResponse::default().with_error_code(e))
        }
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(
            m::CreateAclsResponse::default()
                .with_results(r.creations.iter().map(|_| m::create_acls_response::AclCreationResult::default().with_error_code(e)).collect()),
        ),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(
            m::DeleteAclsResponse::default()
                .with_filter_results(r.filters.iter().map(|_| m::delete_acls_response::DeleteAclsFilterResult::default().with_error_code(e)).collect()),
        ),
        RequestKind::DescribeAcls(_) => ResponseKind::DescribeAcls(m::DescribeAclsResponse::default().with_error_code(e)),
        // An unauthorized principal learns nothing of the log directories
        // (before v3, which has no error field, an empty answer).
        RequestKind::DescribeLogDirs(_) => ResponseKind::DescribeLogDirs(m::DescribeLogDirsResponse::default().with_error_code(e)),
        RequestKind::WriteTxnMarkers(r) => {
            use m::write_txn_markers_response as w;
            let markers = r
                .markers
                .into_iter()
                .map(|marker| {
                    let topics = marker
                        .topics
                        .into_iter()
                        .map(|t| {
                            let partitions = t
                                .partition_indexes
                                .iter()
                                .map(|p| w::WritableTxnMarkerPartitionResult::default().with_partition_index(*p).with_error_code(e))
                                .collect();
                            w::WritableTxnMarkerTopicResult::default().with_name(t.name).with_partitions(partitions)
                        })
                        .collect();
                    w::WritableTxnMarkerResult::default().with_producer_id(marker.producer_id).with_topics(topics)
                })
                .collect();
            ResponseKind::WriteTxnMarkers(m::WriteTxnMarkersResponse::default().with_markers(markers))
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(
            m::JoinGroupResponse::default().with_error_code(e).with_generation_id(-1).with_member_id(r.member_id).with_protocol_name(Some(str_bytes(""))),
        ),
        RequestKind::SyncGroup(_) => ResponseKind::SyncGroup(m::SyncGroupResponse::default().with_error_code(e)),
        RequestKind::Heartbeat(_) => ResponseKind::Heartbeat(m::HeartbeatResponse::default().with_error_code(e)),
        RequestKind::LeaveGroup(_) => ResponseKind::LeaveGroup(m::LeaveGroupResponse::default().with_error_code(e)),
        RequestKind::ConsumerGroupHeartbeat(_) => {
            ResponseKind::ConsumerGroupHeartbeat(m::ConsumerGroupHeartbeatResponse::default().with_error_code(e).with_member_epoch(-1))
        }
        _ => return None,
    })
}

fn route(broker: &Arc<Broker>, request: Request, client: Client, access: Access) -> PendingResponse {
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
        RequestKind::ApiVersions(r) => ready(ResponseKind::ApiVersions(api_versions::handle(&b.metadata, r, version))),
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
            Box::pin(async move {
                encode(ResponseKind::Metadata(metadata::handle(&access, &broker.config, &broker.metadata, &broker.replicas, r, version, client).await))
            })
        }
        RequestKind::CreateTopics(r) => {
            let broker = b.clone();
            Box::pin(async move {
                encode(ResponseKind::CreateTopics(
                    create_topics::handle(&access, &broker.config, &broker.replicas.config().log, &broker.metadata, r, version).await,
                ))
            })
        }
        RequestKind::DeleteTopics(r) => {
            let metadata = b.metadata.clone();
            Box::pin(async move { encode(ResponseKind::DeleteTopics(delete_topics::handle(&access, &metadata, r, version).await)) })
        }
        RequestKind::CreatePartitions(r) => {
            let metadata = b.metadata.clone();
            let max = b.config.replicas_per_broker_max;
            Box::pin(async move { encode(ResponseKind::CreatePartitions(create_partitions::handle(&access, &metadata, r, max).await)) })
        }
        RequestKind::InitProducerId(r) => {
            let coordinators = b.coordinators.clone();
            Box::pin(async move { encode(ResponseKind::InitProducerId(init_producer_id::handle(&access, &coordinators, r).await)) })
        }
        RequestKind::AddPartitionsToTxn(r) => {
            let (txns, metadata) = (b.coordinators.transactions.clone(), b.metadata.clone());
            Box::pin(async move { encode(ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(&access, &txns, &metadata, r).await)) })
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let txns = b.coordinators.transactions.clone();
            Box::pin(async move { encode(ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(&access, &txns, r).await)) })
        }
        RequestKind::TxnOffsetCommit(r) => {
            let (txns, groups, metadata) = (b.coordinators.transactions.clone(), b.coordinators.groups.clone(), b.metadata.clone());
            Box::pin(async move { encode(ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(&access, &txns, &groups, &metadata, r, version).await)) })
        }
        RequestKind::DescribeProducers(r) => ready(ResponseKind::DescribeProducers(describe_producers::handle(&access, &b.replicas, r))),
        RequestKind::DescribeTopicPartitions(r) => {
            ready(ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(&access, &b.config, &b.metadata, &b.replicas, r)))
        }
        RequestKind::ListTransactions(r) => ready(ResponseKind::ListTransactions(list_transactions::handle(&access, &b.coordinators.transactions, r))),
        RequestKind::DescribeTransactions(r) => {
            ready(ResponseKind::DescribeTransactions(describe_transactions::handle(&access, &b.coordinators.transactions, r)))
        }
        RequestKind::WriteTxnMarkers(r) => {
            let replicas = b.replicas.clone();
            Box::pin(async move { encode(ResponseKind::WriteTxnMarkers(write_txn_markers::handle(&replicas, r).await)) })
        }
        RequestKind::EndTxn(r) => {
            let (txns, metadata) = (b.coordinators.transactions.clone(), b.metadata.clone());
            Box::pin(async move { encode(ResponseKind::EndTxn(end_txn::handle(&access, &txns, &metadata, r, version).await)) })
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            let metadata = b.metadata.clone();
            Box::pin(async move { encode(ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(&access, &metadata, r).await)) })
        }
        RequestKind::AlterConfigs(r) => {
            let metadata = b.metadata.clone();
            Box::pin(async move { encode(ResponseKind::AlterConfigs(alter_configs::handle(&access, &metadata, r).await)) })
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
        RequestKind::DeleteRecords(r) => {
            let replicas = b.replicas.clone();
            Box::pin(async move { encode(ResponseKind::DeleteRecords(delete_records::handle(&access, &replicas, r).await)) })
        }
        RequestKind::CreateAcls(r) => {
            let metadata = b.metadata.clone();
            Box::pin(async move { encode(ResponseKind::CreateAcls(create_acls::handle(&metadata, r).await)) })
        }
        RequestKind::DeleteAcls(r) => {
            let metadata = b.metadata.clone();
            Box::pin(async move { encode(ResponseKind::DeleteAcls(delete_acls::handle(&metadata, r).await)) })
        }
        RequestKind::DescribeAcls(r) => ready(ResponseKind::DescribeAcls(describe_acls::handle(&b.metadata, r))),
        RequestKind::ListPartitionReassignments(r) => ready(ResponseKind::ListPartitionReassignments(list_partition_reassignments::handle(&b.metadata, r))),
        RequestKind::DescribeLogDirs(r) => ready(ResponseKind::DescribeLogDirs(describe_log_dirs::handle(&b.replicas, r))),
        RequestKind::DescribeCluster(r) => ready(ResponseKind::DescribeCluster(describe_cluster::handle(&access, &b.config, &b.metadata, r, version, client))),
        RequestKind::DescribeConfigs(r) => ready(ResponseKind::DescribeConfigs(describe_configs::handle(
            &access,
            &b.config,
            &b.replicas.config().log,
            b.replicas.config().catch_up_bytes_per_sec,
            b.replicas.config().cleaner.io_bytes_per_sec,
            &b.metadata,
            r,
            version,
        ))),
        RequestKind::OffsetForLeaderEpoch(r) => ready(ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(&access, &b.replicas, r))),
        RequestKind::ListOffsets(r) => ready(ResponseKind::ListOffsets(list_offsets::handle(&access, &b.replicas, r, version))),
        RequestKind::Produce(mut r) => {
            if version >= 13 {
                produce::resolve_topic_ids(&mut r, &b.topic_ids.names(&b.metadata));
            }
            // Appended now, in the connection's request order; a
            // transaction this node has not yet seen added is waited for
            // first, holding up the connection's next requests.
            let missing = produce::unverified(&b.replicas, &r);
            let mut refused_adds = Vec::new();
            if !missing.is_empty() {
                // Transaction version 2: the producer added nothing; this
                // leader adds the partitions to its transaction first.
                if version >= 12 && b.metadata.state().image.finalized_level() >= runnel_controller::features::TRANSACTIONS_V2_LEVEL {
                    refused_adds = produce::add_to_transaction(&access, &b.txn_adds, &r, &missing);
                }
                let added: Vec<_> = missing.into_iter().filter(|(_, _, t, p)| !refused_adds.iter().any(|((rt, rp), _)| rt == t && rp == p)).collect();
                produce::wait_until_added(&b.replicas, &added);
            }
            let pending = produce::handle(&access, &b.replicas, &b.metrics, b.config.message_max_bytes, r, version, &refused_adds);
            let metadata = b.metadata.clone();
            Box::pin(async move {
                match pending.await {
                    Some(mut response) => {
                        if version >= 10 {
                            produce::hint_leaders(&mut response, &metadata, client.external);
                        }
                        encode(ResponseKind::Produce(response))
                    }
                    None => Ok(None),
                }
            })
        }
        RequestKind::Fetch(r) => {
            let (replicas, metrics, sessions) = (b.replicas.clone(), b.metrics.clone(), b.fetch_sessions.clone());
            let metadata = b.metadata.clone();
            let mut r = r;
            if version >= 13 && !r.topics.is_empty() {
                fetch::resolve_topic_ids(&mut r, &b.topic_ids.names(&metadata));
            }
            Box::pin(async move {
                let mut response = fetch::handle(&access, &replicas, &metrics, &sessions, r).await;
                if version >= 12 {
                    fetch::hint_leaders(&mut response, &metadata, client.external);
                }
                encode(ResponseKind::Fetch(response))
            })
        }
        RequestKind::FindCoordinator(r) => ready(ResponseKind::FindCoordinator(find_coordinator::handle(&access, &b.coordinators, r, version, client))),
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
        RequestKind::ConsumerGroupDescribe(r) => {
            ready(ResponseKind::ConsumerGroupDescribe(consumer_group_describe::handle(&access, &b.coordinators.groups, r)))
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
            let groups = groups();
            Box::pin(
                async move { encode(ResponseKind::ConsumerGroupHeartbeat(consumer_group_heartbeat::handle(&access, &groups, r, client_id, client).await)) },
            )
        }
        RequestKind::LeaveGroup(r) => {
            let groups = groups();
            Box::pin(async move { encode(ResponseKind::LeaveGroup(leave_group::handle(&groups, r, version).await)) })
        }
        RequestKind::OffsetCommit(r) => {
            let (groups, metadata) = (groups(), b.metadata.clone());
            Box::pin(async move { encode(ResponseKind::OffsetCommit(offset_commit::handle(&access, &groups, &metadata, r).await)) })
        }
        RequestKind::OffsetFetch(r) => ready(ResponseKind::OffsetFetch(offset_fetch::handle(&access, &b.coordinators, r, version))),
        RequestKind::OffsetDelete(r) => {
            let (groups, metadata) = (groups(), b.metadata.clone());
            Box::pin(async move { encode(ResponseKind::OffsetDelete(offset_delete::handle(&access, &groups, &metadata, r).await)) })
        }
        RequestKind::ListGroups(r) => ready(ResponseKind::ListGroups(list_groups::handle(&access, &b.coordinators.groups, r, version))),
        RequestKind::DescribeGroups(r) => ready(ResponseKind::DescribeGroups(describe_groups::handle(&access, &b.coordinators.groups, r, version))),
        RequestKind::DeleteGroups(r) => {
            let groups = groups();
            Box::pin(async move { encode(ResponseKind::DeleteGroups(delete_groups::handle(&access, &groups, r).await)) })
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

/// Kafka's name of a transaction state (DescribeTransactions, ListTransactions).
pub(crate) fn transaction_state_name(state: runnel_controller::records::TransactionState) -> &'static str {
    use runnel_controller::records::TransactionState as S;
    match state {
        S::Empty => "Empty",
        S::Ongoing => "Ongoing",
        S::PrepareCommit => "PrepareCommit",
        S::PrepareAbort => "PrepareAbort",
        S::CompleteCommit => "CompleteCommit",
        S::CompleteAbort => "CompleteAbort",
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A partition of a request and the error it already has, if any.
pub(crate) type PartitionOutcome = (i32, Option<ResponseError>);

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

/// KIP-951: the leader a NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH
/// answer for `topic`-`partition` points the client to, from this node's
/// metadata: a live broker and its leader epoch, so the client can go
/// there without a Metadata round trip first. None when the metadata names
/// no live leader; the client then asks Metadata, as before.
pub(crate) fn leader_hint(image: &MetadataImage, topic: &str, partition: i32) -> Option<(NodeId, i32)> {
    let p = image.topics.get(topic)?.partitions.get(usize::try_from(partition).ok()?)?;
    let leader = p.leader.filter(|l| image.brokers.get(l).is_some_and(|b| !b.fenced))?;
    Some((leader, p.leader_epoch))
}

/// A leader a refused Produce or Fetch names (KIP-951), as the response's
/// node endpoints carry it: id, host and port on the client's listener,
/// rack.
pub(crate) struct LeaderEndpoint {
    pub id: BrokerId,
    pub host: StrBytes,
    pub port: i32,
    pub rack: Option<StrBytes>,
}

/// The endpoints of `leaders` that the metadata knows.
pub(crate) fn leader_endpoints(image: &MetadataImage, leaders: &std::collections::BTreeSet<NodeId>, external: bool) -> Vec<LeaderEndpoint> {
    leaders
        .iter()
        .filter_map(|id| image.brokers.get(id))
        .map(|b| {
            let (host, port) = b.kafka_endpoint(external);
            LeaderEndpoint { id: BrokerId(b.id.broker_id()), host: str_bytes(host), port: i32::from(port), rack: b.rack.clone().map(str_bytes) }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use runnel_protocol::kafka_protocol::messages::{self as m, ApiKey};

    use super::*;

    /// A refusal is an answer the client can read at every version served,
    /// never a closed connection (a field set that the version lacks would
    /// fail to encode).
    #[test]
    fn every_refusal_encodes_at_every_version_served() {
        let name = |s: &str| StrBytes::from_string(s.to_string());
        let bodies = vec![
            (
                ApiKey::ElectLeaders,
                RequestKind::ElectLeaders(m::ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                    m::elect_leaders_request::TopicPartitions::default().with_topic(m::TopicName(name("t"))).with_partitions(vec![0, 1]),
                ]))),
            ),
            (ApiKey::AlterPartitionReassignments, RequestKind::AlterPartitionReassignments(Default::default())),
            (ApiKey::ListPartitionReassignments, RequestKind::ListPartitionReassignments(Default::default())),
            (
                ApiKey::AlterUserScramCredentials,
                RequestKind::AlterUserScramCredentials(
                    m::AlterUserScramCredentialsRequest::default()
                        .with_deletions(vec![m::alter_user_scram_credentials_request::ScramCredentialDeletion::default().with_name(name("a"))]),
                ),
            ),
            (ApiKey::DescribeUserScramCredentials, RequestKind::DescribeUserScramCredentials(Default::default())),
            (ApiKey::CreateAcls, RequestKind::CreateAcls(m::CreateAclsRequest::default().with_creations(vec![m::create_acls_request::AclCreation::default()]))),
            (
                ApiKey::DeleteAcls,
                RequestKind::DeleteAcls(m::DeleteAclsRequest::default().with_filters(vec![m::delete_acls_request::DeleteAclsFilter::default()])),
            ),
            (ApiKey::DescribeAcls, RequestKind::DescribeAcls(Default::default())),
            (ApiKey::DescribeLogDirs, RequestKind::DescribeLogDirs(Default::default())),
            (
                ApiKey::WriteTxnMarkers,
                RequestKind::WriteTxnMarkers(m::WriteTxnMarkersRequest::default().with_markers(vec![
                    m::write_txn_markers_request::WritableTxnMarker::default().with_topics(vec![
                        m::write_txn_markers_request::WritableTxnMarkerTopic::default().with_name(m::TopicName(name("t"))).with_partition_indexes(vec![0]),
                    ]),
                ])),
            ),
            (ApiKey::JoinGroup, RequestKind::JoinGroup(m::JoinGroupRequest::default().with_member_id(name("m")))),
            (ApiKey::SyncGroup, RequestKind::SyncGroup(Default::default())),
            (ApiKey::Heartbeat, RequestKind::Heartbeat(Default::default())),
            (ApiKey::LeaveGroup, RequestKind::LeaveGroup(Default::default())),
            (ApiKey::ConsumerGroupHeartbeat, RequestKind::ConsumerGroupHeartbeat(Default::default())),
        ];
        for (key, body) in bodies {
            let range = runnel_protocol::versions::SUPPORTED.iter().find(|r| r.key == key).expect("served");
            for version in range.min..=range.max {
                let response = denial(body.clone(), ResponseError::ClusterAuthorizationFailed, version).expect("a refusal");
                let encoded = encode_response(key, version, 7, &response);
                assert!(encoded.is_ok(), "{key:?} v{version}: {encoded:?}");
            }
        }
    }
}
