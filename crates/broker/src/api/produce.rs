//! Produce: validate and append each partition's record batches, then wait
//! (for acks=1 and acks=all) until the batches are visible under the flush
//! policy, i.e. fsynced by default. acks=0 gets no response.
//!
//! A transactional batch that would open its producer's transaction in a
//! partition is verified first (as KIP-890 part 1 does): the transaction
//! coordinator's record, which every node has in its metadata, must show
//! the producer's transaction Ongoing, at the batch's epoch, with this
//! partition added. So a late or zombie batch cannot open a transaction no
//! coordinator will ever end (which would hold the last stable offset back
//! for good).
//!
//! Under transaction version 2 (Produce v12 and later, once the cluster's
//! feature level allows it) the producer sends no AddPartitionsToTxn: the
//! leader asks the coordinator to add the partition itself
//! ([`add_to_transaction`]) and then verifies as above.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use runnel_controller::Metadata;
use runnel_controller::records::TransactionState;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::produce_request::PartitionProduceData;
use runnel_protocol::kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use runnel_protocol::kafka_protocol::messages::{BrokerId, ProduceRequest, TopicName};
use runnel_replica::partition::NotLeader;
use runnel_replica::{AppendError, CommitError, Partition, ReplicaManager};
use runnel_storage::batch::{BatchError, BatchHeader, stamp_log_append_time};
use runnel_storage::compression::{decode_record_sets, recompress};
use runnel_storage::log::check_produced_set;
use runnel_storage::producer_state::ProducerError;
use runnel_storage::{LeaderEpoch, Offset, StorageError};
use tracing::Instrument;

use super::{code, leader_error, now_ms, str_bytes};
use crate::acl::{Access, Resource, op};
use crate::metrics::Metrics;
use crate::txn_adds::{AddError, TxnPartitionAdder};

struct Appended {
    topic: usize,
    partition: usize,
    target: Arc<Partition>,
    end: Offset,
    leader_epoch: LeaderEpoch,
}

