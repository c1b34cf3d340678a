//! Fetch: read whole batches up to the high watermark (the last stable
//! offset for read_committed, with the aborted transactions the records
//! returned overlap), honouring max_bytes
//! (the whole response) and partition_max_bytes; wait up to max_wait_ms for
//! min_bytes to arrive, woken only by the partitions asked for. Incremental
//! fetch sessions (KIP-227, [`crate::fetch_sessions`]): a request reads
//! every partition of its session, and the answer leaves out those with
//! nothing new. From v13 on topics are named by id (KIP-516): the
//! handler looks their names up first, and an id no topic has is answered
//! UNKNOWN_TOPIC_ID.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::select_all;
use runnel_controller::Metadata;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use runnel_protocol::kafka_protocol::messages::{BrokerId, FetchRequest, ProducerId, TopicName};
use runnel_replica::{Partition, ReplicaManager};
use runnel_storage::StorageError;
use runnel_storage::batch::next_offset_after;

use super::list_offsets::READ_COMMITTED;
use super::{code, leader_error};
use crate::acl::{Access, Resource, op};
use crate::fetch_sessions::{Context, FetchSessions, Wanted};
use crate::metrics::Metrics;

/// A client may not hold a fetch open longer than this, whatever it asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub(crate) async fn handle(access: &Access, replicas: &ReplicaManager, metrics: &Metrics, sessions: &FetchSessions, request: FetchRequest) -> FetchResponse {
    let context = match sessions.resolve(&request, Instant::now()) {
        Ok(context) => context,
        Err(e) => return FetchResponse::default().with_error_code(code(e)).with_session_id(0),
    };
    metrics.fetch_sessions(sessions.len());
    let wanted = context.wanted();
    // A session's partitions are authorized at every fetch, like those sent.
    let mut topics_allowed: HashMap<&str, bool> = HashMap::new();
    // A topic id no topic has names nothing to authorize: it is unknown.
    let allowed: Vec<bool> = wanted
        .iter()
        .map(|w| unknown_id(w) || *topics_allowed.entry(w.topic.0.as_str()).or_insert_with(|| access.allowed(Resource::Topic, w.topic.0.as_str(), op::READ)))
        .collect();
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes <= 0 { i32::MAX as usize } else { request.max_bytes as usize };
    let committed = request.isolation_level == READ_COMMITTED;
    loop {
        let led: Vec<Result<Arc<Partition>, ResponseError>> = wanted
            .iter()
            .zip(&allowed)
            .map(|(w, allowed)| match allowed {
                _ if unknown_id(w) => Err(ResponseError::UnknownTopicId),
                true => replicas.leader(w.topic.0.as_str(), w.partition).map_err(|e| leader_error(&e)).and_then(|p| {
                    // A session holds a topic by id: one recreated under
                    // its name since is another topic.
                    if w.topic_id.is_nil() || p.topic_id() == w.topic_id { Ok(p) } else { Err(ResponseError::UnknownTopicId) }
                }),
                false => Err(ResponseError::TopicAuthorizationFailed),
            })
            .collect();
        // Register for the wake-ups of exactly these partitions before
        // reading, so no move between the read and the wait is missed.
        let mut changed: Vec<_> = led.iter().flatten().map(|p| Box::pin(p.changed())).collect();
        for c in &mut changed {
            c.as_mut().enable();
        }
        let (data, bytes, errors) = read_once(metrics, committed, wanted, &led, max_bytes);
        let timed_out = tokio::time::Instant::now() >= deadline;
        if bytes >= min_bytes || errors || timed_out || changed.is_empty() || replicas.shutdown().is_cancelled() {
            return respond(sessions, &context, data);
        }
        tokio::select! {
            _ = select_all(changed) => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = replicas.shutdown().cancelled() => {}
        }
    }
}

/// Whether a partition was asked for by a topic id that no topic has.
fn unknown_id(w: &Wanted) -> bool {
    !w.topic_id.is_nil() && w.topic.0.is_empty()
}

/// Fetch v13 and later name topics by id: fills in each one's name from
/// `names` (the broker's [`crate::topic_ids::TopicIds`]; left empty for an
/// id no topic has). Forgotten topics stay
/// as sent: a session holds v13 partitions by id.
pub(crate) fn resolve_topic_ids(request: &mut FetchRequest, names: &HashMap<uuid::Uuid, TopicName>) {
    for t in &mut request.topics {
        if let Some(name) = names.get(&t.topic_id) {
            t.topic = name.clone();
        }
    }
}

