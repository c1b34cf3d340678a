//! openraft storage on sled: the Raft log and vote ([`LogStore`]) and the
//! metadata state machine ([`StateMachine`]).
//!
//! # To ensure correctness
//! - Log entries are keyed by big-endian index, so sled's order is log order.
//! - Every write (entries, vote, committed id, purge point, snapshot) is
//!   flushed to disk before the call returns; `append` reports completion to
//!   openraft only after the flush.
//! - The state machine lives in memory. It is rebuilt at start from the last
//!   snapshot plus the committed log entries after it, which openraft
//!   re-applies because the committed log id is persisted.
//! - A snapshot is the bincode of the whole [`MetadataImage`] with the last
//!   applied log id and membership; it is built from a copy taken under the
//!   lock, so later applies never tear it.

// openraft's storage traits fix the error type (`StorageError`); it is large, and not ours to box.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::metadata::MetadataImage;
use crate::types::{NodeId, Response, TypeConfig, check_format, decode, encode};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn io_error(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

/// Opens (or creates) the sled database holding a controller's Raft state.
pub fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).open()
}

/// The Raft log and vote, in sled trees `raft_log` and `raft_meta`.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// The format version of everything in the store (see
/// [`crate::types::FORMAT_VERSION`]), 4 bytes big-endian: 1, or the
/// cluster's feature level once one is finalized. A store without it was
/// written before versions were recorded, in format 1.
const KEY_FORMAT: &[u8] = b"format";

/// The format version recorded in the store's meta tree, if any.
fn stored_format(meta: &sled::Tree) -> Result<Option<u32>, StoreError> {
    let Some(raw) = meta.get(KEY_FORMAT)? else { return Ok(None) };
    let raw: [u8; 4] = raw.as_ref().try_into().map_err(|_| StoreError::Format(format!("the stored format version is {} bytes, not 4", raw.len())))?;
    Ok(Some(u32::from_be_bytes(raw)))
}

impl LogStore {
    /// Opens the Raft log and vote; refuses a store a newer Runnel wrote.
    pub fn open(db: &sled::Db) -> Result<LogStore, StoreError> {
        let store = LogStore { db: db.clone(), log: db.open_tree("raft_log")?, meta: db.open_tree("raft_meta")? };
        match stored_format(&store.meta)? {
            Some(format) => check_format(format, "the Raft store").map_err(StoreError::Format)?,
            None => {
                // Format 1 until the cluster's feature level is raised
                // (`record_format`), so an older binary can still open it.
                store.meta.insert(KEY_FORMAT, &1u32.to_be_bytes())?;
                store.db.flush()?;
            }
        }
        Ok(store)
    }

