//! This broker's standing with the controller, which decides whether it may
//! act as a partition leader: its registration (and epoch), the lease its
//! accepted heartbeats give it, and the health of its log directory.
//!
//! # Invariants
//! - A broker serves as leader only after its registration in this life has
//!   been committed and applied, and only while it holds a lease: the send
//!   time of its last heartbeat (or registration) the controller accepted,
//!   plus the session timeout. The controller's session clock started after
//!   that send, so it cannot have fenced the broker before the lease ends.
//! - A failed write or fsync marks the log directory failed; heartbeats say
//!   so (the controller fences the broker and grants no lease) until a probe
//!   write succeeds, which is tried only after a heartbeat has reported every
//!   failure seen; a failed fsync is never cleared in this process
//!   ([`crate::health`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::health::StorageHealth;
use runnel_controller::Metadata;
use runnel_controller::metadata::{Command, CommandOk, NodeId};
use runnel_rpc::controller::{HeartbeatRequest, PartitionSize};
use runnel_storage::{LogManager, StorageError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the last heartbeat heard from the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Heard {
    /// A leader accepted it: the lease is renewed.
    Accepted,
    /// A leader answered and grants no lease (fenced, or behind).
    Denied,
    /// No controller leader answered.
    Nothing,
}

/// What a broker registers with the controller.
#[derive(Debug, Clone)]
pub struct Registration {
    pub kafka_host: String,
    pub kafka_port: u16,
    /// The external listener's advertised endpoint, if any.
    pub external: Option<(String, u16)>,
    pub rpc_address: String,
    pub rack: Option<String>,
}

pub struct Membership {
    node_id: NodeId,
    metadata: Metadata,
    logs: Arc<LogManager>,
    /// This broker's registration epoch; 0 until registered.
    epoch: AtomicU64,
    /// Until when this broker may act as a partition leader, in
    /// milliseconds after `started` (0: none yet). Read on every produce
    /// and fetch, so an atomic rather than a lock.
    lease_until_ms: AtomicU64,
    started: Instant,
    storage: StorageHealth,
    /// What the last heartbeat heard ([`Heard`]).
    last_heard: std::sync::atomic::AtomicU8,
    /// Woken when storage fails, so the controller hears of it at once.
    storage_alarm: Notify,
    /// Woken once this life's registration is applied.
    registered: Notify,
    shutdown: CancellationToken,
}

/// How often a heartbeat carries the sizes of the partition logs.
const SIZES_EVERY: Duration = Duration::from_secs(10);

impl Membership {
    /// The bytes of every partition log here, for the controller's balancer.
    fn log_sizes(&self) -> Vec<PartitionSize> {
        self.logs.all().into_iter().map(|(tp, log)| PartitionSize { topic: tp.topic, partition: tp.partition, bytes: log.size_bytes() }).collect()
    }

    pub(crate) fn new(node_id: NodeId, metadata: Metadata, logs: Arc<LogManager>, shutdown: CancellationToken) -> Membership {
        Membership {
            node_id,
            metadata,
            logs,
            epoch: AtomicU64::new(0),
            lease_until_ms: AtomicU64::new(0),
            started: Instant::now(),
            storage: StorageHealth::default(),
            last_heard: std::sync::atomic::AtomicU8::new(Heard::Accepted as u8),
            storage_alarm: Notify::new(),
            registered: Notify::new(),
            shutdown,
        }
    }

    pub fn is_registered(&self) -> bool {
        self.epoch.load(Ordering::Acquire) > 0
    }

    /// Completes once this life's registration is applied (at once if it is).
    pub async fn wait_registered(&self) {
        let registered = self.registered.notified();
        tokio::pin!(registered);
        registered.as_mut().enable();
        if !self.is_registered() {
            registered.await;
        }
    }

    /// Whether the controller cannot have fenced this broker yet.
    pub fn holds_lease(&self) -> bool {
        (self.started.elapsed().as_millis() as u64) < self.lease_until_ms.load(Ordering::Acquire)
    }

    /// Registered in this life and holding a lease: may lead partitions.
    pub fn may_lead(&self) -> bool {
        self.is_registered() && self.holds_lease()
    }

    /// No controller leader answers (the quorum has lost its majority, or
    /// this broker is cut off from it) and none has refused this broker:
    /// it may still lead the partitions no other broker can be elected to
    /// lead (see `ReplicaManager::serves_as_leader`).
    pub fn controller_unreachable(&self) -> bool {
        self.is_registered() && !self.holds_lease() && self.last_heard.load(Ordering::Acquire) == Heard::Nothing as u8
    }

    fn renew_lease(&self, until: Instant) {
        let ms = until.saturating_duration_since(self.started).as_millis() as u64;
        self.lease_until_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// Whether the log directory has failed and not yet recovered.
    pub fn storage_failed(&self) -> bool {
        self.storage.failed()
    }

    /// Notes a failed write or fsync in the log directory. I/O errors only:
    /// a refused batch says nothing about the disk.
    pub fn note_storage_error(&self, e: &StorageError) {
        let fsync = matches!(e, StorageError::FsyncFailed { .. });
        if !fsync && !matches!(e, StorageError::Io { .. }) {
            return;
        }
        let was_fsync_failed = self.storage.fsync_failed();
        if self.storage.note_error(fsync) {
            tracing::error!(error = %e, "the log directory failed: asking the controller to move this broker's leaderships and replicas' ISR places away until it takes writes again");
            self.storage_alarm.notify_one();
        }
        if fsync && !was_fsync_failed {
            tracing::error!(error = %e, "an fsync failed: this broker stays out of every ISR and leads nothing until it is restarted and recovers its logs");
        }
    }

    /// Registers with the controller (retrying until a quorum answers or
    /// shutdown), then heartbeats every third of the session timeout.
    pub async fn run(self: Arc<Self>, registration: Registration, session_timeout: Duration) {
        let register = Command::RegisterBroker {
            id: self.node_id,
            kafka_host: registration.kafka_host,
            kafka_port: registration.kafka_port,
            external: registration.external,
            rpc_address: registration.rpc_address,
            rack: registration.rack,
        };
        // Register into an initialized cluster only: wait for its id.
        let mut rx = self.metadata.subscribe();
        tokio::select! {
            _ = rx.wait_for(|s| s.image.cluster_id.is_some()) => {}
            _ = self.shutdown.cancelled() => return,
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let sent = Instant::now();
            match self.metadata.propose(register.clone()).await {
                Ok(Ok(CommandOk::BrokerRegistered { epoch })) => {
                    // The lease comes with the registration only if this
                    // node's metadata has it (the local apply may have timed
                    // out); otherwise with the first heartbeat the controller
                    // accepts, which checks how far this node has applied.
                    let applied = self.metadata.state().image.brokers.get(&self.node_id).is_some_and(|b| b.epoch == epoch);
                    if applied {
                        self.renew_lease(sent + session_timeout);
                    }
                    self.epoch.store(epoch, Ordering::Release);
                    self.registered.notify_waiters();
                    tracing::info!(epoch, "registered with the controller");
                    break;
                }
                Ok(Err(e)) => tracing::error!(error = %e, "the controller refused this broker's registration; retrying"),
                Ok(other) => tracing::warn!(result = ?other, "unexpected registration result; retrying"),
                Err(e) => tracing::info!(error = %e, "waiting for the controller quorum to register"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        let mut tick = tokio::time::interval(session_timeout / 3);
        let mut was_unreachable = false;
        let mut sizes_due: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.storage_alarm.notified() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let epoch = self.epoch.load(Ordering::Acquire);
            let sent = Instant::now();
            let held = self.holds_lease();
            let (errors, storage_failed) = self.storage.report();
            let sizes = sizes_due.is_none_or(|due| sent >= due).then(|| self.log_sizes());
            let sizes_reported = sizes.is_some();
            let beat = HeartbeatRequest {
                broker_id: self.node_id.0,
                broker_epoch: epoch,
                storage_failed,
                metadata_index: self.metadata.state().last_applied.map_or(0, |l| l.index),
                sizes: sizes.unwrap_or_default(),
                sizes_reported,
            };
            let answer = self.metadata.heartbeat(beat).await;
            if answer.is_some() {
                self.storage.reported(errors, storage_failed);
                if sizes_reported {
                    sizes_due = Some(sent + SIZES_EVERY);
                }
            }
            // Probe only after the controller has heard of every failure
            // seen so far; the next heartbeat reports the outcome.
            if let Some(seen) = self.storage.probe_start() {
                self.probe_storage(seen).await;
            }
            let outcome = match answer {
                Some(false) => {
                    self.renew_lease(sent + session_timeout);
                    if !held {
                        tracing::info!("heartbeat accepted: serving as a partition leader again");
                    }
                    Heard::Accepted
                }
                Some(true) => {
                    tracing::debug!("the controller grants no lease: this broker is fenced or its metadata is behind");
                    Heard::Denied
                }
                None => {
                    tracing::debug!("no controller leader answered the heartbeat");
                    Heard::Nothing
                }
            };
            self.last_heard.store(outcome as u8, Ordering::Release);
            let unreachable = self.controller_unreachable();
            if unreachable && !was_unreachable {
                tracing::warn!(
                    ?session_timeout,
                    "no controller leader has answered for the session timeout: the controller quorum is unreachable; leading only the partitions whose ISR is this broker alone (reads and acks=1 writes) until one answers"
                );
            } else if was_unreachable && !unreachable {
                tracing::info!("a controller leader answers again");
            } else if held && !self.holds_lease() && outcome == Heard::Denied {
                tracing::warn!(?session_timeout, "no heartbeat accepted for the session timeout: not serving as a partition leader until one is");
            }
            was_unreachable = unreachable;
        }
    }

    /// Tries a write to the failed log directory; clears the failure if it
    /// goes through (space came back), so the next heartbeat unfences this
    /// broker and its followers catch up and rejoin the ISRs.
    async fn probe_storage(&self, seen: u64) {
        // A write and an fsync: off the runtime's threads.
        let logs = self.logs.clone();
        let probe = tokio::task::spawn_blocking(move || logs.probe());
        match probe.await.unwrap_or_else(|e| Err(StorageError::Io { context: "probe task".into(), source: std::io::Error::other(e) })) {
            Ok(()) if self.storage.probe_succeeded(seen) => tracing::info!("the log directory takes writes again: rejoining as a replica"),
            Ok(()) => tracing::debug!("the probe went through, but another error came meanwhile"),
            Err(e) => tracing::debug!(error = %e, "the log directory still fails"),
        }
    }

    /// Controlled shutdown: asks the controller to move this broker's
    /// leaderships to the rest of their ISRs before the process exits, so
    /// clients see a retriable NOT_LEADER_OR_FOLLOWER instead of timeouts.
    /// Skipped when no other broker is live (nothing to hand over to).
    pub async fn controlled_shutdown(&self) {
        let me = self.node_id;
        let state = self.metadata.state();
        let image = &state.image;
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
}
