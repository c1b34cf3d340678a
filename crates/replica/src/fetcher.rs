//! The follower side of replication: one fetcher per leader broker, for
//! every partition this node follows there, in two lanes (see [`Lane`]):
//! partitions in sync, and partitions catching up.
//!
//! A follower that starts following a partition at a new leader epoch first
//! asks the leader where its own latest epoch ends there and truncates its
//! log to that point (KIP-101/279), so a divergent tail written under an old
//! leader never survives. Then it fetches from its log end, appends the
//! leader's batches as they are, fsyncs them (under the default flush
//! policy) and reports its flushed offset in the next fetch; the leader's
//! high watermark follows the ISR's flushed offsets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use runnel_controller::identity::PeerChannel;
use runnel_controller::metadata::NodeId;
use runnel_rpc::replication::replication_client::ReplicationClient;
use runnel_rpc::replication::{EpochEndOffsetRequest, FetchPartition, FetchRequest, ReplicaError};
use runnel_storage::{FlushPolicy, PartitionLog, TopicPartition};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::manager::ReplicaManager;
use crate::service::FETCH_MESSAGE_BYTES_MAX;

/// How long a fetch waits on the leader for new data.
const FETCH_WAIT_MS: u32 = 500;
/// The most bytes one fetch asks for.
const FETCH_BYTES_MAX: u32 = 8 * 1024 * 1024;
/// How long a partition whose fetch the leader refused as of another topic
/// (deleted and re-created) sits out of its lane's rounds.
const REFUSED_BACKOFF: Duration = Duration::from_millis(25);

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
    #[error("the leader's epochs did not settle in {TRUNCATION_ROUNDS_MAX} rounds")]
    Rounds,
}

/// Runs one fetcher per leader broker for the partitions this node
/// follows, as the metadata says; returns at shutdown.
pub async fn run(replicas: Arc<ReplicaManager>) {
    let mut rx = replicas.metadata().subscribe();
    let mut fetchers: HashMap<NodeId, watch::Sender<Vec<Followed>>> = HashMap::new();
    let mut following = Following::default();
    loop {
        let state = rx.borrow_and_update().clone();
        let changed = following.update(replicas.node_id(), &state.image.topics);
        follow(&replicas, &following, changed, &mut fetchers);
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = replicas.shutdown().cancelled() => return,
        }
    }
}

/// The partitions this node follows, by leader, kept up to date topic by
/// topic: a metadata change re-reads only the topics whose records
/// changed, and one that touched no topic (an offset commit, a group's
/// state) costs nothing here.
#[derive(Default)]
struct Following {
    /// The topics this was last brought up to date with.
    topics: Option<crate::manager::Topics>,
    /// Per topic: the partitions followed, as (leader, index, leader epoch).
    by_topic: HashMap<String, Vec<(NodeId, i32, i32)>>,
    /// Per leader: the partitions followed there, with their leader epochs.
    by_leader: HashMap<NodeId, BTreeMap<TopicPartition, i32>>,
}

impl Following {
    /// Brings this up to date with `topics`; returns the leaders whose
    /// partitions (or their epochs) changed.
    fn update(&mut self, me: NodeId, topics: &crate::manager::Topics) -> BTreeSet<NodeId> {
        let changed: Vec<String> = match &self.topics {
            Some(seen) => crate::manager::topic_changes(seen, topics).map(|(name, _, _)| name.clone()).collect(),
            None => topics.keys().cloned().collect(),
        };
        self.topics = Some(topics.clone());
        let mut leaders = BTreeSet::new();
        for name in changed {
            let now: Vec<(NodeId, i32, i32)> = topics
                .get(&name)
                .map(|t| {
                    let mine = t.partitions.iter().enumerate().filter(|(_, p)| p.replicas.contains(&me));
                    mine.filter_map(|(i, p)| p.leader.filter(|l| *l != me).map(|l| (l, i as i32, p.leader_epoch))).collect()
                })
                .unwrap_or_default();
            let before = self.by_topic.remove(&name).unwrap_or_default();
            if before == now {
                if !now.is_empty() {
                    self.by_topic.insert(name, now);
                }
                continue;
            }
            for (leader, i, _) in &before {
                let parts = self.by_leader.entry(*leader).or_default();
                parts.remove(&TopicPartition::new(name.clone(), *i));
                if parts.is_empty() {
                    self.by_leader.remove(leader);
                }
                leaders.insert(*leader);
            }
            for (leader, i, epoch) in &now {
                self.by_leader.entry(*leader).or_default().insert(TopicPartition::new(name.clone(), *i), *epoch);
                leaders.insert(*leader);
            }
            if !now.is_empty() {
                self.by_topic.insert(name, now);
            }
        }
        leaders
    }