    async fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush_async().await.map(|_| ())
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        let raw = self.meta.get(key).map_err(|e| StorageIOError::read(io_error(e)))?;
        raw.map(|v| decode(&v).map_err(|e| StorageIOError::read(io_error(e)).into())).transpose()
    }

    async fn write_meta<T: Serialize>(&self, key: &[u8], value: &T) -> StorageResult<()> {
        let raw = encode(value).map_err(|e| StorageIOError::write(io_error(e)))?;
        self.meta.insert(key, raw).map_err(|e| StorageIOError::write(io_error(e)))?;
        self.flush().await.map_err(|e| StorageIOError::write(io_error(e)))?;
        Ok(())
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(&mut self, range: RB) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        for item in self.log.range(index_key(start)..) {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(io_error(e)))?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| StorageIOError::read_logs(io_error("log key is not 8 bytes")))?);
            if !range.contains(&index) {
                break;
            }
            entries.push(decode(&value).map_err(|e| StorageIOError::read_logs(io_error(e)))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.read_meta(KEY_PURGED)?;
        let last = self.log.last().map_err(|e| StorageIOError::read_logs(io_error(e)))?;
        let last_log_id = match last {
            Some((_, value)) => {
                let entry: Entry<TypeConfig> = decode(&value).map_err(|e| StorageIOError::read_logs(io_error(e)))?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.write_meta(KEY_VOTE, vote).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.read_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.write_meta(KEY_COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.read_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let raw = encode(&entry).map_err(|e| StorageIOError::write_logs(io_error(e)))?;
            batch.insert(&index_key(entry.log_id.index), raw);
        }
        self.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(io_error(e)))?;
        match self.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(io_error(e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(|e| StorageIOError::write_logs(io_error(e)))?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(io_error(e)))?;
        self.flush().await.map_err(|e| StorageIOError::write_logs(io_error(e)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        // The purge point first, so a crash in between leaves it covering
        // whatever was deleted.
        self.write_meta(KEY_PURGED, &log_id).await?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index_key(log_id.index)) {
            let (key, _) = item.map_err(|e| StorageIOError::write_logs(io_error(e)))?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(io_error(e)))?;
        self.flush().await.map_err(|e| StorageIOError::write_logs(io_error(e)))?;
        Ok(())
    }
}

/// What the state machine holds in memory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    pub image: MetadataImage,
}

impl AppliedState {
    /// Applies one committed entry: what the state machine does, and what a
    /// broker-only node does with the entries the metadata stream sends it.
    pub fn apply_entry(&mut self, entry: Entry<TypeConfig>) -> Response {
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => Response(None),
            EntryPayload::Normal(request) => Response(Some(self.image.apply_at(entry.log_id.index, &request.0))),
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m);
                Response(None)
            }
        }
    }
}

/// How many of the last applied entries the state machine keeps for the
/// metadata stream, which sends a watcher that fell behind by no more than
/// these the entries instead of the whole state...
pub const RECENT_ENTRIES: usize = 1024;
/// ...and how many of their encoded bytes, at most (an entry of coalesced
/// offset commits can be large).
pub const RECENT_ENTRY_BYTES: usize = 8 << 20;

/// The last applied entries, consecutive, oldest first, as the Raft log
/// stores them: `(index, bytes)`.
#[derive(Default)]
struct RecentEntries {
    entries: VecDeque<(u64, Arc<[u8]>)>,
    bytes: usize,
}

