//! One hosted replica: its log, its metadata record, the leader engine while
//! this node leads it, and its own wake-ups.
//!
//! # Invariants
//! - Only the leader engine moves the high watermark of a partition led
//!   here; a follower takes the leader's (capped at its own log end).
//! - Appends as leader happen under the state lock at the engine's leader
//!   epoch, so a batch is never stamped with an epoch this node no longer
//!   leads.
//! - `changed` wakes whoever waits on this partition (consumer fetches and
//!   acks=all produces) when its high watermark moves or its leadership
//!   changes; `appended` wakes followers' long polls at each leader append.
//!   Nothing here wakes waiters of other partitions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use runnel_controller::metadata::{NodeId, PartitionRecord};
use runnel_storage::batch::Marker;
use runnel_storage::{AppendInfo, LeaderEpoch, Offset, PartitionLog, StorageError, TopicPartition};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use uuid::Uuid;

use crate::timings::ReplicationTimings;

use crate::engine::{
    Durability, Effect, EngineConfig, EpochMismatch, FollowerFetch, IsrProposal, LeaderEngine, LeaderLog, NotEnoughReplicas, PartitionView, default_min_insync,
};

/// What a topic's configs say about serving its partitions, parsed once per
/// metadata change rather than per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSettings {
    /// `min.insync.replicas`, if the topic sets it.
    pub min_insync_replicas: Option<usize>,
    /// `max.message.bytes`, if the topic sets it.
    pub max_message_bytes: Option<usize>,
    /// `compression.type` as Kafka's codec id (0 for `uncompressed`): the
    /// codec produced batches are stored with; `None` (`producer`, the
    /// default) keeps the producer's.
    pub compression: Option<i16>,
    /// `message.timestamp.type` is `LogAppendTime`: each batch is stamped
    /// with the time the leader appends it.
    pub log_append_time: bool,
    /// How far before and after the leader's clock a record's CreateTime
    /// may be (`message.timestamp.before.max.ms`, `.after.max.ms`, each
    /// defaulting to the older `message.timestamp.difference.max.ms`);
    /// `None` for no bound.
    pub timestamp_before_max_ms: Option<i64>,
    pub timestamp_after_max_ms: Option<i64>,
}

impl TopicSettings {
    /// The configs have passed the controller's validation; a value that
    /// does not parse falls back to the default.
    pub fn from_configs(configs: &BTreeMap<String, String>) -> TopicSettings {
        let usize_of = |k: &str| configs.get(k).and_then(|v| v.trim().parse::<usize>().ok());
        let compression = match configs.get("compression.type").map(String::as_str) {
            Some("uncompressed") => Some(0),
            Some("gzip") => Some(1),
            Some("snappy") => Some(2),
            Some("lz4") => Some(3),
            Some("zstd") => Some(4),
            _ => None,
        };
        // Kafka's default, Long.MAX_VALUE, is no bound.
        let bound = |k: &str| configs.get(k).and_then(|v| v.trim().parse::<i64>().ok()).filter(|v| *v != i64::MAX);
        let difference = bound("message.timestamp.difference.max.ms");
        TopicSettings {
            min_insync_replicas: usize_of("min.insync.replicas"),
            max_message_bytes: usize_of("max.message.bytes"),
            compression,
            log_append_time: configs.get("message.timestamp.type").is_some_and(|v| v == "LogAppendTime"),
            timestamp_before_max_ms: bound("message.timestamp.before.max.ms").or(difference),
            timestamp_after_max_ms: bound("message.timestamp.after.max.ms").or(difference),
        }
    }
}

/// Why a request for the leader of a partition cannot be served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotLeader {
    #[error("this broker does not lead the partition")]
    Elsewhere,
    #[error("this broker no longer leads the partition at leader epoch {0}")]
    EpochMoved(LeaderEpoch),
}

/// Why an append as leader failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    #[error(transparent)]
    NotEnoughReplicas(#[from] NotEnoughReplicas),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why an acknowledgement could not be given.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Storage(StorageError),
    #[error("leadership moved before the batch was replicated")]
    NotLeader,
    #[error("the batch is replicated, but the ISR shrank below min.insync.replicas before it was")]
    NotEnoughReplicasAfterAppend,
}

