//! The leader-side rule of replication for one partition, as pure code in
//! the style of openraft's engine: events in, effects out, no I/O and no
//! clock of its own (every event carries `now`). The runtime
//! ([`crate::partition::Partition`]) feeds it follower fetches, its own
//! flushes, ticks and metadata, and performs what it answers: move the
//! log's high watermark, wake waiters, propose an ISR change.
//!
//! # Invariants
//! - The high watermark is the smallest durable offset over the maximal ISR
//!   (KIP-497: the ISR, and the members a pending change adds, until the
//!   metadata shows a new partition epoch or the controller refuses the
//!   change), the leader's own included: flushed offsets when durability is
//!   [`Durability::Flushed`] (fsync before acknowledging), log end offsets
//!   under [`Durability::Written`]. It never moves backward.
//! - A follower that has not caught up with the leader's log end for
//!   `replica_lag_time_max` leaves the ISR; one whose log has reached the
//!   high watermark, and that is caught up, joins it again. Both are
//!   proposals (AlterPartition, checked by the controller against the
//!   leader and partition epochs) that take effect when the metadata comes
//!   back through [`LeaderEngine::on_metadata`].
//! - Follower progress starts afresh at every leader epoch; a follower that
//!   has not fetched yet counts as caught up when the epoch began.
//! - The leader never proposes an ISR without itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use runnel_controller::metadata::NodeId;
use runnel_storage::{LeaderEpoch, Offset};

/// How long an ISR change waits for the metadata before it is proposed again.
pub const PROPOSAL_RETRY: Duration = Duration::from_secs(1);

/// Which offset of a replica counts as durable for the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// What an fsync has covered (the default flush policy).
    Flushed,
    /// What is written, in the page cache (the interval flush policy).
    Written,
}

/// What the metadata says of the partition while this node leads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
}

/// A follower's fetch: where its log ends and what it has made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    pub follower: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub log_end: Offset,
    pub flushed: Offset,
}

/// The leader's own log at an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderLog {
    pub log_end: Offset,
    /// The leader's durable offset under the engine's [`Durability`].
    pub durable: Offset,
}

/// An ISR change to propose to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub isr: Vec<NodeId>,
    /// Whether it drops members, and whether it adds members.
    pub shrinks: bool,
    pub expands: bool,
}

/// What the runtime must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Move the log's high watermark to this offset (always forward).
    AdvanceHighWatermark(Offset),
    /// Wake fetches and acks=all produces waiting on this partition.
    WakeWaiters,
    /// Ask the controller for this ISR.
    ProposeIsr(IsrProposal),
}

/// A follower fetch at another leader epoch than this leader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EpochMismatch {
    #[error("the follower's leader epoch {follower} is older than the leader's {leader}")]
    Fenced { follower: LeaderEpoch, leader: LeaderEpoch },
    #[error("the follower's leader epoch {follower} is newer than the leader knows ({leader})")]
    Unknown { follower: LeaderEpoch, leader: LeaderEpoch },
}

/// acks=all is refused when the ISR is smaller than min.insync.replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{isr} in-sync replicas, min.insync.replicas is {min}")]
pub struct NotEnoughReplicas {
    pub isr: usize,
    pub min: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    pub replica_lag_time_max: Duration,
    pub durability: Durability,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    log_end: Offset,
    flushed: Offset,
    /// When the follower last was at the leader's log end: at the time of
    /// a fetch from the log end, or at the time of its previous fetch when
    /// it has since reached what the leader's log end was then (Kafka's
    /// rule: under steady writes a follower that keeps up is never exactly
    /// level with a log that grows while its fetch travels).
    caught_up_at: Instant,
    /// The time of the previous fetch, and the leader's log end then.
    last_fetch: Option<(Instant, Offset)>,
}

impl Progress {
    fn durable(&self, durability: Durability) -> Offset {
        match durability {
            Durability::Flushed => self.flushed,
            Durability::Written => self.log_end,
        }
    }
}

/// The leader's state of one partition at one leader epoch (reset at the next).
#[derive(Debug, Clone)]
pub struct LeaderEngine {
    me: NodeId,
    config: EngineConfig,
    view: PartitionView,
    /// When this node became leader at `view.leader_epoch`.
    since: Instant,
    followers: HashMap<NodeId, Progress>,
    /// The leader's own durable offset, as last reported.
    own_durable: Offset,
    high_watermark: Offset,
    /// The leader's log end when it became leader at this epoch: a
    /// follower joins the ISR only once it has everything up to there (as
    /// Kafka's leader epoch start offset), since the high watermark this
    /// leader learned as a follower can trail what was committed.
    epoch_start: Offset,
    /// An ISR change proposed and not yet seen in the metadata.
    pending_since: Option<Instant>,
    /// The members that change adds: they count for the high watermark
    /// from the proposal on (Kafka's maximal ISR, KIP-497), since the
    /// controller may commit the change, and elect one of them, before this
    /// leader hears of it. Members it drops still count until it is seen.
    joining: Vec<NodeId>,
}