impl RecentEntries {
    fn push(&mut self, index: u64, encoded: Vec<u8>) {
        if self.entries.back().is_some_and(|(last, _)| last + 1 != index) {
            self.clear();
        }
        self.bytes += encoded.len();
        self.entries.push_back((index, encoded.into()));
        while self.entries.len() > RECENT_ENTRIES || (self.bytes > RECENT_ENTRY_BYTES && self.entries.len() > 1) {
            let (_, gone) = self.entries.pop_front().expect("not empty");
            self.bytes -= gone.len();
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// The entries after index `after` up to index `upto`, if all are here.
    fn between(&self, after: u64, upto: u64) -> Option<Vec<Arc<[u8]>>> {
        let first = self.entries.front()?.0;
        let last = self.entries.back()?.0;
        if after + 1 < first || upto > last || upto <= after {
            return None;
        }
        let skip = (after + 1 - first) as usize;
        Some(self.entries.iter().skip(skip).take((upto - after) as usize).map(|(_, e)| e.clone()).collect())
    }
}

/// Keeps the state machine keeping recent entries while it lives (see
/// [`StateMachine::watch_entries`]).
pub struct EntryWatcher(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for EntryWatcher {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What follows the applied state in a snapshot or a metadata-stream
/// message from feature level 2 on (format 2); absent at level 1, so level-1
/// bytes are what 2a9fcc0 wrote and reads.
#[derive(Debug, Serialize, Deserialize)]
struct StateExtension {
    feature_level: u16,
}

/// What follows [`StateExtension`] from level 3 on (format 3). Each level
/// that adds state appends a section of its own, so the bytes of an earlier
/// level stay what its binaries wrote and read.
#[derive(Debug, Serialize, Deserialize)]
struct StateExtension3 {
    reassignments: Vec<((String, i32), crate::records::Reassignment)>,
}

/// What follows [`StateExtension3`] from level 4 on (format 4).
#[derive(Debug, Serialize, Deserialize)]
struct StateExtension4 {
    scram: Vec<((String, String), crate::records::ScramCredentialRecord)>,
}

/// What follows [`StateExtension4`] from level 5 on (format 5).
#[derive(Debug, Serialize, Deserialize)]
struct StateExtension5 {
    acls: Vec<crate::records::AclRecord>,
}

/// Dynamic broker configs as a section carries them: per broker (`None`:
/// every broker's default), name and value pairs.
type BrokerConfigs = Vec<(Option<crate::types::NodeId>, Vec<(String, String)>)>;

/// What follows [`StateExtension5`] from level 6 on (format 6).
#[derive(Debug, Serialize, Deserialize)]
struct StateExtension6 {
    broker_configs: BrokerConfigs,
}

/// What follows [`StateExtension6`] from level 7 on (format 7).
#[derive(Debug, Serialize, Deserialize)]
struct StateExtension7 {
    transactions: Vec<(String, crate::records::TransactionRecord)>,
}

/// What follows [`StateExtension7`] from level 14 on (format 14).
#[derive(Debug, Serialize, Deserialize)]
struct StateExtension14 {
    renewed_from: Vec<(String, i64)>,
}

/// What follows [`StateExtension14`] from level 15 on (format 15).
#[derive(Debug, Serialize, Deserialize)]
struct StateExtension15 {
    consumer_groups: Vec<(String, crate::records::ConsumerGroupRecord)>,
}

/// What follows [`StateExtension15`] from level 17 on (format 17).
#[derive(Debug, Serialize, Deserialize)]
struct StateExtension17 {
    bumped_from: Vec<(String, (i64, i16))>,
}

/// Encodes an applied state for a snapshot or the metadata stream, in the
/// format of the state's finalized level.
pub fn encode_state(state: &AppliedState) -> Result<Vec<u8>, bincode::error::EncodeError> {
    let mut bytes = encode(state)?;
    let level = state.image.feature_level;
    if level >= 2 {
        bytes.extend(encode(&StateExtension { feature_level: level })?);
    }
    if level >= crate::features::REASSIGNMENT_LEVEL {
        let reassignments = state.image.reassignments.iter().map(|(k, r)| (k.clone(), r.clone())).collect();
        bytes.extend(encode(&StateExtension3 { reassignments })?);
    }
    if level >= crate::features::SCRAM_USERS_LEVEL {
        let scram = state.image.scram.iter().map(|(k, c)| (k.clone(), c.clone())).collect();
        bytes.extend(encode(&StateExtension4 { scram })?);
    }
    if level >= crate::features::ACLS_LEVEL {
        bytes.extend(encode(&StateExtension5 { acls: state.image.acls.iter().cloned().collect() })?);
    }
    if level >= crate::features::BROKER_CONFIGS_LEVEL {
        let broker_configs = state.image.broker_configs.iter().map(|(b, c)| (*b, c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())).collect();
        bytes.extend(encode(&StateExtension6 { broker_configs })?);
    }
    if level >= crate::features::TRANSACTIONS_LEVEL {
        let transactions = state.image.transactions.iter().map(|(id, t)| (id.clone(), t.clone())).collect();
        bytes.extend(encode(&StateExtension7 { transactions })?);
    }
    if level >= crate::features::TRANSACTION_RENEWAL_LEVEL {
        let renewed_from = state.image.renewed_from.iter().map(|(id, p)| (id.clone(), *p)).collect();
        bytes.extend(encode(&StateExtension14 { renewed_from })?);
    }
    if level >= crate::features::CONSUMER_GROUPS_LEVEL {
        let consumer_groups = state.image.consumer_groups.iter().map(|(id, g)| (id.clone(), (**g).clone())).collect();
        bytes.extend(encode(&StateExtension15 { consumer_groups })?);
    }
    if level >= crate::features::INIT_RETRY_LEVEL {
        let bumped_from = state.image.bumped_from.iter().map(|(id, p)| (id.clone(), *p)).collect();
        bytes.extend(encode(&StateExtension17 { bumped_from })?);
    }
    Ok(bytes)
}

/// Decodes what [`encode_state`] wrote, at any format up to this binary's.
pub fn decode_state(bytes: &[u8]) -> Result<AppliedState, bincode::error::DecodeError> {
    let (mut state, mut used): (AppliedState, usize) = bincode::serde::decode_from_slice(bytes, crate::types::decode_config())?;
    if used < bytes.len() {
        let (extension, n): (StateExtension, usize) = bincode::serde::decode_from_slice(&bytes[used..], crate::types::decode_config())?;
        used += n;
        if let Err(why) = check_format(u32::from(extension.feature_level), "the metadata state") {
            return Err(bincode::error::DecodeError::OtherString(why));
        }
        state.image.feature_level = extension.feature_level;
        if extension.feature_level >= crate::features::REASSIGNMENT_LEVEL {
            let (section, n): (StateExtension3, usize) = bincode::serde::decode_from_slice(&bytes[used..], crate::types::decode_config())?;
            used += n;
            state.image.reassignments = section.reassignments.into_iter().collect();
        }
        if extension.feature_level >= crate::features::SCRAM_USERS_LEVEL {
            let (section, n): (StateExtension4, usize) = bincode::serde::decode_from_slice(&bytes[used..], crate::types::decode_config())?;
            used += n;
            state.image.scram = section.scram.into_iter().collect();
        }
        if extension.feature_level >= crate::features::ACLS_LEVEL {
            let (section, n): (StateExtension5, usize) = bincode::serde::decode_from_slice(&bytes[used..], crate::types::decode_config())?;
            used += n;
            state.image.acls = section.acls.into_iter().collect();
        }
        if extension.feature_level >= crate::features::BROKER_CONFIGS_LEVEL {
            let (section, n): (StateExtension6, usize) = bincode::serde::decode_from_slice(&bytes[used..], crate::types::decode_config())?;
            used += n;
            state.image.broker_configs = section.broker_configs.into_iter().map(|(b, c)| (b, c.into_iter().collect())).collect();
        }
        if extension.feature_level >= crate::features::TRANSACTIONS_LEVEL {
            let (section, n): (StateExtension7, usize) = bincode::serde::decode_from_slice(&bytes[used..], crate::types::decode_config())?;
            used += n;
            state.image.transactions = section.transactions.into_iter().collect();
        }
        if extension.feature_level >= crate::features::TRANSACTION_RENEWAL_LEVEL {
            let (section, n): (StateExtension14, usize) = bincode::serde::decode_from_slice(&bytes[used..], crate::types::decode_config())?;
            used += n;
            state.image.renewed_from = section.renewed_from.into_iter().collect();
        }
        if extension.feature_level >= crate::features::CONSUMER_GROUPS_LEVEL {
            let (section, n): (StateExtension15, usize) = bincode::serde::decode_from_slice(&bytes[used..], crate::types::decode_config())?;
            used += n;
            state.image.consumer_groups = section.consumer_groups.into_iter().map(|(id, g)| (id, Arc::new(g))).collect();
        }
        if extension.feature_level >= crate::features::INIT_RETRY_LEVEL {
            let (section, n): (StateExtension17, usize) = bincode::serde::decode_from_slice(&bytes[used..], crate::types::decode_config())?;
            used += n;
            state.image.bumped_from = section.bumped_from.into_iter().collect();
        }
    }
    if used != bytes.len() {
        return Err(bincode::error::DecodeError::OtherString(format!("{} bytes left over after the metadata state", bytes.len() - used)));
    }
    Ok(state)
}

/// The last snapshot as the store keeps it: its metadata and the encoded
/// [`AppliedState`]. Public for the format fixtures (`tests/compat/`).
#[derive(Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta<NodeId, BasicNode>,
    pub data: Vec<u8>,
}

const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// Why the state machine could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("read the Raft store: {0}")]
    Sled(#[from] sled::Error),
    #[error("decode the stored snapshot: {0}")]
    Snapshot(bincode::error::DecodeError),
    #[error("{0}")]
    Format(String),
}

/// The metadata state machine. Cloning shares the state.
#[derive(Clone)]
pub struct StateMachine {
    db: sled::Db,
    snapshots: sled::Tree,
    state: Arc<Mutex<AppliedState>>,
    /// The last applied entries, for the metadata stream, kept while a
    /// watcher of it applies entries (`entry_watchers` > 0).
    recent: Arc<Mutex<RecentEntries>>,
    entry_watchers: Arc<std::sync::atomic::AtomicUsize>,
    /// Every applied change is published here, for brokers and the admin API.
    published: watch::Sender<Arc<AppliedState>>,
    snapshot_count: Arc<std::sync::atomic::AtomicU64>,
    /// The highest feature level known to be recorded in the store (1 for
    /// every store: level 1 needs nothing written).
    format_recorded: Arc<std::sync::atomic::AtomicU16>,
}

impl StateMachine {
    /// Opens the state machine, restored from its last snapshot if any.
    pub fn open(db: &sled::Db) -> Result<StateMachine, StoreError> {
        let snapshots = db.open_tree("snapshots")?;
        let state = match snapshots.get(KEY_SNAPSHOT)? {
            Some(raw) => {
                let stored: StoredSnapshot = decode(&raw).map_err(StoreError::Snapshot)?;
                decode_state(&stored.data).map_err(StoreError::Snapshot)?
            }
            None => AppliedState::default(),
        };
        let (published, _) = watch::channel(Arc::new(state.clone()));
        Ok(StateMachine {
            db: db.clone(),
            snapshots,
            state: Arc::new(Mutex::new(state)),
            recent: Arc::default(),
            entry_watchers: Arc::default(),
            published,
            snapshot_count: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            format_recorded: Arc::new(std::sync::atomic::AtomicU16::new(1)),
        })
    }

    /// A receiver of every applied state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<AppliedState>> {
        self.published.subscribe()
    }

    /// The applied entries after index `after` up to index `upto`, encoded
    /// as the Raft log stores them, if they are still among the last
    /// [`RECENT_ENTRIES`] (and [`RECENT_ENTRY_BYTES`]) kept.
    pub fn entries_between(&self, after: u64, upto: u64) -> Option<Vec<Arc<[u8]>>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner()).between(after, upto)
    }