/// Why a follower's fetch is refused by this leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FollowerFetchError {
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    #[error(transparent)]
    Epoch(#[from] EpochMismatch),
    /// The follower's log goes past this leader's: records this leader
    /// never wrote (a truncation it has yet to make). Not counted.
    #[error("the follower's log ends at {follower}, past the leader's end {leader}")]
    Ahead { follower: i64, leader: i64 },
}

/// A batch appended as leader: where it went and at which leader epoch.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub info: AppendInfo,
    pub leader_epoch: LeaderEpoch,
}

/// What a partition is, for its whole life here.
pub(crate) struct Identity {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    /// This node.
    pub me: NodeId,
    pub engine_config: EngineConfig,
    pub timings: Arc<ReplicationTimings>,
}

struct State {
    /// The Raft index of the metadata `record` and `settings` come from:
    /// an older view never replaces a newer one.
    metadata_index: u64,
    record: PartitionRecord,
    settings: TopicSettings,
    /// Some while this node leads the partition at `record.leader_epoch`.
    leader: Option<LeaderEngine>,
}

pub struct Partition {
    tp: TopicPartition,
    topic_id: Uuid,
    me: NodeId,
    engine_config: EngineConfig,
    timings: Arc<ReplicationTimings>,
    log: Arc<PartitionLog>,
    state: Mutex<State>,
    changed: Notify,
    appended: Notify,
    /// The leader's high watermark as this follower last heard it (-1: none).
    leader_high_watermark: AtomicI64,
    /// Whether the ISR can change while this node leads: false when it is
    /// not the leader, or when the replicas and the ISR are this node alone,
    /// so the periodic ISR check skips the partition without locking it.
    isr_may_change: AtomicBool,
}

impl Partition {
    pub(crate) fn new(
        identity: Identity,
        log: Arc<PartitionLog>,
        record: PartitionRecord,
        settings: TopicSettings,
        metadata_index: u64,
        now: Instant,
    ) -> Partition {
        let Identity { tp, topic_id, me, engine_config, timings } = identity;
        let partition = Partition {
            tp,
            topic_id,
            me,
            engine_config,
            timings,
            log,
            state: Mutex::new(State { metadata_index, record: record.clone(), settings: settings.clone(), leader: None }),
            changed: Notify::new(),
            appended: Notify::new(),
            leader_high_watermark: AtomicI64::new(-1),
            isr_may_change: AtomicBool::new(false),
        };
        partition.update(record, settings, now);
        partition
    }