pub(crate) fn handle(
    access: &Access,
    replicas: &Arc<ReplicaManager>,
    metrics: &Metrics,
    message_max_bytes: usize,
    request: ProduceRequest,
    version: i16,
    refused_adds: &[((String, i32), AddError)],
) -> BoxFuture<'static, Option<ProduceResponse>> {
    let acks = request.acks;
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    // As Kafka: transactional records need WRITE on the request's
    // transactional id, or nothing in the request is written.
    let transactional_denied = access.enforcing() && has_transactional_records(&request) && {
        let id = request.transactional_id.as_ref().map(|id| id.to_string());
        !id.is_some_and(|id| access.allowed(Resource::TransactionalId, &id, op::WRITE))
    };
    let mut appended = Vec::new();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for (ti, topic) in request.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        // Produce v13: an id no topic has names nothing to authorize.
        let unknown_id = name.is_empty() && !topic.topic_id.is_nil();
        let allowed = unknown_id || access.allowed(Resource::Topic, &name, op::WRITE);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (pi, data) in topic.partition_data.into_iter().enumerate() {
            let mut response =
                PartitionProduceResponse::default().with_index(data.index).with_base_offset(-1).with_log_append_time_ms(-1).with_log_start_offset(-1);
            let outcome = if unknown_id {
                Err((ResponseError::UnknownTopicId, format!("no topic has the id {}", topic.topic_id)))
            } else if transactional_denied {
                Err((
                    ResponseError::TransactionalIdAuthorizationFailed,
                    format!("{} may not write transactional records with this transactional id", access.principal()),
                ))
            } else if !allowed {
                Err((ResponseError::TopicAuthorizationFailed, format!("{} may not write to topic {name}", access.principal())))
            } else if ![0, 1, -1].contains(&acks) {
                Err((ResponseError::InvalidRequiredAcks, format!("acks must be 0, 1 or -1, got {acks}")))
            } else if let Some((_, (e, why))) = refused_adds.iter().find(|((t, p), _)| *t == name && *p == data.index) {
                Err((*e, format!("{name}-{}: {why}", data.index)))
            } else {
                let mut record_errors = Vec::new();
                let outcome = append(replicas, metrics, message_max_bytes, &name, data, acks, &mut record_errors);
                // Per-record errors exist from v8 (KIP-467).
                if version >= 8 {
                    response.record_errors = record_errors;
                }
                outcome
            };
            match outcome {
                Ok((target, a, log_append_time)) => {
                    if log_append_time {
                        response.log_append_time_ms = a.info.max_timestamp;
                    }
                    response.base_offset = a.info.base_offset;
                    response.log_start_offset = a.info.log_start_offset;
                    appended.push(Appended { topic: ti, partition: pi, target, end: Offset(a.info.last_offset + 1), leader_epoch: a.leader_epoch });
                }
                Err((e, message)) => {
                    tracing::debug!(topic = %name, partition = response.index, error = %message, "produce refused");
                    response.error_code = code(e);
                    response.error_message = Some(str_bytes(message));
                }
            }
            partitions.push(response);
        }
        // Both the name and the id: the version decides which is sent.
        topics.push(TopicProduceResponse::default().with_name(topic.name).with_topic_id(topic.topic_id).with_partition_responses(partitions));
    }
    let replicas = replicas.clone();
    Box::pin(async move {
        let membership = replicas.membership().clone();
        if acks == 0 {
            for a in appended {
                let membership = membership.clone();
                tokio::spawn(
                    async move {
                        if let Err(e) = a.target.commit(a.end, false, a.leader_epoch).await {
                            tracing::error!(error = %e, "flush after an acks=0 produce failed");
                            if let CommitError::Storage(e) = &e {
                                membership.note_storage_error(e);
                            }
                        }
                    }
                    .in_current_span(),
                );
            }
            return None;
        }
        let waits = appended.iter().map(|a| tokio::time::timeout(timeout, a.target.commit(a.end, acks == -1, a.leader_epoch)));
        for (a, result) in appended.iter().zip(join_all(waits).await) {
            let response = &mut topics[a.topic].partition_responses[a.partition];
            let failure = match result {
                Ok(Ok(())) => continue,
                Err(_) => (ResponseError::RequestTimedOut, format!("not replicated and durable within the request timeout of {} ms", timeout.as_millis())),
                Ok(Err(CommitError::NotLeader)) => (ResponseError::NotLeaderOrFollower, CommitError::NotLeader.to_string()),
                Ok(Err(e @ CommitError::NotEnoughReplicasAfterAppend)) => (ResponseError::NotEnoughReplicasAfterAppend, e.to_string()),
                Ok(Err(CommitError::Storage(e))) => {
                    tracing::error!(error = %e, "flush failed");
                    membership.note_storage_error(&e);
                    (ResponseError::KafkaStorageError, e.to_string())
                }
            };
            response.error_code = code(failure.0);
            response.error_message = Some(str_bytes(failure.1));
        }
        Some(ProduceResponse::default().with_responses(topics))
    })
}

/// KIP-951 (Produce v10 and later): each NOT_LEADER_OR_FOLLOWER partition
/// names the leader this node's metadata knows, and the response carries
/// those leaders' endpoints (on the listener the client came in on), so
/// the producer moves its batches there at once.
/// The metadata is read only when some partition was refused so.
pub(crate) fn hint_leaders(response: &mut ProduceResponse, metadata: &Metadata, external: bool) {
    let refused = code(ResponseError::NotLeaderOrFollower);
    if !response.responses.iter().flat_map(|t| &t.partition_responses).any(|p| p.error_code == refused) {
        return;
    }
    let state = metadata.state();
    let image = &state.image;
    let mut leaders = BTreeSet::new();
    for topic in &mut response.responses {
        for p in &mut topic.partition_responses {
            if p.error_code != refused {
                continue;
            }
            if let Some((leader, epoch)) = super::leader_hint(image, topic.name.0.as_str(), p.index) {
                p.current_leader = LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader.broker_id())).with_leader_epoch(epoch);
                leaders.insert(leader);
            }
        }
    }
    response.node_endpoints = super::leader_endpoints(image, &leaders, external)
        .into_iter()
        .map(|e| NodeEndpoint::default().with_node_id(e.id).with_host(e.host).with_port(e.port).with_rack(e.rack))
        .collect();
}

