//! The follower side of replication: one fetcher per leader broker, for
//! every partition this node follows there.
//!
//! A follower that starts following a partition at a new leader epoch first
//! asks the leader where its own latest epoch ends there and truncates its
//! log to that point (KIP-101/279), so a divergent tail written under an old
//! leader never survives. Then it fetches from its log end, appends the
//! leader's batches as they are, fsyncs them (under the default flush
//! policy) and reports its flushed offset in the next fetch; the leader's
//! high watermark follows the ISR's flushed offsets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use runnel_controller::identity::PeerChannel;
use runnel_controller::metadata::NodeId;
use runnel_rpc::replication::replication_client::ReplicationClient;
use runnel_rpc::replication::{EpochEndOffsetRequest, FetchPartition, FetchRequest, ReplicaError};
use runnel_storage::{FlushPolicy, PartitionLog, TopicPartition};
use tokio::sync::watch;
use tracing::Instrument;

use crate::manager::ReplicaManager;
use crate::service::FETCH_MESSAGE_BYTES_MAX;

/// How long a fetch waits on the leader for new data.
const FETCH_WAIT_MS: u32 = 500;
/// The most bytes one fetch asks for.
const FETCH_BYTES_MAX: u32 = 8 * 1024 * 1024;

/// A partition this node follows, and the leader epoch it follows it at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Followed {
    tp: TopicPartition,
    leader_epoch: i32,
}

/// Why the divergent tail could not be cut yet.
#[derive(Debug, thiserror::Error)]
enum TruncateError {
    #[error("the leader did not answer within 5 s")]
    Timeout,
    #[error("the leader refused: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("the leader refused: {0:?}")]
    Refused(ReplicaError),
    #[error(transparent)]
    Storage(#[from] runnel_storage::StorageError),
    #[error("the truncation task failed: {0}")]
    Task(String),
}

/// Runs one fetcher per leader broker for the partitions this node
/// follows, as the metadata says; returns at shutdown.
pub async fn run(replicas: Arc<ReplicaManager>) {
    let mut rx = replicas.metadata().subscribe();
    let mut fetchers: HashMap<NodeId, watch::Sender<Vec<Followed>>> = HashMap::new();
    let me = replicas.node_id();
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
                    tokio::spawn(fetch_from(replicas.clone(), leader, assigned).in_current_span());
                    fetchers.insert(leader, tx);
                }
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = replicas.shutdown().cancelled() => return,
        }
    }
}

