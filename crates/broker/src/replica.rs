//! The leader side of partition replication: what each follower has, the
//! high watermark that follows from it, and ISR changes.
//!
//! # Invariants
//! - The high watermark is the smallest durable offset over the ISR (the
//!   leader's own included): flushed offsets under the default flush policy,
//!   log end offsets under `interval`. It never moves backward
//!   (`PartitionLog::advance_high_watermark` is monotonic).
//! - A follower that has not caught up with the leader's log end for
//!   `replica_lag_time_max` leaves the ISR; one whose log reaches the high
//!   watermark joins it again. Both changes go through the controller's
//!   AlterPartition, checked against the leader and partition epochs, and take
//!   effect when the metadata comes back.
//! - Follower progress is reset whenever the leader epoch changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runnel_controller::metadata::{Command, MetadataImage, NodeId};
use runnel_storage::{FlushPolicy, PartitionLog, TopicPartition};

use crate::broker::Broker;

#[derive(Debug, Clone, Copy)]
struct Progress {
    log_end: i64,
    flushed: i64,
    /// When the follower last asked for the leader's log end (was caught up).
    caught_up_at: Instant,
}

#[derive(Debug, Clone)]
struct LeaderState {
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<NodeId>,
    isr: Vec<NodeId>,
    /// When this node became leader at this epoch.
    since: Instant,
    followers: HashMap<NodeId, Progress>,
    /// An ISR change proposed and not yet seen in the metadata.
    pending_change: Option<Instant>,
}

/// The partitions this broker leads, with their followers' progress.
#[derive(Default)]
pub struct Replicas {
    leaders: Mutex<HashMap<TopicPartition, LeaderState>>,
}

impl Replicas {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, LeaderState>> {
        self.leaders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Matches the leader states to the metadata: partitions led here at
    /// their current epochs and ISR.
    pub fn sync(&self, me: NodeId, image: &MetadataImage) {
        let mut leaders = self.lock();
        let mut led = HashMap::new();
        for (name, t) in &image.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.leader != Some(me) {
                    continue;
                }
                let tp = TopicPartition::new(name.clone(), i as i32);
                let state = match leaders.remove(&tp) {
                    Some(mut s) if s.leader_epoch == p.leader_epoch => {
                        if s.partition_epoch != p.partition_epoch {
                            s.pending_change = None;
                        }
                        s.partition_epoch = p.partition_epoch;
                        s.isr = p.isr.clone();
                        s.replicas = p.replicas.clone();
                        s
                    }
                    _ => LeaderState {
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        since: Instant::now(),
                        followers: HashMap::new(),
                        pending_change: None,
                    },
                };
                led.insert(tp, state);
            }
        }
        *leaders = led;
    }

    /// Records a follower's fetch: its log end and flushed offsets.
    /// Returns false if this node does not lead the partition at `leader_epoch`.
    pub fn record_fetch(&self, tp: &TopicPartition, leader_epoch: i32, follower: NodeId, log_end: i64, flushed: i64, leader_log_end: i64) -> bool {
        let mut leaders = self.lock();
        let Some(state) = leaders.get_mut(tp).filter(|s| s.leader_epoch == leader_epoch) else { return false };
        let now = Instant::now();
        let entry = state.followers.entry(follower).or_insert(Progress { log_end, flushed, caught_up_at: state.since });
        entry.log_end = log_end;
        entry.flushed = flushed.min(log_end);
        if log_end >= leader_log_end {
            entry.caught_up_at = now;
        }
        true
    }

    /// The ISR size of a partition led here, if it is.
    pub fn isr_len(&self, tp: &TopicPartition) -> Option<usize> {
        self.lock().get(tp).map(|s| s.isr.len())
    }

    /// The high watermark the ISR allows: the smallest durable offset over
    /// its members. `own` is the leader's durable offset.
    fn allowed_high_watermark(&self, tp: &TopicPartition, me: NodeId, own: i64, policy: FlushPolicy) -> Option<i64> {
        let leaders = self.lock();
        let state = leaders.get(tp)?;
        let mut hw = own;
        for r in state.isr.iter().filter(|r| **r != me) {
            let durable = state.followers.get(r).map_or(0, |p| match policy {
                FlushPolicy::Always => p.flushed,
                FlushPolicy::Interval(_) => p.log_end,
            });
            hw = hw.min(durable);
        }
        Some(hw)
    }
}

impl Broker {
    /// Moves a led partition's high watermark as far as the ISR allows and
    /// wakes whoever waits on it.
    pub fn update_high_watermark(&self, tp: &TopicPartition, log: &PartitionLog) {
        let own = match self.config.log.flush {
            FlushPolicy::Always => log.flushed_offset(),
            FlushPolicy::Interval(_) => log.log_end_offset(),
        };
        if let Some(hw) = self.replicas.allowed_high_watermark(tp, self.node_id(), own, self.config.log.flush)
            && log.advance_high_watermark(hw)
        {
            self.notify_data();
        }
    }

    /// Shrinks and expands the ISR of the partitions led here; returns at shutdown.
    pub async fn run_isr_maintenance(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown_requested() => return,
            }
            for (tp, command, shrinks, expands) in self.isr_changes() {
                match self.propose(command).await {
                    Ok(_) => {
                        tracing::info!(partition = %tp, "ISR change committed");
                        if shrinks {
                            self.metrics.isr_shrinks.inc();
                        }
                        if expands {
                            self.metrics.isr_expands.inc();
                        }
                    }
                    Err(e) => tracing::debug!(partition = %tp, error = %e.message, "ISR change refused"),
                }
            }
        }
    }

    /// The AlterPartition commands due now, with whether each drops and
    /// whether it adds ISR members.
    fn isr_changes(&self) -> Vec<(TopicPartition, Command, bool, bool)> {
        let me = self.node_id();
        let lag_max = self.config.replica_lag_time_max;
        let now = Instant::now();
        let mut out = Vec::new();
        let mut leaders = self.replicas.lock();
        for (tp, state) in leaders.iter_mut() {
            if state.pending_change.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
                continue;
            }
            let Some(log) = self.logs.get(tp) else { continue };
            let high_watermark = log.high_watermark();
            let mut isr: Vec<NodeId> = state
                .isr
                .iter()
                .copied()
                .filter(|r| {
                    *r == me || {
                        let caught_up_at = state.followers.get(r).map_or(state.since, |p| p.caught_up_at);
                        now.duration_since(caught_up_at) <= lag_max
                    }
                })
                .collect();
            for r in &state.replicas {
                let caught_up = state.followers.get(r).is_some_and(|p| p.log_end >= high_watermark && now.duration_since(p.caught_up_at) <= lag_max);
                if !isr.contains(r) && caught_up {
                    isr.push(*r);
                }
            }
            isr.sort_by_key(|r| state.replicas.iter().position(|x| x == r));
            if isr != state.isr {
                tracing::info!(partition = %tp, from = ?state.isr, to = ?isr, "changing ISR");
                state.pending_change = Some(now);
                let shrinks = state.isr.iter().any(|r| !isr.contains(r));
                let expands = isr.iter().any(|r| !state.isr.contains(r));
                out.push((
                    tp.clone(),
                    Command::AlterPartition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        leader: me,
                        leader_epoch: state.leader_epoch,
                        partition_epoch: state.partition_epoch,
                        isr,
                    },
                    shrinks,
                    expands,
                ));
            }
        }
        out
    }
}