/// Whether any batch of the request is transactional (its headers only;
/// records that do not parse are refused later, one partition at a time).
fn has_transactional_records(request: &ProduceRequest) -> bool {
    request.topic_data.iter().flat_map(|t| &t.partition_data).any(|data| {
        let Some(records) = &data.records else { return false };
        let mut rest = &records[..];
        while let Ok(h) = BatchHeader::parse(rest) {
            if h.is_transactional() {
                return true;
            }
            let Some(next) = rest.get(h.total_bytes()..) else { break };
            rest = next;
        }
        false
    })
}

/// Produce v13 names topics by id (KIP-516): fills in each one's name from
/// `names` (the broker's [`crate::topic_ids::TopicIds`]; left empty for an
/// id no topic has, which is answered UNKNOWN_TOPIC_ID).
pub(crate) fn resolve_topic_ids(request: &mut ProduceRequest, names: &HashMap<uuid::Uuid, TopicName>) {
    for t in &mut request.topic_data {
        if let Some(name) = names.get(&t.topic_id) {
            t.name = name.clone();
        }
    }
}

/// The transactional batches of a Produce request that would open a
/// transaction and that the local metadata does not show added yet:
/// `(producer id, epoch, topic, partition)`.
pub(crate) fn unverified(replicas: &ReplicaManager, request: &ProduceRequest) -> Vec<(i64, i16, String, i32)> {
    let mut out = Vec::new();
    for topic in &request.topic_data {
        for data in &topic.partition_data {
            let Some(header) = data.records.as_ref().and_then(|r| BatchHeader::parse(r).ok()) else { continue };
            if !header.is_transactional() || header.is_control() || header.producer_id < 0 {
                continue;
            }
            let name = topic.name.0.as_str();
            if name.is_empty() {
                // A Produce v13 topic id no topic has: refused by `handle`.
                continue;
            }
            if let Ok(partition) = replicas.leader(name, data.index)
                && partition.log().has_open_transaction(header.producer_id, header.producer_epoch)
            {
                continue;
            }
            if !added(replicas, header.producer_id, header.producer_epoch, name, data.index) {
                out.push((header.producer_id, header.producer_epoch, name.to_string(), data.index));
            }
        }
    }
    out
}

/// Whether the metadata shows `producer_id`'s transaction Ongoing at
/// `epoch` with the partition added.
fn added(replicas: &ReplicaManager, producer_id: i64, epoch: i16, topic: &str, partition: i32) -> bool {
    let state = replicas.metadata().state();
    state.image.transactions.values().any(|r| {
        r.producer_id == producer_id
            && r.producer_epoch == epoch
            && r.state == TransactionState::Ongoing
            && r.partitions.iter().any(|(t, p)| t == topic && *p == partition)
    })
}

