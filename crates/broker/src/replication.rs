//! Replication over gRPC: the leader's service that followers fetch from,
//! and the follower's fetchers (one per leader broker).
//!
//! A follower that starts following a partition at a new leader epoch first
//! asks the leader where its own latest epoch ends there and truncates its
//! log to that point (KIP-101/279), so a divergent tail written under an old
//! leader never survives. Then it fetches from its log end, appends the
//! leader's batches as they are, fsyncs them (under the default flush policy)
//! and reports its flushed offset in the next fetch; the leader's high
//! watermark follows the ISR's flushed offsets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use runnel_controller::metadata::NodeId;
use runnel_rpc::replication::replication_client::ReplicationClient;
use runnel_rpc::replication::replication_server::Replication;
use runnel_rpc::replication::{EpochEndOffsetReply, EpochEndOffsetRequest, FetchPartition, FetchReply, FetchRequest, FetchedPartition, ReplicaError};
use runnel_storage::{FlushPolicy, PartitionLog, StorageError, TopicPartition};
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::broker::Broker;

/// Largest gRPC message of a replica fetch.
pub const FETCH_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

pub struct ReplicationService {
    pub broker: Arc<Broker>,
}

impl Broker {
    /// The log of a partition led here at exactly `leader_epoch`, or why not.
    fn led_log(&self, topic: &str, partition: i32, leader_epoch: i32) -> Result<Arc<PartitionLog>, ReplicaError> {
        let Some(p) = self.partition(topic, partition) else { return Err(ReplicaError::NotLeader) };
        if p.leader != Some(self.node_id()) {
            return Err(ReplicaError::NotLeader);
        }
        if leader_epoch < p.leader_epoch {
            return Err(ReplicaError::FencedEpoch);
        }
        if leader_epoch > p.leader_epoch {
            return Err(ReplicaError::UnknownEpoch);
        }
        self.leader_log(topic, partition).map_err(|_| ReplicaError::NotLeader)
    }

    fn fetch_once(&self, request: &FetchRequest) -> (FetchReply, bool) {
        let mut any = false;
        let mut budget = request.max_bytes.max(1) as usize;
        let partitions = request
            .partitions
            .iter()
            .map(|p| {
                let mut out = FetchedPartition { topic: p.topic.clone(), partition: p.partition, ..Default::default() };
                let log = match self.led_log(&p.topic, p.partition, p.leader_epoch) {
                    Ok(log) => log,
                    Err(e) => {
                        out.set_error(e);
                        any = true;
                        return out;
                    }
                };
                let tp = TopicPartition::new(p.topic.clone(), p.partition);
                let leader_end = log.log_end_offset();
                self.replicas.record_fetch(&tp, p.leader_epoch, request.replica_id, p.fetch_offset, p.flushed_offset, leader_end);
                self.update_high_watermark(&tp, &log);
                out.high_watermark = log.high_watermark();
                out.log_start_offset = log.log_start_offset();
                match log.read(p.fetch_offset, budget, leader_end, budget == request.max_bytes.max(1) as usize) {
                    Ok(records) => {
                        budget = budget.saturating_sub(records.len());
                        any |= !records.is_empty();
                        out.records = records;
                    }
                    Err(StorageError::OffsetOutOfRange { .. }) => {
                        out.set_error(ReplicaError::OffsetOutOfRange);
                        any = true;
                    }
                    Err(e) => {
                        tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "read for a follower failed");
                        out.set_error(ReplicaError::Storage);
                        any = true;
                    }
                }
                out
            })
            .collect();
        (FetchReply { partitions }, any)
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn fetch(&self, request: Request<FetchRequest>) -> Result<Response<FetchReply>, Status> {
        let request = request.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms.min(5_000)));
        loop {
            let appended = self.broker.appended();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let (reply, ready) = self.broker.fetch_once(&request);
            if ready || tokio::time::Instant::now() >= deadline || self.broker.is_shutting_down() {
                return Ok(Response::new(reply));
            }
            tokio::select! {
                _ = appended => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn epoch_end_offset(&self, request: Request<EpochEndOffsetRequest>) -> Result<Response<EpochEndOffsetReply>, Status> {
        let r = request.into_inner();
        let mut reply = EpochEndOffsetReply { epoch: -1, end_offset: -1, ..Default::default() };
        match self.broker.led_log(&r.topic, r.partition, r.leader_epoch) {
            Ok(log) => {
                if let Some((epoch, end)) = log.end_offset_for_epoch(r.requested_epoch) {
                    reply.epoch = epoch;
                    reply.end_offset = end;
                }
            }
            Err(e) => reply.set_error(e),
        }
        Ok(Response::new(reply))
    }
}

/// A partition this node follows, and the leader epoch it follows it at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Followed {
    tp: TopicPartition,
    leader_epoch: i32,
}