    /// Makes the state machine keep the entries it applies from now on,
    /// until the returned guard is dropped: a metadata stream whose watcher
    /// applies entries holds one. Without watchers nothing is kept.
    pub fn watch_entries(&self) -> EntryWatcher {
        self.entry_watchers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        EntryWatcher(self.entry_watchers.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AppliedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self) {
        let copy = Arc::new(self.lock().clone());
        self.published.send_replace(copy);
    }

    /// Records in the store that it now holds records of `level`'s format,
    /// so a binary that cannot read them refuses to start on it.
    async fn record_format(&self, level: u16) -> StorageResult<()> {
        let write = |e: sled::Error| StorageError::from(StorageIOError::write(io_error(e)));
        let meta = self.db.open_tree("raft_meta").map_err(write)?;
        let recorded = stored_format(&meta).map_err(|e| StorageError::from(StorageIOError::read(io_error(e))))?.unwrap_or(1);
        if u32::from(level) > recorded {
            meta.insert(KEY_FORMAT, &u32::from(level).to_be_bytes()).map_err(write)?;
            self.db.flush_async().await.map_err(write)?;
            tracing::info!(level, "the cluster's feature level was raised: this node's Raft store now needs a binary that reads it");
        }
        self.format_recorded.fetch_max(level, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn save_snapshot(&self, stored: &StoredSnapshot) -> StorageResult<()> {
        let raw = encode(stored).map_err(|e| StorageIOError::write_snapshot(Some(stored.meta.signature()), io_error(e)))?;
        self.snapshots.insert(KEY_SNAPSHOT, raw).map_err(|e| StorageIOError::write_snapshot(Some(stored.meta.signature()), io_error(e)))?;
        self.db.flush_async().await.map_err(|e| StorageIOError::write_snapshot(Some(stored.meta.signature()), io_error(e)))?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let state = self.lock().clone();
        let data = encode_state(&state).map_err(|e| StorageIOError::write_snapshot(None, io_error(e)))?;
        let n = self.snapshot_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let snapshot_id = match state.last_applied {
            Some(l) => format!("{}-{}-{}-{n}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => format!("empty-{n}"),
        };
        let meta = SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership.clone(), snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        self.save_snapshot(&stored).await?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let state = self.lock();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let level = {
            let mut state = self.lock();
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let keep = self.entry_watchers.load(std::sync::atomic::Ordering::Relaxed) > 0;
            for entry in entries {
                if keep {
                    match encode(&entry) {
                        Ok(bytes) => recent.push(entry.log_id.index, bytes),
                        // Watchers get the whole state until entries follow
                        // one another again.
                        Err(_) => recent.clear(),
                    }
                }
                responses.push(state.apply_entry(entry));
            }
            state.image.feature_level
        };
        if level > self.format_recorded.load(std::sync::atomic::Ordering::Relaxed) {
            self.record_format(level).await?;
        }
        self.publish();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta<NodeId, BasicNode>, snapshot: Box<Cursor<Vec<u8>>>) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let mut state = decode_state(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), io_error(e)))?;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        self.record_format(state.image.feature_level).await?;
        self.save_snapshot(&StoredSnapshot { meta: meta.clone(), data }).await?;
        *self.lock() = state;
        // The entries kept no longer lead to the state: a watcher behind
        // the snapshot gets the whole state.
        self.recent.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let Some(raw) = self.snapshots.get(KEY_SNAPSHOT).map_err(|e| StorageIOError::read_snapshot(None, io_error(e)))? else {
            return Ok(None);
        };
        let stored: StoredSnapshot = decode(&raw).map_err(|e| StorageIOError::read_snapshot(None, io_error(e)))?;
        Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry { log_id: LogId::new(openraft::CommittedLeaderId::new(1, NodeId(1)), index), payload }
    }

    fn command(index: u64, command: crate::metadata::Command) -> Entry<TypeConfig> {
        entry(index, EntryPayload::Normal(crate::types::Request(command)))
    }

    fn commit(offset: i64) -> crate::metadata::Command {
        let record = crate::records::OffsetRecord { offset, leader_epoch: 0, metadata: None, commit_time_ms: 0 };
        crate::metadata::Command::CommitOffsets { commits: vec![("g".into(), vec![crate::records::OffsetCommit { topic: "t".into(), partition: 1, record }])] }
    }

    #[tokio::test]
    async fn a_watcher_that_applies_the_recent_entries_ends_with_the_state_machines_state() {
        use crate::metadata::Command;
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let mut sm = StateMachine::open(&db).unwrap();
        let watcher = sm.watch_entries();
        let node = |i: u64| (NodeId(i), BasicNode::new(format!("127.0.0.1:{}", 9100 + i)));
        let members = openraft::Membership::new(vec![std::collections::BTreeSet::from([NodeId(1)])], std::collections::BTreeMap::from([node(1)]));
        sm.apply(vec![entry(1, EntryPayload::Blank), entry(2, EntryPayload::Membership(members)), command(3, Command::InitCluster { cluster_id: "c".into() })])
            .await
            .unwrap();
        // A broker-only node has seen index 3...
        let seen = sm.subscribe().borrow().clone();
        // ...and the controllers apply more: brokers, a topic, commits, a
        // membership change, a failed command.
        let mut later = Vec::new();
        for id in 1..=3u64 {
            later.push(Command::RegisterBroker {
                id: NodeId(id),
                kafka_host: "127.0.0.1".into(),
                kafka_port: 9000 + id as u16,
                external: None,
                rpc_address: format!("127.0.0.1:{}", 9100 + id),
                rack: None,
            });
        }
        later.push(Command::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::from_u128(9),
            partitions: 4,
            replication_factor: 3,
            configs: std::collections::BTreeMap::new(),
        });
        later.extend((1..=20).map(commit));
        later.push(Command::DeleteTopic { name: "no-such-topic".into() });
        let mut entries: Vec<_> = later.into_iter().enumerate().map(|(i, c)| command(4 + i as u64, c)).collect();
        let two =
            openraft::Membership::new(vec![std::collections::BTreeSet::from([NodeId(1), NodeId(2)])], std::collections::BTreeMap::from([node(1), node(2)]));
        entries.push(entry(4 + entries.len() as u64, EntryPayload::Membership(two)));
        let last = 3 + entries.len() as u64;
        sm.apply(entries).await.unwrap();

        let now = sm.subscribe().borrow().clone();
        assert_eq!(now.last_applied.map(|l| l.index), Some(last));
        let delta = sm.entries_between(3, last).expect("the entries since index 3 are kept");
        assert_eq!(delta.len() as u64, last - 3);
        let mut replayed = AppliedState::clone(&seen);
        for e in delta {
            replayed.apply_entry(decode(&e).expect("an entry as the log stores it"));
        }
        assert_eq!(replayed.image, now.image);
        assert_eq!(replayed.last_applied, now.last_applied);
        assert_eq!(replayed.membership, now.membership);
        assert_eq!(replayed.image.groups["g"].offsets[&("t".to_string(), 1)].offset, 20);
        assert_eq!(sm.entries_between(last, last), None, "nothing new is no delta");
        assert_eq!(sm.entries_between(2, last + 1), None, "entries not applied yet are not offered");

        // Once more entries than are kept follow, a watcher at index 3 gets
        // the whole state again.
        let blanks: Vec<_> = (1..=RECENT_ENTRIES as u64).map(|i| entry(last + i, EntryPayload::Blank)).collect();
        sm.apply(blanks).await.unwrap();
        assert_eq!(sm.entries_between(3, last + RECENT_ENTRIES as u64), None);
        assert_eq!(sm.entries_between(last, last + RECENT_ENTRIES as u64).map(|d| d.len()), Some(RECENT_ENTRIES));

        // Without a watcher that applies entries, none are kept.
        drop(watcher);
        let next = last + RECENT_ENTRIES as u64;
        sm.apply(vec![entry(next + 1, EntryPayload::Blank)]).await.unwrap();
        assert_eq!(sm.entries_between(next, next + 1), None);
    }