/// Waits (up to a bound) for the metadata to show what [`unverified`]
/// found missing: AddPartitionsToTxn was committed on the coordinator, and
/// this node applies it a moment later (other tasks apply it meanwhile).
/// It blocks the connection's reader on purpose: a later Produce on the
/// connection must not be appended before this one (the sequences of an
/// idempotent producer are checked in arrival order).
pub(crate) fn wait_until_added(replicas: &ReplicaManager, missing: &[(i64, i16, String, i32)]) {
    let shown = || missing.iter().all(|(id, epoch, t, p)| added(replicas, *id, *epoch, t, *p));
    let deadline = std::time::Instant::now() + VERIFY_WAIT;
    let wait = || {
        while std::time::Instant::now() < deadline && !shown() {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // On a single-threaded runtime nothing would be applied while we wait.
    if let Ok(tokio::runtime::RuntimeFlavor::MultiThread) = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        tokio::task::block_in_place(wait);
    }
}

/// Transaction version 2: asks the transaction coordinator to add what
/// [`unverified`] found to the producer's transaction (the request's
/// transactional id), then [`wait_until_added`] sees it. Blocks the
/// connection's reader as that does. Answers the partitions the
/// coordinator did not add, with the error their produce gets: a
/// coordinator that is moving or busy is NOT_ENOUGH_REPLICAS, which the
/// producer retries, as Kafka answers it.
pub(crate) fn add_to_transaction(
    access: &Access,
    adder: &TxnPartitionAdder,
    request: &ProduceRequest,
    missing: &[(i64, i16, String, i32)],
) -> Vec<((String, i32), AddError)> {
    let Some(id) = request.transactional_id.as_ref().map(|id| id.to_string()) else { return Vec::new() };
    if access.enforcing() && !access.allowed(Resource::TransactionalId, &id, op::WRITE) {
        // The whole request is refused by `handle`.
        return Vec::new();
    }
    let mut by_producer: BTreeMap<(i64, i16), Vec<(String, i32)>> = BTreeMap::new();
    for (producer_id, epoch, topic, partition) in missing {
        by_producer.entry((*producer_id, *epoch)).or_default().push((topic.clone(), *partition));
    }
    let adds = async {
        let mut refused = Vec::new();
        for ((producer_id, epoch), partitions) in by_producer {
            if let Err((e, why)) = adder.add(&id, producer_id, epoch, &partitions).await {
                let e = match e {
                    ResponseError::CoordinatorNotAvailable
                    | ResponseError::NotCoordinator
                    | ResponseError::CoordinatorLoadInProgress
                    | ResponseError::ConcurrentTransactions => ResponseError::NotEnoughReplicas,
                    e => e,
                };
                tracing::debug!(transactional_id = %id, producer_id, error = ?e, %why, "partitions not added to the transaction");
                refused.extend(partitions.into_iter().map(|tp| (tp, (e, why.clone()))));
            }
        }
        refused
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| handle.block_on(adds)),
        _ => missing
            .iter()
            .map(|(_, _, t, p)| ((t.clone(), *p), (ResponseError::NotEnoughReplicas, "no runtime to reach the coordinator from".to_string())))
            .collect(),
    }
}

/// How long a Produce waits for the metadata to show its transaction.
const VERIFY_WAIT: Duration = Duration::from_secs(2);