async fn fetch_from(replicas: Arc<ReplicaManager>, leader: NodeId, mut assigned: watch::Receiver<Vec<Followed>>) {
    let me = replicas.node_id();
    let membership = replicas.membership().clone();
    // The leader epoch each partition has been truncated for.
    let mut truncated: HashMap<TopicPartition, i32> = HashMap::new();
    let mut client: Option<(String, ReplicationClient<PeerChannel>)> = None;
    let mut backoff = Duration::from_millis(50);
    let mut rounds = 0usize;
    loop {
        if replicas.shutdown().is_cancelled() || assigned.has_changed().is_err() {
            return;
        }
        if membership.storage_failed() {
            // Nothing can be written here until space returns; the
            // controller has taken this replica out of the ISRs.
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let parts = assigned.borrow_and_update().clone();
        let Some(address) = replicas.metadata().state().image.brokers.get(&leader).map(|b| b.rpc_address.clone()) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if client.as_ref().is_none_or(|(a, _)| *a != address) {
            match runnel_controller::network::channel(&address) {
                Ok(channel) => {
                    let channel = replicas.metadata().identity().stamp(channel, Some(leader));
                    let c =
                        ReplicationClient::new(channel).max_decoding_message_size(FETCH_MESSAGE_BYTES_MAX).max_encoding_message_size(FETCH_MESSAGE_BYTES_MAX);
                    client = Some((address.clone(), c));
                }
                Err(e) => {
                    tracing::warn!(%leader, error = %e, "bad leader address");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let (_, c) = client.as_mut().expect("set above");
        let mut ready = Vec::new();
        for f in &parts {
            let Some(log) = replicas.partition(&f.tp).map(|p| p.log().clone()) else { continue };
            if truncated.get(&f.tp) != Some(&f.leader_epoch) {
                match truncate_to_leader(c, f, &log).await {
                    Ok(end) => {
                        tracing::info!(partition = %f.tp, %leader, leader_epoch = f.leader_epoch, log_end = end, "following");
                        truncated.insert(f.tp.clone(), f.leader_epoch);
                    }
                    Err(TruncateError::Storage(e)) => {
                        // A failed cut (or its fsync) is the log directory's failure.
                        tracing::error!(partition = %f.tp, %leader, error = %e, "truncation failed");
                        membership.note_storage_error(&e);
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(partition = %f.tp, %leader, error = %e, "cannot truncate yet");
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
        // A different partition first in each round: the leader fills the
        // reply in request order, so none is always served last.
        rounds = rounds.wrapping_add(1);
        let first = rounds % ready.len();
        ready.rotate_left(first);
        let request = FetchRequest {
            replica_id: me.0,
            max_wait_ms: FETCH_WAIT_MS,
            max_bytes: FETCH_BYTES_MAX,
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
        let sent = std::time::Instant::now();
        let reply = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(5), c.fetch(request)) => r,
            _ = assigned.changed() => continue,
        };
        let reply = match reply {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                tracing::debug!(%leader, error = %status, "replica fetch failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Err(_) => continue,
        };
        backoff = Duration::from_millis(50);
        let mut to_flush = Vec::new();
        for (mut fetched, (f, log)) in reply.partitions.into_iter().zip(ready) {
            match fetched.error() {
                ReplicaError::None => {}
                ReplicaError::OffsetOutOfRange => {
                    if log.log_end_offset() < fetched.log_start_offset {
                        tracing::warn!(partition = %f.tp, start = fetched.log_start_offset, "behind the leader's log start; restarting the log there");
                        let (start, restarted) = (fetched.log_start_offset, log.clone());
                        match tokio::task::spawn_blocking(move || restarted.restart_at(start)).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => tracing::error!(partition = %f.tp, error = %e, "cannot restart log"),
                            Err(e) => tracing::error!(partition = %f.tp, error = %e, "log restart task failed"),
                        }
                    } else {
                        truncated.remove(&f.tp);
                    }
                    continue;
                }
                other => {
                    tracing::debug!(partition = %f.tp, %leader, error = ?other, "leader refused the fetch");
                    truncated.remove(&f.tp);
                    continue;
                }
            }
            if !fetched.records.is_empty() {
                // Off the async workers: a large write can block in the
                // kernel (dirty-page throttling on a busy disk), and the
                // node's other work (client requests, Raft) must not wait.
                let (appending, records) = (log.clone(), std::mem::take(&mut fetched.records));
                let appended = tokio::task::spawn_blocking(move || appending.append_replicated(&records))
                    .await
                    .unwrap_or_else(|e| Err(runnel_storage::StorageError::Io { context: "replicated append task".into(), source: std::io::Error::other(e) }));
                if let Err(e) = appended {
                    tracing::warn!(partition = %f.tp, error = %e, "replicated append refused; truncating again");
                    membership.note_storage_error(&e);
                    truncated.remove(&f.tp);
                    continue;
                }
                to_flush.push((f.tp.clone(), log.clone()));
            }
            log.advance_high_watermark(fetched.high_watermark.min(log.log_end_offset()));
            if let Some(p) = replicas.partition(&f.tp) {
                p.note_leader_high_watermark(fetched.high_watermark);
            }
        }
        // The partitions' fsyncs run together; the next fetch reports
        // what they covered.
        if replicas.config().log.flush == FlushPolicy::Always && !to_flush.is_empty() {
            let flushing = std::time::Instant::now();
            let flushes = to_flush.iter().map(|(_, log)| log.flush());
            for ((tp, _), result) in to_flush.iter().zip(futures::future::join_all(flushes).await) {
                if let Err(e) = result {
                    tracing::error!(partition = %tp, error = %e, "follower flush failed");
                    membership.note_storage_error(&e);
                }
            }
            replicas.timings.follower_flush.observe(flushing.elapsed().as_secs_f64());
        }
        if !to_flush.is_empty() {
            replicas.timings.follower_round.observe(sent.elapsed().as_secs_f64());
        }
    }
}

/// Asks the leader where this replica's latest epoch ends there and cuts the
/// log to that point; returns the new log end.
async fn truncate_to_leader(client: &mut ReplicationClient<PeerChannel>, f: &Followed, log: &Arc<PartitionLog>) -> Result<i64, TruncateError> {
    let Some(latest) = log.latest_epoch() else {
        return Ok(log.log_end_offset()); // nothing written: nothing can diverge
    };
    let request = EpochEndOffsetRequest { topic: f.tp.topic.clone(), partition: f.tp.partition, leader_epoch: f.leader_epoch, requested_epoch: latest };
    let reply = tokio::time::timeout(Duration::from_secs(5), client.epoch_end_offset(request)).await.map_err(|_| TruncateError::Timeout)??.into_inner();
    if reply.error() != ReplicaError::None {
        return Err(TruncateError::Refused(reply.error()));
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
        // The cut fsyncs: off the runtime's threads.
        let cut = log.clone();
        tokio::task::spawn_blocking(move || cut.truncate_to(target)).await.map_err(|e| TruncateError::Task(e.to_string()))??;
    }
    Ok(log.log_end_offset())
}
