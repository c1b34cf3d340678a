//! The node's broker: partition logs for the replicas the controller assigns
//! to this node, the metadata it serves clients, and the rules that tie them
//! together (a log exists for each local replica of each topic; the high
//! watermark moves as the flush policy says).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runnel_controller::Metadata;
use runnel_controller::metadata::{Command, CommandOk, MetadataImage, NodeId, PartitionRecord, TopicRecord};
use runnel_controller::store::AppliedState;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_rpc::controller::HeartbeatRequest;
use runnel_storage::{FlushPolicy, LogManager, PartitionLog, StorageError, TopicPartition};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::topics::{TopicError, log_config};

/// Why an acknowledgement could not be given.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Storage(StorageError),
    #[error("leadership moved before the batch was replicated")]
    NotLeader,
}

/// The file in a partition directory naming the topic id it belongs to, so a
/// deleted and re-created topic never inherits the old one's data.
const TOPIC_ID_FILE: &str = "topic.id";

pub struct Broker {
    pub config: BrokerConfig,
    pub logs: LogManager,
    /// The controller in this process, or a remote one for broker-only nodes.
    pub metadata: Metadata,
    /// Producer ids reserved from the controller and not yet handed out.
    producer_ids: tokio::sync::Mutex<std::ops::Range<i64>>,
    /// This broker's registration epoch; 0 until registered.
    epoch: AtomicU64,
    /// Until when this broker may act as a partition leader: the send time
    /// of its last heartbeat (or registration) the controller accepted, plus
    /// the session timeout. The controller cannot have fenced it before then,
    /// since its clock for the session started after that send; after it,
    /// the broker may be fenced without knowing (paused, partitioned away),
    /// so it stops serving as leader until a heartbeat gets through.
    /// Milliseconds after `started` (0: none yet); read on every produce
    /// and fetch, so an atomic rather than a lock.
    lease_until_ms: AtomicU64,
    started: std::time::Instant,
    /// A write to the log directory failed (a full disk, an I/O error): the
    /// heartbeats say so, so the controller fences this broker (its
    /// leaderships move, it leaves every ISR) until a probe write succeeds.
    storage_failed: AtomicBool,
    /// Woken when storage fails, so the controller hears of it at once.
    storage_alarm: Notify,
    /// Woken whenever a high watermark moves or the metadata changes, for
    /// fetches and acks=all produces waiting on them.
    data_arrived: Notify,
    /// Woken at every append on a partition led here, for followers' fetches.
    appended: Notify,
    /// Follower progress of the partitions led here.
    pub replicas: crate::replica::Replicas,
    /// The consumer-group coordinator (active while this node leads the controller quorum).
    pub groups: Arc<crate::groups::Coordinator>,
    /// What `/metrics` reports.
    pub metrics: crate::metrics::Metrics,
    shutdown: watch::Sender<bool>,
    /// Topic ids seen, per name, to notice deletions.
    known_topics: Mutex<BTreeMap<String, Uuid>>,
    /// Local logs whose `topic.id` file has been compared with the metadata
    /// (once per log and process: later re-creations show in `known_topics`).
    ids_checked: Mutex<BTreeSet<TopicPartition>>,
}