/// Checks and appends one partition's records as its leader; with the
/// partition and what was appended, whether the topic stamps log append
/// times (the response then carries the time).
fn append(
    replicas: &ReplicaManager,
    metrics: &Metrics,
    message_max_bytes: usize,
    topic: &str,
    data: PartitionProduceData,
    acks: i16,
    record_errors: &mut Vec<BatchIndexAndErrorMessage>,
) -> Result<(Arc<Partition>, runnel_replica::Appended, bool), (ResponseError, String)> {
    let target = replicas.leader(topic, data.index).map_err(|e| (leader_error(&e), format!("{topic}-{}: {e}", data.index)))?;
    let Some(records) = data.records.filter(|r| !r.is_empty()) else {
        // Kafka's InvalidRecordException: at least one batch per partition.
        return Err((ResponseError::InvalidRecord, "the request carries no record batch".into()));
    };
    if let Ok(h) = BatchHeader::parse(&records)
        && h.is_transactional()
        && !h.is_control()
        && h.producer_id >= 0
        && !target.log().has_open_transaction(h.producer_id, h.producer_epoch)
        && !added(replicas, h.producer_id, h.producer_epoch, topic, data.index)
    {
        // A producer this node's metadata does not know at all, or knows
        // at an older epoch: what it sent may just not have arrived yet (a
        // controller election, say), so the client is told to retry. A newer
        // epoch fenced this producer: Kafka's coordinator answers that
        // PRODUCER_FENCED, which the broker gives a producer as
        // INVALID_PRODUCER_EPOCH. Anything else is a definite mismatch.
        let state = replicas.metadata().state();
        let epoch = state.image.transactions.values().find(|r| r.producer_id == h.producer_id).map(|r| r.producer_epoch);
        let error = match epoch {
            Some(e) if e > h.producer_epoch => ResponseError::InvalidProducerEpoch,
            Some(e) if e == h.producer_epoch => ResponseError::InvalidTxnState,
            _ => ResponseError::NotEnoughReplicas,
        };
        return Err((
            error,
            format!("{topic}-{}: producer {} (epoch {}) has no ongoing transaction with this partition added", data.index, h.producer_id, h.producer_epoch),
        ));
    }
    let settings = target.settings();
    let compacted = target.log().is_compacted();
    let timestamp_bounds = !settings.log_append_time && (settings.timestamp_before_max_ms.is_some() || settings.timestamp_after_max_ms.is_some());
    if compacted || settings.compression.is_some() || settings.log_append_time || timestamp_bounds {
        // Kafka's checks of the batch (its CRC among them) before reading
        // inside it, so a lie in its counts gets the same answer as on any
        // topic, and a corrupt batch is not given a fresh CRC.
        if let Err(e) = check_produced_set(&records) {
            return Err(refused(e).unwrap_or_else(|e| (ResponseError::CorruptMessage, e.to_string())));
        }
    }
    if compacted {
        let keyless = keyless_records(&records).map_err(|e| (ResponseError::CorruptMessage, format!("{topic}-{}: {e}", data.index)))?;
        if !keyless.is_empty() {
            let message = format!("{topic} is compacted (cleanup.policy=compact), and records without a key cannot be compacted");
            record_errors.extend(
                keyless.iter().map(|i| BatchIndexAndErrorMessage::default().with_batch_index(*i).with_batch_index_error_message(Some(str_bytes(&message)))),
            );
            return Err((ResponseError::InvalidRecord, format!("{message}: {} of the records have none (indexes {keyless:?})", keyless.len())));
        }
    }
    // max.message.bytes, as Kafka applies it: to the batch as produced, and
    // again to what is stored if the topic's codec rewrote it.
    let max = settings.max_message_bytes.unwrap_or(message_max_bytes);
    let too_large =
        |len: usize| (ResponseError::MessageTooLarge, format!("{topic}-{}: record batch of {len} bytes exceeds max.message.bytes {max}", data.index));
    if records.len() > max {
        return Err(too_large(records.len()));
    }
    // The topic's compression.type, as Kafka applies it: batches stored
    // with that codec whatever the producer used.
    let records = match settings.compression.map(|codec| recompress(&records, codec)) {
        None | Some(Ok(None)) => records,
        Some(Ok(Some(rewritten))) => bytes::Bytes::from(rewritten),
        Some(Err(e)) => return Err((ResponseError::CorruptMessage, format!("{topic}-{}: {e}", data.index))),
    };
    // The topic's message.timestamp.* settings, as Kafka applies them.
    let now = now_ms();
    if timestamp_bounds {
        let earliest = settings.timestamp_before_max_ms.map_or(i64::MIN, |d| now.saturating_sub(d));
        let latest = settings.timestamp_after_max_ms.map_or(i64::MAX, |d| now.saturating_add(d));
        let sets = decode_record_sets(&records).map_err(|e| (ResponseError::CorruptMessage, format!("{topic}-{}: {e}", data.index)))?;
        let outside: Vec<(i32, i64)> = sets
            .iter()
            .flat_map(|s| s.records.iter())
            .enumerate()
            .filter(|(_, r)| r.timestamp < earliest || r.timestamp > latest)
            .map(|(i, r)| (i as i32, r.timestamp))
            .collect();
        if !outside.is_empty() {
            let message = format!(
                "timestamps must be within [{earliest}, {latest}] (message.timestamp.before.max.ms and .after.max.ms of {topic} around the broker's clock, {now})"
            );
            record_errors.extend(outside.iter().map(|(i, t)| {
                BatchIndexAndErrorMessage::default()
                    .with_batch_index(*i)
                    .with_batch_index_error_message(Some(str_bytes(format!("timestamp {t} is out of range: {message}"))))
            }));
            return Err((ResponseError::InvalidTimestamp, format!("{} of the records have a timestamp out of range: {message}", outside.len())));
        }
    }
    let records = if settings.log_append_time {
        let mut stamped = records.to_vec();
        stamp_log_append_time(&mut stamped, now);
        bytes::Bytes::from(stamped)
    } else {
        records
    };
    if records.len() > max {
        return Err(too_large(records.len()));
    }
    match target.append(&records, acks == -1) {
        Ok(a) => {
            metrics.bytes_in(topic, records.len());
            Ok((target, a, settings.log_append_time))
        }
        Err(AppendError::NotLeader(e @ NotLeader::Elsewhere | e @ NotLeader::EpochMoved(_))) => Err((ResponseError::NotLeaderOrFollower, e.to_string())),
        Err(AppendError::NotEnoughReplicas(e)) => Err((ResponseError::NotEnoughReplicas, format!("{topic}-{}: {e}", data.index))),
        Err(AppendError::Storage(e)) => Err(refused(e).unwrap_or_else(|e| {
            tracing::error!(topic, partition = data.index, error = %e, "append failed");
            replicas.membership().note_storage_error(&e);
            (ResponseError::KafkaStorageError, e.to_string())
        })),
    }
}

