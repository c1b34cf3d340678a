//! The consumer-group coordinator. It is active on the node whose controller
//! leads the Raft quorum, for every group at once. Membership lives in
//! memory here; each completed generation and every offset commit is
//! committed through Raft before it is acknowledged, so a coordinator on a
//! newly elected leader resumes every group from the metadata image. From
//! feature level 15, so is every change of a KIP-848 group (members, their
//! epochs and assignments): the heartbeat that made it is answered once the
//! group's record is committed, and the records of groups changed meanwhile
//! share the next Raft entry.
//!
//! A new leader serves groups only once it has applied everything committed
//! before its term (its own term's first entry); until then requests get
//! COORDINATOR_LOAD_IN_PROGRESS. A node that stops leading drops its groups,
//! and every request waiting on them gets NOT_COORDINATOR.

pub mod consumer;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use runnel_controller::Metadata;
use runnel_controller::groups::{OffsetCommit, OffsetRecord, validate_group_id};
use runnel_controller::metadata::{Command, CommandOk};
use runnel_controller::shared::Shared;
use runnel_protocol::kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tracing::Instrument;

use consumer::{ConsumerGroup, Heartbeat, HeartbeatReply, Refusal, Topics};
use state::{Group, GroupState, JoinRequest, JoinResult, Joined, Reply, Store, SyncResult};

use crate::term::{Standing, standing};

/// Group settings, as Kafka's broker configs name them.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// group.min.session.timeout.ms
    pub min_session_timeout: Duration,
    /// group.max.session.timeout.ms
    pub max_session_timeout: Duration,
    /// group.initial.rebalance.delay.ms
    pub initial_rebalance_delay: Duration,
    /// group.consumer.session.timeout.ms (KIP-848 groups)
    pub consumer_session_timeout: Duration,
    /// group.consumer.heartbeat.interval.ms (KIP-848 groups)
    pub consumer_heartbeat_interval: Duration,
    /// offsets.retention.minutes: how long the offsets of a group without
    /// members are kept (from its last commit, and from when this
    /// coordinator first found it empty, whichever is later).
    pub offsets_retention: Duration,
    /// offsets.retention.check.interval.ms
    pub offsets_retention_check_interval: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(30 * 60),
            initial_rebalance_delay: Duration::from_secs(3),
            consumer_session_timeout: Duration::from_secs(45),
            consumer_heartbeat_interval: Duration::from_secs(5),
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_secs(600),
        }
    }
}

/// A partition and its committed offset, if any.
pub type CommittedOffset = ((String, i32), Option<OffsetRecord>);

/// offset.metadata.max.bytes
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// How often session timeouts and rebalance deadlines are checked.
const TICK: Duration = Duration::from_millis(50);

/// A member as DescribeGroups shows it.
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

pub struct GroupSummary {
    pub state: &'static str,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

#[derive(Default)]
struct Inner {
    /// The Raft term the groups were loaded for; None while not coordinating.
    term: Option<u64>,
    groups: HashMap<String, Group>,
    /// KIP-848 groups; a group id is in at most one of the two maps.
    consumers: HashMap<String, ConsumerGroup>,
    /// Whether every KIP-848 group in memory is in the metadata or on its
    /// way: false from a load below level 15 until the level is raised,
    /// when the groups made before it are written.
    consumers_kept: bool,
    /// Groups without members, by when an expiry check of this term first
    /// found them so (ms since the epoch): their offsets are kept at least
    /// the retention from then, so a coordinator move only delays expiry.
    empty_since: HashMap<String, i64>,
}

pub struct GroupCoordinator {
    metadata: Metadata,
    config: GroupConfig,
    inner: Mutex<Inner>,
    commits: Mutex<CommitQueue>,
    /// The image's topics and the consumer groups' view of them.
    topics: Mutex<Option<(ImageTopics, Arc<Topics>)>>,
    /// KIP-848 groups changed since their last record (level 15).
    writes: Mutex<GroupWrites>,
    /// Classic groups' generations to store, in order, per group; a group
    /// is here while its writer runs.
    stores: Mutex<HashMap<String, VecDeque<QueuedStore>>>,
}

/// (term, generation, who waits for the outcome)
type QueuedStore = (u64, runnel_controller::groups::Generation, oneshot::Sender<Result<(), ResponseError>>);

/// The outcome of a queued store.
struct StoreReply(oneshot::Receiver<Result<(), ResponseError>>);

impl StoreReply {
    async fn wait(self) -> Result<(), ResponseError> {
        self.0.await.unwrap_or(Err(ResponseError::NotCoordinator))
    }
}

/// KIP-848 groups whose records are to be written, and who waits for them.
#[derive(Default)]
struct GroupWrites {
    /// Counts the changes marked; a waiter waits until a write that began
    /// after its mark has committed.
    marked: u64,
    dirty: BTreeSet<String>,
    /// A task is writing records.
    flushing: bool,
    /// (mark, term, reply)
    waiters: Vec<(u64, u64, WrittenReply)>,
}

/// Answers a waiter once its group's record is committed, or why not.
type WrittenReply = oneshot::Sender<Result<(), ResponseError>>;

/// A change of a KIP-848 group on its way to the metadata: the heartbeat
/// that made it is answered once it is committed.
pub struct Persisting(Option<oneshot::Receiver<Result<(), ResponseError>>>);

impl Persisting {
    pub async fn wait(self) -> Result<(), ResponseError> {
        match self.0 {
            Some(rx) => rx.await.unwrap_or(Err(ResponseError::NotCoordinator)),
            None => Ok(()),
        }
    }
}

type ImageTopics = Shared<BTreeMap<String, Arc<runnel_controller::records::TopicRecord>>>;

/// Offset commits waiting for the next Raft entry.
#[derive(Default)]
struct CommitQueue {
    pending: Vec<QueuedCommit>,
    /// A task is committing queued offsets.
    flushing: bool,
}

struct QueuedCommit {
    term: u64,
    group: String,
    offsets: Vec<OffsetCommit>,
    reply: oneshot::Sender<Result<Vec<(String, i32)>, ResponseError>>,
}

/// Group commits per Raft entry, at most.
const COMMIT_BATCH_MAX: usize = 1000;

impl GroupCoordinator {
    pub fn new(metadata: Metadata, config: GroupConfig) -> Arc<GroupCoordinator> {
        Arc::new(GroupCoordinator {
            metadata,
            config,
            inner: Mutex::new(Inner::default()),
            commits: Mutex::new(CommitQueue::default()),
            topics: Mutex::new(None),
            writes: Mutex::new(GroupWrites::default()),
            stores: Mutex::new(HashMap::new()),
        })
    }