    #[test]
    fn the_recent_entries_stay_within_their_byte_budget_and_consecutive() {
        let mut recent = RecentEntries::default();
        let big = RECENT_ENTRY_BYTES / 4 + 1;
        for i in 1..=5 {
            recent.push(i, vec![0; big]);
        }
        assert!(recent.bytes <= RECENT_ENTRY_BYTES, "{} bytes kept", recent.bytes);
        assert_eq!(recent.between(2, 5).map(|e| e.len()), Some(3));
        assert_eq!(recent.between(1, 5), None, "entry 2 went to stay within the budget");
        // A gap starts over.
        recent.push(9, vec![1]);
        assert_eq!(recent.between(8, 9).map(|e| e.len()), Some(1));
        assert_eq!(recent.between(4, 9), None);
        assert_eq!(recent.bytes, 1);
    }

    #[test]
    fn a_store_records_format_1_and_one_of_a_later_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_db(dir.path()).unwrap();
            LogStore::open(&db).unwrap();
            assert_eq!(db.open_tree("raft_meta").unwrap().get(KEY_FORMAT).unwrap().as_deref(), Some(&1u32.to_be_bytes()[..]));
            let later = crate::types::FORMAT_VERSION + 1;
            db.open_tree("raft_meta").unwrap().insert(KEY_FORMAT, &later.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        // sled's background flusher holds the file lock for a moment after
        // the last handle is dropped; a restarted process would not see it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match open_db(dir.path()) {
                Ok(db) => break db,
                Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("could not acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => panic!("reopening the store: {e}"),
            }
        };
        let refused = LogStore::open(&db).err().expect("a later format is refused").to_string();
        assert!(refused.contains("written by a newer Runnel"), "{refused}");
    }
}
