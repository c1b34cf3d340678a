//! The automatic balancer (opt-in, `auto_rebalance`): on the controller
//! leader, a rebalance starts by itself when a broker joins (it is live and
//! holds no replica while there are partitions) or when a broker has been
//! fenced longer than a grace period and still holds replicas. The plan is
//! [`crate::balance::plan`] with every broker gone past the grace excluded,
//! carried out as `runnelctl cluster rebalance --wait` does it by hand:
//! reassignments a few at a time, each batch awaited, then leadership to
//! each moved partition's new preferred replica.
//!
//! Each registration of a broker starts at most one rebalance for joining
//! and one for being gone, so a plan that cannot even things out (one
//! partition, four brokers) is not retried every tick; a broker that
//! registers again counts afresh. The decision is the pure [`Triggers`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::balance::Move;
use crate::controller::Controller;
use crate::metadata::{Command, MetadataImage, NodeId};

/// When the automatic balancer acts.
#[derive(Debug, Clone)]
pub struct AutoBalanceConfig {
    /// How long a broker stays fenced before its replicas move elsewhere.
    pub grace: Duration,
    /// Partitions moving at once.
    pub max_moves: usize,
    /// How long one batch of moves may take before the balancer stops
    /// waiting for it (the moves go on) and starts over.
    pub batch_timeout: Duration,
}

/// Why a rebalance starts, per broker registration (id, epoch).
#[derive(Debug, Default)]
pub struct Triggers {
    /// When this leader first saw each broker fenced.
    fenced_since: BTreeMap<NodeId, Instant>,
    /// Registrations that already started a rebalance by joining.
    joined: BTreeSet<(NodeId, u64)>,
    /// Registrations that already started a rebalance by being gone.
    gone: BTreeSet<(NodeId, u64)>,
}

/// A rebalance to run: the brokers to take every replica off, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub exclude: Vec<NodeId>,
    pub joined: Vec<NodeId>,
    pub gone: Vec<NodeId>,
}

impl Triggers {
    /// Looks at the image at `now`: `Some` when a broker joined or has been
    /// gone past `grace` (each registration once).
    pub fn check(&mut self, image: &MetadataImage, now: Instant, grace: Duration) -> Option<Start> {
        let mut held: BTreeMap<NodeId, usize> = BTreeMap::new();
        for t in image.topics.values() {
            for p in &t.partitions {
                for r in &p.replicas {
                    *held.entry(*r).or_default() += 1;
                }
            }
        }
        let any_partition = !held.is_empty();
        self.fenced_since.retain(|id, _| image.brokers.get(id).is_some_and(|b| b.fenced));
        let mut start = Start { exclude: Vec::new(), joined: Vec::new(), gone: Vec::new() };
        for b in image.brokers.values() {
            let holds = held.get(&b.id).copied().unwrap_or(0);
            if b.fenced {
                let since = *self.fenced_since.entry(b.id).or_insert(now);
                if now.duration_since(since) >= grace {
                    start.exclude.push(b.id);
                    if holds > 0 && self.gone.insert((b.id, b.epoch)) {
                        start.gone.push(b.id);
                    }
                }
            } else if holds == 0 && any_partition && self.joined.insert((b.id, b.epoch)) {
                start.joined.push(b.id);
            }
        }
        (!start.joined.is_empty() || !start.gone.is_empty()).then_some(start)
    }
}