    /// Whether KIP-848 groups are kept in the metadata (level 15).
    fn keeps_consumer_groups(&self) -> bool {
        self.metadata.state().image.finalized_level() >= runnel_controller::features::CONSUMER_GROUPS_LEVEL
    }

    /// Marks groups whose records must be written (none: only waits for
    /// the writes in flight), and starts the writer if it is idle. With
    /// `wait`, the receiver answers once they are committed.
    fn mark_changed(self: &Arc<Self>, term: u64, groups: impl IntoIterator<Item = String>, wait: bool) -> Persisting {
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        writes.marked += 1;
        let mark = writes.marked;
        writes.dirty.extend(groups);
        let rx = wait.then(|| {
            let (tx, rx) = oneshot::channel();
            writes.waiters.push((mark, term, tx));
            rx
        });
        if !std::mem::replace(&mut writes.flushing, true) {
            tokio::spawn(self.clone().write_groups().in_current_span());
        }
        Persisting(rx)
    }

    /// Writes the records of changed groups, each as it is when the entry
    /// is made, one Raft entry per round, until none are left. One writer
    /// at a time, so a group's records commit in the order of its changes.
    async fn write_groups(self: Arc<Self>) {
        loop {
            let (upto, ids) = {
                let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
                if writes.dirty.is_empty() {
                    // Every change marked so far is written.
                    for (_, _, reply) in writes.waiters.drain(..) {
                        let _ = reply.send(Ok(()));
                    }
                    writes.flushing = false;
                    return;
                }
                (writes.marked, std::mem::take(&mut writes.dirty))
            };
            let (term, groups) = {
                let inner = self.lock();
                (inner.term, ids.into_iter().map(|id| (id.clone(), inner.consumers.get(&id).map(ConsumerGroup::to_record))).collect::<Vec<_>>())
            };
            let outcome = match term {
                Some(term) => self.commit(term, Command::PutConsumerGroups { groups }).await.map(|_| ()),
                None => Err(ResponseError::NotCoordinator),
            };
            if let Err(e) = outcome {
                // A write that timed out without a quorum stays in the
                // leader's log and commits when the quorum is back; one
                // refused otherwise is written whole by the group's next
                // change.
                tracing::warn!(error = ?e, "could not write consumer groups' records");
            }
            let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
            let waiters = std::mem::take(&mut writes.waiters);
            for (mark, waiter_term, reply) in waiters {
                if mark > upto {
                    writes.waiters.push((mark, waiter_term, reply));
                } else {
                    let _ = reply.send(if Some(waiter_term) == term { outcome } else { Err(ResponseError::NotCoordinator) });
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure the groups are loaded for the current term; the term, or
    /// why this node cannot coordinate now.
    fn ensure_loaded(&self, inner: &mut Inner) -> Result<u64, ResponseError> {
        let term = match standing(&self.metadata) {
            Standing::Leading(term) => term,
            Standing::NotLeading => {
                if inner.term.take().is_some() {
                    tracing::info!(groups = inner.groups.len(), "no longer the controller leader: dropping the consumer groups");
                    inner.groups.clear();
                    inner.consumers.clear();
                }
                return Err(ResponseError::NotCoordinator);
            }
            Standing::Loading => {
                inner.term = None;
                inner.groups.clear();
                inner.consumers.clear();
                return Err(ResponseError::CoordinatorLoadInProgress);
            }
        };
        if inner.term == Some(term) {
            return Ok(term);
        }
        let applied = self.metadata.state();
        let now = Instant::now();
        let image = &applied.image;
        inner.consumers = image.consumer_groups.iter().map(|(id, record)| (id.clone(), ConsumerGroup::from_record(id, record, now))).collect();
        inner.groups = image
            .groups
            .iter()
            .filter(|(id, _)| !image.consumer_groups.contains_key(*id))
            .map(|(id, record)| (id.clone(), Group::resume(id, &record.generation, now)))
            .collect();
        inner.term = Some(term);
        inner.empty_since.clear();
        inner.consumers_kept = image.finalized_level() >= runnel_controller::features::CONSUMER_GROUPS_LEVEL;
        tracing::info!(term, groups = inner.groups.len(), consumer_groups = inner.consumers.len(), "coordinating consumer groups");
        Ok(term)
    }

    /// Commits a group change through Raft, only while leading `term`.
    async fn commit(&self, term: u64, command: Command) -> Result<CommandOk, ResponseError> {
        crate::term::propose(&self.metadata, term, command, "group").await
    }

    /// Queues a classic group's generation to be stored. Called while the
    /// groups are locked, so a group's stores reach Raft in the order the
    /// coordinator made them (two static members restarting together each
    /// store the group as it is then; the later must be applied last). One
    /// writer per group, so groups do not wait for each other.
    fn queue_store(self: &Arc<Self>, term: u64, group_id: &str, store: Store) -> StoreReply {
        let (reply, answer) = oneshot::channel();
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        match stores.get_mut(group_id) {
            Some(queue) => queue.push_back((term, store.generation, reply)),
            None => {
                stores.insert(group_id.to_string(), VecDeque::from([(term, store.generation, reply)]));
                tokio::spawn(self.clone().write_stores(group_id.to_string()).in_current_span());
            }
        }
        StoreReply(answer)
    }

    /// Commits the queued generations of one group, in order, until none
    /// are left.
    async fn write_stores(self: Arc<Self>, group: String) {
        loop {
            let (term, generation, reply) = {
                let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
                let Some(next) = stores.get_mut(&group).and_then(VecDeque::pop_front) else {
                    stores.remove(&group);
                    return;
                };
                next
            };
            let result = self.commit(term, Command::StoreGroup { group: group.clone(), generation }).await.map(|_| ());
            let _ = reply.send(result);
        }
    }

    /// Runs the timers of every group until `stop` completes.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut expiry_checked = Instant::now();
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = interval.tick() => {}
            }
            if expiry_checked.elapsed() >= self.config.offsets_retention_check_interval {
                expiry_checked = Instant::now();
                let me = self.clone();
                tokio::spawn(async move { me.expire_offsets().await }.in_current_span());
            }
            let mut stores = Vec::new();
            {
                let mut inner = self.lock();
                let Ok(term) = self.ensure_loaded(&mut inner) else { continue };
                let now = Instant::now();
                for (id, group) in inner.groups.iter_mut() {
                    if let Some(store) = group.tick(now) {
                        stores.push((id.clone(), self.queue_store(term, id, store)));
                    }
                }
                let mut changed = Vec::new();
                for group in inner.consumers.values_mut() {
                    let expired = group.expire(now, self.config.consumer_session_timeout);
                    for member in &expired {
                        tracing::info!(group = %group.id, %member, "consumer group member expired");
                    }
                    if !expired.is_empty() {
                        changed.push(group.id.clone());
                    }
                }
                if !inner.consumers_kept && self.keeps_consumer_groups() {
                    // The level was just raised: the groups made before it.
                    inner.consumers_kept = true;
                    changed = inner.consumers.keys().cloned().collect();
                    if !changed.is_empty() {
                        tracing::info!(groups = changed.len(), "feature level 15: writing the consumer groups to the metadata");
                    }
                }
                if !changed.is_empty() && self.keeps_consumer_groups() {
                    self.mark_changed(term, changed, false);
                }
            }
            for (id, stored) in stores {
                tokio::spawn(
                    async move {
                        if let Err(e) = stored.wait().await {
                            tracing::warn!(group = %id, error = ?e, "could not store the group's empty generation");
                        }
                    }
                    .in_current_span(),
                );
            }
        }
    }

    /// Expires the committed offsets of groups without members once they
    /// are older than the retention, counted from their commit and from
    /// when this coordinator first found the group empty, whichever is
    /// later; a group left with no offsets and no members goes (Kafka's
    /// offsets.retention.minutes, KIP-211). A group with members keeps the
    /// offsets of the topics they subscribe to; those of other topics
    /// expire the retention after their commit (KIP-496), where the
    /// subscriptions can be told: a KIP-848 group, or a stable classic
    /// group of the "consumer" protocol. The metadata expires an offset only
    /// if it was not committed again meanwhile (level 16).
    async fn expire_offsets(self: Arc<Self>) {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let retention = self.config.offsets_retention.as_millis().min(i64::MAX as u128) as i64;
        let (term, expired) = {
            let mut inner = self.lock();
            let Ok(term) = self.ensure_loaded(&mut inner) else { return };
            let applied = self.metadata.state();
            let image = &applied.image;
            if image.finalized_level() < runnel_controller::features::OFFSET_EXPIRY_LEVEL {
                return;
            }
            let Inner { groups, consumers, empty_since, .. } = &mut *inner;
            let empty = |id: &str| groups.get(id).is_none_or(Group::is_idle) && consumers.get(id).is_none_or(ConsumerGroup::is_empty);
            empty_since.retain(|id, _| empty(id));
            let mut expired = Vec::new();
            let topics = self.topics();
            let ids: BTreeSet<&String> = image.groups.keys().chain(image.consumer_groups.keys()).collect();
            for id in ids {
                let offsets = image.groups.get(id).map(|g| &g.offsets);
                // Members the metadata holds: a group whose members are not
                // stored yet could be deleted with its last offsets.
                let stored_members = image.groups.get(id).is_some_and(|g| !g.generation.members.is_empty())
                    || image.consumer_groups.get(id).is_some_and(|c| !c.members.is_empty());
                let idle = empty(id);
                let (since, subscribed) = if idle {
                    (*empty_since.entry(id.clone()).or_insert(now_ms), BTreeSet::new())
                } else if !stored_members {
                    continue;
                } else if let Some(group) = consumers.get(id).filter(|c| !c.is_empty()) {
                    (i64::MIN, group.subscribed_topics(&topics))
                } else if let Some(topics) = groups.get(id).filter(|g| g.state == GroupState::Stable).and_then(Group::subscribed_topics) {
                    (i64::MIN, topics.into_iter().collect())
                } else {
                    continue;
                };
                let old: Vec<(String, i32, i64)> = offsets
                    .into_iter()
                    .flatten()
                    .filter(|((topic, _), o)| !subscribed.contains(topic) && now_ms.saturating_sub(o.commit_time_ms.max(since)) >= retention)
                    .map(|((topic, partition), o)| (topic.clone(), *partition, o.commit_time_ms))
                    .collect();
                // An empty group with no offsets goes at once, as Kafka's does.
                if !old.is_empty() || (idle && offsets.is_none_or(|o| o.is_empty())) {
                    expired.push((id.clone(), old));
                }
            }
            (term, expired)
        };
        if expired.is_empty() {
            return;
        }
        let count: usize = expired.iter().map(|(_, o)| o.len()).sum();
        let ids: Vec<String> = expired.iter().map(|(id, _)| id.clone()).collect();
        if let Err(e) = self.commit(term, Command::ExpireOffsets { groups: expired }).await {
            tracing::warn!(error = ?e, "could not expire committed offsets");
            return;
        }
        let applied = self.metadata.state();
        let mut inner = self.lock();
        if inner.term != Some(term) {
            return;
        }
        let mut gone = 0;
        for id in ids {
            if applied.image.groups.contains_key(&id) || applied.image.consumer_groups.contains_key(&id) {
                continue;
            }
            // Forgotten in memory too, unless a member joined meanwhile.
            if inner.groups.get(&id).is_some_and(Group::is_idle) {
                inner.groups.remove(&id);
            }
            if inner.consumers.get(&id).is_some_and(ConsumerGroup::is_empty) {
                inner.consumers.remove(&id);
            }
            inner.empty_since.remove(&id);
            gone += 1;
        }
        tracing::info!(offsets = count, groups_deleted = gone, "expired committed offsets past offsets.retention.minutes");
    }

    pub async fn join(self: &Arc<Self>, group_id: &str, request: JoinRequest) -> JoinResult {
        let member_id = request.member_id.clone();
        if validate_group_id(group_id).is_err() {
            return JoinResult::error(ResponseError::InvalidGroupId, &member_id);
        }
        if request.session_timeout < self.config.min_session_timeout || request.session_timeout > self.config.max_session_timeout {
            return JoinResult::error(ResponseError::InvalidSessionTimeout, &member_id);
        }
        let reply = {
            let mut inner = self.lock();
            let term = match self.ensure_loaded(&mut inner) {
                Ok(term) => term,
                Err(e) => return JoinResult::error(e, &member_id),
            };
            match inner.consumers.get(group_id) {
                Some(c) if !c.is_empty() => return JoinResult::error(ResponseError::InconsistentGroupProtocol, &member_id),
                Some(_) => {
                    // An empty consumer group becomes a classic one.
                    inner.consumers.remove(group_id);
                    if self.keeps_consumer_groups() {
                        self.mark_changed(term, [group_id.to_string()], false);
                    }
                }
                None => {}
            }
            let group = inner.groups.entry(group_id.to_string()).or_insert_with(|| self.new_classic(group_id));
            match group.join(request, Instant::now(), self.config.initial_rebalance_delay) {
                Joined::Static(rejoin) => {
                    let store = Store { generation: rejoin.store.generation.clone(), for_sync: false };
                    Err((rejoin, term, self.queue_store(term, group_id, store)))
                }
                Joined::Reply(reply) => Ok(reply),
            }
        };
        match reply {
            Ok(Reply::Now(r)) => r,
            Ok(Reply::Later(rx)) => rx.await.unwrap_or_else(|_| JoinResult::error(ResponseError::NotCoordinator, &member_id)),
            Err((rejoin, term, stored)) => {
                // Awaited in a task of its own, so a client that goes away
                // cannot leave the new id unstored and not reverted.
                let me = self.clone();
                let group_id = group_id.to_string();
                let task = tokio::spawn(
                    async move {
                        let rejoin = *rejoin;
                        match stored.wait().await {
                            Ok(()) => rejoin.answer,
                            Err(e) => {
                                tracing::warn!(group = %group_id, error = ?e, "could not store a static member's new id; it keeps its old one");
                                let mut inner = me.lock();
                                if inner.term == Some(term)
                                    && let Some(group) = inner.groups.get_mut(&group_id)
                                {
                                    group.static_rejoin_failed(rejoin);
                                }
                                JoinResult::error(e, "")
                            }
                        }
                    }
                    .in_current_span(),
                );
                task.await.unwrap_or_else(|_| JoinResult::error(ResponseError::NotCoordinator, &member_id))
            }
        }
    }

    /// A classic group made anew under an id whose earlier generations are
    /// stored (it was a KIP-848 group, or only kept offsets): it counts on
    /// from the stored generation, which the metadata never lets go back.
    fn new_classic(&self, group_id: &str) -> Group {
        let mut group = Group::new(group_id);
        if let Some(stored) = self.metadata.state().image.groups.get(group_id) {
            group.generation = stored.generation.generation;
        }
        group
    }

    pub async fn sync(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let (reply, store, term) = {
            let mut inner = self.lock();
            let term = self.ensure_loaded(&mut inner)?;
            let Some(group) = inner.groups.get_mut(group_id) else { return Err(ResponseError::UnknownMemberId) };
            let (reply, store) = group.sync(member_id, instance_id, generation, assignments, Instant::now())?;
            let store = store.map(|store| {
                debug_assert!(store.for_sync);
                (store.generation.generation, self.queue_store(term, group_id, store))
            });
            (reply, store, term)
        };
        if let Some((generation, stored)) = store {
            // In a task of its own: the members wait on the outcome, so it
            // must be reported even if the leader's request is dropped.
            let me = self.clone();
            let group_id = group_id.to_string();
            let task = tokio::spawn(
                async move {
                    let result = stored.wait().await;
                    let mut inner = me.lock();
                    if inner.term == Some(term)
                        && let Some(group) = inner.groups.get_mut(&group_id)
                    {
                        group.stored(generation, result, Instant::now());
                    }
                }
                .in_current_span(),
            );
            let _ = task.await;
        }
        match reply {
            Reply::Now(r) => r,
            Reply::Later(rx) => rx.await.unwrap_or(Err(ResponseError::NotCoordinator)),
        }
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<(), ResponseError> {
        let mut inner = self.lock();
        self.ensure_loaded(&mut inner)?;
        let Some(group) = inner.groups.get_mut(group_id) else { return Err(ResponseError::UnknownMemberId) };
        group.heartbeat(member_id, instance_id, generation, Instant::now())
    }

    /// ConsumerGroupHeartbeat (KIP-848): joins, keeps alive, reconciles or
    /// removes one member of a consumer group. An empty classic group
    /// becomes a consumer group; one with members is refused.
    /// `may_describe`, given when an authorizer decides, says which topics
    /// the member's principal may see; the others are never assigned to it.
    /// From level 15 the reply may wait for the group's record
    /// ([`Persisting::wait`]) before it is sent.
    pub fn consumer_heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        mut heartbeat: Heartbeat,
        may_describe: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<(HeartbeatReply, Persisting), Refusal> {
        if validate_group_id(group_id).is_err() {
            return Err((ResponseError::InvalidGroupId, format!("group id {group_id:?} is not valid")));
        }
        let mut inner = self.lock();
        let term = self.ensure_loaded(&mut inner).map_err(|e| (e, String::new()))?;
        if let Some(classic) = inner.groups.get(group_id) {
            if !classic.is_empty() {
                return Err((ResponseError::GroupIdNotFound, format!("group {group_id:?} is a classic group with members, not a consumer group")));
            }
            inner.groups.remove(group_id);
        }
        let topics = self.topics();
        if let Some(may_describe) = may_describe {
            heartbeat.hidden = topics.keys().filter(|t| !may_describe(t)).cloned().collect();
        }
        let keep = self.keeps_consumer_groups();
        let new = !inner.consumers.contains_key(group_id);
        let group = inner.consumers.entry(group_id.to_string()).or_insert_with(|| ConsumerGroup::new(group_id));
        let before = keep.then(|| group.kept_by(&heartbeat.member_id));
        let reply = group.heartbeat(heartbeat, &topics, Instant::now())?;
        let changed = before.is_some_and(|before| new || before != group.kept_by(&reply.member_id));
        let persisting = if changed { self.mark_changed(term, [group_id.to_string()], true) } else { Persisting(None) };
        Ok((reply, persisting))
    }

    /// How often consumer-group members heartbeat.
    pub fn consumer_heartbeat_interval(&self) -> Duration {
        self.config.consumer_heartbeat_interval
    }

    /// Every topic by name, with its id and partition count: built again
    /// only when the image's topics changed (`Shared::same`), so heartbeats
    /// between topic changes share one map.
    fn topics(&self) -> Arc<Topics> {
        let image_topics = self.metadata.state().image.topics.clone();
        let mut cache = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((from, topics)) = cache.as_ref()
            && Shared::same(from, &image_topics)
        {
            return topics.clone();
        }
        let topics: Arc<Topics> = Arc::new(image_topics.iter().map(|(name, t)| (name.clone(), (t.id, t.partitions.len() as i32))).collect());
        *cache = Some((image_topics, topics.clone()));
        topics
    }

    /// LeaveGroup for each (member id, instance id); per-member outcomes.
    /// When the last member leaves, the group is Empty at once (as in
    /// Kafka), and its empty generation is stored before the answer, so a
    /// DeleteGroups right after it finds the group empty.
    pub async fn leave(self: &Arc<Self>, group_id: &str, members: &[(String, Option<String>)]) -> Result<Vec<Result<String, ResponseError>>, ResponseError> {
        let (outcomes, store) = {
            let mut inner = self.lock();
            let term = self.ensure_loaded(&mut inner)?;
            let Some(group) = inner.groups.get_mut(group_id) else { return Err(ResponseError::UnknownMemberId) };
            let now = Instant::now();
            let outcomes: Vec<_> = members.iter().map(|(m, i)| group.leave(m, i.as_deref(), now)).collect();
            let store = group.maybe_complete_join(now).map(|store| self.queue_store(term, group_id, store));
            (outcomes, store)
        };
        if let Some(stored) = store
            && let Err(e) = stored.wait().await
        {
            tracing::warn!(group = %group_id, error = ?e, "could not store the group's empty generation");
        }
        Ok(outcomes)
    }

    /// TxnOffsetCommit's group check (KIP-447): a producer that sends the
    /// consumer's member id and generation (TxnOffsetCommit v3+) is refused
    /// once that member has left the group or the group has moved to a
    /// later generation, so a zombie instance cannot commit offsets for
    /// partitions now assigned elsewhere. Without them (older clients, or a
    /// group used only for offsets) nothing is checked. Unlike OffsetCommit,
    /// a rebalance in progress is no error.
    pub fn check_txn_commit(&self, group_id: &str, generation: i32, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        if validate_group_id(group_id).is_err() {
            return Err(ResponseError::InvalidGroupId);
        }
        let mut inner = self.lock();
        self.ensure_loaded(&mut inner)?;
        if let Some(group) = inner.consumers.get(group_id) {
            return if member_id.is_empty() && generation < 0 { Ok(()) } else { group.check_commit(member_id, generation) };
        }
        let Some(group) = inner.groups.get(group_id) else { return Ok(()) };
        if generation < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        if !member_id.is_empty() {
            return group.check_member(member_id, instance_id, (generation >= 0).then_some(generation));
        }
        if generation >= 0 && generation != group.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// OffsetCommit: checks the member and generation as Kafka does, then
    /// commits through Raft. Returns the partitions that do not exist.
    pub async fn commit_offsets(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<OffsetCommit>,
    ) -> Result<Vec<(String, i32)>, ResponseError> {
        if validate_group_id(group_id).is_err() {
            return Err(ResponseError::InvalidGroupId);
        }
        let term = {
            let mut inner = self.lock();
            let term = self.ensure_loaded(&mut inner)?;
            if let Some(group) = inner.consumers.get(group_id) {
                // KIP-848: the generation is the member epoch.
                group.check_commit(member_id, generation)?;
            } else {
                self.check_classic_commit(&mut inner, group_id, generation, member_id, instance_id)?;
            }
            term
        };
        self.commit_checked(term, group_id, offsets).await
    }

    /// OffsetCommit's checks for a classic group (or none yet).
    fn check_classic_commit(
        &self,
        inner: &mut Inner,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        match inner.groups.get_mut(group_id) {
            // Standalone consumers use a group only to keep offsets.
            None if generation < 0 => {
                inner.groups.insert(group_id.to_string(), self.new_classic(group_id));
            }
            None => return Err(ResponseError::IllegalGeneration),
            Some(group) if generation < 0 && group.state == GroupState::Empty => {}
            Some(group) => {
                if group.state == GroupState::CompletingRebalance {
                    return Err(ResponseError::RebalanceInProgress);
                }
                group.check_member(member_id, instance_id, Some(generation))?;
                group.touch(member_id, Instant::now());
            }
        }
        Ok(())
    }

    /// Queues offsets for the next Raft entry: commits that arrive while one
    /// entry is being committed share the next one (group commit).
    async fn commit_checked(self: &Arc<Self>, term: u64, group_id: &str, offsets: Vec<OffsetCommit>) -> Result<Vec<(String, i32)>, ResponseError> {
        if offsets.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let start_flusher = {
            let mut queue = self.commits.lock().unwrap_or_else(|p| p.into_inner());
            queue.pending.push(QueuedCommit { term, group: group_id.to_string(), offsets, reply });
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start_flusher {
            tokio::spawn(self.clone().flush_commits().in_current_span());
        }
        answer.await.unwrap_or(Err(ResponseError::NotCoordinator))
    }

    /// Commits queued offsets, one Raft entry per round, until none are left.
    async fn flush_commits(self: Arc<Self>) {
        loop {
            let batch: Vec<QueuedCommit> = {
                let mut queue = self.commits.lock().unwrap_or_else(|p| p.into_inner());
                if queue.pending.is_empty() {
                    queue.flushing = false;
                    return;
                }
                let n = queue.pending.len().min(COMMIT_BATCH_MAX);
                queue.pending.drain(..n).collect()
            };
            let term = batch[0].term;
            let mut replies = Vec::with_capacity(batch.len());
            let mut commits = Vec::with_capacity(batch.len());
            for c in batch {
                if c.term == term {
                    replies.push(c.reply);
                    commits.push((c.group, c.offsets));
                } else {
                    let _ = c.reply.send(Err(ResponseError::NotCoordinator));
                }
            }
            match self.commit(term, Command::CommitOffsets { commits }).await {
                Ok(CommandOk::OffsetsCommitted { results }) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result.map_err(|e| {
                            tracing::warn!(error = %e, "offsets refused");
                            ResponseError::InvalidGroupId
                        }));
                    }
                }
                outcome => {
                    let error = outcome.err().unwrap_or(ResponseError::UnknownServerError);
                    for reply in replies {
                        let _ = reply.send(Err(error));
                    }
                }
            }
        }
    }

    /// Offsets set by an operator (runnelctl group reset-offsets): only
    /// while the group has no members.
    pub async fn reset_offsets(self: &Arc<Self>, group_id: &str, offsets: Vec<OffsetCommit>) -> Result<Vec<(String, i32)>, (ResponseError, String)> {
        let term = {
            let mut inner = self.lock();
            let term = self.ensure_loaded(&mut inner).map_err(|e| (e, "this node is not the group coordinator".to_string()))?;
            if let Some(group) = inner.consumers.get(group_id)
                && !group.is_empty()
            {
                return Err((
                    ResponseError::NonEmptyGroup,
                    format!("consumer group {group_id:?} has {} active member(s); stop its consumers before resetting offsets", group.members.len()),
                ));
            }
            if let Some(group) = inner.groups.get(group_id) {
                if !group.is_empty() {
                    return Err((
                        ResponseError::NonEmptyGroup,
                        format!(
                            "group {group_id:?} has {} active member(s) ({}); stop its consumers before resetting offsets",
                            group.members.len(),
                            group.state.name()
                        ),
                    ));
                }
            } else {
                let group = self.new_classic(group_id);
                inner.groups.insert(group_id.to_string(), group);
            }
            term
        };
        self.commit_checked(term, group_id, offsets).await.map_err(|e| (e, format!("could not commit the offsets: {e:?}")))
    }

    /// OffsetFetch v9+ from a member of a KIP-848 group (a member id, or a
    /// member epoch of 0 or more): as Kafka checks it, the member must be
    /// in the group (UNKNOWN_MEMBER_ID) at its current epoch
    /// (STALE_MEMBER_EPOCH), so a member fenced meanwhile does not resume
    /// from offsets its successor commits. Without them (an admin client, a
    /// consumer that does not say) and for classic groups nothing is
    /// checked.
    pub fn check_offset_fetch(&self, group_id: &str, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        if member_id.is_empty() && epoch < 0 {
            return Ok(());
        }
        let mut inner = self.lock();
        self.ensure_loaded(&mut inner)?;
        match inner.consumers.get(group_id) {
            Some(group) => group.check_fetch(member_id, epoch),
            None => Ok(()),
        }
    }

    /// Committed offsets of a group: of `partitions`, or all when None.
    pub fn fetch_offsets(&self, group_id: &str, partitions: Option<Vec<(String, i32)>>) -> Result<Vec<CommittedOffset>, ResponseError> {
        {
            let mut inner = self.lock();
            self.ensure_loaded(&mut inner)?;
        }
        let state = self.metadata.state();
        let offsets = state.image.groups.get(group_id).map(|g| g.offsets.clone()).unwrap_or_default();
        Ok(match partitions {
            Some(list) => list
                .into_iter()
                .map(|tp| {
                    let record = offsets.get(&tp).cloned();
                    (tp, record)
                })
                .collect(),
            None => offsets.into_iter().map(|(tp, r)| (tp, Some(r))).collect(),
        })
    }

    /// (group id, protocol type, state, group type) of every group.
    pub fn list(&self) -> Result<Vec<(String, String, &'static str, &'static str)>, ResponseError> {
        let mut inner = self.lock();
        self.ensure_loaded(&mut inner)?;
        let classic = inner.groups.values().map(|g| (g.id.clone(), g.protocol_type.clone().unwrap_or_default(), g.state.name(), CLASSIC));
        let consumer = inner.consumers.values().map(|g| (g.id.clone(), "consumer".to_string(), g.state(), CONSUMER));
        let mut groups: Vec<_> = classic.chain(consumer).collect();
        groups.sort();
        Ok(groups)
    }

    /// None when the group does not exist.
    pub fn describe(&self, group_id: &str) -> Result<Option<GroupSummary>, ResponseError> {
        let mut inner = self.lock();
        self.ensure_loaded(&mut inner)?;
        if let Some(g) = inner.consumers.get(group_id) {
            return Ok(Some(describe_consumer_group(g, &self.topics())));
        }
        let Some(g) = inner.groups.get(group_id) else { return Ok(None) };
        let stable = g.state == GroupState::Stable;
        let protocol = if stable { g.protocol.clone() } else { None };
        Ok(Some(GroupSummary {
            state: g.state.name(),
            generation: g.generation,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone().unwrap_or_default(),
            members: g
                .members
                .values()
                .map(|m| MemberSummary {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable { m.metadata(protocol.as_deref()) } else { Bytes::new() },
                    assignment: if stable { m.assignment.clone() } else { Bytes::new() },
                })
                .collect(),
        }))
    }

    /// ConsumerGroupDescribe: a KIP-848 group as it is now, with the topics
    /// it may name; None when no consumer group has that id.
    pub fn describe_consumer(&self, group_id: &str) -> Result<Option<(ConsumerGroup, Arc<Topics>)>, ResponseError> {
        let mut inner = self.lock();
        self.ensure_loaded(&mut inner)?;
        Ok(inner.consumers.get(group_id).map(|g| (g.clone(), self.topics())))
    }

    /// DeleteGroups: only groups without members; per-group outcome.
    pub async fn delete_groups(self: &Arc<Self>, groups: &[String]) -> Vec<(String, Result<(), ResponseError>)> {
        let (term, mut results, deletable) = {
            let mut inner = self.lock();
            let term = match self.ensure_loaded(&mut inner) {
                Ok(t) => t,
                Err(e) => return groups.iter().map(|g| (g.clone(), Err(e))).collect(),
            };
            let mut results = BTreeMap::new();
            let mut deletable = Vec::new();
            for g in groups {
                if let Some(c) = inner.consumers.get(g) {
                    let outcome = if c.is_empty() {
                        deletable.push(g.clone());
                        Ok(())
                    } else {
                        Err(ResponseError::NonEmptyGroup)
                    };
                    results.insert(g.clone(), outcome);
                    continue;
                }
                let outcome = match inner.groups.get(g) {
                    None => Err(ResponseError::GroupIdNotFound),
                    Some(group) if !group.is_empty() => Err(ResponseError::NonEmptyGroup),
                    Some(_) => {
                        deletable.push(g.clone());
                        Ok(())
                    }
                };
                results.insert(g.clone(), outcome);
            }
            (term, results, deletable)
        };
        if !deletable.is_empty() {
            // A consumer group's record written after the deletion would
            // bring the group back: let the writes in flight land first.
            if self.keeps_consumer_groups() {
                let _ = self.mark_changed(term, [], true).wait().await;
            }
            let outcome = self.commit(term, Command::DeleteGroups { groups: deletable.clone() }).await.map(|_| ());
            let mut inner = self.lock();
            for g in &deletable {
                if outcome.is_ok() && inner.groups.get(g).is_some_and(Group::is_empty) {
                    inner.groups.remove(g);
                }
                if outcome.is_ok() && inner.consumers.get(g).is_some_and(ConsumerGroup::is_empty) {
                    inner.consumers.remove(g);
                }
                results.insert(g.clone(), outcome);
            }
        }
        groups.iter().map(|g| (g.clone(), results.get(g).copied().unwrap_or(Ok(())))).collect()
    }

    /// OffsetDelete: refused for topics the group's members subscribe to.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<((String, i32), Result<(), ResponseError>)>, ResponseError> {
        let (term, subscribed) = {
            let mut inner = self.lock();
            let term = self.ensure_loaded(&mut inner)?;
            if let Some(group) = inner.consumers.get(group_id) {
                let subscribed = group.subscribed_topics(&self.topics());
                (term, Some(subscribed.into_iter().collect()))
            } else {
                let Some(group) = inner.groups.get(group_id) else { return Err(ResponseError::GroupIdNotFound) };
                let subscribed = if group.is_empty() { Some(Vec::new()) } else { group.subscribed_topics() };
                (term, subscribed)
            }
        };
        let Some(subscribed) = subscribed else { return Err(ResponseError::NonEmptyGroup) };
        let (refused, allowed): (Vec<_>, Vec<_>) = partitions.into_iter().partition(|(t, _)| subscribed.contains(t));
        if !allowed.is_empty() {
            self.commit(term, Command::DeleteOffsets { group: group_id.to_string(), partitions: allowed.clone() }).await?;
        }
        Ok(allowed.into_iter().map(|tp| (tp, Ok(()))).chain(refused.into_iter().map(|tp| (tp, Err(ResponseError::GroupSubscribedToTopic)))).collect())
    }