    /// Applies the partition's record and topic settings from the metadata
    /// at Raft index `metadata_index`, unless this replica has applied the
    /// same or a newer view already.
    pub(crate) fn sync(&self, record: &PartitionRecord, settings: impl FnOnce() -> TopicSettings, metadata_index: u64, now: Instant) {
        let differs = {
            let mut state = self.lock();
            if metadata_index <= state.metadata_index {
                return;
            }
            state.metadata_index = metadata_index;
            let settings = settings();
            let differs = state.record != *record || state.settings != settings;
            differs.then_some(settings)
        };
        if let Some(settings) = differs {
            self.update(record.clone(), settings, now);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tp(&self) -> &TopicPartition {
        &self.tp
    }

    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    pub fn log(&self) -> &Arc<PartitionLog> {
        &self.log
    }

    /// The partition's metadata record as this replica last applied it.
    pub fn record(&self) -> PartitionRecord {
        self.lock().record.clone()
    }

    /// The leader epoch and partition epoch of the record last applied.
    pub fn epochs(&self) -> (LeaderEpoch, i32) {
        let state = self.lock();
        (LeaderEpoch(state.record.leader_epoch), state.record.partition_epoch)
    }

    pub fn settings(&self) -> TopicSettings {
        self.lock().settings.clone()
    }

    /// The leader epoch this node leads the partition at, if it does.
    pub fn leader_epoch(&self) -> Option<LeaderEpoch> {
        self.lock().leader.as_ref().map(LeaderEngine::leader_epoch)
    }

    /// Applies the partition's metadata: becomes leader (a fresh engine at a
    /// new leader epoch), stays leader (the engine sees the new ISR), or
    /// follows. Waiters are woken when leadership changes.
    pub(crate) fn update(&self, record: PartitionRecord, settings: TopicSettings, now: Instant) {
        let mut state = self.lock();
        let leads = record.leader == Some(self.me);
        let view = PartitionView {
            leader_epoch: LeaderEpoch(record.leader_epoch),
            partition_epoch: record.partition_epoch,
            replicas: record.replicas.clone(),
            isr: record.isr.clone(),
        };
        let effects = match (&mut state.leader, leads) {
            (Some(engine), true) if engine.leader_epoch() == LeaderEpoch(record.leader_epoch) => engine.on_metadata(view, now),
            (_, true) => {
                let engine =
                    LeaderEngine::new(self.me, view, Offset(self.log.high_watermark()), now, self.engine_config).starting_at(Offset(self.log.log_end_offset()));
                let durable = self.durable_offset();
                state.leader = Some(engine);
                let mut effects = vec![Effect::WakeWaiters];
                effects.extend(state.leader.as_mut().expect("set above").on_flush(durable));
                effects
            }
            (Some(_), false) => {
                state.leader = None;
                vec![Effect::WakeWaiters]
            }
            (None, false) => Vec::new(),
        };
        let alone = record.replicas == [self.me] && record.isr == [self.me];
        self.isr_may_change.store(state.leader.is_some() && !alone, Ordering::Relaxed);
        state.record = record;
        state.settings = settings;
        self.perform(effects);
    }

    /// Stops serving: leadership is gone with the log (deleted topic, moved replica).
    pub(crate) fn retire(&self) {
        self.isr_may_change.store(false, Ordering::Relaxed);
        self.lock().leader = None;
        self.changed.notify_waiters();
    }

    /// The offset this replica counts as durable: flushed, or written under
    /// the interval policy.
    fn durable_offset(&self) -> Offset {
        Offset(match self.engine_config.durability {
            Durability::Flushed => self.log.flushed_offset(),
            Durability::Written => self.log.log_end_offset(),
        })
    }

    /// Does what the engine asked, except proposals, which are returned.
    fn perform(&self, effects: Vec<Effect>) -> Option<IsrProposal> {
        let mut proposal = None;
        for effect in effects {
            match effect {
                Effect::AdvanceHighWatermark(hw) => {
                    self.log.advance_high_watermark(hw.0);
                }
                Effect::WakeWaiters => self.changed.notify_waiters(),
                Effect::ProposeIsr(p) => proposal = Some(p),
            }
        }
        proposal
    }

    /// Appends a record set as leader, stamped with the current leader
    /// epoch. With `acks_all`, refuses (appending nothing) when the ISR is
    /// smaller than min.insync.replicas.
    pub fn append(&self, records: &[u8], acks_all: bool) -> Result<Appended, AppendError> {
        let state = self.lock();
        let Some(engine) = &state.leader else { return Err(NotLeader::Elsewhere.into()) };
        if acks_all {
            let min = state.settings.min_insync_replicas.unwrap_or_else(|| default_min_insync(state.record.replicas.len()));
            engine.check_min_insync(min)?;
        }
        let leader_epoch = engine.leader_epoch();
        let info = self.log.append(records, leader_epoch.0)?;
        drop(state);
        if !info.duplicate {
            self.appended.notify_waiters();
        }
        Ok(Appended { info, leader_epoch })
    }

    /// Appends a transaction marker as leader (for the transaction
    /// coordinator), stamped with the current leader epoch; refused like an
    /// acks=all append when the ISR is below min.insync.replicas.
    pub fn append_marker(&self, producer_id: i64, producer_epoch: i16, marker: Marker, coordinator_epoch: i32) -> Result<Appended, AppendError> {
        let state = self.lock();
        let Some(engine) = &state.leader else { return Err(NotLeader::Elsewhere.into()) };
        let min = state.settings.min_insync_replicas.unwrap_or_else(|| default_min_insync(state.record.replicas.len()));
        engine.check_min_insync(min)?;
        let leader_epoch = engine.leader_epoch();
        let info = self.log.append_marker(producer_id, producer_epoch, marker, coordinator_epoch, leader_epoch.0)?;
        drop(state);
        self.appended.notify_waiters();
        Ok(Appended { info, leader_epoch })
    }

    /// Makes data appended up to `end` durable as the flush policy says
    /// (fsynced under `Always`) and moves the high watermark as far as the
    /// ISR allows. With `wait_for_isr` (acks=all) it returns only when the
    /// high watermark has passed `end`, which under the default policy means
    /// every ISR member has fsynced the data; it fails with `NotLeader` if
    /// leadership moves on first.
    pub async fn commit(&self, end: Offset, wait_for_isr: bool, leader_epoch: LeaderEpoch) -> Result<(), CommitError> {
        if self.engine_config.durability == Durability::Flushed {
            let started = std::time::Instant::now();
            let flushed = self.log.flush_to(end.0).await.map_err(|e| match e {
                // The replica was deleted or moved away meanwhile.
                StorageError::Closed(_) => CommitError::NotLeader,
                e => CommitError::Storage(e),
            })?;
            self.timings.leader_flush.observe(started.elapsed().as_secs_f64());
            // Only a truncation (this replica became a follower) leaves the
            // records short of the disk: they were cut.
            if flushed < end.0 {
                return Err(CommitError::NotLeader);
            }
        }
        self.on_flush();
        if !wait_for_isr {
            return Ok(());
        }
        #[cfg(feature = "failpoints")]
        if runnel_storage::failpoints::ACK_BEFORE_REPLICATION.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // Decided by the engine of the leadership that appended, under
            // the state lock: once it is gone, the log may already hold
            // another leader's records at these offsets (a follower fetcher
            // can cut and refill it before this partition steps down), and
            // its high watermark says nothing about this batch.
            let committed = {
                let state = self.lock();
                match &state.leader {
                    Some(engine) if engine.leader_epoch() == leader_epoch => engine.is_committed(end).then(|| {
                        let min = state.settings.min_insync_replicas.unwrap_or_else(|| default_min_insync(state.record.replicas.len()));
                        engine.check_min_insync(min)
                    }),
                    _ => return Err(CommitError::NotLeader),
                }
            };
            if let Some(enough) = committed {
                self.timings.isr_wait.observe(started.elapsed().as_secs_f64());
                // Replicated, but the ISR shrank below min.insync.replicas
                // meanwhile: fewer copies than asked for (Kafka's
                // NOT_ENOUGH_REPLICAS_AFTER_APPEND).
                return enough.map_err(|_| CommitError::NotEnoughReplicasAfterAppend);
            }
            changed.await;
        }
    }

    /// The leader's own log became more durable.
    pub fn on_flush(&self) {
        let durable = self.durable_offset();
        let effects = match &mut self.lock().leader {
            Some(engine) => engine.on_flush(durable),
            None => return,
        };
        self.perform(effects);
    }

    /// A follower's fetch on this leader: records its progress (which may
    /// move the high watermark). Returns the high watermark and log start
    /// to send back.
    pub fn follower_fetch(&self, fetch: FollowerFetch, now: Instant) -> Result<(Offset, Offset), FollowerFetchError> {
        let leader = LeaderLog { log_end: Offset(self.log.log_end_offset()), durable: self.durable_offset() };
        let effects = {
            let mut state = self.lock();
            let Some(engine) = &mut state.leader else { return Err(NotLeader::Elsewhere.into()) };
            if fetch.leader_epoch == engine.leader_epoch() && fetch.log_end > leader.log_end {
                return Err(FollowerFetchError::Ahead { follower: fetch.log_end.0, leader: leader.log_end.0 });
            }
            engine.on_fetch(fetch, leader, now)?
        };
        self.perform(effects);
        Ok((Offset(self.log.high_watermark()), Offset(self.log.log_start_offset())))
    }

    /// The periodic ISR check; a change to propose, if one is due.
    pub(crate) fn tick(&self, now: Instant, fenced: &dyn Fn(&NodeId) -> bool) -> Option<IsrProposal> {
        if !self.isr_may_change.load(Ordering::Relaxed) {
            return None;
        }
        let effects = match &mut self.lock().leader {
            Some(engine) => engine.on_tick(now, fenced),
            None => return None,
        };
        self.perform(effects)
    }

    /// The controller refused as it stands a proposal made at these epochs
    /// (see [`crate::engine::LeaderEngine::on_refused`]).
    pub(crate) fn proposal_refused(&self, leader_epoch: LeaderEpoch, partition_epoch: i32) {
        let effects = match &mut self.lock().leader {
            Some(engine) => engine.on_refused(leader_epoch, partition_epoch),
            None => return,
        };
        self.perform(effects);
    }

    /// The high watermark a leader may show (KIP-207): a new leader learned
    /// the old one's high watermark a replication round late, so until its
    /// own reaches the start of its leader epoch (which the old one's cannot
    /// have passed) it shows none rather than a lower one.
    ///
    /// A leader restarted at the same epoch (the metadata never moved its
    /// leadership) counts the log end it reopened with as its epoch's start:
    /// its high watermark came from a checkpoint, or from nothing, and may
    /// trail what consumers were shown before the restart.
    pub fn exposed_high_watermark(&self, leader_epoch: LeaderEpoch) -> Option<Offset> {
        let exposed = exposed_high_watermark(&self.log, leader_epoch)?;
        // Never past the log end: a follower's truncation that raced this
        // node's election may have cut below where it took the epoch.
        let start = |engine: &LeaderEngine| engine.epoch_start().0.min(self.log.log_end_offset());
        match &self.lock().leader {
            Some(engine) if engine.leader_epoch() == leader_epoch && exposed.0 < start(engine) => None,
            _ => Some(exposed),
        }
    }

    /// Completes at the next high-watermark move or leadership change of
    /// this partition; enable it before checking for data so no wake-up is
    /// missed.
    pub fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    /// Completes at the next leader append to this partition.
    pub fn appended(&self) -> Notified<'_> {
        self.appended.notified()
    }