/// The default of `min.insync.replicas` where a topic sets none: the smaller
/// of 2 and the replication factor.
pub fn default_min_insync(replication_factor: usize) -> usize {
    replication_factor.min(2)
}

impl LeaderEngine {
    /// Becoming leader: `high_watermark` is what the log shows now (learned
    /// as a follower, or kept from an earlier leadership).
    pub fn new(me: NodeId, view: PartitionView, high_watermark: Offset, now: Instant, config: EngineConfig) -> LeaderEngine {
        LeaderEngine {
            me,
            config,
            view,
            since: now,
            followers: HashMap::new(),
            own_durable: high_watermark,
            high_watermark,
            epoch_start: high_watermark,
            pending_since: None,
            joining: Vec::new(),
        }
    }

    /// The leader's log end when it took this epoch (see `epoch_start`);
    /// without it, the high watermark it starts with.
    pub fn starting_at(mut self, log_end: Offset) -> LeaderEngine {
        self.epoch_start = self.epoch_start.max(log_end);
        self
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.view.leader_epoch
    }

    /// The leader's log end when it took this epoch (or, restarted at the
    /// same epoch, when it reopened its log).
    pub fn epoch_start(&self) -> Offset {
        self.epoch_start
    }

    pub fn view(&self) -> &PartitionView {
        &self.view
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// Whether an acks=all write ending at `end` (exclusive) is replicated.
    pub fn is_committed(&self, end: Offset) -> bool {
        self.high_watermark >= end
    }

    /// acks=all needs at least `min_insync` members in the ISR.
    pub fn check_min_insync(&self, min_insync: usize) -> Result<(), NotEnoughReplicas> {
        let isr = self.view.isr.len();
        if isr < min_insync { Err(NotEnoughReplicas { isr, min: min_insync }) } else { Ok(()) }
    }

    /// The metadata changed while this node leads the partition. A new
    /// leader epoch starts follower progress afresh; a new partition epoch
    /// answers any pending ISR proposal.
    pub fn on_metadata(&mut self, view: PartitionView, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        if view.leader_epoch != self.view.leader_epoch {
            self.followers.clear();
            self.since = now;
            self.pending_since = None;
            self.joining.clear();
            effects.push(Effect::WakeWaiters);
        } else if view.partition_epoch != self.view.partition_epoch {
            self.pending_since = None;
            self.joining.clear();
        }
        self.view = view;
        self.advance(&mut effects);
        effects
    }

    /// The leader made more of its log durable (an fsync, or an append
    /// under [`Durability::Written`]).
    pub fn on_flush(&mut self, own_durable: Offset) -> Vec<Effect> {
        self.own_durable = self.own_durable.max(own_durable);
        let mut effects = Vec::new();
        self.advance(&mut effects);
        effects
    }

    /// A follower fetched: record its progress and move the high watermark.
    pub fn on_fetch(&mut self, fetch: FollowerFetch, leader: LeaderLog, now: Instant) -> Result<Vec<Effect>, EpochMismatch> {
        let epoch = self.view.leader_epoch;
        if fetch.leader_epoch < epoch {
            return Err(EpochMismatch::Fenced { follower: fetch.leader_epoch, leader: epoch });
        }
        if fetch.leader_epoch > epoch {
            return Err(EpochMismatch::Unknown { follower: fetch.leader_epoch, leader: epoch });
        }
        self.own_durable = self.own_durable.max(leader.durable);
        let since = self.since;
        let progress =
            self.followers.entry(fetch.follower).or_insert(Progress { log_end: fetch.log_end, flushed: fetch.flushed, caught_up_at: since, last_fetch: None });
        progress.log_end = fetch.log_end;
        progress.flushed = fetch.flushed.min(fetch.log_end);
        if fetch.log_end >= leader.log_end {
            progress.caught_up_at = now;
        } else if let Some((at, leader_end_then)) = progress.last_fetch
            && fetch.log_end >= leader_end_then
        {
            progress.caught_up_at = progress.caught_up_at.max(at);
        }
        progress.last_fetch = Some((now, leader.log_end));
        let mut effects = Vec::new();
        self.advance(&mut effects);
        Ok(effects)
    }

    /// The periodic check: followers that fell behind leave the ISR, those
    /// that caught up join it, unless `fenced` says the controller has
    /// fenced them (KIP-841: a broker that is gone, shutting down or has a
    /// failed disk joins no ISR, however caught up its last fetches looked;
    /// the controller would refuse the whole change). A proposal that is
    /// not answered within [`PROPOSAL_RETRY`] is made again from what the
    /// leader knows then, even when that is the ISR of the metadata; the
    /// members the earlier one added keep counting until an answer comes
    /// (see [`LeaderEngine::on_refused`]), fenced since or not.
    pub fn on_tick(&mut self, now: Instant, fenced: &dyn Fn(&NodeId) -> bool) -> Vec<Effect> {
        if self.pending_since.is_some_and(|t| now.duration_since(t) < PROPOSAL_RETRY) {
            return Vec::new();
        }
        let lag_max = self.config.replica_lag_time_max;
        let caught_up_at = |r: &NodeId| self.followers.get(r).map_or(self.since, |p| p.caught_up_at);
        let mut isr: Vec<NodeId> = self.view.isr.iter().copied().filter(|r| *r == self.me || now.duration_since(caught_up_at(r)) <= lag_max).collect();
        if !isr.contains(&self.me) {
            isr.push(self.me);
        }
        for r in &self.view.replicas {
            let joins =
                self.followers.get(r).is_some_and(|p| p.log_end >= self.high_watermark.max(self.epoch_start) && now.duration_since(p.caught_up_at) <= lag_max);
            if joins && !isr.contains(r) && !fenced(r) {
                isr.push(*r);
            }
        }
        isr.sort_by_key(|r| self.view.replicas.iter().position(|x| x == r));
        // Members an earlier proposal added keep counting until the
        // controller answers, fenced since or not: a proposal whose answer
        // was lost can still commit after the broker is unfenced again.
        for r in isr.iter().filter(|r| !self.view.isr.contains(r)) {
            if !self.joining.contains(r) {
                self.joining.push(*r);
            }
        }
        // Unchanged, and no earlier proposal whose outcome is unknown: no
        // need to ask. With one (unanswered: lost in an election, or timed
        // out), its joiners hold the high watermark until the metadata
        // answers, so the leader asks again even for the same ISR: once
        // that commits, the earlier proposal's epoch is stale and cannot.
        if isr == self.view.isr && self.joining.is_empty() {
            return Vec::new();
        }
        self.pending_since = Some(now);
        let shrinks = self.view.isr.iter().any(|r| !isr.contains(r));
        let expands = isr.iter().any(|r| !self.view.isr.contains(r));
        vec![Effect::ProposeIsr(IsrProposal { leader_epoch: self.view.leader_epoch, partition_epoch: self.view.partition_epoch, isr, shrinks, expands })]
    }

    /// The controller refused a proposal made at these epochs without
    /// changing the partition (it names a broker that is not live, or not a
    /// replica): what it would have added counts no more. A refusal for a
    /// stale epoch changes nothing here; the new metadata answers it.
    pub fn on_refused(&mut self, leader_epoch: LeaderEpoch, partition_epoch: i32) -> Vec<Effect> {
        let mut effects = Vec::new();
        if (leader_epoch, partition_epoch) == (self.view.leader_epoch, self.view.partition_epoch) && !self.joining.is_empty() {
            self.joining.clear();
            self.advance(&mut effects);
        }
        effects
    }

    /// Moves the high watermark to the smallest durable offset over the
    /// ISR and the members a pending change adds.
    fn advance(&mut self, effects: &mut Vec<Effect>) {
        let mut candidate = self.own_durable;
        for r in self.view.isr.iter().chain(&self.joining).filter(|r| **r != self.me) {
            let durable = self.followers.get(r).map_or(Offset(0), |p| p.durable(self.config.durability));
            candidate = candidate.min(durable);
        }
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            effects.push(Effect::AdvanceHighWatermark(candidate));
            effects.push(Effect::WakeWaiters);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: Duration = Duration::from_secs(10);

    fn config(durability: Durability) -> EngineConfig {
        EngineConfig { replica_lag_time_max: LAG, durability }
    }

    fn ids(ids: &[u64]) -> Vec<NodeId> {
        ids.iter().copied().map(NodeId).collect()
    }

    fn view(leader_epoch: i32, partition_epoch: i32, replicas: &[u64], isr: &[u64]) -> PartitionView {
        PartitionView { leader_epoch: LeaderEpoch(leader_epoch), partition_epoch, replicas: ids(replicas), isr: ids(isr) }
    }

    /// Leader 1 of replicas 1, 2, 3, all in sync, at epoch 0, high watermark `hw`.
    fn three(hw: i64, now: Instant) -> LeaderEngine {
        LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2, 3], &[1, 2, 3]), Offset(hw), now, config(Durability::Flushed))
    }

    /// [`three`], with the leader and follower 2 at 10 and 3 at nothing.
    fn three_with_2_at_10(now: Instant) -> LeaderEngine {
        let mut e = three(0, now);
        e.on_flush(Offset(10));
        e.on_fetch(fetch(2, 10, 10), leader(10), now).unwrap();
        e
    }

    fn fetch(follower: u64, log_end: i64, flushed: i64) -> FollowerFetch {
        FollowerFetch { follower: NodeId(follower), leader_epoch: LeaderEpoch(0), log_end: Offset(log_end), flushed: Offset(flushed) }
    }

    fn leader(log_end: i64) -> LeaderLog {
        LeaderLog { log_end: Offset(log_end), durable: Offset(log_end) }
    }

    fn hw_moves(effects: &[Effect]) -> Option<i64> {
        effects.iter().find_map(|e| if let Effect::AdvanceHighWatermark(hw) = e { Some(hw.0) } else { None })
    }

    /// No broker fenced.
    fn nobody(_: &NodeId) -> bool {
        false
    }

    fn proposal(effects: &[Effect]) -> Option<IsrProposal> {
        effects.iter().find_map(|e| if let Effect::ProposeIsr(p) = e { Some(p.clone()) } else { None })
    }

    #[test]
    fn a_single_replica_moves_its_high_watermark_at_each_flush() {
        let now = Instant::now();
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[1], &[1]), Offset(0), now, config(Durability::Flushed));
        let effects = e.on_flush(Offset(5));
        assert_eq!(effects, vec![Effect::AdvanceHighWatermark(Offset(5)), Effect::WakeWaiters]);
        assert_eq!(e.high_watermark(), Offset(5));
        assert!(e.on_flush(Offset(5)).is_empty(), "no move, no wake-up");
    }

    #[test]
    fn the_high_watermark_is_the_smallest_flushed_offset_over_the_isr() {
        let now = Instant::now();
        let mut e = three(0, now);
        e.on_flush(Offset(10));
        assert_eq!(e.high_watermark(), Offset(0), "followers have nothing yet");
        assert!(hw_moves(&e.on_fetch(fetch(2, 10, 7), leader(10), now).unwrap()).is_none(), "follower 3 still holds it at 0");
        assert_eq!(hw_moves(&e.on_fetch(fetch(3, 10, 4), leader(10), now).unwrap()), Some(4));
        assert_eq!(hw_moves(&e.on_fetch(fetch(3, 10, 10), leader(10), now).unwrap()), Some(7), "now follower 2's flushed offset");
    }

    #[test]
    fn under_written_durability_a_followers_log_end_counts() {
        let now = Instant::now();
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2], &[1, 2]), Offset(0), now, config(Durability::Written));
        e.on_flush(Offset(10));
        assert_eq!(hw_moves(&e.on_fetch(fetch(2, 8, 0), leader(10), now).unwrap()), Some(8));
    }

    #[test]
    fn the_leaders_own_durable_offset_bounds_the_high_watermark() {
        let now = Instant::now();
        let mut e = three(0, now);
        e.on_fetch(fetch(2, 10, 10), LeaderLog { log_end: Offset(10), durable: Offset(3) }, now).unwrap();
        let effects = e.on_fetch(fetch(3, 10, 10), LeaderLog { log_end: Offset(10), durable: Offset(3) }, now).unwrap();
        assert_eq!(hw_moves(&effects), Some(3), "the leader has fsynced only 3");
        assert_eq!(hw_moves(&e.on_flush(Offset(10))), Some(10));
    }

    #[test]
    fn a_replica_outside_the_isr_does_not_hold_the_high_watermark_back() {
        let now = Instant::now();
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2, 3], &[1, 2]), Offset(0), now, config(Durability::Flushed));
        e.on_flush(Offset(10));
        assert_eq!(hw_moves(&e.on_fetch(fetch(2, 10, 10), leader(10), now).unwrap()), Some(10), "replica 3 is not in the ISR");
    }

    #[test]
    fn the_high_watermark_never_moves_backward() {
        let now = Instant::now();
        let mut e = three_with_2_at_10(now);
        e.on_fetch(fetch(3, 10, 10), leader(10), now).unwrap();
        assert_eq!(e.high_watermark(), Offset(10));
        // A follower that truncated reports less; a smaller own flush arrives late.
        assert!(hw_moves(&e.on_fetch(fetch(2, 6, 6), leader(10), now).unwrap()).is_none());
        assert!(e.on_flush(Offset(4)).is_empty());
        assert_eq!(e.high_watermark(), Offset(10));
        // A new leader that starts from a known high watermark keeps it.
        let fresh = LeaderEngine::new(NodeId(1), view(1, 0, &[1, 2], &[1, 2]), Offset(42), now, config(Durability::Flushed));
        assert_eq!(fresh.high_watermark(), Offset(42));
    }

    #[test]
    fn a_flushed_offset_past_the_followers_log_end_is_capped() {
        let now = Instant::now();
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2], &[1, 2]), Offset(0), now, config(Durability::Flushed));
        e.on_flush(Offset(10));
        assert_eq!(hw_moves(&e.on_fetch(fetch(2, 5, 9), leader(10), now).unwrap()), Some(5));
    }

    #[test]
    fn a_fetch_at_an_older_or_newer_epoch_is_refused_and_changes_nothing() {
        let now = Instant::now();
        let mut e = LeaderEngine::new(NodeId(1), view(3, 0, &[1, 2], &[1, 2]), Offset(0), now, config(Durability::Flushed));
        e.on_flush(Offset(10));
        let old = FollowerFetch { follower: NodeId(2), leader_epoch: LeaderEpoch(2), log_end: Offset(10), flushed: Offset(10) };
        assert_eq!(e.on_fetch(old, leader(10), now), Err(EpochMismatch::Fenced { follower: LeaderEpoch(2), leader: LeaderEpoch(3) }));
        let new = FollowerFetch { leader_epoch: LeaderEpoch(4), ..old };
        assert_eq!(e.on_fetch(new, leader(10), now), Err(EpochMismatch::Unknown { follower: LeaderEpoch(4), leader: LeaderEpoch(3) }));
        assert_eq!(e.high_watermark(), Offset(0));
        let right = FollowerFetch { leader_epoch: LeaderEpoch(3), ..old };
        assert_eq!(hw_moves(&e.on_fetch(right, leader(10), now).unwrap()), Some(10));
    }

    #[test]
    fn a_new_leader_epoch_starts_follower_progress_afresh_and_wakes_waiters() {
        let now = Instant::now();
        let mut e = three_with_2_at_10(now);
        let later = now + Duration::from_secs(20);
        let effects = e.on_metadata(view(1, 1, &[1, 2, 3], &[1, 2, 3]), later);
        assert!(effects.contains(&Effect::WakeWaiters));
        assert_eq!(e.leader_epoch(), LeaderEpoch(1));
        // Follower 2's old progress is gone: it must fetch at the new epoch,
        // and the lag clock restarted, so nobody is dropped yet.
        assert!(e.on_tick(later + LAG, &nobody).is_empty());
        let at_new_epoch = FollowerFetch { follower: NodeId(2), leader_epoch: LeaderEpoch(1), log_end: Offset(10), flushed: Offset(10) };
        assert!(hw_moves(&e.on_fetch(at_new_epoch, leader(10), later).unwrap()).is_none(), "follower 3 has not fetched at epoch 1");
    }

    #[test]
    fn the_same_epoch_with_a_new_isr_keeps_progress() {
        let now = Instant::now();
        let mut e = three_with_2_at_10(now);
        // Follower 3 is dropped by the controller: the high watermark follows follower 2 at once.
        let effects = e.on_metadata(view(0, 1, &[1, 2, 3], &[1, 2]), now);
        assert_eq!(hw_moves(&effects), Some(10));
        assert!(!effects.is_empty());
    }

    #[test]
    fn a_follower_stays_in_the_isr_up_to_the_lag_limit_and_leaves_after_it() {
        let now = Instant::now();
        let mut e = three(0, now);
        e.on_fetch(fetch(2, 0, 0), leader(0), now).unwrap();
        e.on_fetch(fetch(3, 0, 0), leader(0), now).unwrap();
        // Follower 2 keeps up; follower 3 stops fetching.
        e.on_fetch(fetch(2, 0, 0), leader(0), now + LAG).unwrap();
        assert!(e.on_tick(now + LAG, &nobody).is_empty(), "exactly at the limit is still in sync");
        e.on_fetch(fetch(2, 0, 0), leader(0), now + LAG + Duration::from_millis(1)).unwrap();
        let p = proposal(&e.on_tick(now + LAG + Duration::from_millis(1), &nobody)).expect("a shrink");
        assert_eq!(p.isr, ids(&[1, 2]));
        assert!(p.shrinks && !p.expands);
    }

    #[test]
    fn a_follower_that_fetches_but_never_reaches_the_log_end_leaves() {
        let now = Instant::now();
        let mut e = three(0, now);
        e.on_flush(Offset(100));
        for i in 1..=11 {
            let t = now + Duration::from_secs(i);
            e.on_fetch(fetch(2, 100, 100), leader(100), t).unwrap();
            e.on_fetch(fetch(3, 50 + i as i64, 50), leader(100), t).unwrap();
        }
        let p = proposal(&e.on_tick(now + Duration::from_secs(11), &nobody)).expect("a shrink");
        assert_eq!(p.isr, ids(&[1, 2]), "fetching is not enough: it must catch up");
    }

    #[test]
    fn a_follower_that_keeps_up_with_a_growing_log_stays_in_the_isr() {
        // Under steady writes the leader's log grows while each fetch
        // travels: the follower is never level with it, but every fetch
        // reaches what the log end was at its previous one.
        let now = Instant::now();
        let mut e = three(0, now);
        for i in 1..=30 {
            let t = now + Duration::from_secs(i);
            let end = 100 * i as i64;
            e.on_flush(Offset(end));
            e.on_fetch(fetch(2, end - 100, end - 100), leader(end), t).unwrap();
            e.on_fetch(fetch(3, end - 100, end - 100), leader(end), t).unwrap();
        }
        assert!(e.on_tick(now + Duration::from_secs(30), &nobody).is_empty(), "both keep up: no shrink after three lag limits");
        assert_eq!(e.high_watermark(), Offset(2900));
        // One that falls further behind than a round does leave.
        for i in 31..=45 {
            let t = now + Duration::from_secs(i);
            let end = 100 * i as i64;
            e.on_flush(Offset(end));
            e.on_fetch(fetch(2, end - 100, end - 100), leader(end), t).unwrap();
            e.on_fetch(fetch(3, 2900, 2900), leader(end), t).unwrap();
        }
        let p = proposal(&e.on_tick(now + Duration::from_secs(45), &nobody)).expect("a shrink");
        assert_eq!(p.isr, ids(&[1, 2]));
    }

    #[test]
    fn a_replica_joins_only_once_it_has_the_log_the_new_leader_started_with() {
        // Leader 1 learned a high watermark of 100 as a follower, but its
        // log (and what the old leader may have committed) ends at 110.
        let now = Instant::now();
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2, 3], &[1, 2]), Offset(100), now, config(Durability::Flushed)).starting_at(Offset(110));
        e.on_flush(Offset(110));
        e.on_fetch(fetch(3, 105, 105), leader(110), now).unwrap();
        assert!(e.on_tick(now, &nobody).is_empty(), "105 is past the high watermark but short of the epoch's start");
        e.on_fetch(fetch(3, 110, 110), leader(110), now).unwrap();
        assert_eq!(proposal(&e.on_tick(now, &nobody)).map(|p| p.isr), Some(ids(&[1, 2, 3])));
    }

    #[test]
    fn a_follower_that_never_fetched_gets_the_lag_limit_from_the_start_of_the_epoch() {
        let now = Instant::now();
        let mut e = three(0, now);
        assert!(e.on_tick(now + LAG, &nobody).is_empty());
        let p = proposal(&e.on_tick(now + LAG + Duration::from_millis(1), &nobody)).expect("both followers leave");
        assert_eq!(p.isr, ids(&[1]));
    }

    #[test]
    fn the_leader_never_leaves_its_own_isr() {
        let now = Instant::now();
        let mut e = LeaderEngine::new(NodeId(2), view(0, 0, &[1, 2, 3], &[1, 2, 3]), Offset(0), now, config(Durability::Flushed));
        let p = proposal(&e.on_tick(now + LAG * 2, &nobody)).expect("a shrink");
        assert_eq!(p.isr, ids(&[2]));
        // Even with an ISR from the metadata that lacks it.
        let mut e = LeaderEngine::new(NodeId(2), view(0, 0, &[1, 2, 3], &[1, 3]), Offset(0), now, config(Durability::Flushed));
        let p = proposal(&e.on_tick(now, &nobody)).expect("the leader adds itself");
        assert!(p.isr.contains(&NodeId(2)));
    }

    #[test]
    fn a_caught_up_replica_at_the_high_watermark_joins_the_isr_in_replica_order() {
        let now = Instant::now();
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[3, 1, 2], &[1]), Offset(0), now, config(Durability::Flushed));
        e.on_flush(Offset(10));
        assert_eq!(e.high_watermark(), Offset(10), "alone in the ISR");
        e.on_fetch(fetch(3, 10, 10), leader(10), now).unwrap();
        let p = proposal(&e.on_tick(now, &nobody)).expect("an expansion");
        assert_eq!(p.isr, ids(&[3, 1]), "replica order: 3 before 1");
        assert!(p.expands && !p.shrinks);
    }

    #[test]
    fn a_fenced_replica_is_left_out_of_an_expansion_and_a_shrink_still_goes() {
        let now = Instant::now();
        let fenced = |r: &NodeId| *r == NodeId(3);
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2, 3], &[1, 2]), Offset(0), now, config(Durability::Flushed));
        e.on_flush(Offset(10));
        e.on_fetch(fetch(2, 10, 10), leader(10), now).unwrap();
        e.on_fetch(fetch(3, 10, 10), leader(10), now).unwrap();
        assert_eq!(proposal(&e.on_tick(now, &fenced)), None, "only a fenced broker would join: nothing to propose");
        assert_eq!(proposal(&e.on_tick(now, &nobody)).map(|p| p.isr), Some(ids(&[1, 2, 3])), "nobody fenced: 3 joins");
        // A shrink of 2 and a join of fenced 3: the shrink is still proposed.
        let later = now + LAG + Duration::from_secs(1);
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2, 3], &[1, 2]), Offset(0), now, config(Durability::Flushed));
        e.on_flush(Offset(10));
        e.on_fetch(fetch(3, 10, 10), leader(10), later).unwrap();
        let p = proposal(&e.on_tick(later, &fenced)).expect("the shrink stays");
        assert_eq!(p.isr, ids(&[1]));
        assert!(p.shrinks && !p.expands);
    }

    /// Leader 1 alone in the ISR at high watermark 10, which it has
    /// proposed that caught-up follower 2 joins.
    fn joining_at_10(now: Instant) -> LeaderEngine {
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2], &[1]), Offset(0), now, config(Durability::Flushed));
        e.on_flush(Offset(10));
        e.on_fetch(fetch(2, 10, 10), leader(10), now).unwrap();
        assert_eq!(proposal(&e.on_tick(now, &nobody)).map(|p| p.isr), Some(ids(&[1, 2])), "2 joins");
        assert_eq!(e.high_watermark(), Offset(10));
        e
    }

    #[test]
    fn a_joining_replica_counts_for_the_high_watermark_until_the_metadata_answers() {
        let now = Instant::now();
        let mut e = joining_at_10(now);
        // The controller may have made 2 a member (and could elect it): the
        // leader's own writes alone no longer commit.
        assert!(e.on_flush(Offset(20)).is_empty());
        assert_eq!(e.high_watermark(), Offset(10));
        assert_eq!(e.on_fetch(fetch(2, 20, 20), leader(20), now).unwrap(), vec![Effect::AdvanceHighWatermark(Offset(20)), Effect::WakeWaiters]);
        // Committed: 2 is a member like any other.
        e.on_metadata(view(0, 1, &[1, 2], &[1, 2]), now);
        e.on_flush(Offset(30));
        assert_eq!(e.high_watermark(), Offset(20));
    }

    #[test]
    fn a_joiner_fenced_before_the_retry_holds_the_high_watermark_until_the_controller_answers() {
        let now = Instant::now();
        let mut e = joining_at_10(now);
        e.on_flush(Offset(20));
        // No answer, and the metadata shows 2 fenced: the proposal may still
        // commit if 2 is unfenced before it reaches the controller.
        let fenced = |r: &NodeId| *r == NodeId(2);
        assert!(e.on_tick(now + Duration::from_millis(500), &fenced).is_empty(), "not before the retry");
        let again = proposal(&e.on_tick(now + PROPOSAL_RETRY, &fenced)).expect("asked again, without 2");
        assert_eq!((again.isr, again.partition_epoch), (ids(&[1]), 0));
        assert_eq!(e.high_watermark(), Offset(10), "2 still counts");
        // The answer: epoch 0 is gone, and 2 is not a member.
        assert_eq!(e.on_metadata(view(0, 1, &[1, 2], &[1]), now + PROPOSAL_RETRY), vec![Effect::AdvanceHighWatermark(Offset(20)), Effect::WakeWaiters]);
    }

    /// [`joining_at_10`], the leader at 20: 2 falls behind with the
    /// proposal unanswered (it may still commit), and the tick past the
    /// lag limit asks again, for the ISR of the metadata, at its epochs.
    fn unanswered_and_2_behind(now: Instant) -> (LeaderEngine, IsrProposal, Instant) {
        let mut e = joining_at_10(now);
        e.on_flush(Offset(20));
        let later = now + LAG * 2;
        let again = proposal(&e.on_tick(later, &nobody)).expect("the unanswered proposal's outcome is settled by another");
        assert_eq!((&again.isr, again.shrinks, again.expands), (&ids(&[1]), false, false));
        assert_eq!((again.leader_epoch, again.partition_epoch), (LeaderEpoch(0), 0));
        assert_eq!(e.high_watermark(), Offset(10), "2 still counts");
        (e, again, later)
    }

    #[test]
    fn a_joiner_counts_past_the_retry_until_the_controller_refuses_the_change() {
        let (mut e, _, _) = unanswered_and_2_behind(Instant::now());
        assert!(e.on_refused(LeaderEpoch(0), 7).is_empty(), "a refusal at other epochs is not this proposal's");
        assert_eq!(e.high_watermark(), Offset(10));
        assert_eq!(e.on_refused(LeaderEpoch(0), 0), vec![Effect::AdvanceHighWatermark(Offset(20)), Effect::WakeWaiters]);
    }

    /// The proposal that adds 2 gets no answer (lost with a controller
    /// election), and 2 falls behind: the leader must not wait for 2 for
    /// as long as it lags. Asking again at the same epochs settles it.
    #[test]
    fn a_joiner_whose_proposal_went_unanswered_stops_holding_the_high_watermark_once_settled() {
        let (mut e, again, later) = unanswered_and_2_behind(Instant::now());
        assert!(e.on_tick(later + Duration::from_millis(10), &nobody).is_empty(), "once per retry interval");
        // Committed: the ISR is {1} at partition epoch 1, and the first
        // proposal, made at epoch 0, can no longer commit.
        assert_eq!(
            e.on_metadata(view(0, 1, &[1, 2], &again.isr.iter().map(|r| r.0).collect::<Vec<_>>()), later),
            vec![Effect::AdvanceHighWatermark(Offset(20)), Effect::WakeWaiters]
        );
    }

    #[test]
    fn a_member_a_pending_shrink_drops_still_counts_until_the_metadata_answers() {
        let now = Instant::now();
        let mut e = three_with_2_at_10(now);
        let p = proposal(&e.on_tick(now + LAG * 2, &nobody)).expect("3 leaves");
        assert!(p.shrinks && !p.expands);
        assert_eq!(e.high_watermark(), Offset(0), "3 is in the ISR until the metadata says otherwise");
        e.on_metadata(view(0, 1, &[1, 2, 3], &p.isr.iter().map(|r| r.0).collect::<Vec<_>>()), now + LAG * 2);
        assert_eq!(e.high_watermark(), Offset(10));
    }

    #[test]
    fn a_replica_below_the_high_watermark_does_not_join() {
        let now = Instant::now();
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2], &[1]), Offset(0), now, config(Durability::Flushed));
        e.on_flush(Offset(10));
        // Fetching from the log end it saw earlier, but not yet at the high watermark.
        e.on_fetch(fetch(2, 9, 9), leader(9), now).unwrap();
        assert!(e.on_tick(now, &nobody).is_empty());
        e.on_fetch(fetch(2, 10, 10), leader(10), now).unwrap();
        assert_eq!(proposal(&e.on_tick(now, &nobody)).map(|p| p.isr), Some(ids(&[1, 2])));
    }

    #[test]
    fn a_pending_proposal_is_not_repeated_for_a_second_then_is() {
        let now = Instant::now();
        let mut e = three(0, now);
        let first = now + LAG * 2;
        assert!(proposal(&e.on_tick(first, &nobody)).is_some());
        assert!(e.on_tick(first + Duration::from_millis(999), &nobody).is_empty(), "waiting for the metadata");
        assert!(proposal(&e.on_tick(first + PROPOSAL_RETRY, &nobody)).is_some(), "no answer: asked again");
    }

    #[test]
    fn a_new_partition_epoch_answers_a_pending_proposal() {
        let now = Instant::now();
        let mut e = three(0, now);
        let t = now + LAG * 2;
        let p = proposal(&e.on_tick(t, &nobody)).unwrap();
        assert_eq!((p.leader_epoch, p.partition_epoch), (LeaderEpoch(0), 0), "proposed at the current epochs");
        // The controller applied it: the next tick sees the new ISR, nothing pending.
        e.on_metadata(view(0, 1, &[1, 2, 3], &[1]), t);
        assert!(e.on_tick(t + Duration::from_millis(1), &nobody).is_empty());
        // A refused proposal (same partition epoch) is only retried after the delay.
        let mut e = three(0, now);
        proposal(&e.on_tick(t, &nobody)).unwrap();
        e.on_metadata(view(0, 0, &[1, 2, 3], &[1, 2, 3]), t);
        assert!(e.on_tick(t + Duration::from_millis(1), &nobody).is_empty());
    }

    #[test]
    fn an_isr_shrink_lets_the_high_watermark_advance() {
        let now = Instant::now();
        let mut e = three_with_2_at_10(now);
        assert_eq!(e.high_watermark(), Offset(0), "follower 3 is in the ISR and has nothing");
        let effects = e.on_metadata(view(0, 1, &[1, 2, 3], &[1, 2]), now);
        assert_eq!(effects, vec![Effect::AdvanceHighWatermark(Offset(10)), Effect::WakeWaiters]);
    }

    #[test]
    fn min_insync_replicas_at_and_around_the_boundary() {
        let now = Instant::now();
        let e = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2, 3], &[1, 2]), Offset(0), now, config(Durability::Flushed));
        assert_eq!(e.check_min_insync(1), Ok(()));
        assert_eq!(e.check_min_insync(2), Ok(()), "exactly min.insync members");
        assert_eq!(e.check_min_insync(3), Err(NotEnoughReplicas { isr: 2, min: 3 }));
        let alone = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2, 3], &[1]), Offset(0), now, config(Durability::Flushed));
        assert_eq!(alone.check_min_insync(default_min_insync(3)), Err(NotEnoughReplicas { isr: 1, min: 2 }));
    }

    #[test]
    fn the_default_min_insync_is_the_smaller_of_two_and_the_replication_factor() {
        assert_eq!(default_min_insync(1), 1);
        assert_eq!(default_min_insync(2), 2);
        assert_eq!(default_min_insync(3), 2);
        assert_eq!(default_min_insync(5), 2);
    }

    #[test]
    fn an_acks_all_write_is_committed_once_the_high_watermark_passes_its_end() {
        let now = Instant::now();
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2], &[1, 2]), Offset(0), now, config(Durability::Flushed));
        e.on_flush(Offset(5));
        assert!(!e.is_committed(Offset(5)));
        e.on_fetch(fetch(2, 5, 4), leader(5), now).unwrap();
        assert!(e.is_committed(Offset(4)) && !e.is_committed(Offset(5)), "the follower has fsynced only 4");
        e.on_fetch(fetch(2, 5, 5), leader(5), now).unwrap();
        assert!(e.is_committed(Offset(5)));
    }

    #[test]
    fn a_metadata_change_of_replicas_is_seen_by_the_next_tick() {
        let now = Instant::now();
        let mut e = LeaderEngine::new(NodeId(1), view(0, 0, &[1, 2], &[1, 2]), Offset(0), now, config(Durability::Flushed));
        e.on_flush(Offset(3));
        e.on_fetch(fetch(2, 3, 3), leader(3), now).unwrap();
        // Replica 4 is added (same leader epoch); once caught up it joins.
        e.on_metadata(view(0, 1, &[1, 2, 4], &[1, 2]), now);
        e.on_fetch(fetch(4, 3, 3), leader(3), now).unwrap();
        let p = proposal(&e.on_tick(now, &nobody)).expect("an expansion");
        assert_eq!(p.isr, ids(&[1, 2, 4]));
        assert_eq!(p.partition_epoch, 1);
    }
}