    /// The partitions followed at `leader`, in topic and partition order.
    fn at(&self, leader: NodeId) -> Option<Vec<Followed>> {
        let parts = self.by_leader.get(&leader)?;
        Some(parts.iter().map(|(tp, epoch)| Followed { tp: tp.clone(), leader_epoch: *epoch }).collect())
    }
}

/// Points the fetchers of the `changed` leaders at the partitions this
/// node follows there: starts fetchers for new leaders, stops those of
/// leaders it no longer follows anything at.
fn follow(replicas: &Arc<ReplicaManager>, following: &Following, changed: BTreeSet<NodeId>, fetchers: &mut HashMap<NodeId, watch::Sender<Vec<Followed>>>) {
    for leader in changed {
        let Some(parts) = following.at(leader) else {
            // Dropping the sender stops the fetcher.
            fetchers.remove(&leader);
            continue;
        };
        match fetchers.get(&leader) {
            Some(tx) => {
                tx.send_if_modified(|current| {
                    let changed = *current != parts;
                    *current = parts;
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
}

/// A leader's partitions fetch in two lanes, each its own loop of fetch,
/// append and fsync over its own connection: a partition whose fetches
/// bring a backlog (a follower catching up, a burst of acks=1 writes) moves
/// to the catching-up lane, so its large writes and fsyncs do not delay the
/// high watermark of the partitions that are in sync, whose acks=all
/// producers wait on every round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    InSync,
    CatchingUp,
}

/// A fetch that brings at least this many bytes of a partition moves it to
/// the catching-up lane...
const CATCHING_UP_BYTES: usize = 256 * 1024;
/// ...and one that brings less than this moves it back.
const IN_SYNC_BYTES: usize = 64 * 1024;

/// What a leader's two lanes share.
#[derive(Default)]
struct Lanes {
    /// The partitions in the catching-up lane; the others are in sync. Only
    /// the lane a partition is in moves it, after a round has appended and
    /// fsynced what it fetched, so no partition is ever in two fetches.
    catching_up: std::sync::Mutex<std::collections::HashSet<TopicPartition>>,
    /// The leader epoch each partition has been truncated for.
    truncated: std::sync::Mutex<HashMap<TopicPartition, i32>>,
    /// Wakes a lane that a partition moved into.
    woken: [tokio::sync::Notify; 2],
}

impl Lanes {
    #[cfg(test)]
    fn lane_of(&self, tp: &TopicPartition) -> Lane {
        if self.catching_up.lock().unwrap_or_else(|p| p.into_inner()).contains(tp) { Lane::CatchingUp } else { Lane::InSync }
    }

    #[cfg(test)]
    fn truncated_at(&self, tp: &TopicPartition) -> Option<i32> {
        self.truncated.lock().unwrap_or_else(|p| p.into_inner()).get(tp).copied()
    }

    /// The partitions of `all` in `lane` (one lock for the round). The
    /// catching-up lane also forgets partitions no longer followed here.
    fn in_lane(&self, all: Vec<Followed>, lane: Lane) -> Vec<Followed> {
        let mut catching_up = self.catching_up.lock().unwrap_or_else(|p| p.into_inner());
        if lane == Lane::CatchingUp && !catching_up.is_empty() {
            let followed: std::collections::HashSet<&TopicPartition> = all.iter().map(|f| &f.tp).collect();
            catching_up.retain(|tp| followed.contains(tp));
        }
        all.into_iter().filter(|f| catching_up.contains(&f.tp) == (lane == Lane::CatchingUp)).collect()
    }

    /// Which of `parts` have not been checked against the leader at their
    /// leader epoch yet (one lock for the round).
    fn need_truncation(&self, parts: &[Followed]) -> Vec<bool> {
        let truncated = self.truncated.lock().unwrap_or_else(|p| p.into_inner());
        parts.iter().map(|f| truncated.get(&f.tp) != Some(&f.leader_epoch)).collect()
    }

    fn set_truncated(&self, tp: &TopicPartition, epoch: Option<i32>) {
        let mut truncated = self.truncated.lock().unwrap_or_else(|p| p.into_inner());
        match epoch {
            Some(e) => truncated.insert(tp.clone(), e),
            None => truncated.remove(tp),
        };
    }

    fn move_to(&self, tp: &TopicPartition, lane: Lane) {
        let mut catching_up = self.catching_up.lock().unwrap_or_else(|p| p.into_inner());
        let moved = match lane {
            Lane::CatchingUp => catching_up.insert(tp.clone()),
            Lane::InSync => catching_up.remove(tp),
        };
        drop(catching_up);
        if moved {
            // A permit if the lane is not waiting: it looks again at once.
            self.woken[lane as usize].notify_one();
        }
    }

    /// Where a partition goes after a round of `lane` brought `bytes` of it.
    fn after_round(lane: Lane, bytes: usize) -> Lane {
        match lane {
            Lane::InSync if bytes >= CATCHING_UP_BYTES => Lane::CatchingUp,
            Lane::CatchingUp if bytes < IN_SYNC_BYTES => Lane::InSync,
            other => other,
        }
    }
}

async fn fetch_from(replicas: Arc<ReplicaManager>, leader: NodeId, assigned: watch::Receiver<Vec<Followed>>) {
    let lanes = Arc::new(Lanes::default());
    tokio::join!(
        fetch_lane(replicas.clone(), leader, assigned.clone(), lanes.clone(), Lane::InSync),
        fetch_lane(replicas, leader, assigned, lanes, Lane::CatchingUp),
    );
}

async fn fetch_lane(replicas: Arc<ReplicaManager>, leader: NodeId, mut assigned: watch::Receiver<Vec<Followed>>, lanes: Arc<Lanes>, lane: Lane) {
    let me = replicas.node_id();
    let membership = replicas.membership().clone();
    let mut client: Option<(String, ReplicationClient<PeerChannel>)> = None;
    let mut backoff = Duration::from_millis(50);
    let mut rounds = 0usize;
    // Partitions whose fetch the leader refused as of another topic, left
    // out of the rounds until then: a refusal is answered at once, so asking
    // again at once would end every long poll of the lane until the leader
    // has removed the other topic's replica. (A refused truncation check
    // asks again the next round, which a long poll of the others paces.)
    let mut refused: HashMap<TopicPartition, std::time::Instant> = HashMap::new();
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
        let all = assigned.borrow_and_update().clone();
        let parts = lanes.in_lane(all, lane);
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
        let unchecked = lanes.need_truncation(&parts);
        let now = std::time::Instant::now();
        refused.retain(|_, until| *until > now);
        for (f, unchecked) in parts.iter().zip(unchecked) {
            if refused.contains_key(&f.tp) {
                continue;
            }
            // The topic id of the log fetched into: a leader that still (or
            // already) has another topic of this name refuses the fetch.
            let Some((log, topic_id)) = replicas.partition(&f.tp).map(|p| (p.log().clone(), p.topic_id())) else { continue };
            if unchecked {
                match truncate_to_leader(c, f, topic_id, &log).await {
                    Ok(end) => {
                        tracing::info!(partition = %f.tp, %leader, leader_epoch = f.leader_epoch, log_end = end, "following");
                        lanes.set_truncated(&f.tp, Some(f.leader_epoch));
                    }
                    // Removed meanwhile (its topic deleted, the replica moved away).
                    Err(TruncateError::Storage(runnel_storage::StorageError::Closed(_))) => continue,
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
            ready.push((f.clone(), log, topic_id));
        }
        if ready.is_empty() {
            // Refused partitions are asked again when their pause ends.
            let wait = if refused.is_empty() { backoff } else { backoff.min(REFUSED_BACKOFF) };
            tokio::select! {
                _ = assigned.changed() => {}
                _ = lanes.woken[lane as usize].notified() => {}
                _ = tokio::time::sleep(wait) => {}
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
                .map(|(f, log, topic_id)| FetchPartition {
                    topic: f.tp.topic.clone(),
                    partition: f.tp.partition,
                    leader_epoch: f.leader_epoch,
                    fetch_offset: log.log_end_offset(),
                    flushed_offset: log.flushed_offset(),
                    topic_id: topic_id.as_bytes().to_vec(),
                })
                .collect(),
        };
        let sent = std::time::Instant::now();
        let reply = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(5), c.fetch(request)) => r,
            _ = assigned.changed() => continue,
            // A partition moved into this lane: ask again with it, rather
            // than leave it unfetched while this long poll waits on others.
            _ = lanes.woken[lane as usize].notified() => continue,
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
        let mut moves = Vec::new();
        let mut fetched_bytes = 0;
        for (mut fetched, (f, log, _)) in reply.partitions.into_iter().zip(ready) {
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
                        lanes.set_truncated(&f.tp, None);
                    }
                    continue;
                }
                other => {
                    tracing::debug!(partition = %f.tp, %leader, error = ?other, "leader refused the fetch");
                    lanes.set_truncated(&f.tp, None);
                    // Only this refusal lasts (the leader's whole removal of
                    // the other topic); those of a leadership change end
                    // within a metadata round, and failover waits on them.
                    if other == ReplicaError::UnknownTopicId {
                        refused.insert(f.tp.clone(), std::time::Instant::now() + REFUSED_BACKOFF);
                    }
                    continue;
                }
            }
            fetched_bytes += fetched.records.len();
            let next = Lanes::after_round(lane, fetched.records.len());
            if next != lane {
                moves.push((f.tp.clone(), next));
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
                    lanes.set_truncated(&f.tp, None);
                    continue;
                }
                to_flush.push((f.tp.clone(), log.clone()));
            }
            log.advance_high_watermark(fetched.high_watermark.min(log.log_end_offset()));
            if let Some(p) = replicas.partition(&f.tp) {
                p.note_leader_high_watermark(fetched.high_watermark);
            }
            // The leader's log start (moved by DeleteRecords or retention),
            // within what this replica holds; rare, so its file write waits here.
            let leader_start = fetched.log_start_offset.min(log.high_watermark());
            if leader_start > log.log_start_offset() {
                let advancing = log.clone();
                match tokio::task::spawn_blocking(move || advancing.advance_log_start(leader_start)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(partition = %f.tp, error = %e, "cannot follow the leader's log start offset"),
                    Err(e) => tracing::warn!(partition = %f.tp, error = %e, "log start offset task failed"),
                }
            }
        }
        // The partitions' fsyncs run together; the next fetch reports
        // what they covered.
        if replicas.config().log.flush == FlushPolicy::Always && !to_flush.is_empty() {
            let flushing = std::time::Instant::now();
            let flushes = to_flush.iter().map(|(_, log)| log.flush());
            for ((tp, _), result) in to_flush.iter().zip(futures::future::join_all(flushes).await) {
                // Removed meanwhile (its topic deleted, the replica moved away).
                if let Err(runnel_storage::StorageError::Closed(_)) = result {
                    continue;
                }
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
        // Catch-up traffic at most at the node's rate, if one is set.
        if let (Lane::CatchingUp, Some(throttle)) = (lane, replicas.catch_up_throttle()) {
            throttle.take(fetched_bytes).await;
        }
        // The round is done (appended and fsynced): the other lane may take them.
        for (tp, next) in moves {
            tracing::debug!(partition = %tp, %leader, lane = ?next, "partition changes fetch lane");
            lanes.move_to(&tp, next);
        }
    }
}

/// Asks the leader where this replica's latest epoch ends there and cuts the
/// log to that point; returns the new log end.
async fn truncate_to_leader(client: &mut ReplicationClient<PeerChannel>, f: &Followed, topic_id: Uuid, log: &Arc<PartitionLog>) -> Result<i64, TruncateError> {
    truncate_diverged(log, &f.tp, |latest| {
        let request = EpochEndOffsetRequest {
            topic: f.tp.topic.clone(),
            partition: f.tp.partition,
            leader_epoch: f.leader_epoch,
            requested_epoch: latest,
            topic_id: topic_id.as_bytes().to_vec(),
        };
        let mut client = client.clone();
        async move {
            let reply = tokio::time::timeout(Duration::from_secs(5), client.epoch_end_offset(request)).await.map_err(|_| TruncateError::Timeout)??.into_inner();
            if reply.error() != ReplicaError::None {
                return Err(TruncateError::Refused(reply.error()));
            }
            Ok((reply.epoch >= 0).then_some((reply.epoch, reply.end_offset)))
        }
    })
    .await
}

/// Rounds of KIP-279 before giving up: each round but the last removes at
/// least one epoch from this log, so a log of many short epochs may need a
/// few; more than this is a leader answering nonsense.
const TRUNCATION_ROUNDS_MAX: usize = 64;

/// KIP-101/279: `ask` gives the leader's answer for an epoch (the largest
/// epoch at or below it that the leader has and where it ends there, or
/// `None` if the leader has none). Where this log has the leader's epoch,
/// the logs agree up to the smaller of the two ends and the cut there is the
/// last. Where it has not (this replica missed the epoch, the leader missed
/// a later one of this replica's), everything from this log's next epoch on
/// is not the leader's: cut there, and ask again for the epoch now last.
async fn truncate_diverged<F, Fut>(log: &Arc<PartitionLog>, tp: &TopicPartition, mut ask: F) -> Result<i64, TruncateError>
where
    F: FnMut(i32) -> Fut,
    Fut: std::future::Future<Output = Result<Option<(i32, i64)>, TruncateError>>,
{
    for _ in 0..TRUNCATION_ROUNDS_MAX {
        let Some(latest) = log.latest_epoch() else {
            return Ok(log.log_end_offset()); // nothing written: nothing can diverge
        };
        let (target, last) = match ask(latest).await? {
            None => (0, true), // the leader has none of this replica's epochs
            Some((epoch, leader_end)) => match log.end_offset_for_epoch(epoch) {
                None => (0, true),
                Some((mine, end)) if mine == epoch => (leader_end.min(end), true),
                Some((_, end)) => (end, false),
            },
        };
        if target < log.log_end_offset() {
            tracing::warn!(partition = %tp, from = log.log_end_offset(), to = target, "truncating a divergent tail");
            // The cut fsyncs: off the runtime's threads.
            let cut = log.clone();
            tokio::task::spawn_blocking(move || cut.truncate_to(target)).await.map_err(|e| TruncateError::Task(e.to_string()))??;
        }
        if last || log.latest_epoch() == Some(latest) {
            return Ok(log.log_end_offset());
        }
    }
    Err(TruncateError::Rounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    use runnel_controller::metadata::{PartitionRecord, Shared, TopicRecord};

    fn partition(replicas: &[u64], leader: Option<u64>, leader_epoch: i32) -> PartitionRecord {
        let replicas: Vec<NodeId> = replicas.iter().map(|r| NodeId(*r)).collect();
        PartitionRecord { isr: replicas.clone(), replicas, leader: leader.map(NodeId), leader_epoch, partition_epoch: 0 }
    }

    fn topic(partitions: Vec<PartitionRecord>) -> Arc<TopicRecord> {
        Arc::new(TopicRecord { id: uuid::Uuid::new_v4(), configs: Default::default(), partitions })
    }

    fn at(following: &Following, leader: u64) -> Vec<(String, i32, i32)> {
        following.at(NodeId(leader)).unwrap_or_default().into_iter().map(|f| (f.tp.topic, f.tp.partition, f.leader_epoch)).collect()
    }

    /// Node 1 follows the partitions it holds a replica of and another
    /// node leads; a change re-reads only the topics that changed, and
    /// names only the leaders whose partitions changed.
    #[test]
    fn the_followed_partitions_follow_the_topics_that_changed() {
        let me = NodeId(1);
        let mut topics: crate::manager::Topics = Shared::from(BTreeMap::from([
            ("a".to_string(), topic(vec![partition(&[1, 2], Some(2), 0), partition(&[2, 3], Some(2), 0), partition(&[1, 3], Some(1), 0)])),
            ("b".to_string(), topic(vec![partition(&[3, 1], Some(3), 4)])),
        ]));
        let mut following = Following::default();
        assert_eq!(following.update(me, &topics), BTreeSet::from([NodeId(2), NodeId(3)]));
        assert_eq!(at(&following, 2), [("a".to_string(), 0, 0)]);
        assert_eq!(at(&following, 3), [("b".to_string(), 0, 4)]);
        assert!(following.at(me).is_none(), "what this node leads is not fetched");
        // The same topics: nothing to do.
        assert!(following.update(me, &topics.clone()).is_empty());

        // An ISR change alone changes no fetcher.
        let mut shrunk = (*topics["a"]).clone();
        shrunk.partitions[0].isr = vec![NodeId(2)];
        topics.insert("a".into(), Arc::new(shrunk));
        assert!(following.update(me, &topics).is_empty());

        // A.0 moves from leader 2 to leader 3: both fetchers change, and
        // leader 2's stops, with nothing left there.
        let mut moved = (*topics["a"]).clone();
        moved.partitions[0].leader = Some(NodeId(3));
        moved.partitions[0].leader_epoch = 1;
        topics.insert("a".into(), Arc::new(moved));
        assert_eq!(following.update(me, &topics), BTreeSet::from([NodeId(2), NodeId(3)]));
        assert!(following.at(NodeId(2)).is_none());
        assert_eq!(at(&following, 3), [("a".to_string(), 0, 1), ("b".to_string(), 0, 4)]);

        // B deleted, then created again led by 2.
        topics.remove("b");
        assert_eq!(following.update(me, &topics), BTreeSet::from([NodeId(3)]));
        assert_eq!(at(&following, 3), [("a".to_string(), 0, 1)]);
        topics.insert("b".into(), topic(vec![partition(&[2, 1], Some(2), 0)]));
        assert_eq!(following.update(me, &topics), BTreeSet::from([NodeId(2)]));
        assert_eq!(at(&following, 2), [("b".to_string(), 0, 0)]);
    }

    #[test]
    fn a_backlog_moves_a_partition_to_the_catching_up_lane_and_a_trickle_moves_it_back() {
        assert_eq!(Lanes::after_round(Lane::InSync, 0), Lane::InSync);
        assert_eq!(Lanes::after_round(Lane::InSync, CATCHING_UP_BYTES - 1), Lane::InSync);
        assert_eq!(Lanes::after_round(Lane::InSync, CATCHING_UP_BYTES), Lane::CatchingUp);
        // Between the two thresholds a partition stays where it is, so it
        // does not flip at every round.
        assert_eq!(Lanes::after_round(Lane::CatchingUp, IN_SYNC_BYTES), Lane::CatchingUp);
        assert_eq!(Lanes::after_round(Lane::CatchingUp, CATCHING_UP_BYTES * 4), Lane::CatchingUp);
        assert_eq!(Lanes::after_round(Lane::CatchingUp, IN_SYNC_BYTES - 1), Lane::InSync);
        assert_eq!(Lanes::after_round(Lane::CatchingUp, 0), Lane::InSync);
    }

    #[tokio::test]
    async fn moving_a_partition_wakes_the_lane_it_moves_to_even_if_that_lane_is_busy() {
        let lanes = Lanes::default();
        let tp = TopicPartition::new("t".to_string(), 0);
        assert_eq!(lanes.lane_of(&tp), Lane::InSync);
        lanes.move_to(&tp, Lane::CatchingUp);
        assert_eq!(lanes.lane_of(&tp), Lane::CatchingUp);
        // The catching-up lane was not waiting when it moved: its next wait
        // returns at once.
        tokio::time::timeout(Duration::from_secs(1), lanes.woken[Lane::CatchingUp as usize].notified()).await.expect("a stored wake-up");
        lanes.move_to(&tp, Lane::InSync);
        assert_eq!(lanes.lane_of(&tp), Lane::InSync);
        tokio::time::timeout(Duration::from_secs(1), lanes.woken[Lane::InSync as usize].notified()).await.expect("a stored wake-up");
        // Truncation state is shared, so a move costs no new epoch query.
        lanes.set_truncated(&tp, Some(3));
        assert_eq!(lanes.truncated_at(&tp), Some(3));
        let followed = |p: i32, epoch: i32| Followed { tp: TopicPartition::new("t".to_string(), p), leader_epoch: epoch };
        assert_eq!(lanes.need_truncation(&[followed(0, 3), followed(0, 4), followed(1, 3)]), vec![false, true, true]);
        lanes.set_truncated(&tp, None);
        assert_eq!(lanes.truncated_at(&tp), None);
    }

    #[test]
    fn each_lane_gets_its_partitions_and_forgets_unfollowed_ones() {
        let lanes = Lanes::default();
        let followed = |p: i32| Followed { tp: TopicPartition::new("t".to_string(), p), leader_epoch: 0 };
        lanes.move_to(&followed(1).tp, Lane::CatchingUp);
        lanes.move_to(&followed(9).tp, Lane::CatchingUp);
        let all = vec![followed(0), followed(1), followed(2)];
        assert_eq!(lanes.in_lane(all.clone(), Lane::InSync), vec![followed(0), followed(2)]);
        assert_eq!(lanes.in_lane(all, Lane::CatchingUp), vec![followed(1)]);
        // Partition 9 is no longer followed: the catching-up lane dropped it.
        assert_eq!(lanes.lane_of(&followed(9).tp), Lane::InSync);
    }

    /// A log of single-record batches, `(epoch, count)` after one another,
    /// each record naming its epoch and offset.
    fn log_of(dir: &std::path::Path, epochs: &[(i32, i64)]) -> Arc<PartitionLog> {
        let (log, _) = PartitionLog::open(dir, runnel_storage::LogConfig::default()).unwrap();
        for &(epoch, count) in epochs {
            for _ in 0..count {
                let value = format!("{epoch}@{}", log.log_end_offset());
                log.append(&runnel_storage::batch::build_batch(0, &[value.as_bytes()]), epoch).unwrap();
            }
        }
        Arc::new(log)
    }

    /// Runs the follower's truncation against the leader's log, counting
    /// the questions asked.
    async fn truncate_against(follower: &Arc<PartitionLog>, leader: &Arc<PartitionLog>) -> (i64, usize) {
        let asked = std::cell::Cell::new(0);
        let end = truncate_diverged(follower, &TopicPartition::new("t", 0), |epoch| {
            asked.set(asked.get() + 1);
            std::future::ready(Ok(leader.end_offset_for_epoch(epoch)))
        })
        .await
        .unwrap();
        (end, asked.get())
    }

    /// KIP-279: the follower missed the leader's epoch 6 (offsets 80..) and
    /// the leader missed the follower's epoch 7 (90..). The leader's answer
    /// for 7 is "epoch 6 ends at 100"; the follower has no epoch 6, and its
    /// records 80..90 are of epoch 5, which the leader ended at 80. One round
    /// would cut at 90 and keep ten records the leader does not have; the
    /// second round, for epoch 5, cuts at 80, and the leader's records then
    /// follow on from there.
    #[tokio::test]
    async fn a_follower_that_missed_the_leader_s_epoch_asks_again_for_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let leader = log_of(&dir.path().join("leader"), &[(5, 80), (6, 20)]);
        let follower = log_of(&dir.path().join("follower"), &[(5, 90), (7, 40)]);
        assert_eq!(truncate_against(&follower, &leader).await, (80, 2));
        assert_eq!(follower.latest_epoch(), Some(5));
        let rest = leader.read(80, 1 << 20, leader.log_end_offset(), true).unwrap();
        follower.append_replicated(&rest).unwrap();
        let all = |log: &PartitionLog| log.read(0, 1 << 24, log.log_end_offset(), true).unwrap();
        assert_eq!(all(&follower), all(&leader), "the follower holds the leader's log, record for record");
    }

    /// The common cases take one question: a follower with the leader's
    /// epoch cuts to where the leader ended it, and one behind cuts nothing.
    #[tokio::test]
    async fn a_follower_with_the_leader_s_epoch_cuts_once_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let leader = log_of(&dir.path().join("leader"), &[(1, 10), (3, 10)]);
        let ahead = log_of(&dir.path().join("ahead"), &[(1, 15)]);
        assert_eq!(truncate_against(&ahead, &leader).await, (10, 1));
        let behind = log_of(&dir.path().join("behind"), &[(1, 10), (3, 4)]);
        assert_eq!(truncate_against(&behind, &leader).await, (14, 1));
        let older = log_of(&dir.path().join("older"), &[(0, 3)]);
        assert_eq!(truncate_against(&older, &leader).await, (0, 1), "the leader has none of its epochs");
        let empty = log_of(&dir.path().join("empty"), &[]);
        assert_eq!(truncate_against(&empty, &leader).await, (0, 0));
    }
}