    /// Whether this node coordinates groups now (for metrics and admin).
    pub fn is_active(&self) -> bool {
        let mut inner = self.lock();
        self.ensure_loaded(&mut inner).is_ok()
    }
}

/// The group types of ListGroups v5 and DescribeGroups.
const CLASSIC: &str = "classic";
const CONSUMER: &str = "consumer";

/// A consumer group as DescribeGroups shows it: each member with its
/// subscription and assignment in the "consumer" embedded protocol, so tools
/// written for classic groups show them too.
fn describe_consumer_group(g: &ConsumerGroup, topics: &Topics) -> GroupSummary {
    use runnel_protocol::kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
    use runnel_protocol::kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
    use runnel_protocol::kafka_protocol::protocol::StrBytes;
    let names: HashMap<uuid::Uuid, &String> = topics.iter().map(|(name, (id, _))| (*id, name)).collect();
    let subscribed = g.subscribed_topics(topics);
    let members = g
        .members
        .values()
        .map(|m| {
            let topics: Vec<String> = subscribed.iter().filter(|t| m.topics.contains(t) || m.regex.is_some()).cloned().collect();
            let subscription = ConsumerProtocolSubscription::default().with_topics(topics.into_iter().map(StrBytes::from_string).collect());
            let mut by_topic: BTreeMap<&String, Vec<i32>> = BTreeMap::new();
            for (id, p) in &m.assigned {
                if let Some(name) = names.get(id) {
                    by_topic.entry(name).or_default().push(*p);
                }
            }
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| AssignedTopic::default().with_topic(TopicName(StrBytes::from_string(t.clone()))).with_partitions(ps))
                    .collect(),
            );
            MemberSummary {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: embedded(&subscription),
                assignment: embedded(&assignment),
            }
        })
        .collect();
    GroupSummary { state: g.state(), generation: g.epoch, protocol_type: "consumer".to_string(), protocol: "uniform".to_string(), members }
}