    /// Records the leader's high watermark from a fetch reply (followers).
    pub fn note_leader_high_watermark(&self, high_watermark: i64) {
        self.leader_high_watermark.store(high_watermark, Ordering::Relaxed);
    }

    /// The leader's high watermark as this follower last heard it.
    pub fn leader_high_watermark(&self) -> Option<i64> {
        Some(self.leader_high_watermark.load(Ordering::Relaxed)).filter(|hw| *hw >= 0)
    }

    /// The ISR size, if this node leads the partition.
    /// Whether `node` is in the ISR this leader keeps; `None` when not leading.
    pub fn in_isr(&self, node: NodeId) -> Option<bool> {
        let state = self.lock();
        state.leader.as_ref().map(|e| e.view().isr.contains(&node))
    }

    pub fn isr_len(&self) -> Option<usize> {
        let state = self.lock();
        state.leader.as_ref().map(|e| e.view().isr.len())
    }
}

/// See [`Partition::exposed_high_watermark`].
pub fn exposed_high_watermark(log: &PartitionLog, leader_epoch: LeaderEpoch) -> Option<Offset> {
    let high_watermark = log.high_watermark();
    let epoch_start = log.end_offset_for_epoch(leader_epoch.0 - 1).map_or(0, |(_, end)| end);
    (high_watermark >= epoch_start).then_some(Offset(high_watermark))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of ten one-record batches at leader epoch 0.
    fn ten_records(dir: &std::path::Path) -> PartitionLog {
        let (log, _) = PartitionLog::open(dir, runnel_storage::LogConfig::default()).unwrap();
        for i in 0..10 {
            log.append(&runnel_storage::batch::build_batch(0, &[format!("v{i}").as_bytes()]), 0).unwrap();
        }
        log
    }

    #[test]
    fn a_new_leader_shows_no_high_watermark_below_its_epoch_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = ten_records(dir.path());
        // As a follower it learned a high watermark of 6; the old leader's was higher.
        log.advance_high_watermark(6);
        assert_eq!(exposed_high_watermark(&log, LeaderEpoch(0)), Some(Offset(6)), "the leader of epoch 0 shows its own");
        assert_eq!(exposed_high_watermark(&log, LeaderEpoch(1)), None, "epoch 1 starts at 10: 6 may be below what clients saw");
        log.advance_high_watermark(10);
        assert_eq!(exposed_high_watermark(&log, LeaderEpoch(1)), Some(Offset(10)));
    }

    fn record(leader: u64, leader_epoch: i32, partition_epoch: i32, isr: &[u64]) -> PartitionRecord {
        PartitionRecord {
            replicas: vec![NodeId(1), NodeId(2)],
            isr: isr.iter().copied().map(NodeId).collect(),
            leader: Some(NodeId(leader)),
            leader_epoch,
            partition_epoch,
        }
    }

    /// Node 1's replica of partition t-0.
    fn identity() -> Identity {
        Identity {
            tp: TopicPartition::new("t".to_string(), 0),
            topic_id: Uuid::nil(),
            me: NodeId(1),
            engine_config: EngineConfig { replica_lag_time_max: std::time::Duration::from_secs(10), durability: Durability::Flushed },
            timings: Arc::new(ReplicationTimings::default()),
        }
    }

    /// Node 1 leading replicas 1 and 2 (both in sync) at epoch 0, one batch
    /// appended, and its acks=all acknowledgement waiting (follower 2 has
    /// not fetched it).
    async fn leading(dir: &std::path::Path) -> (Arc<Partition>, Arc<PartitionLog>, tokio::task::JoinHandle<Result<(), CommitError>>) {
        let (log, _) = PartitionLog::open(dir, runnel_storage::LogConfig::default()).unwrap();
        let log = Arc::new(log);
        let partition = Arc::new(Partition::new(identity(), log.clone(), record(1, 0, 0, &[1, 2]), TopicSettings::default(), 1, Instant::now()));
        let appended = partition.append(&runnel_storage::batch::build_batch(0, &[b"mine"]), true).unwrap();
        let (end, epoch) = (Offset(appended.info.last_offset + 1), appended.leader_epoch);
        let waiter = tokio::spawn({
            let partition = partition.clone();
            async move { partition.commit(end, true, epoch).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "follower 2 has not fetched it");
        (partition, log, waiter)
    }

    async fn answer(waiter: tokio::task::JoinHandle<Result<(), CommitError>>) -> Result<(), CommitError> {
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.expect("answered").unwrap()
    }

    /// The metadata moved leadership to node 2, and this node's follower
    /// fetcher (which follows the metadata on its own) cut the log and
    /// copied the new leader's records over the same offsets, with their
    /// high watermark, before the partition applied the change: the
    /// acks=all write waiting here was never replicated, and is not
    /// acknowledged.
    #[tokio::test]
    async fn an_acks_all_write_cut_by_a_new_leader_is_not_acknowledged_whatever_the_log_shows() {
        let dir = tempfile::tempdir().unwrap();
        let (partition, log, waiter) = leading(dir.path()).await;
        log.truncate_to(0).unwrap();
        let mut theirs = runnel_storage::batch::build_batch(0, &[b"theirs", b"more"]);
        theirs[..8].copy_from_slice(&0i64.to_be_bytes());
        log.append_replicated(&theirs).unwrap();
        log.advance_high_watermark(2);
        partition.update(record(2, 1, 1, &[1, 2]), TopicSettings::default(), Instant::now());
        let result = answer(waiter).await;
        assert!(matches!(result, Err(CommitError::NotLeader)), "{result:?}");
    }

    /// The ISR shrank below min.insync.replicas (2 of 2 by default here)
    /// before the write was replicated: the leader's own flush then moves
    /// the high watermark past it, but with one copy the producer is told
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND, as Kafka tells it.
    #[tokio::test]
    async fn an_acks_all_write_committed_by_a_shrunken_isr_is_not_enough_replicas_after_append() {
        let dir = tempfile::tempdir().unwrap();
        let (partition, _log, waiter) = leading(dir.path()).await;
        partition.update(record(1, 0, 1, &[1]), TopicSettings::default(), Instant::now());
        let result = answer(waiter).await;
        assert!(matches!(result, Err(CommitError::NotEnoughReplicasAfterAppend)), "{result:?}");
    }

    /// Node 1 held offsets 0..10 of which its ISR (1 and 2) had 6 when it
    /// stopped; it restarts and leads again at a new epoch. Its log's end is
    /// not a high watermark: until follower 2 shows what it has, consumers
    /// see nothing past what was known, and ListOffsets answers
    /// OFFSET_NOT_AVAILABLE (KIP-207) rather than an end no ISR had taken.
    #[test]
    fn a_reopened_leader_exposes_only_what_its_isr_has() {
        let dir = tempfile::tempdir().unwrap();
        ten_records(dir.path()).advance_high_watermark(6);
        let (log, _) = PartitionLog::open(dir.path(), runnel_storage::LogConfig::default()).unwrap();
        let log = Arc::new(log);
        assert_eq!(log.high_watermark(), 0, "a reopened log's high watermark is its start, not its end");
        let now = Instant::now();
        let partition = Partition::new(identity(), log.clone(), record(1, 1, 1, &[1, 2]), TopicSettings::default(), 1, now);
        assert!(log.high_watermark() < 10, "records follower 2 may not have are not exposed");
        assert_eq!(partition.exposed_high_watermark(LeaderEpoch(1)), None);
        let fetch = |end: i64| FollowerFetch { follower: NodeId(2), leader_epoch: LeaderEpoch(1), log_end: Offset(end), flushed: Offset(end) };
        partition.follower_fetch(fetch(7), now).unwrap();
        assert!(log.high_watermark() <= 7, "at most what follower 2 has");
        partition.follower_fetch(fetch(10), now).unwrap();
        assert_eq!(partition.exposed_high_watermark(LeaderEpoch(1)), Some(Offset(10)));
    }

    /// Every node was killed and the metadata still names node 1 leader at
    /// epoch 0: it reopens with offsets 0..10 and a checkpointed high
    /// watermark of 6, which may trail what consumers saw before. It shows
    /// none (ListOffsets: OFFSET_NOT_AVAILABLE) until its ISR has the log
    /// it reopened with, rather than an "end" that went backwards.
    #[test]
    fn a_leader_restarted_at_the_same_epoch_shows_no_high_watermark_until_its_isr_has_its_log() {
        let dir = tempfile::tempdir().unwrap();
        drop(ten_records(dir.path()));
        let (log, _) = PartitionLog::open(dir.path(), runnel_storage::LogConfig::default()).unwrap();
        log.restore_high_watermark(6);
        let log = Arc::new(log);
        let now = Instant::now();
        let partition = Partition::new(identity(), log.clone(), record(1, 0, 0, &[1, 2]), TopicSettings::default(), 1, now);
        assert_eq!(exposed_high_watermark(&log, LeaderEpoch(0)), Some(Offset(6)), "the log alone cannot tell");
        assert_eq!(partition.exposed_high_watermark(LeaderEpoch(0)), None);
        let fetch = |end: i64| FollowerFetch { follower: NodeId(2), leader_epoch: LeaderEpoch(0), log_end: Offset(end), flushed: Offset(end) };
        partition.follower_fetch(fetch(8), now).unwrap();
        assert_eq!(partition.exposed_high_watermark(LeaderEpoch(0)), None);
        partition.follower_fetch(fetch(10), now).unwrap();
        assert_eq!(partition.exposed_high_watermark(LeaderEpoch(0)), Some(Offset(10)));
    }

    /// The node took epoch 1 with offsets 0..10 while its follower fetcher,
    /// still on the old leader's word, cut the log to 8: the epoch's start
    /// is then past the log end, and the high watermark shows once the ISR
    /// has what the log holds, rather than never on an idle partition.
    #[test]
    fn a_leader_whose_log_was_cut_after_its_election_still_shows_a_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        drop(ten_records(dir.path()));
        let (log, _) = PartitionLog::open(dir.path(), runnel_storage::LogConfig::default()).unwrap();
        let log = Arc::new(log);
        let now = Instant::now();
        let partition = Partition::new(identity(), log.clone(), record(1, 1, 1, &[1, 2]), TopicSettings::default(), 1, now);
        log.truncate_to(8).unwrap();
        let fetch = FollowerFetch { follower: NodeId(2), leader_epoch: LeaderEpoch(1), log_end: Offset(8), flushed: Offset(8) };
        partition.follower_fetch(fetch, now).unwrap();
        assert_eq!(partition.exposed_high_watermark(LeaderEpoch(1)), Some(Offset(8)));
    }

    /// A follower whose fetch says it holds more than the leader has (a
    /// divergent tail it has not cut yet) is refused, and its claim does not
    /// move the high watermark past records it may not have.
    #[tokio::test]
    async fn a_follower_ahead_of_the_leader_s_log_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let (partition, log, waiter) = leading(dir.path()).await;
        let fetch = |end: i64| FollowerFetch { follower: NodeId(2), leader_epoch: LeaderEpoch(0), log_end: Offset(end), flushed: Offset(end) };
        let refused = partition.follower_fetch(fetch(5), Instant::now());
        assert!(matches!(refused, Err(FollowerFetchError::Ahead { follower: 5, leader: 1 })), "{refused:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(log.high_watermark(), 0);
        assert!(!waiter.is_finished(), "the acks=all write waits for a follower that has it");
        partition.follower_fetch(fetch(1), Instant::now()).unwrap();
        assert!(answer(waiter).await.is_ok());
        assert_eq!(log.high_watermark(), 1);
    }

    #[test]
    fn topic_settings_parse_once_from_the_configs() {
        let configs = BTreeMap::from([("min.insync.replicas".to_string(), "3".to_string()), ("retention.ms".to_string(), "5".to_string())]);
        assert_eq!(
            TopicSettings::from_configs(&configs),
            TopicSettings {
                min_insync_replicas: Some(3),
                max_message_bytes: None,
                compression: None,
                log_append_time: false,
                timestamp_before_max_ms: None,
                timestamp_after_max_ms: None
            }
        );
    }
}