impl Broker {
    /// Runs one fetcher per leader broker for the partitions this node
    /// follows, as the metadata says; returns at shutdown.
    pub async fn run_fetchers(self: Arc<Self>) {
        let mut rx = self.metadata.subscribe();
        let mut fetchers: HashMap<NodeId, watch::Sender<Vec<Followed>>> = HashMap::new();
        let me = self.node_id();
        loop {
            let state = rx.borrow_and_update().clone();
            let mut wanted: HashMap<NodeId, Vec<Followed>> = HashMap::new();
            for (name, t) in &state.image.topics {
                for (i, p) in t.partitions.iter().enumerate() {
                    match p.leader {
                        Some(l) if l != me && p.replicas.contains(&me) => {
                            wanted.entry(l).or_default().push(Followed { tp: TopicPartition::new(name.clone(), i as i32), leader_epoch: p.leader_epoch });
                        }
                        _ => {}
                    }
                }
            }
            fetchers.retain(|leader, _| wanted.contains_key(leader));
            for (leader, parts) in wanted {
                match fetchers.get(&leader) {
                    Some(tx) => {
                        tx.send_if_modified(|current| {
                            let changed = *current != parts;
                            *current = parts.clone();
                            changed
                        });
                    }
                    None => {
                        let (tx, assigned) = watch::channel(parts);
                        tokio::spawn(self.clone().fetch_from(leader, assigned));
                        fetchers.insert(leader, tx);
                    }
                }
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = self.shutdown_requested() => return,
            }
        }
    }