/// KIP-951 (Fetch v12 and later): each partition refused because this node
/// does not lead it, or leads it at a newer epoch than the client knows,
/// names the leader this node's metadata knows, and (v16) the response
/// lists those leaders' endpoints on the client's listener. The metadata is
/// read only when some partition was refused so.
pub(crate) fn hint_leaders(response: &mut FetchResponse, metadata: &Metadata, external: bool) {
    let moved = [code(ResponseError::NotLeaderOrFollower), code(ResponseError::FencedLeaderEpoch)];
    if !response.responses.iter().flat_map(|t| &t.partitions).any(|p| moved.contains(&p.error_code)) {
        return;
    }
    let state = metadata.state();
    let image = &state.image;
    let mut leaders = BTreeSet::new();
    for topic in &mut response.responses {
        for p in &mut topic.partitions {
            if !moved.contains(&p.error_code) {
                continue;
            }
            if let Some((leader, epoch)) = super::leader_hint(image, topic.topic.0.as_str(), p.partition_index) {
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

/// The response: the partitions the session says to send, a topic's
/// consecutive partitions under one topic entry.
fn respond(sessions: &FetchSessions, context: &Context, data: Vec<PartitionData>) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (w, d) in sessions.answer(context, data) {
        match topics.last_mut() {
            Some(t) if t.topic == w.topic && t.topic_id == w.topic_id => t.partitions.push(d),
            // Both the name and the id: the version decides which is sent.
            _ => topics.push(FetchableTopicResponse::default().with_topic(w.topic).with_topic_id(w.topic_id).with_partitions(vec![d])),
        }
    }
    FetchResponse::default().with_session_id(context.session_id()).with_responses(topics)
}

/// One pass over the partitions to read (`led`, one per `wanted`): their
/// data in that order, the record bytes read, and whether any partition
/// has an error (which ends the wait).
fn read_once(
    metrics: &Metrics,
    committed: bool,
    wanted: &[Wanted],
    led: &[Result<Arc<Partition>, ResponseError>],
    max_bytes: usize,
) -> (Vec<PartitionData>, usize, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let mut out = Vec::with_capacity(wanted.len());
    for (p, partition) in wanted.iter().zip(led) {
        let name = p.topic.0.as_str();
        let mut data = PartitionData::default()
            .with_partition_index(p.partition)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_records(Some(bytes::Bytes::new()));
        let checked = match partition {
            Ok(partition) => match super::check_leader_epoch(p.current_leader_epoch, partition.epochs().0) {
                Some(e) => Err(e),
                None => Ok(partition.log()),
            },
            Err(e) => Err(*e),
        };
        let log = match checked {
            Ok(log) => log,
            Err(e) => {
                data.error_code = code(e);
                errors = true;
                out.push(data);
                continue;
            }
        };
        let high_watermark = log.high_watermark();
        let last_stable_offset = log.last_stable_offset();
        data.high_watermark = high_watermark;
        data.last_stable_offset = last_stable_offset;
        data.log_start_offset = log.log_start_offset();
        // read_committed reads stop at the last stable offset and list
        // the aborted transactions in what they return.
        let upper = if committed { last_stable_offset } else { high_watermark };
        let budget = (p.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
        // KIP-74: the first batch of the response is sent whole even when
        // larger than the limits, so a consumer can always progress.
        let min_one = total == 0;
        match log.read(p.fetch_offset, budget, upper, min_one) {
            Ok(records) => {
                if committed {
                    let end = next_offset_after(&records).unwrap_or(p.fetch_offset);
                    let aborted = log.aborted_between(p.fetch_offset, end);
                    data.aborted_transactions = Some(
                        aborted
                            .iter()
                            .map(|a| AbortedTransaction::default().with_producer_id(ProducerId(a.producer_id)).with_first_offset(a.first_offset))
                            .collect(),
                    );
                }
                total += records.len();
                if !records.is_empty() {
                    metrics.bytes_out(name, records.len());
                }
                data.records = Some(records);
            }
            Err(StorageError::OffsetOutOfRange { .. }) => {
                data.error_code = code(ResponseError::OffsetOutOfRange);
                errors = true;
            }
            // The replica was deleted or moved away meanwhile: the client looks again.
            Err(StorageError::Closed(_)) => {
                data.error_code = code(ResponseError::NotLeaderOrFollower);
                errors = true;
            }
            Err(e) => {
                tracing::error!(topic = name, partition = p.partition, error = %e, "read failed");
                data.error_code = code(ResponseError::KafkaStorageError);
                errors = true;
            }
        }
        out.push(data);
    }
    (out, total, errors)
}