/// `message` as the "consumer" embedded protocol carries it at version 0:
/// the version, then the message; empty if it does not encode.
fn embedded(message: &impl runnel_protocol::kafka_protocol::protocol::Encodable) -> Bytes {
    let mut buf = bytes::BytesMut::new();
    bytes::BufMut::put_i16(&mut buf, 0);
    match message.encode(&mut buf, 0) {
        Ok(()) => buf.freeze(),
        Err(_) => Bytes::new(),
    }
}

/// Offsets checked for size before they are committed.
pub fn offset_commit(topic: &str, partition: i32, offset: i64, leader_epoch: i32, metadata: Option<String>) -> Result<OffsetCommit, ResponseError> {
    if metadata.as_ref().is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES) {
        return Err(ResponseError::OffsetMetadataTooLarge);
    }
    let commit_time_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    Ok(OffsetCommit { topic: topic.to_string(), partition, record: OffsetRecord { offset, leader_epoch, metadata, commit_time_ms } })
}

/// The partitions in a "consumer" protocol assignment; empty when the bytes
/// are not one.
pub fn decode_assignment(bytes: &Bytes) -> Vec<(String, i32)> {
    use runnel_protocol::kafka_protocol::messages::ConsumerProtocolAssignment;
    use runnel_protocol::kafka_protocol::protocol::Decodable;
    if bytes.len() < 2 {
        return Vec::new();
    }
    let mut buf = bytes.clone();
    let version = bytes::Buf::get_i16(&mut buf);
    match ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) {
        Ok(a) => a.assigned_partitions.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p))).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::consumer::{ConsumerGroup, Heartbeat};
    use super::*;

    #[test]
    fn describe_groups_shows_a_consumer_group_s_assignment_in_the_embedded_protocol() {
        let id = uuid::Uuid::from_u128(7);
        let topics: Arc<Topics> = Arc::new([("orders".to_string(), (id, 2))].into_iter().collect());
        let mut g = ConsumerGroup::new("g");
        let join = Heartbeat {
            member_id: "m1".to_string(),
            rebalance_timeout_ms: 30_000,
            topics: Some(vec!["orders".to_string()]),
            owned: Some(Default::default()),
            ..Heartbeat::default()
        };
        g.heartbeat(join, &topics, Instant::now()).unwrap();
        let summary = describe_consumer_group(&g, &topics);
        assert_eq!((summary.protocol_type.as_str(), summary.members.len()), ("consumer", 1));
        let member = &summary.members[0];
        assert_eq!(decode_assignment(&member.assignment), vec![("orders".to_string(), 0), ("orders".to_string(), 1)]);
        assert_eq!(&member.metadata[..2], &[0, 0], "the subscription at version 0");
    }
}