impl Controller {
    /// On the leader, with `auto_rebalance` set: starts and carries out
    /// rebalances when brokers join or are gone past the grace period.
    /// Returns when `stop` completes.
    pub async fn run_auto_balance(self: Arc<Self>, config: AutoBalanceConfig, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut triggers = Triggers::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            if !self.is_leader() {
                triggers = Triggers::default();
                continue;
            }
            let state = self.state();
            let Some(start) = triggers.check(&state.image, Instant::now(), config.grace) else { continue };
            let plan = crate::balance::plan(&state.image, &start.exclude, &crate::balance::partition_sizes(&self.reported_sizes()));
            tracing::info!(
                joined = ?start.joined,
                gone = ?start.gone,
                excluded = ?start.exclude,
                moves = plan.moves.len(),
                "automatic rebalance: a broker joined or has been gone past the grace period"
            );
            tokio::select! {
                _ = &mut stop => return,
                _ = self.carry_out(&plan.moves, &config) => {}
            }
        }
    }

    /// Carries out `moves` a batch at a time, as long as this node leads.
    async fn carry_out(&self, moves: &[Move], config: &AutoBalanceConfig) {
        let total = moves.len();
        let mut done = 0;
        for batch in moves.chunks(config.max_moves.max(1)) {
            let mut started = Vec::new();
            for m in batch {
                // Skip a partition that changed since the plan.
                let now = self.state();
                let current = now.image.topics.get(&m.topic).and_then(|t| t.partitions.get(usize::try_from(m.partition).ok()?));
                if current.is_none_or(|p| p.replicas != m.from) || now.image.reassignments.contains_key(&(m.topic.clone(), m.partition)) {
                    continue;
                }
                let command = Command::ReassignPartition { topic: m.topic.clone(), partition: m.partition, target: Some(m.to.clone()) };
                match self.propose_local(command).await {
                    Ok((Ok(_), _)) => started.push((m.topic.clone(), m.partition)),
                    Ok((Err(e), _)) => tracing::warn!(topic = %m.topic, partition = m.partition, error = %e, "automatic rebalance: move refused"),
                    Err(e) => {
                        tracing::info!(error = %e, "automatic rebalance stopped: this node no longer leads");
                        return;
                    }
                }
            }
            let deadline = Instant::now() + config.batch_timeout;
            let mut changes = self.subscribe();
            loop {
                let open = {
                    let state = changes.borrow_and_update();
                    started.iter().filter(|k| state.image.reassignments.contains_key(*k)).count()
                };
                if open == 0 {
                    break;
                }
                if !self.is_leader() {
                    return;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(open, timeout = ?config.batch_timeout, "automatic rebalance: moves still catching up; leaving them to finish and planning again later");
                    return;
                }
                let _ = tokio::time::timeout(Duration::from_millis(500), changes.changed()).await;
            }
            for (topic, partition) in &started {
                let command = Command::ElectPreferredLeader { topic: topic.clone(), partition: *partition };
                if let Err(e) = self.propose_local(command).await {
                    tracing::debug!(topic = %topic, partition, error = %e, "automatic rebalance: leadership stays for now");
                }
            }
            done += started.len();
            tracing::info!(done, total, "automatic rebalance: batch moved");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(brokers: &[(u64, bool)], replicas: &[&[u64]]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (id, fenced) in brokers {
            image.brokers.insert(
                NodeId(*id),
                crate::records::BrokerRecord {
                    id: NodeId(*id),
                    kafka_host: "h".into(),
                    kafka_port: 9092,
                    external: None,
                    rpc_address: format!("h:{id}"),
                    rack: None,
                    epoch: *id,
                    fenced: *fenced,
                    shutting_down: false,
                    live_since_index: 0,
                },
            );
        }
        let partitions = replicas
            .iter()
            .map(|r| crate::records::PartitionRecord {
                replicas: r.iter().map(|id| NodeId(*id)).collect(),
                isr: r.iter().map(|id| NodeId(*id)).collect(),
                leader: r.first().map(|id| NodeId(*id)),
                leader_epoch: 0,
                partition_epoch: 0,
            })
            .collect();
        image.topics.insert("t".into(), std::sync::Arc::new(crate::records::TopicRecord { id: uuid::Uuid::nil(), configs: Default::default(), partitions }));
        image
    }

    #[test]
    fn a_broker_that_joins_empty_starts_one_rebalance() {
        let mut t = Triggers::default();
        let now = Instant::now();
        let grace = Duration::from_secs(60);
        let img = image(&[(1, false), (2, false), (3, false)], &[&[1, 2], &[2, 3]]);
        assert_eq!(t.check(&img, now, grace), None, "everyone holds something");
        let img = image(&[(1, false), (2, false), (3, false), (4, false)], &[&[1, 2], &[2, 3]]);
        assert_eq!(t.check(&img, now, grace), Some(Start { exclude: vec![], joined: vec![NodeId(4)], gone: vec![] }));
        assert_eq!(t.check(&img, now, grace), None, "once per registration");
        // No partitions at all: nothing to balance.
        let mut t = Triggers::default();
        let mut empty = img.clone();
        empty.topics.clear();
        assert_eq!(t.check(&empty, now, grace), None);
    }

    #[test]
    fn a_broker_gone_past_the_grace_starts_one_rebalance_and_stays_excluded() {
        let mut t = Triggers::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(60);
        let img = image(&[(1, false), (2, false), (3, true), (4, false)], &[&[1, 3], &[3, 4], &[2, 4]]);
        assert_eq!(t.check(&img, t0, grace), None, "just fenced");
        assert_eq!(t.check(&img, t0 + Duration::from_secs(30), grace), None, "within the grace");
        let at = t0 + grace;
        assert_eq!(t.check(&img, at, grace), Some(Start { exclude: vec![NodeId(3)], joined: vec![], gone: vec![NodeId(3)] }));
        assert_eq!(t.check(&img, at, grace), None, "once per registration");
        // It comes back (unfenced), then is fenced again: a fresh grace.
        let back = image(&[(1, false), (2, false), (3, false), (4, false)], &[&[1, 3], &[3, 4], &[2, 4]]);
        assert_eq!(t.check(&back, at + Duration::from_secs(1), grace), None);
        assert_eq!(t.check(&img, at + Duration::from_secs(2), grace), None, "the grace starts again");
        // A gone broker that holds nothing starts nothing.
        let mut t = Triggers::default();
        let img = image(&[(1, false), (2, false), (3, true)], &[&[1, 2]]);
        assert_eq!(t.check(&img, t0, grace), None);
        let start = t.check(&img, t0 + grace, grace);
        assert_eq!(start, None, "{start:?}");
    }
}
