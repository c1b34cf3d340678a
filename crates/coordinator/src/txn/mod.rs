//! The transaction coordinator. Like the group coordinator it is active on
//! the node that leads the controller quorum, for every transactional id at
//! once; unlike it, it keeps nothing in memory: every transactional id's
//! state is a [`TransactionRecord`] in the metadata image, changed only by a
//! `PutTransaction` committed through Raft before the client hears back. A
//! coordinator on a newly elected leader therefore resumes every
//! transaction where it was, and finishes the ends that were decided but
//! whose markers were not all written.
//!
//! One transaction, from the producer's side:
//! 1. InitProducerId: a producer id and a bumped epoch (fencing the previous
//!    instance; its open transaction is aborted first).
//! 2. AddPartitionsToTxn / AddOffsetsToTxn: the transaction is Ongoing, and
//!    its partitions are recorded before the producer writes to them.
//! 3. TxnOffsetCommit: offsets kept in the record until the end.
//! 4. EndTxn: PrepareCommit (with its offsets committed to their groups in
//!    the same Raft entry) or PrepareAbort is stored: the decision is final.
//!    The markers go to every partition's leader ([`MarkerWriter`]), then
//!    CompleteCommit or CompleteAbort is stored.
//!
//! Requests for one transactional id are handled one at a time.

pub mod state;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runnel_controller::Metadata;
use runnel_controller::groups::validate_group_id;
use runnel_controller::metadata::Command;
use runnel_controller::records::{OffsetCommit, TransactionRecord};
use runnel_protocol::kafka_protocol::error::ResponseError;
use tracing::Instrument;

use crate::producer_ids::ProducerIdManager;
use crate::term::{Standing, standing};
use state::{End, Init};

/// Transaction settings, as Kafka's broker configs name them.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// transaction.max.timeout.ms: the longest transaction.timeout.ms a
    /// producer may ask for.
    pub max_timeout_ms: i32,
    /// How long EndTxn waits for the markers before it answers; the
    /// decision is stored first, so the answer is the same either way, and
    /// markers not written by then are written in the background.
    pub marker_wait: Duration,
    /// transactional.id.expiration.ms: a transactional id with no
    /// transaction in progress and none begun or ended for this long is
    /// forgotten (from feature level 8), so ids that are never used again
    /// (an exactly-once sink that makes one per checkpoint, say) do not
    /// pile up in the metadata. Coming back later, it gets a new producer id.
    pub id_expiration: Duration,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig { max_timeout_ms: 900_000, marker_wait: Duration::from_secs(30), id_expiration: Duration::from_secs(7 * 24 * 3600) }
    }
}

/// Transactional ids forgotten in one Raft entry, at most.
const EXPIRE_BATCH: usize = 1000;

/// One marker to write: end `producer_id`'s transaction in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerRequest {
    pub topic: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    /// The coordinator's Raft term, as Kafka's coordinator epoch.
    pub coordinator_epoch: i32,
}

/// What writing markers answers: one result per marker, in order.
pub type MarkersWritten<'a> = Pin<Box<dyn Future<Output = Vec<Result<(), String>>> + Send + 'a>>;

/// Writes markers through the partitions' leaders (the broker provides it).
/// A marker of a partition that no longer exists counts as written.
pub trait MarkerWriter: Send + Sync {
    fn write<'a>(&'a self, markers: &'a [MarkerRequest]) -> MarkersWritten<'a>;
}

/// How often timeouts and unfinished ends are looked for.
const TICK: Duration = Duration::from_secs(1);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct TxnCounters {
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
    pub timed_out: AtomicU64,
}

pub struct TransactionCoordinator {
    metadata: Metadata,
    producer_ids: Arc<ProducerIdManager>,
    markers: Arc<dyn MarkerWriter>,
    config: TxnConfig,
    /// One lock per transactional id in use, so its requests take turns.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub counters: TxnCounters,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl TransactionCoordinator {
    pub fn new(metadata: Metadata, producer_ids: Arc<ProducerIdManager>, markers: Arc<dyn MarkerWriter>, config: TxnConfig) -> Arc<TransactionCoordinator> {
        Arc::new(TransactionCoordinator { metadata, producer_ids, markers, config, locks: Mutex::new(HashMap::new()), counters: TxnCounters::default() })
    }

    fn lock_for(&self, transactional_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the locks nobody holds or waits for, now and then.
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(transactional_id.to_string()).or_default().clone()
    }

