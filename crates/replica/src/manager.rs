//! The replica manager: one [`Partition`] per replica the metadata assigns
//! to this node, kept in step with the metadata, and the node's background
//! work on them (ISR maintenance, retention, the interval flush).
//!
//! # Invariants
//! - A partition is served as leader only when the latest metadata names
//!   this node its leader and [`Membership::may_lead`] holds; the partition
//!   is brought to the metadata's epochs before it is handed out.
//! - A log exists for each local replica of each topic; logs of deleted or
//!   re-created topics, and of replicas moved elsewhere, are removed (a
//!   `topic.id` file beside each log tells a re-created topic's log apart).

use crate::engine::IsrProposal;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;

use prometheus_client::metrics::counter::Counter;
use runnel_controller::Metadata;
use runnel_controller::metadata::{Command, CommandError, MetadataImage, NodeId, PartitionRecord, Shared, TopicRecord};
use runnel_controller::store::AppliedState;
use runnel_storage::progress::Progress;
use runnel_storage::{FlushPolicy, LogConfig, LogManager, PartitionLog, StorageError, TopicPartition};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{ReplicaConfig, log_config};
use crate::engine::{Durability, EngineConfig};
use crate::membership::Membership;
use crate::partition::{Identity, Partition, TopicSettings};
use crate::throttle::Throttle;
use crate::timings::ReplicationTimings;

/// The file in a partition directory naming the topic id it belongs to, so a
/// deleted and re-created topic never inherits the old one's data.
const TOPIC_ID_FILE: &str = "topic.id";

/// The Raft index of an applied metadata state (0 before any).
fn metadata_index(state: &AppliedState) -> u64 {
    state.last_applied.map_or(0, |l| l.index)
}

/// How often leaders check their ISRs.
const ISR_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// ISR changes proposed to the controller at once by one node.
const ISR_PROPOSALS_IN_FLIGHT: usize = 64;
/// The first wait before a reconciliation pass that left work undone is
/// tried again; it doubles up to [`RECONCILE_RETRY_MAX`].
const RECONCILE_RETRY_MIN: Duration = Duration::from_millis(500);
const RECONCILE_RETRY_MAX: Duration = Duration::from_secs(30);

/// Whether a reconciliation pass did all it had to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reconciliation {
    Complete,
    /// Some log could not be opened or removed: a full pass is due.
    Incomplete,
}