/// The Kafka error for a storage error about what the producer sent (a
/// bad batch, a fenced epoch, a sequence out of order); any other, the
/// node's own, is given back.
fn refused(e: StorageError) -> Result<(ResponseError, String), StorageError> {
    Ok(match e {
        StorageError::InvalidBatch(BatchError::BadMagic(m)) => {
            (ResponseError::UnsupportedForMessageFormat, format!("record batch magic {m}; only v2 batches are accepted"))
        }
        StorageError::InvalidBatch(e) => (ResponseError::CorruptMessage, e.to_string()),
        // Kafka: RecordBatchTooLargeException, a batch no segment can hold.
        e @ StorageError::RecordSetTooLarge { .. } => (ResponseError::RecordListTooLarge, e.to_string()),
        StorageError::Producer(e @ ProducerError::FencedEpoch { .. }) => (ResponseError::InvalidProducerEpoch, e.to_string()),
        StorageError::Producer(e @ ProducerError::OutOfOrder { .. }) => (ResponseError::OutOfOrderSequenceNumber, e.to_string()),
        // Its marker is on its way: retriable, as Kafka answers a produce
        // that meets a transaction still ending.
        StorageError::Producer(e @ ProducerError::PreviousTransactionOpen { .. }) => (ResponseError::NotEnoughReplicas, e.to_string()),
        StorageError::InvalidRecord(message) => (ResponseError::InvalidRecord, message),
        // The replica was deleted or moved away meanwhile: the client looks again.
        e @ StorageError::Closed(_) => (ResponseError::NotLeaderOrFollower, e.to_string()),
        e => return Err(e),
    })
}

/// The indexes (in the record set, from 0) of the records without a key:
/// a compacted topic refuses the whole batch when there is any, as Kafka
/// does. Compressed batches are decompressed to see, within a bound.
fn keyless_records(records: &bytes::Bytes) -> Result<Vec<i32>, String> {
    let sets = decode_record_sets(records).map_err(|e| format!("the record batch does not decode: {e}"))?;
    Ok(sets.iter().flat_map(|s| s.records.iter()).enumerate().filter(|(_, r)| r.key.is_none()).map(|(i, _)| i as i32).collect())
}