    async fn fetch_from(self: Arc<Self>, leader: NodeId, mut assigned: watch::Receiver<Vec<Followed>>) {
        let me = self.node_id();
        // The leader epoch each partition has been truncated for.
        let mut truncated: HashMap<TopicPartition, i32> = HashMap::new();
        let mut client: Option<(String, ReplicationClient<Channel>)> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.is_shutting_down() || assigned.has_changed().is_err() {
                return;
            }
            if self.storage_failed() {
                // Nothing can be written here until space returns; the
                // controller has taken this replica out of the ISRs.
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let parts = assigned.borrow_and_update().clone();
            let Some(address) = self.state().image.brokers.get(&leader).map(|b| b.rpc_address.clone()) else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if client.as_ref().is_none_or(|(a, _)| *a != address) {
                match runnel_controller::network::channel(&address) {
                    Ok(channel) => {
                        let c = ReplicationClient::new(channel)
                            .max_decoding_message_size(FETCH_MESSAGE_BYTES_MAX)
                            .max_encoding_message_size(FETCH_MESSAGE_BYTES_MAX);
                        client = Some((address.clone(), c));
                    }
                    Err(e) => {
                        tracing::warn!(leader, error = %e, "bad leader address");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let (_, c) = client.as_mut().expect("set above");
            let mut ready = Vec::new();
            for f in &parts {
                let Some(log) = self.logs.get(&f.tp) else { continue };
                if truncated.get(&f.tp) != Some(&f.leader_epoch) {
                    match truncate_to_leader(c, f, &log).await {
                        Ok(end) => {
                            tracing::info!(partition = %f.tp, leader, leader_epoch = f.leader_epoch, log_end = end, "following");
                            truncated.insert(f.tp.clone(), f.leader_epoch);
                        }
                        Err(e) => {
                            tracing::debug!(partition = %f.tp, leader, error = %e, "cannot truncate yet");
                            continue;
                        }
                    }
                }
                ready.push((f.clone(), log));
            }
            if ready.is_empty() {
                tokio::select! {
                    _ = assigned.changed() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            let request = FetchRequest {
                replica_id: me,
                max_wait_ms: 500,
                max_bytes: 8 * 1024 * 1024,
                partitions: ready
                    .iter()
                    .map(|(f, log)| FetchPartition {
                        topic: f.tp.topic.clone(),
                        partition: f.tp.partition,
                        leader_epoch: f.leader_epoch,
                        fetch_offset: log.log_end_offset(),
                        flushed_offset: log.flushed_offset(),
                    })
                    .collect(),
            };
            let reply = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(5), c.fetch(request)) => r,
                _ = assigned.changed() => continue,
            };
            let reply = match reply {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(status)) => {
                    tracing::debug!(leader, error = %status, "replica fetch failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
                Err(_) => continue,
            };
            backoff = Duration::from_millis(50);
            let mut to_flush = Vec::new();
            for (fetched, (f, log)) in reply.partitions.into_iter().zip(ready) {
                match fetched.error() {
                    ReplicaError::None => {}
                    ReplicaError::OffsetOutOfRange => {
                        if log.log_end_offset() < fetched.log_start_offset {
                            tracing::warn!(partition = %f.tp, start = fetched.log_start_offset, "behind the leader's log start; restarting the log there");
                            if let Err(e) = log.restart_at(fetched.log_start_offset) {
                                tracing::error!(partition = %f.tp, error = %e, "cannot restart log");
                            }
                        } else {
                            truncated.remove(&f.tp);
                        }
                        continue;
                    }
                    other => {
                        tracing::debug!(partition = %f.tp, leader, error = ?other, "leader refused the fetch");
                        truncated.remove(&f.tp);
                        continue;
                    }
                }
                if !fetched.records.is_empty() {
                    if let Err(e) = log.append_replicated(&fetched.records) {
                        tracing::warn!(partition = %f.tp, error = %e, "replicated append refused; truncating again");
                        self.note_storage_error(&e);
                        truncated.remove(&f.tp);
                        continue;
                    }
                    to_flush.push((f.tp.clone(), log.clone()));
                }
                log.advance_high_watermark(fetched.high_watermark.min(log.log_end_offset()));
            }
            // The partitions' fsyncs run together; the next fetch reports
            // what they covered.
            if self.config.log.flush == FlushPolicy::Always {
                let flushes = to_flush.iter().map(|(_, log)| log.flush());
                for ((tp, _), result) in to_flush.iter().zip(futures::future::join_all(flushes).await) {
                    if let Err(e) = result {
                        tracing::error!(partition = %tp, error = %e, "follower flush failed");
                        self.note_storage_error(&e);
                    }
                }
            }
        }
    }
}

/// Asks the leader where this replica's latest epoch ends there and cuts the
/// log to that point; returns the new log end.
async fn truncate_to_leader(client: &mut ReplicationClient<Channel>, f: &Followed, log: &PartitionLog) -> Result<i64, String> {
    let Some(latest) = log.latest_epoch() else {
        return Ok(log.log_end_offset()); // nothing written: nothing can diverge
    };
    let request = EpochEndOffsetRequest { topic: f.tp.topic.clone(), partition: f.tp.partition, leader_epoch: f.leader_epoch, requested_epoch: latest };
    let reply = tokio::time::timeout(Duration::from_secs(5), client.epoch_end_offset(request))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|s| s.to_string())?
        .into_inner();
    if reply.error() != ReplicaError::None {
        return Err(format!("{:?}", reply.error()));
    }
    let target = if reply.epoch < 0 {
        0 // the leader has none of this replica's epochs
    } else {
        // KIP-279: the end of the epoch both logs share, in this log too.
        let mine = log.end_offset_for_epoch(reply.epoch).map_or(0, |(_, end)| end);
        reply.end_offset.min(mine)
    };
    if target < log.log_end_offset() {
        tracing::warn!(partition = %f.tp, from = log.log_end_offset(), to = target, "truncating a divergent tail");
        log.truncate_to(target).map_err(|e| e.to_string())?;
    }
    Ok(log.log_end_offset())
}