    /// The Raft term this node coordinates in, or why it cannot.
    fn term(&self) -> Result<u64, ResponseError> {
        match standing(&self.metadata) {
            Standing::Leading(term) => Ok(term),
            Standing::Loading => Err(ResponseError::CoordinatorLoadInProgress),
            Standing::NotLeading => Err(ResponseError::NotCoordinator),
        }
    }

    fn current(&self, transactional_id: &str) -> Option<TransactionRecord> {
        self.metadata.state().image.transactions.get(transactional_id).cloned()
    }

    /// The producer id `transactional_id` had before its last renewal, while
    /// the metadata remembers it.
    fn renewed_from(&self, transactional_id: &str) -> Option<i64> {
        self.metadata.state().image.renewed_from.get(transactional_id).copied()
    }

    /// Every transactional id and its record, for the admin APIs.
    pub fn list(&self) -> Result<Vec<(String, TransactionRecord)>, ResponseError> {
        self.term()?;
        Ok(self.metadata.state().image.transactions.iter().map(|(id, r)| (id.clone(), r.clone())).collect())
    }

    /// The partitions of `group` whose offsets an open transaction has sent
    /// and not yet committed or aborted (KIP-447: OffsetFetch with
    /// require_stable answers UNSTABLE_OFFSET_COMMIT for them).
    pub fn pending_offsets(&self, group: &str) -> std::collections::BTreeSet<(String, i32)> {
        let state = self.metadata.state();
        state
            .image
            .transactions
            .values()
            .flat_map(|r| r.offsets.iter().filter(|(g, _)| g == group).flat_map(|(_, offsets)| offsets.iter().map(|o| (o.topic.clone(), o.partition))))
            .collect()
    }

    async fn store(&self, term: u64, transactional_id: &str, record: TransactionRecord) -> Result<(), ResponseError> {
        let command = Command::PutTransaction { transactional_id: transactional_id.to_string(), record };
        crate::term::propose(&self.metadata, term, command, "transaction").await.map(|_| ())
    }

    async fn fresh_id(&self) -> Result<i64, ResponseError> {
        self.producer_ids.next().await.map_err(|e| {
            tracing::error!(error = %e, "could not allocate a producer id");
            ResponseError::CoordinatorNotAvailable
        })
    }