impl Broker {
    /// Opens the node's partition logs. Logs are then matched to the metadata
    /// by [`Broker::run_metadata`].
    pub fn open(config: BrokerConfig, metadata: Metadata) -> Result<Arc<Broker>, String> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("create data directory {}: {e}", config.data_dir.display()))?;
        let defaults = config.log.clone();
        let logs = LogManager::open(&config.data_dir.join("logs"), |_| defaults.clone()).map_err(|e| format!("open logs: {e}"))?;
        let (shutdown, _) = watch::channel(false);
        let groups = crate::groups::Coordinator::new(metadata.clone(), config.group.clone());
        Ok(Arc::new(Broker {
            config,
            logs,
            metadata,
            producer_ids: tokio::sync::Mutex::new(0..0),
            epoch: AtomicU64::new(0),
            lease_until_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
            storage_failed: AtomicBool::new(false),
            storage_alarm: Notify::new(),
            data_arrived: Notify::new(),
            appended: Notify::new(),
            replicas: Default::default(),
            groups,
            metrics: crate::metrics::Metrics::new(),
            shutdown,
            known_topics: Mutex::new(BTreeMap::new()),
            ids_checked: Mutex::new(BTreeSet::new()),
        }))
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id as NodeId
    }

    /// The metadata this broker serves from.
    pub fn state(&self) -> Arc<AppliedState> {
        self.metadata.state()
    }

    pub fn image(&self) -> MetadataImage {
        self.state().image.clone()
    }

    pub fn cluster_id(&self) -> String {
        self.state().image.cluster_id.clone().unwrap_or_default()
    }

    /// The log of a partition this broker leads. Errors as Kafka gives them:
    /// unknown partition, or not the leader here.
    pub fn leader_log(&self, topic: &str, partition: i32) -> Result<Arc<PartitionLog>, ResponseError> {
        self.leader_partition(topic, partition).map(|(log, _)| log)
    }

    /// The high watermark a leader may show (KIP-207): a new leader learned
    /// the old one's high watermark a replication round late, so until its
    /// own reaches the start of its leader epoch (which the old one's cannot
    /// have passed) it shows none rather than a lower one.
    pub fn exposed_high_watermark(log: &PartitionLog, leader_epoch: i32) -> Option<i64> {
        let high_watermark = log.high_watermark();
        let epoch_start = log.end_offset_for_epoch(leader_epoch - 1).map_or(0, |(_, end)| end);
        (high_watermark >= epoch_start).then_some(high_watermark)
    }

    /// A partition this broker leads: its log and its metadata record.
    pub fn leader_partition(&self, topic: &str, partition: i32) -> Result<(Arc<PartitionLog>, PartitionRecord), ResponseError> {
        // Until this life's registration is committed and applied here, the
        // metadata may be a restarted node's stale view, naming it leader of
        // partitions that moved while it was down: it must not serve them.
        // Nor once its lease has run out (it may have been fenced meanwhile).
        if !self.is_registered() || !self.holds_lease() {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let state = self.state();
        let Some(t) = state.image.topics.get(topic) else { return Err(ResponseError::UnknownTopicOrPartition) };
        let Some(p) = usize::try_from(partition).ok().and_then(|i| t.partitions.get(i)) else {
            return Err(ResponseError::UnknownTopicOrPartition);
        };
        if p.leader != Some(self.node_id()) {
            return Err(if p.leader.is_none() { ResponseError::LeaderNotAvailable } else { ResponseError::NotLeaderOrFollower });
        }
        let log = self.open_log(topic, t, partition).map_err(|e| {
            tracing::error!(topic, partition, error = %e, "cannot open log");
            ResponseError::KafkaStorageError
        })?;
        Ok((log, p.clone()))
    }

    fn open_log(&self, topic: &str, t: &TopicRecord, partition: i32) -> Result<Arc<PartitionLog>, StorageError> {
        let tp = TopicPartition::new(topic, partition);
        if let Some(log) = self.logs.get(&tp) {
            return Ok(log);
        }
        let log = self.logs.get_or_create(&tp, log_config(&self.config.log, &t.configs))?;
        let id_file = log.dir().join(TOPIC_ID_FILE);
        if !id_file.exists() {
            std::fs::write(&id_file, t.id.to_string()).map_err(|e| StorageError::Io { context: "write topic id".into(), source: e })?;
        }
        Ok(log)
    }

    /// Proposes a metadata change; returns once this node has applied it.
    pub async fn propose(&self, command: Command) -> Result<CommandOk, TopicError> {
        let ok = self.metadata.propose(command).await??;
        Ok(ok)
    }

    /// Creates a topic through the controller.
    pub async fn create_topic(&self, name: &str, partitions: i32, replication_factor: i32, configs: BTreeMap<String, String>) -> Result<Uuid, TopicError> {
        let id = Uuid::new_v4();
        let command = Command::CreateTopic { name: name.to_string(), id, partitions, replication_factor, configs };
        match self.propose(command).await? {
            CommandOk::TopicCreated { id } => Ok(id),
            other => Err(TopicError::new(ResponseError::UnknownServerError, format!("unexpected controller answer {other:?}"))),
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        self.propose(Command::DeleteTopic { name: name.to_string() }).await?;
        Ok(())
    }

    pub async fn add_partitions(&self, name: &str, count: i32) -> Result<(), TopicError> {
        self.propose(Command::CreatePartitions { name: name.to_string(), count }).await?;
        Ok(())
    }

    /// A producer id never handed out before, from blocks the controller reserves.
    pub async fn new_producer_id(&self) -> Result<i64, TopicError> {
        /// Ids reserved per controller round trip.
        const BLOCK: i64 = 1000;
        let mut ids = self.producer_ids.lock().await;
        if ids.is_empty() {
            match self.propose(Command::AllocateProducerIds { count: BLOCK }).await? {
                CommandOk::ProducerIds { first, count } => *ids = first..first + count,
                other => return Err(TopicError::new(ResponseError::UnknownServerError, format!("unexpected controller answer {other:?}"))),
            }
        }
        Ok(ids.next().expect("a fresh block is non-empty"))
    }

    /// Registers this broker with the controller (retrying until a quorum
    /// answers or shutdown), then heartbeats every third of the session timeout.
    pub async fn run_registration(self: Arc<Self>, session_timeout: Duration) {
        let register = Command::RegisterBroker {
            id: self.node_id(),
            kafka_host: self.config.advertised_host.clone(),
            kafka_port: self.config.advertised_port,
            external: self.config.external.as_ref().map(|e| (e.advertised_host.clone(), e.advertised_port)),
            rpc_address: self.config.rpc_address.clone(),
            rack: self.config.rack.clone(),
        };
        // Register into an initialized cluster only: wait for its id.
        let mut rx = self.metadata.subscribe();
        tokio::select! {
            _ = rx.wait_for(|s| s.image.cluster_id.is_some()) => {}
            _ = self.shutdown_requested() => return,
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.is_shutting_down() {
                return;
            }
            let sent = std::time::Instant::now();
            match self.metadata.propose(register.clone()).await {
                Ok(Ok(CommandOk::BrokerRegistered { epoch })) => {
                    self.renew_lease(sent + session_timeout);
                    self.epoch.store(epoch, Ordering::Release);
                    tracing::info!(node_id = self.node_id(), epoch, "registered with the controller");
                    break;
                }
                Ok(other) => tracing::warn!(result = ?other, "unexpected registration result; retrying"),
                Err(e) => tracing::info!(error = %e, "waiting for the controller quorum to register"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown_requested() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        let mut tick = tokio::time::interval(session_timeout / 3);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.storage_alarm.notified() => {}
                _ = self.shutdown_requested() => return,
            }
            if self.storage_failed() {
                self.probe_storage().await;
            }
            let epoch = self.epoch.load(Ordering::Acquire);
            let sent = std::time::Instant::now();
            let held = self.holds_lease();
            let beat = HeartbeatRequest {
                broker_id: self.node_id(),
                broker_epoch: epoch,
                storage_failed: self.storage_failed(),
                metadata_index: self.state().last_applied.map_or(0, |l| l.index),
            };
            match self.metadata.heartbeat(beat).await {
                Some(false) => {
                    self.renew_lease(sent + session_timeout);
                    if !held {
                        tracing::info!("heartbeat accepted: serving as a partition leader again");
                    }
                }
                Some(true) => tracing::debug!("the controller grants no lease: this broker is fenced or its metadata is behind"),
                None => tracing::debug!("no controller leader answered the heartbeat"),
            }
            if held && !self.holds_lease() {
                tracing::warn!(?session_timeout, "no heartbeat accepted for the session timeout: not serving as a partition leader until one is");
            }
        }
    }

    /// Notes a failed write or fsync in the log directory. I/O errors only:
    /// a refused batch says nothing about the disk.
    pub fn note_storage_error(&self, e: &StorageError) {
        if matches!(e, StorageError::Io { .. }) && !self.storage_failed.swap(true, Ordering::AcqRel) {
            tracing::error!(error = %e, "the log directory failed: asking the controller to move this broker's leaderships and replicas' ISR places away until it takes writes again");
            self.storage_alarm.notify_one();
        }
    }

    /// Whether the log directory has failed and not yet recovered.
    pub fn storage_failed(&self) -> bool {
        self.storage_failed.load(Ordering::Acquire)
    }

    /// Tries a write to the failed log directory; clears the failure if it
    /// goes through (space came back), so the next heartbeat unfences this
    /// broker and its followers catch up and rejoin the ISRs.
    async fn probe_storage(self: &Arc<Self>) {
        // A write and an fsync: off the runtime's threads.
        let broker = Arc::clone(self);
        let probe = tokio::task::spawn_blocking(move || broker.logs.probe());
        match probe.await.unwrap_or_else(|e| Err(StorageError::Io { context: "probe task".into(), source: std::io::Error::other(e) })) {
            Ok(()) => {
                self.storage_failed.store(false, Ordering::Release);
                tracing::info!("the log directory takes writes again: rejoining as a replica");
            }
            Err(e) => tracing::debug!(error = %e, "the log directory still fails"),
        }
    }

    /// Controlled shutdown: asks the controller to move this broker's
    /// leaderships to the rest of their ISRs before the process exits, so
    /// clients see a retriable NOT_LEADER_OR_FOLLOWER instead of timeouts.
    /// Skipped when no other broker is live (nothing to hand over to).
    pub async fn controlled_shutdown(&self) {
        let me = self.node_id();
        let image = self.image();
        if image.brokers.get(&me).is_none_or(|b| b.fenced) || !image.brokers.values().any(|b| b.id != me && !b.fenced) {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(5), self.metadata.propose(Command::ControlledShutdown { id: me })).await {
            Ok(Ok(Ok(_))) => tracing::info!("leaderships handed over for a controlled shutdown"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "controlled shutdown refused"),
            Ok(Err(e)) => tracing::warn!(error = %e, "controlled shutdown could not reach the controller"),
            Err(_) => tracing::warn!("controlled shutdown timed out"),
        }
    }

    /// Whether the broker has registered with the controller.
    fn renew_lease(&self, until: std::time::Instant) {
        let ms = until.saturating_duration_since(self.started).as_millis() as u64;
        self.lease_until_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// Whether the controller cannot have fenced this broker yet.
    pub fn holds_lease(&self) -> bool {
        (self.started.elapsed().as_millis() as u64) < self.lease_until_ms.load(Ordering::Acquire)
    }

    pub fn is_registered(&self) -> bool {
        self.epoch.load(Ordering::Acquire) > 0
    }

    /// Follows the metadata: opens logs for the replicas assigned here,
    /// applies topic configs, removes logs of deleted topics. Returns at shutdown.
    pub async fn run_metadata(self: Arc<Self>) {
        let mut rx = self.metadata.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            let broker = self.clone();
            let _ = tokio::task::spawn_blocking(move || broker.reconcile(&state.image)).await;
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = self.shutdown_requested() => return,
            }
        }
    }

    fn reconcile(&self, image: &MetadataImage) {
        let me = self.node_id();
        self.replicas.sync(me, image);
        // Leadership may have moved: wake produces waiting for replication.
        self.notify_data();
        // Topics that disappeared or were re-created since the last look.
        let removed: Vec<String> = {
            let mut known = self.known_topics.lock().unwrap_or_else(|p| p.into_inner());
            let gone = known.iter().filter(|(n, id)| image.topics.get(*n).is_none_or(|t| t.id != **id)).map(|(n, _)| n.clone()).collect();
            *known = image.topics.iter().map(|(n, t)| (n.clone(), t.id)).collect();
            gone
        };
        let mut wanted: BTreeSet<TopicPartition> = BTreeSet::new();
        for (name, t) in &image.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.replicas.contains(&me) {
                    wanted.insert(TopicPartition::new(name.clone(), i as i32));
                }
            }
        }
        let mut checked = self.ids_checked.lock().unwrap_or_else(|p| p.into_inner());
        for (tp, log) in self.logs.all() {
            // A log left from before this process started may belong to a
            // deleted topic of the same name: compare its recorded id once.
            let current_id = image.topics.get(&tp.topic).map(|t| t.id);
            let stale_id = current_id.is_some() && checked.insert(tp.clone()) && {
                let local = std::fs::read_to_string(log.dir().join(TOPIC_ID_FILE)).ok().and_then(|s| s.trim().parse::<Uuid>().ok());
                local.is_some_and(|local| Some(local) != current_id)
            };
            if removed.contains(&tp.topic) || stale_id || (image.cluster_id.is_some() && !wanted.contains(&tp) && current_id.is_some()) {
                tracing::info!(partition = %tp, "removing a log that is no longer assigned here");
                checked.remove(&tp);
                if let Err(e) = self.logs.remove(&tp) {
                    tracing::error!(partition = %tp, error = %e, "could not remove log");
                }
            }
        }
        drop(checked);
        for tp in wanted {
            let t = &image.topics[&tp.topic];
            match self.open_log(&tp.topic, t, tp.partition) {
                Ok(log) => {
                    let config = log_config(&self.config.log, &t.configs);
                    if log.config() != config {
                        log.set_config(config);
                    }
                }
                Err(e) => tracing::error!(partition = %tp, error = %e, "cannot open log"),
            }
        }
    }

    /// The partition record of a topic, if it exists.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionRecord> {
        self.state().image.topics.get(topic).and_then(|t| usize::try_from(partition).ok().and_then(|i| t.partitions.get(i).cloned()))
    }

    /// Makes data appended up to `end` on a partition led here durable as the
    /// flush policy says (fsynced under `Always`) and moves the high
    /// watermark as far as the ISR allows. With `wait_for_isr` (acks=all) it
    /// returns only when the high watermark has passed `end`, which under the
    /// default policy means every ISR member has fsynced the data; it fails
    /// with `NotLeader` if leadership moves on first.
    pub async fn commit(&self, tp: &TopicPartition, log: &PartitionLog, end: i64, wait_for_isr: bool, leader_epoch: i32) -> Result<(), CommitError> {
        if self.config.log.flush == FlushPolicy::Always {
            log.flush_to(end).await.map_err(|e| {
                self.note_storage_error(&e);
                CommitError::Storage(e)
            })?;
        }
        self.update_high_watermark(tp, log);
        if !wait_for_isr {
            return Ok(());
        }
        #[cfg(feature = "failpoints")]
        if runnel_storage::failpoints::ACK_BEFORE_REPLICATION.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        loop {
            let arrived = self.data_arrived();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if log.high_watermark() >= end {
                return Ok(());
            }
            let still_leader = self.partition(&tp.topic, tp.partition).is_some_and(|p| p.leader == Some(self.node_id()) && p.leader_epoch == leader_epoch);
            if !still_leader {
                return Err(CommitError::NotLeader);
            }
            arrived.await;
        }
    }

    /// A future that completes at the next high-watermark move or metadata
    /// change; create it before checking for data so no wake-up is missed.
    pub fn data_arrived(&self) -> tokio::sync::futures::Notified<'_> {
        self.data_arrived.notified()
    }

    pub fn notify_data(&self) {
        self.data_arrived.notify_waiters();
    }

    /// Completes at the next append to a partition led here.
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    pub fn notify_appended(&self) {
        self.appended.notify_waiters();
    }

    /// Completes once shutdown has begun.
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await.is_ok();
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Asks the listener and every connection to stop taking requests.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.data_arrived.notify_waiters();
        self.appended.notify_waiters();
    }

    /// Retention on a timer, and the interval flush when that is the policy;
    /// returns at shutdown.
    pub async fn run_background(self: Arc<Self>) {
        let mut retention = tokio::time::interval(self.config.retention_check_interval);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let flush_every = match self.config.log.flush {
            FlushPolicy::Interval(d) => d,
            FlushPolicy::Always => Duration::from_secs(3600),
        };
        let mut flush = tokio::time::interval(flush_every);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown_requested() => return,
                _ = retention.tick() => {
                    let broker = self.clone();
                    let _ = tokio::task::spawn_blocking(move || broker.logs.enforce_retention()).await;
                }
                _ = flush.tick() => {
                    if let Err(e) = self.logs.flush_all().await {
                        tracing::error!(error = %e, "periodic flush failed");
                    }
                }
            }
        }
    }

    /// Flushes every log; the last step of a clean shutdown.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.logs.flush_all().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_leader_shows_no_high_watermark_below_its_epoch_start() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = PartitionLog::open(dir.path(), runnel_storage::LogConfig::default()).unwrap();
        for i in 0..10 {
            log.append(&runnel_storage::batch::build_batch(0, &[format!("v{i}").as_bytes()]), 0).unwrap();
        }
        // As a follower it learned a high watermark of 6; the old leader's was higher.
        log.advance_high_watermark(6);
        assert_eq!(Broker::exposed_high_watermark(&log, 0), Some(6), "the leader of epoch 0 shows its own");
        assert_eq!(Broker::exposed_high_watermark(&log, 1), None, "epoch 1 starts at 10: 6 may be below what clients saw");
        log.advance_high_watermark(10);
        assert_eq!(Broker::exposed_high_watermark(&log, 1), Some(10));
    }
}