/// Why a partition cannot be served as leader here, as Kafka clients are told.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("the topic or partition does not exist")]
    UnknownTopicOrPartition,
    #[error("this broker is not the partition's leader")]
    NotLeaderOrFollower,
    #[error("the partition has no leader right now")]
    LeaderNotAvailable,
    #[error("the partition's log cannot be opened: {0}")]
    Storage(StorageError),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid replica settings: {0}")]
    Config(#[from] runnel_storage::InvalidConfig),
    #[error("open the partition logs: {0}")]
    Storage(#[from] StorageError),
}

/// What reconciliation remembers between metadata changes.
#[derive(Default)]
struct Reconciled {
    /// Topic ids seen, per name, to notice deletions.
    known_topics: BTreeMap<String, Uuid>,
    /// Local logs whose `topic.id` file has been compared with the metadata
    /// (once per log and process: later re-creations show in `known_topics`).
    ids_checked: BTreeSet<TopicPartition>,
    /// What the last pass saw; none before the first.
    last: Option<Seen>,
}

/// The metadata index and the topics of the last reconciliation pass,
/// against which a log made for a request that read older metadata is
/// checked (see [`ReplicaManager::ensure`]). Under a lock of its own: a
/// request must not wait for a whole pass.
struct Applied {
    index: u64,
    topics: Topics,
    cluster_known: bool,
}

impl Applied {
    /// Whether a pass at this metadata would remove the log of `tp` (of
    /// topic `id`) from node `me`.
    fn removes(&self, tp: &TopicPartition, id: Uuid, me: NodeId) -> bool {
        match self.topics.get(&tp.topic) {
            Some(t) if t.id == id => {
                let assigned = usize::try_from(tp.partition).ok().and_then(|i| t.partitions.get(i)).is_some_and(|p| p.replicas.contains(&me));
                self.cluster_known && !assigned
            }
            _ => true,
        }
    }
}

/// Whether a topic's record is unchanged: the same allocation (the
/// controller's image shares the records of topics a change did not touch),
/// or an equal copy.
fn same_topic(a: &Arc<TopicRecord>, b: &Arc<TopicRecord>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// The topics of a metadata image.
pub(crate) type Topics = Shared<BTreeMap<String, Arc<TopicRecord>>>;

/// What decides which logs belong on this node and how they are set up,
/// as a reconciliation pass saw it.
struct Seen {
    topics: Topics,
    cluster_id: Option<String>,
    registered: bool,
}

impl Seen {
    /// The topics that changed since this was seen (created, deleted,
    /// re-created or with a changed record), each with the number of
    /// partition logs of it that may be here, when nothing else that
    /// decides where logs belong changed (the same cluster, the same
    /// registration); `None` when a full pass is needed. Most metadata
    /// changes (offset commits, group and transaction state, one topic's
    /// ISR) touch no topic or one, so a pass costs what changed, not the
    /// whole cluster. A topic whose record is the same allocation is
    /// unchanged; a copy (a broker-only node's image after a whole-state
    /// message) is compared by value.
    fn changed_topics(&self, image: &MetadataImage, registered: bool) -> Option<BTreeMap<String, usize>> {
        if self.cluster_id != image.cluster_id || self.registered != registered {
            return None;
        }
        let count = |t: Option<&Arc<TopicRecord>>| t.map_or(0, |t| t.partitions.len());
        Some(topic_changes(&self.topics, &image.topics).map(|(name, before, after)| (name.clone(), count(before).max(count(after)))).collect())
    }
}

/// The topics created, changed or deleted from `before` to `after`, each
/// with its record before and after (`None`: absent then). Nothing, at
/// once, when both are the same map.
pub(crate) fn topic_changes<'a>(
    before: &'a Topics,
    after: &'a Topics,
) -> impl Iterator<Item = (&'a String, Option<&'a Arc<TopicRecord>>, Option<&'a Arc<TopicRecord>>)> {
    let same = Shared::same(before, after);
    let changed = after.iter().filter(move |_| !same).filter_map(|(name, now)| match before.get(name) {
        Some(seen) if same_topic(seen, now) => None,
        seen => Some((name, seen, Some(now))),
    });
    let gone = before.iter().filter(move |(name, _)| !same && !after.contains_key(*name)).map(|(name, seen)| (name, Some(seen), None));
    changed.chain(gone)
}

/// What topics without their own settings take on this broker.
#[derive(Debug, Clone, PartialEq)]
struct Defaults {
    /// The log settings: static, with the dynamic log defaults applied.
    log: LogConfig,
    /// The dynamic broker configs that stand for topic configs, by topic
    /// config name.
    dynamic: BTreeMap<String, String>,
}

impl Defaults {
    /// What a topic with `own` configs is served with: its own values over
    /// the dynamic defaults.
    fn settings(&self, own: &BTreeMap<String, String>) -> TopicSettings {
        if self.dynamic.is_empty() {
            return TopicSettings::from_configs(own);
        }
        let mut configs = self.dynamic.clone();
        configs.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        TopicSettings::from_configs(&configs)
    }
}

/// How often the high watermarks go to their checkpoint file (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms`): what a restart exposes
/// at once, before its ISR shows more.
const HIGH_WATERMARK_CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

pub struct ReplicaManager {
    config: ReplicaConfig,
    engine_config: EngineConfig,
    logs: Arc<LogManager>,
    metadata: Metadata,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    membership: Arc<Membership>,
    reconciled: Mutex<Reconciled>,
    /// Recorded by each pass before it looks at the logs: a log made
    /// before that is looked at by the pass, one made after is checked
    /// against it (see [`Applied`]).
    applied: Mutex<Option<Applied>>,
    /// ISR changes committed for partitions led here.
    pub isr_shrinks: Counter,
    pub isr_expands: Counter,
    /// What the log cleaner has done.
    pub cleaner: Arc<crate::cleaner::CleanerMetrics>,
    /// Each replication stage's duration.
    pub timings: Arc<ReplicationTimings>,
    /// The limit on followers' catch-up fetches, if set.
    /// The catch-up lane's limit: the dynamic broker config
    /// `follower.replication.throttled.rate` (this broker's, else every
    /// broker's), else the static setting, else none.
    catch_up: Throttle,
    /// The leader side's limit on what it sends to followers outside the
    /// ISR: the dynamic broker config `leader.replication.throttled.rate`.
    leader_catch_up: Throttle,
    /// What topics without their own settings take: the static log
    /// settings with this broker's dynamic log defaults (level 10) applied,
    /// and those dynamic defaults by topic config name (the produce
    /// settings among them, level 11).
    defaults: Mutex<Defaults>,
    /// `log.cleaner.io.max.bytes.per.second` as a dynamic broker config (0:
    /// not set, the static setting holds).
    cleaner_rate: Arc<AtomicU64>,
    shutdown: CancellationToken,
}

impl ReplicaManager {
    /// Opens (and recovers) the node's partition logs. They are matched to
    /// the metadata by [`ReplicaManager::run_metadata`].
    pub fn open(config: ReplicaConfig, metadata: Metadata, shutdown: CancellationToken) -> Result<Arc<ReplicaManager>, OpenError> {
        config.validate()?;
        let defaults = config.log.clone();
        let logs = Arc::new(LogManager::open(&config.log_dir, |_| defaults.clone(), config.open_files_max)?);
        let durability = match config.log.flush {
            FlushPolicy::Always => Durability::Flushed,
            FlushPolicy::Interval(_) => Durability::Written,
        };
        let engine_config = EngineConfig { replica_lag_time_max: config.replica_lag_time_max, durability };
        let membership = Arc::new(Membership::new(config.node_id, metadata.clone(), logs.clone(), shutdown.clone()));
        let catch_up = Throttle::new(config.catch_up_bytes_per_sec.unwrap_or(0));
        Ok(Arc::new(ReplicaManager {
            config,
            engine_config,
            logs,
            metadata,
            partitions: RwLock::new(HashMap::new()),
            membership,
            reconciled: Mutex::new(Reconciled::default()),
            applied: Mutex::new(None),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            cleaner: Arc::default(),
            timings: Arc::default(),
            catch_up,
            leader_catch_up: Throttle::new(0),
            defaults: Mutex::new(Defaults { log: defaults, dynamic: BTreeMap::new() }),
            cleaner_rate: Arc::default(),
            shutdown,
        }))
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// The limit on followers' catch-up fetches, if one is set.
    pub fn catch_up_throttle(&self) -> Option<&Throttle> {
        (self.catch_up.bytes_per_sec() > 0).then_some(&self.catch_up)
    }

    /// The limit on what this leader sends to catching-up followers, if set.
    pub fn leader_throttle(&self) -> Option<&Throttle> {
        (self.leader_catch_up.bytes_per_sec() > 0).then_some(&self.leader_catch_up)
    }

    /// What topics without their own settings take, as this broker's
    /// dynamic configs in `image` set it over the static settings.
    fn defaults_in(&self, image: &MetadataImage) -> Defaults {
        let dynamic: BTreeMap<String, String> = image.log_defaults(self.node_id()).into_iter().map(|(k, (v, _))| (k.to_string(), v.to_string())).collect();
        Defaults { log: log_config(&self.config.log, &dynamic), dynamic }
    }

    /// Follows the dynamic broker configs (the follower's one overrides the
    /// static limit).
    fn apply_broker_configs(&self, image: &MetadataImage) {
        const CLEANER_RATE: &str = "log.cleaner.io.max.bytes.per.second";
        let cleaner = image.broker_config(self.config.node_id, CLEANER_RATE).and_then(|(v, _)| v.trim().parse::<f64>().ok()).map_or(0, |r| r as u64);
        if self.cleaner_rate.swap(cleaner, Ordering::Relaxed) != cleaner {
            let from = if cleaner > 0 { "dynamic broker config" } else { "static setting" };
            tracing::info!(bytes_per_sec = cleaner, from, "log cleaner throughput limit changed");
        }
        const LEADER_RATE: &str = "leader.replication.throttled.rate";
        let leader = image.broker_config(self.config.node_id, LEADER_RATE).and_then(|(v, _)| v.parse::<u64>().ok()).unwrap_or(0);
        if self.leader_catch_up.set_bytes_per_sec(leader) {
            tracing::info!(bytes_per_sec = leader, "leader-side catch-up throttle changed");
        }
        const RATE: &str = "follower.replication.throttled.rate";
        let dynamic = image.broker_config(self.config.node_id, RATE).and_then(|(v, _)| v.parse::<u64>().ok());
        let rate = dynamic.or(self.config.catch_up_bytes_per_sec).unwrap_or(0);
        if self.catch_up.set_bytes_per_sec(rate) {
            tracing::info!(
                bytes_per_sec = rate,
                from = if dynamic.is_some() { "dynamic broker config" } else { "static setting" },
                "catch-up throttle changed"
            );
        }
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    pub fn logs(&self) -> &LogManager {
        &self.logs
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The partition of `tp` hosted here, if any.
    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).get(tp).cloned()
    }

    /// Every partition hosted here.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// A partition this node leads, as the latest metadata says, brought to
    /// the metadata's epochs. Errors as Kafka gives them.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, LeaderError> {
        let state = self.metadata.state();
        let Some(t) = state.image.topics.get(topic) else { return Err(LeaderError::UnknownTopicOrPartition) };
        let Some(p) = usize::try_from(partition).ok().and_then(|i| t.partitions.get(i)) else {
            return Err(LeaderError::UnknownTopicOrPartition);
        };
        if p.leader != Some(self.node_id()) {
            return Err(if p.leader.is_none() { LeaderError::LeaderNotAvailable } else { LeaderError::NotLeaderOrFollower });
        }
        if !self.serves_as_leader(&state.image, t, p) {
            return Err(LeaderError::NotLeaderOrFollower);
        }
        let tp = TopicPartition::new(topic, partition);
        match self.ensure(&tp, t, p, metadata_index(&state), &state.image, None) {
            Ok(Some(partition)) => Ok(partition),
            // A log of an older topic of this name is still here, or the
            // log is being removed: until reconciliation is done, clients
            // retry.
            Ok(None) => Err(LeaderError::NotLeaderOrFollower),
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "cannot open log");
                self.membership.note_storage_error(&e);
                Err(LeaderError::Storage(e))
            }
        }
    }

    /// Whether this node serves a partition whose metadata names it leader.
    ///
    /// Normally only while it holds a lease: until this life's registration
    /// is committed and applied here, the metadata may be a restarted node's
    /// stale view naming it leader of partitions that moved while it was
    /// down, and once its lease has run out it may have been fenced.
    ///
    /// When no controller leader answers at all (the quorum lost its
    /// majority), it keeps leading the partitions whose ISR is this broker
    /// alone, of topics without unclean leader election, as long as its
    /// metadata does not say it is fenced: no other broker can be elected
    /// leader of those (a clean election needs an ISR member, and fencing
    /// never empties an ISR), so serving reads up to its high watermark and
    /// writes cannot split them. Partitions with other ISR members are not
    /// served: one of those may lead them by now.
    pub fn serves_as_leader(&self, image: &MetadataImage, t: &TopicRecord, p: &PartitionRecord) -> bool {
        let me = self.node_id();
        if p.leader != Some(me) {
            return false;
        }
        if self.membership.may_lead() {
            return true;
        }
        self.membership.controller_unreachable() && p.isr == [me] && !image.unclean_election(t) && image.brokers.get(&me).is_some_and(|b| !b.fenced)
    }

    /// The partition of `tp`, opened if needed and brought to `record`'s
    /// epochs and the settings of `t` over `defaults` (those of `image`
    /// when not given: worked out only if the partition needs them). None
    /// while a log of another topic id sits under this name, or while the
    /// log is being removed.
    fn ensure(
        &self,
        tp: &TopicPartition,
        t: &TopicRecord,
        record: &PartitionRecord,
        index: u64,
        image: &MetadataImage,
        defaults: Option<&Defaults>,
    ) -> Result<Option<Arc<Partition>>, StorageError> {
        let settings = |defaults: Option<&Defaults>| match defaults {
            Some(d) => d.settings(&t.configs),
            None => self.defaults_in(image).settings(&t.configs),
        };
        let partition = match self.partition(tp) {
            Some(existing) => existing,
            None => {
                let defaults = self.defaults_or(defaults, image);
                let (log, made) = self.logs.get_or_make(tp, log_config(&defaults.log, &t.configs))?;
                let Some(partition) = self.adopt(tp, t.id, record, index, log.clone(), || settings(Some(&defaults)))? else { return Ok(None) };
                if made {
                    // A request that read the metadata before a change that
                    // took this replica away (its topic deleted, its
                    // replica moved) and came here after the pass that
                    // removed the log: the log it made goes too. Checked
                    // and done under `applied`, so a pass that assigns the
                    // replica here again comes after and makes it anew.
                    let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
                    if applied.as_ref().is_some_and(|a| a.index > index && a.removes(tp, t.id, self.node_id())) {
                        self.drop_replica(tp, Some(&log))?;
                        return Ok(None);
                    }
                }
                partition
            }
        };
        // A log of an older topic of this name, or one being removed.
        if partition.topic_id() != t.id || partition.log().is_closed() {
            return Ok(None);
        }
        // A log found at start, reached by a request before reconciliation
        // gave it its topic's settings (a compacted topic refuses keyless
        // records by them).
        if partition.log().config_is_provisional() {
            partition.log().set_config(log_config(&self.defaults_or(defaults, image).log, &t.configs));
        }
        partition.sync(record, || settings(defaults), index, Instant::now());
        Ok(Some(partition))
    }

    /// The defaults given, or those of `image` (worked out only then).
    fn defaults_or<'a>(&self, given: Option<&'a Defaults>, image: &MetadataImage) -> std::borrow::Cow<'a, Defaults> {
        given.map_or_else(|| std::borrow::Cow::Owned(self.defaults_in(image)), std::borrow::Cow::Borrowed)
    }

    /// The partition of `tp`: the one hosted already, else a new one over
    /// `log` (marked with the topic's id), unless `log` holds another
    /// topic's id or was closed since the caller found it. None then; in
    /// the second case reconciliation removed it meanwhile, and a partition
    /// over a closed log would answer every request NOT_LEADER_OR_FOLLOWER
    /// until a restart. Reconciliation closes a log before it takes the
    /// partition out of the map, so a log still open under the map's lock
    /// here is either kept or taken out again with the partition added now.
    fn adopt(
        &self,
        tp: &TopicPartition,
        topic_id: Uuid,
        record: &PartitionRecord,
        index: u64,
        log: Arc<PartitionLog>,
        settings: impl FnOnce() -> TopicSettings,
    ) -> Result<Option<Arc<Partition>>, StorageError> {
        match log.mark(TOPIC_ID_FILE, &topic_id.to_string()) {
            // A log of a deleted topic of this name, found at start:
            // reconciliation removes it. (An unreadable mark is taken as
            // this topic's, as reconciliation takes it.)
            Ok(Some(found)) if found.trim().parse::<Uuid>().is_ok_and(|id| id != topic_id) => return Ok(None),
            Ok(_) => {}
            // Its directory is gone: not a disk failure.
            Err(StorageError::Closed(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut partitions = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = partitions.get(tp) {
            return Ok(Some(existing.clone()));
        }
        if log.is_closed() {
            return Ok(None);
        }
        let identity = Identity { tp: tp.clone(), topic_id, me: self.node_id(), engine_config: self.engine_config, timings: self.timings.clone() };
        let partition = Arc::new(Partition::new(identity, log, record.clone(), settings(), index, Instant::now()));
        partitions.insert(tp.clone(), partition.clone());
        Ok(Some(partition))
    }

    /// Stops hosting `tp`: closes and deletes its log (only `log`, when
    /// given), then retires its partition, in that order (see
    /// [`ReplicaManager::adopt`]). A partition over a new log of the name,
    /// made meanwhile, stays.
    fn drop_replica(&self, tp: &TopicPartition, log: Option<&Arc<PartitionLog>>) -> Result<(), StorageError> {
        let removed = self.logs.remove_if(tp, log);
        let mut partitions = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        if partitions.get(tp).is_some_and(|p| p.log().is_closed()) {
            partitions.remove(tp).expect("just seen").retire();
        }
        removed
    }

    /// Follows the metadata: opens logs for the replicas assigned here,
    /// applies leadership and topic configs, removes logs of deleted topics.
    /// Returns at shutdown.
    pub async fn run_metadata(self: Arc<Self>) {
        let rx = self.metadata.subscribe();
        self.follow(rx).await
    }

    /// [`Self::run_metadata`] over the states `rx` publishes. A pass that
    /// could not do everything (a log that would not open or be removed,
    /// say a full disk or a directory in the way) is tried again on a
    /// timer, from [`RECONCILE_RETRY_MIN`] doubling to
    /// [`RECONCILE_RETRY_MAX`], not only at the next metadata change,
    /// which on a quiet cluster may be hours away.
    async fn follow(self: Arc<Self>, mut rx: tokio::sync::watch::Receiver<Arc<AppliedState>>) {
        let mut retry_in = RECONCILE_RETRY_MIN;
        loop {
            let state = rx.borrow_and_update().clone();
            let me = self.clone();
            let span = tracing::Span::current();
            let pass = tokio::task::spawn_blocking(move || span.in_scope(|| me.reconcile(&state.image, metadata_index(&state))));
            let incomplete = pass.await.unwrap_or(Reconciliation::Incomplete) == Reconciliation::Incomplete;
            if incomplete {
                tracing::warn!(retry_in = ?retry_in, "metadata reconciliation left work undone; trying again");
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                // Logs of topics deleted while this node was away go once it is registered.
                _ = self.membership.wait_registered(), if !self.membership.is_registered() => {}
                _ = tokio::time::sleep(retry_in), if incomplete => {
                    retry_in = (retry_in * 2).min(RECONCILE_RETRY_MAX);
                    continue;
                }
                _ = self.shutdown.cancelled() => return,
            }
            retry_in = RECONCILE_RETRY_MIN;
        }
    }

    /// Brings every hosted partition to the metadata as this node has
    /// applied it now, without waiting for [`Self::run_metadata`]'s turn:
    /// at a controlled shutdown, so the partitions handed over stop
    /// leading (and their waiting acknowledgements fail over to the new
    /// leader) before that task stops with the node.
    pub fn reconcile_now(&self) {
        let state = self.metadata.state();
        if self.reconcile(&state.image, metadata_index(&state)) == Reconciliation::Incomplete {
            tracing::warn!("metadata reconciliation left work undone");
        }
    }

    fn reconcile(&self, image: &MetadataImage, index: u64) -> Reconciliation {
        self.apply_broker_configs(image);
        let me = self.node_id();
        let registered = self.membership.is_registered();
        let mut reconciled = self.reconciled.lock().unwrap_or_else(|p| p.into_inner());
        // Changed defaults reach every topic without its own settings.
        let defaults = self.defaults_in(image);
        let defaults_changed = {
            let mut current = self.defaults.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *current != defaults;
            if changed {
                tracing::info!(log = ?defaults.log, dynamic = ?defaults.dynamic, "topics' defaults changed");
                *current = defaults.clone();
            }
            changed
        };
        let scope = reconciled.last.as_ref().filter(|_| !defaults_changed).and_then(|seen| seen.changed_topics(image, registered));
        reconciled.last = Some(Seen { topics: image.topics.clone(), cluster_id: image.cluster_id.clone(), registered });
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Applied { index, topics: image.topics.clone(), cluster_known: image.cluster_id.is_some() });
        if scope.as_ref().is_some_and(BTreeMap::is_empty) {
            return Reconciliation::Complete;
        }
        let in_scope = |topic: &str| scope.as_ref().is_none_or(|s| s.contains_key(topic));
        // Topics that disappeared or were re-created since the last look.
        let removed: Vec<String> =
            reconciled.known_topics.iter().filter(|(n, id)| image.topics.get(*n).is_none_or(|t| t.id != **id)).map(|(n, _)| n.clone()).collect();
        reconciled.known_topics = image.topics.iter().map(|(n, t)| (n.clone(), t.id)).collect();
        let mut wanted: BTreeMap<TopicPartition, (&TopicRecord, &PartitionRecord)> = BTreeMap::new();
        for (name, t) in image.topics.iter().filter(|(n, _)| in_scope(n)) {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.replicas.contains(&me) {
                    wanted.insert(TopicPartition::new(name.clone(), i as i32), (t, p));
                }
            }
        }
        // The logs to look at: every log here, or those of the changed topics.
        let logs = match &scope {
            None => self.logs.all(),
            Some(topics) => topics
                .iter()
                .flat_map(|(name, count)| (0..*count as i32).map(|i| TopicPartition::new(name.clone(), i)))
                .filter_map(|tp| Some((tp.clone(), self.logs.get(&tp)?)))
                .collect(),
        };
        // Whatever could not be done now is tried again by a full pass, at
        // the next change or on the retry timer.
        let mut retry = false;
        let mut removed_logs = 0usize;
        let mut removing = Progress::new("removing logs no longer assigned here", 0);
        for (tp, log) in logs {
            // A log left from before this process started may belong to a
            // deleted topic of the same name: compare its recorded id once.
            let current_id = image.topics.get(&tp.topic).map(|t| t.id);
            let stale_id = current_id.is_some() && reconciled.ids_checked.insert(tp.clone()) && {
                let local = std::fs::read_to_string(log.dir().join(TOPIC_ID_FILE)).ok().and_then(|s| s.trim().parse::<Uuid>().ok());
                local.is_some_and(|local| Some(local) != current_id)
            };
            // A log of a topic the metadata does not have was deleted while
            // this node was away (or its removal was cut short): gone too,
            // once this node's registration is applied, so the metadata is
            // known to hold everything committed before it.
            let deleted_while_away = current_id.is_none() && image.cluster_id.is_some() && self.membership.is_registered();
            if removed.contains(&tp.topic)
                || stale_id
                || deleted_while_away
                || (image.cluster_id.is_some() && !wanted.contains_key(&tp) && current_id.is_some())
            {
                tracing::debug!(partition = %tp, "removing a log that is no longer assigned here");
                removed_logs += 1;
                reconciled.ids_checked.remove(&tp);
                if let Err(e) = self.drop_replica(&tp, None) {
                    tracing::error!(partition = %tp, error = %e, "could not remove log");
                    retry = true;
                }
                removing.step(removed_logs);
            }
        }
        if removed_logs > 0 {
            tracing::info!(logs = removed_logs, elapsed = ?removing.elapsed(), "removed logs no longer assigned here (deleted topics, moved replicas)");
        }
        drop(reconciled);
        let mut opening = Progress::new("opening logs of partitions assigned here", wanted.len());
        for (i, (tp, (t, p))) in wanted.into_iter().enumerate() {
            opening.step(i + 1);
            match self.ensure(&tp, t, p, index, image, Some(&defaults)) {
                Ok(Some(partition)) => {
                    let config = log_config(&defaults.log, &t.configs);
                    // A log found at start gets its topic's settings here,
                    // even when they are the defaults it was opened with.
                    if partition.log().config() != config || partition.log().config_is_provisional() {
                        partition.log().set_config(config);
                    }
                }
                Ok(None) => retry = true,
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "cannot open log");
                    retry = true;
                }
            }
        }
        if retry {
            self.reconciled.lock().unwrap_or_else(|p| p.into_inner()).last = None;
            return Reconciliation::Incomplete;
        }
        Reconciliation::Complete
    }

    /// Shrinks and expands the ISR of the partitions led here; returns at shutdown.
    pub async fn run_isr_maintenance(self: Arc<Self>) {
        let mut tick = tokio::time::interval(ISR_CHECK_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let now = Instant::now();
            let state = self.metadata.state();
            let fenced = |r: &NodeId| state.image.brokers.get(r).is_none_or(|b| b.fenced);
            let proposals: Vec<(Arc<Partition>, IsrProposal)> = {
                let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
                partitions
                    .values()
                    .filter_map(|partition| {
                        let proposal = partition.tick(now, &fenced)?;
                        Some((partition.clone(), proposal))
                    })
                    .collect()
            };
            // Proposed together (at most ISR_PROPOSALS_IN_FLIGHT at once), so
            // the quorum commits many in one append and fsync: after a
            // broker restarts, each leader has an expansion for every
            // partition it shares with it.
            let this = &self;
            futures::stream::iter(proposals)
                .for_each_concurrent(ISR_PROPOSALS_IN_FLIGHT, |(partition, proposal)| async move {
                    let tp = partition.tp();
                    tracing::info!(partition = %tp, to = ?proposal.isr, "changing ISR");
                    let command = Command::AlterPartition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        leader: this.node_id(),
                        leader_epoch: proposal.leader_epoch.0,
                        partition_epoch: proposal.partition_epoch,
                        isr: proposal.isr,
                    };
                    match this.metadata.propose(command).await {
                        Ok(Ok(_)) => {
                            tracing::info!(partition = %tp, "ISR change committed");
                            if proposal.shrinks {
                                this.isr_shrinks.inc();
                            }
                            if proposal.expands {
                                this.isr_expands.inc();
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(partition = %tp, error = %e, "ISR change refused");
                            if matches!(e, CommandError::InvalidRequest(_)) {
                                partition.proposal_refused(proposal.leader_epoch, proposal.partition_epoch);
                            }
                        }
                        Err(e) => tracing::debug!(partition = %tp, error = %e, "ISR change not committed"),
                    }
                })
                .await;
        }
    }

    /// Retention on a timer, the interval flush when that is the policy, and
    /// the log cleaner's thread; returns at shutdown.
    pub async fn run_background(self: Arc<Self>) {
        let (logs, config, metrics, shutdown) = (self.logs.clone(), self.config.cleaner.clone(), self.cleaner.clone(), self.shutdown.clone());
        let rate = self.cleaner_rate.clone();
        let span = tracing::Span::current();
        let cleaner = move || span.in_scope(|| crate::cleaner::run(logs, config, &rate, metrics, shutdown));
        if let Err(e) = std::thread::Builder::new().name("log-cleaner".into()).spawn(cleaner) {
            tracing::error!(error = %e, "could not start the log cleaner thread; compacted topics are not cleaned");
        }
        let mut retention = tokio::time::interval(self.config.retention_check_interval);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let flush_every = match self.config.log.flush {
            FlushPolicy::Interval(d) => d,
            FlushPolicy::Always => Duration::from_secs(3600),
        };
        let mut flush = tokio::time::interval(flush_every);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut checkpoint = tokio::time::interval(HIGH_WATERMARK_CHECKPOINT_EVERY);
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = retention.tick() => {
                    let logs = self.logs.clone();
                    let span = tracing::Span::current();
                    let _ = tokio::task::spawn_blocking(move || span.in_scope(|| logs.enforce_retention())).await;
                }
                _ = flush.tick() => {
                    if let Err(e) = self.logs.flush_all().await {
                        tracing::error!(error = %e, "periodic flush failed");
                        self.membership.note_storage_error(&e);
                    }
                }
                _ = checkpoint.tick() => {
                    if let Err(e) = self.checkpoint_high_watermarks(false).await {
                        tracing::error!(error = %e, "high-watermark checkpoint failed");
                        self.membership.note_storage_error(&e);
                    }
                }
            }
        }
    }

    async fn checkpoint_high_watermarks(&self, durable: bool) -> Result<(), StorageError> {
        let logs = self.logs.clone();
        tokio::task::spawn_blocking(move || logs.checkpoint_high_watermarks(durable))
            .await
            .map_err(|e| StorageError::Io { context: "high-watermark checkpoint task".into(), source: std::io::Error::other(e.to_string()) })?
            .map(|_| ())
    }

    /// Flushes every log and checkpoints the high watermarks; the last step
    /// of a clean shutdown.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.logs.flush_all().await?;
        self.checkpoint_high_watermarks(true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(partitions: usize) -> Arc<TopicRecord> {
        let record = PartitionRecord { replicas: vec![NodeId(1)], isr: vec![NodeId(1)], leader: Some(NodeId(1)), leader_epoch: 0, partition_epoch: 0 };
        Arc::new(TopicRecord { id: Uuid::new_v4(), configs: BTreeMap::new(), partitions: vec![record; partitions] })
    }

    fn seen(image: &MetadataImage, registered: bool) -> Seen {
        Seen { topics: image.topics.clone(), cluster_id: image.cluster_id.clone(), registered }
    }

    fn manager(dir: &std::path::Path) -> Arc<ReplicaManager> {
        let identity = runnel_controller::identity::LocalIdentity::new(NodeId(1), "test".into(), "127.0.0.1:1".into(), None);
        let metadata = Metadata::Remote(runnel_controller::RemoteController::new(&BTreeMap::new(), identity));
        ReplicaManager::open(ReplicaConfig::new(NodeId(1), dir.to_path_buf()), metadata, CancellationToken::new()).unwrap()
    }

    /// A request that found a partition's log just before reconciliation
    /// removed it (its topic deleted) must not leave a partition over the
    /// closed log behind, nor take the removed directory for a failed disk:
    /// the partition would answer NOT_LEADER_OR_FOLLOWER until a restart,
    /// and a topic re-created under the name would never be served here.
    #[test]
    fn a_log_removed_under_a_request_that_found_it_is_not_hosted_again() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = manager(dir.path());
        let tp = TopicPartition::new("t", 0);
        let mut image = MetadataImage::default();
        image.cluster_id = Some("c".into());
        image.topics.insert("t".into(), topic(1));
        replicas.reconcile(&image, 1);
        assert!(replicas.partition(&tp).is_some(), "the replica is hosted");
        // What `ensure` found before the deletion reached reconciliation.
        let found = replicas.logs.get(&tp).unwrap();
        let t = image.topics.get("t").unwrap().clone();

        let mut deleted = image.clone();
        deleted.topics.remove("t");
        replicas.reconcile(&deleted, 2);
        assert!(replicas.partition(&tp).is_none() && found.is_closed(), "the deleted topic's replica is gone");
        assert!(!dir.path().join(tp.to_string()).exists());

        // `ensure` goes on with the log it found.
        let adopted = replicas.adopt(&tp, t.id, &t.partitions[0], 2, found, TopicSettings::default);
        assert!(matches!(adopted, Ok(None)), "a removed log was adopted or read as a disk failure: {:?}", adopted.map(|p| p.is_some()));
        assert!(replicas.partition(&tp).is_none(), "a partition over the closed log is left behind");
        assert!(!dir.path().join(tp.to_string()).exists(), "the removed log's directory came back");

        // The topic re-created under the name is served from a new log.
        let mut recreated = deleted.clone();
        recreated.topics.insert("t".into(), topic(1));
        replicas.reconcile(&recreated, 3);
        let partition = replicas.partition(&tp).expect("the re-created topic's replica is hosted");
        assert!(!partition.log().is_closed());
        assert_eq!(partition.topic_id(), recreated.topics["t"].id);

        // A log still marked with a deleted topic's id is not served under
        // the new topic's.
        let other = TopicPartition::new("u", 0);
        let leftover = replicas.logs.get_or_create(&other, LogConfig::default()).unwrap();
        assert_eq!(leftover.mark(TOPIC_ID_FILE, &Uuid::new_v4().to_string()).unwrap(), None);
        let adopted = replicas.adopt(&other, Uuid::new_v4(), &t.partitions[0], 3, leftover, TopicSettings::default);
        assert!(matches!(adopted, Ok(None)), "a log of another topic id was adopted");
        assert!(replicas.partition(&other).is_none());
    }

    /// A request that read the metadata before its topic's deletion (or
    /// its replica's move elsewhere) and reaches the replica only after the
    /// pass that removed the log must not make the log again: an empty
    /// directory of a deleted topic, hosted until a restart.
    #[test]
    fn a_request_that_read_older_metadata_leaves_no_log_of_a_removed_replica() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = manager(dir.path());
        let mut image = MetadataImage::default();
        image.cluster_id = Some("c".into());
        image.topics.insert("t".into(), topic(1));
        image.topics.insert("u".into(), topic(1));
        replicas.reconcile(&image, 1);
        let (t, u) = (TopicPartition::new("t", 0), TopicPartition::new("u", 0));
        assert!(replicas.partition(&t).is_some() && replicas.partition(&u).is_some());

        // "t" deleted; "u"'s replica moved to node 2.
        let mut later = image.clone();
        later.topics.remove("t");
        Arc::make_mut(later.topics.get_mut("u").unwrap()).partitions[0].replicas = vec![NodeId(2)];
        replicas.reconcile(&later, 2);
        for tp in [&t, &u] {
            assert!(replicas.partition(tp).is_none() && !dir.path().join(tp.to_string()).exists(), "{tp} still here");
        }

        // Requests that read `image` come now.
        for tp in [&t, &u] {
            let record = image.topics[&tp.topic].clone();
            let got = replicas.ensure(tp, &record, &record.partitions[0], 1, &image, None).unwrap();
            assert!(got.is_none(), "{tp}: a removed replica is hosted again");
            assert!(replicas.partition(tp).is_none(), "{tp}: a partition is left behind");
            assert!(replicas.logs.get(tp).is_none(), "{tp}: a log is left open");
            assert!(!dir.path().join(tp.to_string()).exists(), "{tp}: its directory came back");
        }

        // A request that read newer metadata than the last pass makes its log.
        let mut newer = later.clone();
        newer.topics.insert("t".into(), topic(1));
        let record = newer.topics["t"].clone();
        let got = replicas.ensure(&t, &record, &record.partitions[0], 3, &newer, None).unwrap();
        assert!(got.is_some(), "a topic the last pass did not know yet is not hosted");
        replicas.reconcile(&newer, 3);
        assert_eq!(replicas.partition(&t).expect("hosted").topic_id(), record.id);
    }

    /// A replica whose log could not be opened (here a file sits where its
    /// directory goes; on a node, a full disk or a failed mount) is hosted
    /// once the obstacle is gone, though the metadata does not change
    /// again: on a quiet cluster the next change may be hours away, and a
    /// follower without a log fetches nothing until then.
    #[tokio::test]
    async fn a_replica_whose_log_could_not_be_opened_is_hosted_once_it_can_be() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = manager(dir.path());
        let tp = TopicPartition::new("t", 0);
        let blocker = dir.path().join(tp.to_string());
        std::fs::write(&blocker, b"in the way").unwrap();
        let mut state = AppliedState::default();
        state.image.cluster_id = Some("c".into());
        state.image.topics.insert("t".into(), topic(1));
        let (_publish, rx) = tokio::sync::watch::channel(Arc::new(state));
        let following = tokio::spawn(replicas.clone().follow(rx));

        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(replicas.partition(&tp).is_none(), "a replica was hosted over a file");
        std::fs::remove_file(&blocker).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while replicas.partition(&tp).is_none() {
            assert!(Instant::now() < deadline, "the replica is not hosted 10 s after its log could be opened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(dir.path().join(tp.to_string()).is_dir());
        replicas.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), following).await.expect("reconciliation stops at shutdown").unwrap();
    }

    /// Logs found at start are opened before the metadata says what their
    /// topics keep: retention (whose timer fires at once) and the cleaner
    /// must wait for each topic's own settings, or a topic kept forever,
    /// or compacted, loses its old records to the defaults (`delete`, 7
    /// days) at every restart, and a leader's loss reaches its followers.
    #[test]
    fn retention_waits_for_a_topic_s_own_settings_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let month_ago = now() - 30 * 24 * 3600 * 1000;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let small = LogConfig { segment_bytes: 4096, index_interval_bytes: 256, ..LogConfig::default() };
        for name in ["forever", "compacted", "weekly"] {
            let (log, _) = PartitionLog::open(&dir.path().join(format!("{name}-0")), small.clone()).unwrap();
            for i in 0..60 {
                let key = format!("k{}", i % 3);
                let mut batch = runnel_storage::batch::build_batch(month_ago, &[&[7u8; 200][..]]);
                if name == "compacted" {
                    batch = runnel_storage::batch::build_keyed_batch(month_ago, &[(Some(key.as_bytes()), Some(&[7u8; 200][..]))]);
                }
                log.append(&batch, 0).unwrap();
            }
            assert!(log.segment_count() > 3);
            runtime.block_on(log.flush()).unwrap();
        }
        // The node restarts: every log is open, the metadata not applied yet.
        let replicas = manager(dir.path());
        assert_eq!(replicas.logs.enforce_retention(), 0, "retention ran on default settings before the topics' own were known");

        let mut image = MetadataImage::default();
        image.cluster_id = Some("c".into());
        let with = |configs: &[(&str, &str)]| {
            let mut t = (*topic(1)).clone();
            t.configs = configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Arc::new(t)
        };
        image.topics.insert("forever".into(), with(&[("retention.ms", "-1")]));
        image.topics.insert("compacted".into(), with(&[("cleanup.policy", "compact")]));
        image.topics.insert("weekly".into(), with(&[]));
        // A request that reaches a log before reconciliation gives it its
        // topic's settings (a compacted topic refuses keyless records).
        let compacted = TopicPartition::new("compacted", 0);
        let t = image.topics["compacted"].clone();
        let partition = replicas.ensure(&compacted, &t, &t.partitions[0], 1, &image, None).unwrap().expect("hosted");
        assert!(partition.log().is_compacted() && !partition.log().config_is_provisional());
        replicas.reconcile(&image, 1);
        replicas.logs.enforce_retention();
        let start = |name: &str| replicas.logs.get(&TopicPartition::new(name, 0)).unwrap().log_start_offset();
        assert_eq!(start("forever"), 0, "a topic kept forever lost records");
        assert_eq!(start("compacted"), 0, "a compacted topic lost records to retention");
        assert!(start("weekly") > 0, "a topic on the defaults keeps records older than their 7 days");
    }

    /// A reconciliation pass looks only at the topics that changed, and at
    /// everything when the cluster or this node's registration changed.
    #[test]
    fn a_pass_covers_the_changed_topics_or_everything() {
        let mut image = MetadataImage::default();
        image.cluster_id = Some("c".into());
        image.topics.insert("a".into(), topic(3));
        image.topics.insert("b".into(), topic(10_000));
        let before = seen(&image, true);
        assert_eq!(before.changed_topics(&image, true), Some(BTreeMap::new()), "nothing changed");

        let mut isr = image.clone();
        Arc::make_mut(isr.topics.get_mut("a").unwrap()).partitions[1].isr = vec![NodeId(2)];
        assert_eq!(before.changed_topics(&isr, true), Some(BTreeMap::from([("a".to_string(), 3)])));

        // A broker-only node's image arrives whole: equal copies are unchanged.
        let mut copied = image.clone();
        for t in copied.topics.values_mut() {
            *t = Arc::new((**t).clone());
        }
        assert_eq!(before.changed_topics(&copied, true), Some(BTreeMap::new()));

        // Created, deleted, re-created (with more partitions): each log of
        // the old and the new one is looked at.
        let mut added = image.clone();
        added.topics.insert("c".into(), topic(1));
        assert_eq!(before.changed_topics(&added, true), Some(BTreeMap::from([("c".to_string(), 1)])));
        let mut deleted = image.clone();
        deleted.topics.remove("b");
        assert_eq!(before.changed_topics(&deleted, true), Some(BTreeMap::from([("b".to_string(), 10_000)])));
        let mut recreated = image.clone();
        recreated.topics.insert("a".into(), topic(5));
        assert_eq!(before.changed_topics(&recreated, true), Some(BTreeMap::from([("a".to_string(), 5)])));
        let mut other = image.clone();
        other.cluster_id = Some("d".into());
        assert_eq!(before.changed_topics(&other, true), None, "another cluster");
        assert_eq!(before.changed_topics(&image, false), None, "the registration changed");
    }
}