    /// InitProducerId with a transactional id: `(producer id, epoch)`.
    pub async fn init_producer_id(&self, transactional_id: &str, timeout_ms: i32, producer: (i64, i16)) -> Result<(i64, i16), ResponseError> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        let term = self.term()?;
        let lock = self.lock_for(transactional_id);
        let _turn = lock.lock().await;
        let asked = producer;
        let retried = {
            let image = &self.metadata.state().image;
            let current = image.transactions.get(transactional_id);
            current.filter(|c| state::is_retried_init(c, image.bumped_from.get(transactional_id).copied(), asked)).map(|c| (c.producer_id, c.producer_epoch))
        };
        if let Some(answer) = retried {
            tracing::debug!(transactional_id, producer_id = answer.0, epoch = answer.1, "InitProducerId retried after its bump");
            return Ok(answer);
        }
        // At most: abort what a previous instance left open, then initialise.
        let mut producer = producer;
        for _ in 0..2 {
            let current = self.current(transactional_id);
            let needs_fresh = current.as_ref().is_none_or(|c| c.producer_epoch >= i16::MAX - 2);
            let fresh = if needs_fresh { self.fresh_id().await? } else { -1 };
            match state::init(current.as_ref(), timeout_ms, producer, fresh, now_ms())? {
                Init::Ready(record) => {
                    let answer = (record.producer_id, record.producer_epoch);
                    let level = self.metadata.state().image.finalized_level();
                    if asked.0 >= 0 && level >= runnel_controller::features::INIT_RETRY_LEVEL {
                        // The producer recovers its own id (KIP-360): a
                        // retry of this request must find it a retry.
                        let command = Command::BumpTransaction { transactional_id: transactional_id.to_string(), record, previous: asked };
                        crate::term::propose(&self.metadata, term, command, "transaction").await?;
                    } else {
                        self.store(term, transactional_id, record).await?;
                    }
                    tracing::debug!(transactional_id, producer_id = answer.0, epoch = answer.1, "transactional producer initialised");
                    return Ok(answer);
                }
                Init::AbortFirst(abort) => {
                    tracing::info!(transactional_id, producer_id = abort.producer_id, "a new instance aborts the transaction its previous one left open");
                    self.store(term, transactional_id, abort.clone()).await?;
                    if !self.finish(term, transactional_id, &abort).await {
                        return Err(ResponseError::ConcurrentTransactions);
                    }
                    // The producer's (id, epoch) was checked against the
                    // record before the abort bumped it.
                    producer = (-1, -1);
                }
            }
        }
        Err(ResponseError::ConcurrentTransactions)
    }

    /// AddPartitionsToTxn.
    pub async fn add_partitions(&self, transactional_id: &str, producer_id: i64, epoch: i16, partitions: &[(String, i32)]) -> Result<(), ResponseError> {
        let term = self.term()?;
        let lock = self.lock_for(transactional_id);
        let _turn = lock.lock().await;
        let current = self.current(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        match state::add_partitions(&current, producer_id, epoch, partitions, now_ms())? {
            Some(next) => self.store(term, transactional_id, next).await,
            None => Ok(()),
        }
    }

    /// AddOffsetsToTxn.
    pub async fn add_offsets(&self, transactional_id: &str, producer_id: i64, epoch: i16, group: &str) -> Result<(), ResponseError> {
        // Checked now: a group id the metadata refuses would fail the commit.
        validate_group_id(group).map_err(|_| ResponseError::InvalidGroupId)?;
        let term = self.term()?;
        let lock = self.lock_for(transactional_id);
        let _turn = lock.lock().await;
        let current = self.current(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        match state::add_offsets(&current, producer_id, epoch, now_ms())? {
            Some(next) => self.store(term, transactional_id, next).await,
            None => Ok(()),
        }
    }

    /// TxnOffsetCommit: the offsets take effect if the transaction commits.
    /// `version2`: TxnOffsetCommit v5 and later, whose producer sent no
    /// AddOffsetsToTxn (the commit opens the transaction).
    pub async fn commit_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: &[OffsetCommit],
        version2: bool,
    ) -> Result<(), ResponseError> {
        validate_group_id(group).map_err(|_| ResponseError::InvalidGroupId)?;
        let term = self.term()?;
        let lock = self.lock_for(transactional_id);
        let _turn = lock.lock().await;
        let current = self.current(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        let next = state::commit_offsets(&current, producer_id, epoch, group, offsets, version2, now_ms())?;
        self.store(term, transactional_id, next).await
    }

    /// EndTxn: commit or abort. Answers once the decision is stored and the
    /// markers are written, or [`TxnConfig::marker_wait`] has passed, with
    /// the producer id and epoch the producer goes on with: under
    /// transaction version 2 (`version2`, EndTxn v5 and later) the next
    /// epoch, or a fresh producer id at epoch 0 after the last epoch.
    pub async fn end(&self, transactional_id: &str, producer_id: i64, epoch: i16, commit: bool, version2: bool) -> Result<(i64, i16), ResponseError> {
        let term = self.term()?;
        let lock = self.lock_for(transactional_id);
        let _turn = lock.lock().await;
        // At most: end the transaction, then move to a fresh producer id.
        for _ in 0..2 {
            let current = self.current(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
            match state::end(&current, self.renewed_from(transactional_id), producer_id, epoch, commit, version2)? {
                End::AlreadyDone => return Ok((current.producer_id, current.producer_epoch)),
                End::Renew => {
                    let renewed = state::renew(&current, self.fresh_id().await?, now_ms());
                    let answer = (renewed.producer_id, renewed.producer_epoch);
                    let level = self.metadata.state().image.finalized_level();
                    let command = if level >= runnel_controller::features::TRANSACTION_RENEWAL_LEVEL {
                        Command::RenewTransaction { transactional_id: transactional_id.to_string(), record: renewed, previous_producer_id: current.producer_id }
                    } else {
                        Command::PutTransaction { transactional_id: transactional_id.to_string(), record: renewed }
                    };
                    crate::term::propose(&self.metadata, term, command, "transaction").await?;
                    tracing::info!(transactional_id, producer_id = answer.0, "the producer's epochs are used up: it goes on with a fresh producer id");
                    return Ok(answer);
                }
                End::Prepare(prepared) => {
                    self.store(term, transactional_id, prepared.clone()).await?;
                    let finished = self.finish(term, transactional_id, &prepared).await;
                    let renewal = version2 && state::needs_renewal(&prepared, epoch);
                    if !finished {
                        tracing::warn!(transactional_id, commit, "markers not all written yet: the coordinator goes on in the background");
                        if renewal {
                            // The producer cannot go on at this epoch; it
                            // asks again, and gets its fresh id once the
                            // end is complete.
                            return Err(ResponseError::ConcurrentTransactions);
                        }
                    }
                    if !renewal {
                        return Ok((prepared.producer_id, prepared.producer_epoch));
                    }
                }
            }
        }
        Err(ResponseError::ConcurrentTransactions)
    }

    /// Writes the markers of a decided end and stores its completion;
    /// returns whether it completed. Gives up after the marker wait, or as
    /// soon as this node stops leading `term` (the next leader finishes).
    async fn finish(&self, term: u64, transactional_id: &str, prepared: &TransactionRecord) -> bool {
        let commit = prepared.state == runnel_controller::records::TransactionState::PrepareCommit;
        let mut pending: Vec<MarkerRequest> = prepared
            .partitions
            .iter()
            .map(|(topic, partition)| MarkerRequest {
                topic: topic.clone(),
                partition: *partition,
                producer_id: prepared.producer_id,
                producer_epoch: prepared.producer_epoch,
                commit,
                coordinator_epoch: i32::try_from(term).unwrap_or(i32::MAX),
            })
            .collect();
        let deadline = tokio::time::Instant::now() + self.config.marker_wait;
        let mut backoff = Duration::from_millis(50);
        while !pending.is_empty() {
            // A coordinator that no longer leads must not write: its markers
            // could arrive after the next coordinator finished this
            // transaction and the producer began another in the partition.
            if self.term() != Ok(term) {
                return false;
            }
            let results = self.markers.write(&pending).await;
            let mut failed = Vec::new();
            for (marker, result) in pending.into_iter().zip(results) {
                if let Err(why) = result {
                    tracing::debug!(transactional_id, topic = %marker.topic, partition = marker.partition, %why, "marker not written yet");
                    failed.push(marker);
                }
            }
            pending = failed;
            if pending.is_empty() {
                break;
            }
            if tokio::time::Instant::now() + backoff > deadline || self.term() != Ok(term) {
                return false;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        if self.store(term, transactional_id, state::complete(prepared, now_ms())).await.is_err() {
            return false;
        }
        let counter = if commit { &self.counters.commits } else { &self.counters.aborts };
        counter.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// One round of the background work: finish decided ends whose markers
    /// are not all written (after a failover, or a slow leader), and abort
    /// transactions past their timeout.
    async fn tick(self: &Arc<Self>) {
        let Ok(term) = self.term() else { return };
        let now = now_ms();
        self.expire_idle(term, now).await;
        let work: Vec<String> = self
            .metadata
            .state()
            .image
            .transactions
            .iter()
            .filter(|(_, r)| state::is_prepared(r) || state::expire(r, now).is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in work {
            let lock = self.lock_for(&id);
            // Busy: a request for it is being handled, which finishes it.
            let Ok(turn) = lock.clone().try_lock_owned() else { continue };
            let me = self.clone();
            tokio::spawn(
                async move {
                    let _turn = turn;
                    let Some(current) = me.current(&id) else { return };
                    if state::is_prepared(&current) {
                        me.finish(term, &id, &current).await;
                        return;
                    }
                    if let Some(abort) = state::expire(&current, now_ms()) {
                        tracing::info!(transactional_id = %id, producer_id = current.producer_id, timeout_ms = current.timeout_ms, "aborting a transaction past its timeout");
                        if me.store(term, &id, abort.clone()).await.is_ok() {
                            me.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                            me.finish(term, &id, &abort).await;
                        }
                    }
                }
                .in_current_span(),
            );
        }
    }

    /// Forgets transactional ids idle past `id_expiration` (a batch per tick).
    async fn expire_idle(&self, term: u64, now: i64) {
        let horizon = now.saturating_sub(i64::try_from(self.config.id_expiration.as_millis()).unwrap_or(i64::MAX));
        let expired: Vec<(String, i64, i16)> = {
            let state = self.metadata.state();
            if state.image.finalized_level() < runnel_controller::features::TRANSACTION_EXPIRY_LEVEL {
                return;
            }
            state
                .image
                .transactions
                .iter()
                .filter(|(_, r)| state::is_idle(r) && r.started_ms < horizon)
                .take(EXPIRE_BATCH)
                .map(|(id, r)| (id.clone(), r.producer_id, r.producer_epoch))
                .collect()
        };
        if expired.is_empty() {
            return;
        }
        let count = expired.len();
        match crate::term::propose(&self.metadata, term, Command::ExpireTransactions { expired }, "transaction").await {
            Ok(_) => tracing::info!(count, "forgot transactional ids idle past transactional.id.expiration.ms"),
            Err(e) => tracing::debug!(error = ?e, "could not expire idle transactional ids"),
        }
    }

    /// Runs the background work until `stop` completes.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = interval.tick() => self.tick().await,
            }
        }
    }
}
