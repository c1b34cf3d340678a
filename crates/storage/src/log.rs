//! `PartitionLog`: one partition's ordered, append-only log of record batches.
//!
//! # To ensure correctness
//! - Offsets are assigned here, contiguously, under one lock: no holes, no
//!   reuse. Every batch is checked (length, magic, CRC) before any byte of a
//!   record set is written, and a record set is written whole or not at all.
//! - *Written* and *flushed* are kept apart: [`PartitionLog::log_end_offset`]
//!   counts what is in the page cache, [`PartitionLog::flushed_offset`] what an
//!   fsync has covered. [`PartitionLog::flush_to`] is group commit: callers
//!   that arrive while an fsync is running share the next one.
//! - The high watermark is set by the owner of the log (the broker) and only
//!   moves forward, except when [`PartitionLog::truncate_to`] cuts below it.
//!   Reads never pass the bound the caller gives (the high watermark for
//!   consumers).
//! - On open, the last segment is checked batch by batch and a torn or corrupt
//!   tail is cut; indexes that fail their checks are rebuilt.
//! - Nothing that appends waits for a disk: a roll creates the new segment's
//!   files and the next flush (on a blocking thread) fsyncs the directory
//!   with the data, before anything in the new segment counts as flushed.
//!   Truncation and restarts fsync; callers on an async runtime run them on
//!   a blocking thread.

use std::fs::File;
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::batch::{BatchError, BatchHeader, HEADER_BYTES, Marker, STAMPED_BYTES, control_in, marker_batch, stamp, validate_record_set};
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::files::FileCache;
use crate::producer_state::{AbortedTxn, ProducerState, SequenceCheck};
use crate::segment::{Segment, Selection, delete_index_files, delete_segment_files, select_batches};
use crate::snapshot;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The largest record timestamp among the appended batches.
    pub max_timestamp: i64,
    pub log_start_offset: i64,
    pub batch_count: usize,
    /// An idempotent producer's retry of a batch already in the log: nothing
    /// was appended and the offsets are the original ones.
    pub duplicate: bool,
}

/// What opening a log found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub segment_count: usize,
    /// Segments whose batch headers were read to rebuild the producer
    /// state: those from the newest usable snapshot on (all without one).
    pub segments_read: usize,
    pub truncated_bytes: u64,
    pub segments_dropped: usize,
    pub indexes_rebuilt: usize,
}

struct Inner {
    /// Sorted by base offset; the last one is the active segment. Never empty.
    segments: Vec<Segment>,
    config: LogConfig,
    producers: ProducerState,
    /// The leader-epoch cache: `(epoch, first offset written in it)`, epochs
    /// ascending. Derived from batch headers, so it is as durable as the log.
    epochs: Vec<(i32, i64)>,
    /// A segment was created since the directory was last fsynced: the next
    /// flush syncs the directory too (on a blocking thread, not in the
    /// append that rolled).
    dir_dirty: bool,
    /// The log's directory itself is new: the next flush also syncs its parent.
    parent_dirty: bool,
    /// The log start offset a DeleteRecords (or the leader's, on a
    /// follower) moved inside the first segment, or where an emptied log
    /// restarted; 0 when neither happened. Kept in [`START_FILE`].
    start: i64,
    /// Where the cleaner's next pass starts (its dirty section); kept in
    /// [`CLEANER_FILE`]. 0 when the log was never cleaned.
    cleaned_to: i64,
    /// Bumped by every truncation or restart, so a cleaner pass that read
    /// the segments before one does not install what it wrote.
    generation: u64,
    /// The producer-state snapshot of the last roll, `(offset, bytes)`,
    /// for the next flush to write once the data below it is on disk.
    pending_snapshot: Option<(i64, Vec<u8>)>,
    closed: bool,
}

impl Inner {
    fn active(&self) -> &Segment {
        self.segments.last().expect("a log always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a log always has an active segment")
    }
    fn log_start_offset(&self) -> i64 {
        self.segments[0].base_offset.max(self.start).min(self.active().next_offset)
    }

    /// Rebuilds the producer and transaction state and the leader-epoch
    /// cache: from the newest producer-state snapshot at a segment base and
    /// the transaction indexes below it, then the batch headers (and the
    /// marker of each control batch) from there on; from every batch header
    /// when no snapshot serves. Sealed segments it read get transaction
    /// indexes that match them. Returns how many segments it read.
    fn rebuild_state(&mut self, dir: &Path) -> Result<usize> {
        let (from, mut producers, mut epochs) = match self.usable_snapshot(dir)? {
            Some((i, producers, epochs)) => (i, producers, epochs),
            None => (0, ProducerState::default(), Vec::new()),
        };
        let last = self.segments.len() - 1;
        let mut wrote_index = false;
        for (i, seg) in self.segments.iter().enumerate().skip(from) {
            seg.for_each_header(|h, marker| {
                producers.record(h, marker);
                note_epoch(&mut epochs, h);
            })?;
            // The active segment's index is written when it is sealed.
            let entries = if i == last { Vec::new() } else { producers.aborted_ending_in(seg.base_offset, seg.next_offset) };
            if snapshot::read_txn_index(dir, seg.base_offset).ok().as_ref() != Some(&entries) {
                snapshot::write_txn_index(dir, seg.base_offset, &entries)?;
                // Its rename lasts once the directory is synced, which the
                // next flush does before it writes a snapshot.
                wrote_index = true;
            }
        }
        producers.forget_below(self.log_start_offset());
        self.producers = producers;
        self.epochs = epochs;
        self.dir_dirty |= wrote_index;
        Ok(self.segments.len() - from)
    }

    /// The newest snapshot at the base of one of the segments, with the
    /// aborted transactions of the segments below it: `(index of that
    /// segment, state, epochs)`.
    #[allow(clippy::type_complexity)]
    fn usable_snapshot(&self, dir: &Path) -> Result<Option<(usize, ProducerState, Vec<(i32, i64)>)>> {
        'offsets: for offset in snapshot::snapshot_offsets(dir)?.into_iter().rev() {
            let Ok(i) = self.segments.binary_search_by_key(&offset, |s| s.base_offset) else { continue };
            let mut snap = match snapshot::read_snapshot(dir, offset) {
                Ok(snap) => snap,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "passing over a producer-state snapshot that does not read");
                    continue;
                }
            };
            for seg in &self.segments[..i] {
                match snapshot::read_txn_index(dir, seg.base_offset) {
                    Ok(entries) => entries.into_iter().for_each(|a| snap.producers.push_aborted(a)),
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "a transaction index does not read: reading the batches below it instead");
                        continue 'offsets;
                    }
                }
            }
            return Ok(Some((i, snap.producers, snap.epochs)));
        }
        Ok(None)
    }
}

/// A record set from a producer split into its batches, with Kafka's
/// checks: each batch whole with its CRC, holding at least one record and
/// as many as its offsets span, and its records parse as that many (a
/// compressed batch's once decompressed, within
/// [`crate::compression::MAX_DECOMPRESSED_BATCH_BYTES`]), so no consumer
/// is ever served a batch it cannot read.
pub fn check_produced_set(records: &[u8]) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>> {
    let batches = validate_record_set(records)?;
    for (h, range) in &batches {
        check_produced(h, &records[range.clone()])?;
    }
    Ok(batches)
}

fn check_produced(h: &BatchHeader, batch: &[u8]) -> Result<()> {
    if h.record_count <= 0 || i64::from(h.record_count) != i64::from(h.last_offset_delta) + 1 {
        return Err(StorageError::InvalidRecord(format!(
            "the batch counts {} records but its offsets span {}",
            h.record_count,
            i64::from(h.last_offset_delta) + 1
        )));
    }
    let records = &batch[HEADER_BYTES..];
    let well_formed = match h.compression() {
        0 => crate::batch::records_well_formed(records, h.record_count),
        codec => {
            let plain = crate::compression::decompress(codec, records, crate::compression::MAX_DECOMPRESSED_BATCH_BYTES).map_err(BatchError::from)?;
            crate::batch::records_well_formed(&plain, h.record_count)
        }
    };
    if !well_formed {
        return Err(BatchError::MalformedRecords(h.record_count).into());
    }
    Ok(())
}

fn note_epoch(epochs: &mut Vec<(i32, i64)>, h: &BatchHeader) {
    if epochs.last().is_none_or(|(e, _)| h.leader_epoch > *e) {
        epochs.push((h.leader_epoch, h.base_offset));
    }
}

/// A flush writes the snapshot of a roll on a blocking thread, after the
/// log's lock is released; a truncation in between makes it stale, and a
/// close leaves it nowhere to go (the directory's path may hold a new log
/// of the same name by then). Each holds `lock` for its step (the flush:
/// check the generation, rename; the truncation: bump the generation,
/// delete snapshots above the new end; the close: bump the generation),
/// so a stale snapshot is either never renamed into place or deleted.
#[derive(Default)]
struct SnapshotGuard {
    generation: AtomicU64,
    lock: Mutex<()>,
}

impl SnapshotGuard {
    /// After a truncation to `end` (`None`: the log was emptied).
    fn truncated(&self, dir: &Path, end: Option<i64>) -> Result<()> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        snapshot::delete_snapshots_above(dir, end)
    }

    /// Before the log is closed: no snapshot taken earlier is written.
    fn closed(&self) {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Writes a snapshot taken at `generation`, unless a truncation or a
    /// close came since.
    fn write(&self, dir: &Path, generation: u64, offset: i64, bytes: &[u8]) -> std::io::Result<()> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return Ok(());
        }
        snapshot::write_snapshot(dir, offset, bytes)
    }
}

/// A closed segment as a cleaner pass found it.
pub(crate) struct PlannedSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    pub created_ms: i64,
}

/// What a cleaner pass may take (see [`PartitionLog::clean_plan`]).
pub(crate) struct CleanPlan {
    pub config: LogConfig,
    /// Closed segments from the log start to the cleanable end.
    pub segments: Vec<PlannedSegment>,
    /// The first segment a previous pass did not clean.
    pub first_dirty: usize,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    /// Aborted transactions in the range: their records are dropped.
    pub aborted: Vec<AbortedTxn>,
    pub generation: u64,
    pub index_interval_bytes: u32,
}

pub struct PartitionLog {
    dir: PathBuf,
    files: Arc<FileCache>,
    inner: Mutex<Inner>,
    flushed_offset: AtomicI64,
    high_watermark: AtomicI64,
    /// `inner.closed`, read without the lock by [`PartitionLog::is_closed`]
    /// (asked on every request's way to a partition).
    closed: AtomicBool,
    /// The config is a stand-in until [`PartitionLog::set_config`] gives the
    /// topic's own (logs found at start, whose topic settings are in
    /// metadata not known yet): retention and the cleaner leave the log
    /// alone meanwhile, or a topic kept forever or compacted would lose
    /// its old records to the defaults' `delete` and 7 days. Changed with
    /// `inner` held; read without it on a request's way.
    provisional: AtomicBool,
    /// When a tombstone or transaction marker in the cleaned segments may
    /// next pass `delete.retention.ms` (see [`crate::cleaner`]): a pass is
    /// due then even when nothing is dirty. `i64::MIN` when not known yet
    /// (since open, or since `delete.retention.ms` changed). Used by the
    /// log's one cleaner thread.
    pub(crate) tombstones_due_ms: AtomicI64,
    flush_lock: tokio::sync::Mutex<()>,
    /// Held while the log start offset file is written or segment files are
    /// deleted outside the `inner` lock, and by [`PartitionLog::close`], so
    /// a closed log touches no file after it (its directory may hold a new
    /// log of the same name by then). Taken before `inner`.
    start_lock: std::sync::Mutex<()>,
    /// Set by a failed fsync, never cleared: see [`StorageError::FsyncFailed`].
    fsync_failed: std::sync::Mutex<Option<String>>,
    /// Keeps a flush from writing a snapshot that a truncation made stale.
    snapshot_guard: Arc<SnapshotGuard>,
    /// Tests make the next fsync fail.
    #[cfg(test)]
    fail_next_fsync: std::sync::atomic::AtomicBool,
    /// Tests hold the next fsync until this is sent to (or dropped).
    #[cfg(test)]
    hold_next_fsync: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// How far past its segment's base an offset may lie: an index entry holds
/// it as a 32-bit relative offset (Kafka's bound, `Int.MaxValue`).
const RELATIVE_OFFSET_MAX: i64 = i32::MAX as i64;

/// The file that keeps a log start offset moved by DeleteRecords, or the
/// offset an emptied log restarts at: a version line, then the offset.
/// Written whole to a temporary file, fsynced and renamed over the old one,
/// so a crash leaves the old or the new offset.
pub const START_FILE: &str = "log-start-offset";

/// The file that keeps where the cleaner's next pass starts (the first
/// offset it has not compacted), in the same layout as [`START_FILE`].
pub const CLEANER_FILE: &str = "cleaner-offset";

/// Reads [`START_FILE`] in `dir`: 0 when there is none.
pub fn read_start_file(dir: &Path) -> Result<i64> {
    read_offset_file(dir, START_FILE)
}

/// Reads [`CLEANER_FILE`] in `dir`: 0 when there is none.
pub fn read_cleaner_file(dir: &Path) -> Result<i64> {
    read_offset_file(dir, CLEANER_FILE)
}

/// Reads an offset file (`runnel-<name> 1`, then the offset): 0 when
/// there is none.
fn read_offset_file(dir: &Path, name: &str) -> Result<i64> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StorageError::Io { context: format!("read {}", path.display()), source: e }),
    };
    let mut lines = text.lines();
    let bad = |why: String| StorageError::Corrupt(format!("{}: {why}", path.display()));
    let prefix = format!("runnel-{name} ");
    match lines.next() {
        Some(line) if line == format!("{prefix}1") => {}
        Some(other) if other.starts_with(&prefix) => {
            return Err(bad(format!("format {other:?} was written by a newer Runnel; this one reads format 1")));
        }
        _ => return Err(bad(format!("not a {name} file"))),
    }
    let offset = lines.next().and_then(|l| l.trim().parse::<i64>().ok()).filter(|o| *o >= 0).ok_or_else(|| bad("no offset in it".into()))?;
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(bad("more than an offset in it".into()));
    }
    Ok(offset)
}

/// Writes [`START_FILE`] (see there); `0` removes it.
fn write_start_file(dir: &Path, offset: i64) -> Result<()> {
    write_offset_file(dir, START_FILE, offset)
}

/// Lowers the cleaner offset to `offset` (a truncation or restart there),
/// on disk too: records written past it later are not cleaned yet.
fn lower_cleaned_to(dir: &Path, inner: &mut Inner, offset: i64) -> Result<()> {
    let offset = offset.max(0);
    if inner.cleaned_to > offset {
        write_offset_file(dir, CLEANER_FILE, offset)?;
        inner.cleaned_to = offset;
    }
    Ok(())
}

/// Writes an offset file (see [`read_offset_file`]); `0` removes it.
pub(crate) fn write_offset_file(dir: &Path, name: &str, offset: i64) -> Result<()> {
    let path = dir.join(name);
    if offset == 0 {
        match std::fs::remove_file(&path) {
            Ok(()) => return sync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StorageError::Io { context: format!("remove {}", path.display()), source: e }),
        }
    }
    let tmp = dir.join(format!("{name}.tmp"));
    let io = |what: &'static str| StorageError::io(format!("{what} {}", tmp.display()));
    let mut file = File::create(&tmp).map_err(io("create"))?;
    std::io::Write::write_all(&mut file, format!("runnel-{name} 1\n{offset}\n").as_bytes()).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))?;
    std::fs::rename(&tmp, &path).map_err(io("rename"))?;
    sync_dir(dir)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StorageError::io(format!("sync directory {}", dir.display())))
}

/// Reads up to `len` bytes at `pos`; fewer if the file is shorter.
/// The buffer is filled straight from the file (`pread` into its spare
/// capacity), not zeroed first.
fn read_up_to(file: &File, pos: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = pos + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(StorageError::Io { context: "read segment".into(), source: e.into() }),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

impl PartitionLog {
    /// Opens the log in `dir`, creating it if needed, and recovers it, with
    /// a file cache of its own (tests, tools); a node's logs share one
    /// through [`crate::LogManager`].
    pub fn open(dir: &Path, config: LogConfig) -> Result<(PartitionLog, OpenReport)> {
        Self::open_with(dir, config, &Arc::new(FileCache::new(64)))
    }

    /// Opens the log in `dir` (creating it if needed) and recovers it; its
    /// segment files are opened through `files`.
    pub fn open_with(dir: &Path, config: LogConfig, files: &Arc<FileCache>) -> Result<(PartitionLog, OpenReport)> {
        std::fs::create_dir_all(dir).map_err(StorageError::io(format!("create {}", dir.display())))?;
        let list = || -> Result<Vec<String>> {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(StorageError::io(format!("list {}", dir.display())))? {
                names.push(entry.map_err(StorageError::io("list log directory"))?.file_name().to_string_lossy().into_owned());
            }
            Ok(names)
        };
        let mut names = list()?;
        if crate::merge::recover(dir, &names, files)? > 0 {
            names = list()?;
        }
        let mut bases = Vec::new();
        for name in &names {
            if name.ends_with(".snapshot.tmp") || name.ends_with(".txnindex.tmp") || name.ends_with(".txnindex.merging.tmp") {
                // A snapshot or index write a crash cut short.
                let _ = std::fs::remove_file(dir.join(name));
            } else if let Some(stem) = name.strip_suffix(".log.cleaned") {
                // A cleaner pass that did not finish: the segment it was
                // rewriting is still whole under its `.log` name.
                if let Ok(base) = stem.parse::<i64>() {
                    tracing::info!(dir = %dir.display(), segment = base, "removing an unfinished cleaner copy");
                    Segment::delete_cleaned(dir, base, files)?;
                }
            } else if let Some(stem) = name.strip_suffix(".log") {
                match stem.parse::<i64>() {
                    Ok(base) if base >= 0 => bases.push(base),
                    _ => tracing::warn!(file = %name, dir = %dir.display(), "ignoring a .log file whose name is not an offset"),
                }
            }
        }
        bases.sort_unstable();
        let now = now_ms();
        let mut report = OpenReport::default();
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            // A gap before a segment is batches the cleaner removed; an
            // overlap is not something this log ever writes.
            if let Some(prev) = segments.last()
                && prev.next_offset > base
            {
                tracing::warn!(dir = %dir.display(), expected = prev.next_offset, found = base, "segment overlaps the previous one; dropping it and later segments");
                for &later in &bases[i..] {
                    delete_segment_files(dir, later)?;
                    report.segments_dropped += 1;
                }
                break;
            }
            let (seg, recovery) = Segment::open(dir, base, last, config.index_interval_bytes, now, files)?;
            if recovery.index_rebuilt && !last {
                report.indexes_rebuilt += 1;
            }
            let torn = recovery.truncated_bytes > 0;
            if torn {
                tracing::warn!(dir = %dir.display(), segment = base, bytes = recovery.truncated_bytes, reason = recovery.reason.as_deref().unwrap_or(""), "cut a torn or corrupt segment tail");
                report.truncated_bytes += recovery.truncated_bytes;
            }
            segments.push(seg);
            if torn && !last {
                // Later segments were written after data that never reached the
                // disk, so none of them was acknowledged under fsync-before-ack.
                for &later in &bases[i + 1..] {
                    delete_segment_files(dir, later)?;
                    report.segments_dropped += 1;
                }
                break;
            }
        }
        let start = read_start_file(dir)?;
        if segments.last().is_some_and(|last| last.next_offset < start) {
            // A crash while the log was being emptied to restart at `start`
            // (see `empty_to`): what is left of the old log all lies below
            // the new start.
            tracing::warn!(dir = %dir.display(), start, segments = segments.len(), "finishing a restart of the log that a crash cut short");
            for seg in segments.drain(..).rev() {
                seg.delete_files()?;
                report.segments_dropped += 1;
            }
        }
        let created = segments.is_empty();
        if created {
            // A new log, or one emptied to restart at the start file's offset.
            segments.push(Segment::create(dir, start, now, files)?);
        }
        if report.truncated_bytes > 0 || report.segments_dropped > 0 {
            // Recovery changed the directory: make that stick before anything else.
            sync_dir(dir)?;
        }
        report.segment_count = segments.len();
        let end = segments.last().expect("non-empty").next_offset;
        // A new log's directory (and its entry in the parent) is fsynced by
        // its first flush, not here: creating many partitions at once does
        // not wait for a disk flush per partition.
        // Never past the log end: a crash after a truncation that the file
        // does not show yet must not count records copied later as clean.
        let cleaned_to = read_cleaner_file(dir)?.min(end);
        let mut inner = Inner {
            segments,
            config,
            producers: ProducerState::default(),
            epochs: Vec::new(),
            dir_dirty: created,
            parent_dirty: created,
            start,
            cleaned_to,
            generation: 0,
            pending_snapshot: None,
            closed: false,
        };
        report.segments_read = inner.rebuild_state(dir)?;
        // Not the log end, which may hold records no ISR had taken (and a
        // failover could reuse their offsets): the log start, until the
        // checkpoint (see `checkpoint.rs`), the leader or the ISR says more.
        let high_watermark = inner.log_start_offset();
        let log = PartitionLog {
            dir: dir.to_path_buf(),
            files: files.clone(),
            inner: Mutex::new(inner),
            flushed_offset: AtomicI64::new(end),
            high_watermark: AtomicI64::new(high_watermark),
            closed: AtomicBool::new(false),
            provisional: AtomicBool::new(false),
            tombstones_due_ms: AtomicI64::new(i64::MIN),
            flush_lock: tokio::sync::Mutex::new(()),
            start_lock: std::sync::Mutex::new(()),
            fsync_failed: std::sync::Mutex::new(None),
            snapshot_guard: Arc::default(),
            #[cfg(test)]
            fail_next_fsync: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            hold_next_fsync: std::sync::Mutex::new(None),
        };
        Ok((log, report))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic mid-append; the segment state is still
        // consistent because every mutation is completed or rolled back before
        // any step that can panic, so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log's state, unless it was closed for deletion: its directory is
    /// then gone, about to go, or already holds a new log of the same name,
    /// so nothing may touch its files (and a failure to is not the disk's).
    fn lock_open(&self) -> Result<MutexGuard<'_, Inner>> {
        let inner = self.lock();
        if inner.closed {
            return Err(StorageError::Closed(self.dir.display().to_string()));
        }
        Ok(inner)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_end_offset(&self) -> i64 {
        self.lock().active().next_offset
    }

    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset()
    }

    pub fn flushed_offset(&self) -> i64 {
        self.flushed_offset.load(Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn config(&self) -> LogConfig {
        self.lock().config.clone()
    }

    /// Whether `cleanup.policy` holds `compact` (without copying the
    /// config); false while the config is provisional.
    pub fn is_compacted(&self) -> bool {
        self.lock().config.compact && !self.config_is_provisional()
    }

    /// Gives the log its topic's settings (ending a provisional config).
    pub fn set_config(&self, config: LogConfig) {
        let mut inner = self.lock();
        if inner.config.delete_retention_ms != config.delete_retention_ms {
            self.tombstones_due_ms.store(i64::MIN, Ordering::Relaxed);
        }
        inner.config = config;
        self.provisional.store(false, Ordering::Release);
    }

    /// Records when a cleaned segment's tombstones are next due, as worked
    /// out under `delete_retention_ms`: if the config changed meanwhile
    /// ([`PartitionLog::set_config`] resets it under the same lock), that
    /// reset stands.
    pub(crate) fn set_tombstones_due(&self, due: i64, delete_retention_ms: i64) {
        let inner = self.lock();
        let due = if inner.config.delete_retention_ms == delete_retention_ms { due } else { i64::MIN };
        self.tombstones_due_ms.store(due, Ordering::Relaxed);
    }

    /// Marks the config a stand-in until [`PartitionLog::set_config`]:
    /// retention and the cleaner leave the log alone meanwhile.
    pub(crate) fn make_config_provisional(&self) {
        let _inner = self.lock();
        self.provisional.store(true, Ordering::Release);
    }

    /// Whether the config is still a stand-in (see [`LogManager::open`](crate::LogManager::open)).
    pub fn config_is_provisional(&self) -> bool {
        self.provisional.load(Ordering::Acquire)
    }

    /// The base offsets of the segments, oldest first. For tests.
    #[cfg(test)]
    pub(crate) fn lock_segments_bases(&self) -> Vec<i64> {
        self.lock().segments.iter().map(|s| s.base_offset).collect()
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.iter().map(Segment::record_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// Each segment's base offset, next offset and largest record timestamp
    /// (the batches' max timestamps: for LogAppendTime batches the append
    /// time), in offset order.
    pub fn segment_times(&self) -> Vec<(i64, i64, i64)> {
        self.lock().segments.iter().map(|s| (s.base_offset, s.next_offset, s.max_timestamp)).collect()
    }

    /// Sets a reopened log's high watermark to what the checkpoint held,
    /// never past the log end (the tail may have been cut since).
    pub fn restore_high_watermark(&self, checkpointed: i64) {
        self.advance_high_watermark(checkpointed.min(self.log_end_offset()));
    }

    /// Moves the high watermark forward to `offset` (never backward, never past
    /// the log end); returns whether it moved.
    pub fn advance_high_watermark(&self, offset: i64) -> bool {
        let offset = offset.min(self.log_end_offset());
        self.high_watermark.fetch_max(offset, Ordering::AcqRel) < offset
    }

    /// Validates and appends a record set (one or more v2 batches), stamping
    /// each batch with its base offset and `leader_epoch`. A batch from an
    /// idempotent producer must come alone; its sequence is checked against
    /// the producer's last batches, and a retry of one of them is answered
    /// with the original offsets without appending.
    pub fn append(&self, records: &[u8], leader_epoch: i32) -> Result<AppendInfo> {
        #[cfg(feature = "failpoints")]
        crate::failpoints::disk_full()?;
        let batches = check_produced_set(records)?;
        if batches.len() > 1 && batches.iter().any(|(h, _)| h.producer_id >= 0) {
            return Err(StorageError::InvalidRecord("a record set from an idempotent producer must hold exactly one batch".into()));
        }
        if batches.iter().any(|(h, _)| h.is_control()) {
            return Err(StorageError::InvalidRecord("control batches (transaction markers) are written only by the transaction coordinator".into()));
        }
        let now = now_ms();
        let mut inner = self.lock_open()?;
        if let SequenceCheck::Duplicate { base_offset, last_offset } = inner.producers.check(&batches[0].0)? {
            return Ok(AppendInfo {
                base_offset,
                last_offset,
                max_timestamp: batches[0].0.max_timestamp,
                log_start_offset: inner.log_start_offset(),
                batch_count: 1,
                duplicate: true,
            });
        }
        let config = inner.config.clone();
        let taken: i64 = batches.iter().map(|(h, _)| i64::from(h.last_offset_delta) + 1).sum();
        if taken > RELATIVE_OFFSET_MAX {
            return Err(StorageError::InvalidRecord(format!("a record set of {taken} records is more than one segment can index")));
        }
        let end = inner.active().next_offset;
        self.make_room(&mut inner, records.len(), (end, end + taken - 1), now)?;
        let base_offset = inner.active().next_offset;
        let mut next = base_offset;
        let mut headers = Vec::with_capacity(batches.len());
        // Only the first bytes of each batch change (base offset, leader
        // epoch, neither under its CRC): those are stamped in a copy and the
        // rest is written from the request as it came.
        let mut stamped = Vec::with_capacity(batches.len());
        let mut max_timestamp = -1;
        for (header, range) in &batches {
            let mut head = [0u8; STAMPED_BYTES];
            head.copy_from_slice(&records[range.start..range.start + STAMPED_BYTES]);
            stamp(&mut head, next, leader_epoch);
            stamped.push(head);
            headers.push(BatchHeader { base_offset: next, leader_epoch, ..*header });
            max_timestamp = max_timestamp.max(header.max_timestamp);
            next += i64::from(header.last_offset_delta) + 1;
        }
        let mut parts: Vec<IoSlice<'_>> = stamped
            .iter()
            .zip(&batches)
            .flat_map(|(head, (_, range))| [IoSlice::new(head), IoSlice::new(&records[range.start + STAMPED_BYTES..range.end])])
            .collect();
        inner.active_mut().append_parts(&mut parts, &headers, config.index_interval_bytes)?;
        for h in &headers {
            inner.producers.record(h, None);
            note_epoch(&mut inner.epochs, h);
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            max_timestamp,
            log_start_offset: inner.log_start_offset(),
            batch_count: headers.len(),
            duplicate: false,
        })
    }

    /// Appends batches copied from the partition leader as they are: offsets
    /// and leader epochs already assigned. Offsets only go up, from the log
    /// end (a gap is what the leader's cleaner removed), and epochs must not
    /// go backwards.
    pub fn append_replicated(&self, records: &[u8]) -> Result<AppendInfo> {
        #[cfg(feature = "failpoints")]
        crate::failpoints::disk_full()?;
        let batches = validate_record_set(records)?;
        let now = now_ms();
        let mut inner = self.lock_open()?;
        let config = inner.config.clone();
        let mut next = inner.active().next_offset;
        let mut last_epoch = inner.epochs.last().map_or(i32::MIN, |(e, _)| *e);
        for (h, _) in &batches {
            // A leader's cleaned log has gaps; offsets still only go up.
            if h.base_offset < next {
                return Err(StorageError::InvalidRecord(format!("replicated batch starts at offset {}, below the log end {next}", h.base_offset)));
            }
            if h.leader_epoch < last_epoch {
                return Err(StorageError::InvalidRecord(format!("replicated batch has leader epoch {}, older than {last_epoch}", h.leader_epoch)));
            }
            last_epoch = h.leader_epoch;
            next = h.last_offset() + 1;
        }
        self.make_room(&mut inner, records.len(), (batches[0].0.base_offset, next - 1), now)?;
        let headers: Vec<BatchHeader> = batches.iter().map(|(h, _)| *h).collect();
        inner.active_mut().append(records, &headers, config.index_interval_bytes)?;
        for (h, range) in &batches {
            let control = if h.is_control() { control_in(&records[range.start + HEADER_BYTES..range.end]) } else { None };
            inner.producers.record(h, control);
            note_epoch(&mut inner.epochs, h);
        }
        Ok(AppendInfo {
            base_offset: headers[0].base_offset,
            last_offset: next - 1,
            max_timestamp: headers.iter().map(|h| h.max_timestamp).max().unwrap_or(-1),
            log_start_offset: inner.log_start_offset(),
            batch_count: headers.len(),
            duplicate: false,
        })
    }

    /// Appends a transaction marker ending `producer_id`'s transaction, as
    /// the transaction coordinator asks the partition leader to (Kafka's
    /// WriteTxnMarkers). Refused when the producer has moved past `epoch`,
    /// or when a marker from a newer coordinator (a higher
    /// `coordinator_epoch`) was written here for this producer: a deposed
    /// coordinator's late marker must not end a later transaction.
    pub fn append_marker(&self, producer_id: i64, epoch: i16, marker: Marker, coordinator_epoch: i32, leader_epoch: i32) -> Result<AppendInfo> {
        #[cfg(feature = "failpoints")]
        crate::failpoints::disk_full()?;
        let mut bytes = marker_batch(producer_id, epoch, marker, coordinator_epoch, now_ms());
        let now = now_ms();
        let mut inner = self.lock_open()?;
        inner.producers.check_marker(producer_id, epoch, coordinator_epoch)?;
        let config = inner.config.clone();
        let end = inner.active().next_offset;
        self.make_room(&mut inner, bytes.len(), (end, end), now)?;
        let offset = inner.active().next_offset;
        stamp(&mut bytes, offset, leader_epoch);
        let header = BatchHeader { base_offset: offset, leader_epoch, ..BatchHeader::parse(&bytes)? };
        inner.active_mut().append(&bytes, &[header], config.index_interval_bytes)?;
        inner.producers.record(&header, Some((marker, coordinator_epoch)));
        note_epoch(&mut inner.epochs, &header);
        Ok(AppendInfo {
            base_offset: offset,
            last_offset: offset,
            max_timestamp: header.max_timestamp,
            log_start_offset: inner.log_start_offset(),
            batch_count: 1,
            duplicate: false,
        })
    }

    /// The last stable offset (LSO): the high watermark, or the first offset
    /// of the oldest open transaction when that is lower. read_committed
    /// consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        let inner = self.lock();
        // An open transaction whose first records retention or DeleteRecords
        // removed holds the LSO at the log start, never below it.
        let first = inner.producers.first_unstable_offset().map(|f| f.max(inner.log_start_offset()));
        first.map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// The aborted transactions a read_committed fetch of `[from, to)` must
    /// list, so the consumer drops their records.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.lock().producers.aborted_between(from, to)
    }

    /// The producers this partition knows (DescribeProducers).
    pub fn producers(&self) -> Vec<crate::producer_state::ProducerSummary> {
        self.lock().producers.summaries()
    }

    /// Whether `producer_id` has a transaction open in this partition at
    /// `epoch`.
    pub fn has_open_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.lock().producers.has_open_transaction(producer_id, epoch)
    }

    /// How many transactions are open in this partition.
    pub fn open_transactions(&self) -> usize {
        self.lock().producers.open_transactions()
    }

    /// The newest leader epoch in the log, if any batch has been written.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock().epochs.last().map(|(e, _)| *e)
    }

    /// For a follower of the leader at `requested` epoch (KIP-101/279): the
    /// largest epoch at or below `requested` that this log has, and the offset
    /// where that epoch ends here (the start of the next epoch, or the log
    /// end). `None` if this log has no epoch at or below `requested`.
    pub fn end_offset_for_epoch(&self, requested: i32) -> Option<(i32, i64)> {
        let inner = self.lock();
        let i = inner.epochs.partition_point(|(e, _)| *e <= requested);
        if i == 0 {
            return None;
        }
        let epoch = inner.epochs[i - 1].0;
        let end = inner.epochs.get(i).map_or(inner.active().next_offset, |(_, start)| *start);
        Some((epoch, end))
    }

    /// Refuses a record set larger than a segment, and rolls the active
    /// segment when `bytes` more would pass `segment.bytes` or it is older
    /// than `segment.ms`, or when the record set's offsets (`first..=last`)
    /// would lie further from the segment's base than an index entry's
    /// relative offset reaches (Kafka rolls there too): batches of many tiny
    /// compressed records, or a cleaned leader's gap.
    fn make_room(&self, inner: &mut Inner, bytes: usize, (first, last): (i64, i64), now: i64) -> Result<()> {
        let segment_bytes = inner.config.segment_bytes;
        if bytes as u64 > segment_bytes {
            return Err(StorageError::RecordSetTooLarge { bytes, segment_bytes });
        }
        let active = inner.active();
        let too_big = active.size + bytes as u64 > segment_bytes;
        let too_old = now - active.created_ms > inner.config.segment_ms;
        let too_far = last - active.base_offset > RELATIVE_OFFSET_MAX;
        let base = first.max(active.next_offset);
        // An empty segment rolls only to a later base (a gap): a record set
        // that alone spans too far (only data older than this rule) goes in
        // as it is, its later index entries unwritten, as before.
        let roll = if active.size > 0 { too_big || too_old || too_far } else { too_far && base > active.base_offset };
        if roll {
            self.roll(inner, base, now)?;
        }
        Ok(())
    }

    /// Seals the active segment and starts the next at `base` (the log end,
    /// or past it where a replicated batch comes after a gap).
    fn roll(&self, inner: &mut Inner, base: i64, now: i64) -> Result<()> {
        let sealed = inner.active().base_offset;
        inner.active().seal()?;
        // Aborts are rare: most segments have no index to write.
        snapshot::write_txn_index(&self.dir, sealed, &inner.producers.aborted_ending_in(sealed, base))?;
        let seg = Segment::create(&self.dir, base, now, &self.files)?;
        inner.segments.push(seg);
        inner.dir_dirty = true;
        inner.pending_snapshot = Some((base, snapshot::encode_snapshot(base, &inner.producers, &inner.epochs)));
        Ok(())
    }

    /// Makes everything below `offset` durable; returns the flushed offset.
    /// Concurrent callers share fsyncs (group commit).
    pub async fn flush_to(&self, offset: i64) -> Result<i64> {
        let flushed = self.flushed_offset();
        if flushed >= offset {
            return Ok(flushed);
        }
        let _turn = self.flush_lock.lock().await;
        let flushed = self.flushed_offset();
        if flushed >= offset {
            return Ok(flushed);
        }
        if let Some(reason) = self.fsync_failed.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(StorageError::FsyncFailed { dir: self.dir.display().to_string(), reason });
        }
        #[cfg(test)]
        let fail = self.fail_next_fsync.swap(false, Ordering::AcqRel);
        #[cfg(test)]
        let hold = self.hold_next_fsync.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (files, end, dir, parent, snapshot, generation) = {
            let mut inner = self.lock_open()?;
            let end = inner.active().next_offset;
            let mut files = Vec::new();
            // Only `.log` files: indexes are checked on open (and the last
            // segment's rebuilt), so an index that lost its tail costs a scan,
            // never data.
            for seg in inner.segments.iter().filter(|s| s.dirty) {
                files.push(seg.log()?);
            }
            for seg in inner.segments.iter_mut() {
                seg.dirty = false;
            }
            let dir = std::mem::take(&mut inner.dir_dirty).then(|| self.dir.clone());
            let parent = std::mem::take(&mut inner.parent_dirty).then(|| self.dir.parent().map(Path::to_path_buf)).flatten();
            let generation = self.snapshot_guard.generation.load(Ordering::Acquire);
            let snapshot = inner.pending_snapshot.take().map(|(offset, bytes)| (self.dir.clone(), self.snapshot_guard.clone(), generation, offset, bytes));
            (files, end, dir, parent, snapshot, inner.generation)
        };
        let synced = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            #[cfg(feature = "failpoints")]
            crate::failpoints::fsync_delay();
            #[cfg(test)]
            if let Some(hold) = hold {
                let _ = hold.recv();
            }
            #[cfg(test)]
            if fail {
                return Err(std::io::Error::from_raw_os_error(5));
            }
            for f in files {
                f.sync_data()?;
            }
            // A rolled segment's directory entry, so its file survives a
            // crash; for a new log, its directory's entry too.
            if let Some(dir) = dir {
                File::open(&dir)?.sync_all()?;
            }
            if let Some(parent) = parent {
                File::open(&parent)?.sync_all()?;
            }
            // The data below the snapshot's offset is on disk now. The
            // snapshot only saves reading batch headers on open: a failure
            // to write it is logged, not the flush's failure.
            if let Some((dir, guard, generation, offset, bytes)) = snapshot
                && let Err(e) = guard.write(&dir, generation, offset, &bytes)
            {
                tracing::warn!(dir = %dir.display(), offset, error = %e, "could not write a producer-state snapshot; the next open reads more of the log");
            }
            Ok(())
        })
        .await
        .map_err(|e| StorageError::Io { context: "fsync task".into(), source: std::io::Error::other(e) })?;
        if let Err(e) = synced {
            if self.lock().closed {
                // Deleted meanwhile (its directory renamed away under the
                // fsync): none of it needs to be durable any more.
                return Err(StorageError::Closed(self.dir.display().to_string()));
            }
            // Pages the failed fsync covered may be gone from the page cache
            // without reaching the disk, and the next fsync would not report
            // it: the flushed offset stays where it is for good.
            let reason = e.to_string();
            *self.fsync_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
            tracing::error!(dir = %self.dir.display(), error = %e, "fsync failed: this log is flushed no further until the node restarts and recovers it");
            return Err(StorageError::FsyncFailed { dir: self.dir.display().to_string(), reason });
        }
        // A truncation or restart since the flush began may have cut what it
        // covered, and what was appended after the cut is not what it
        // synced: the flushed offset stays as the truncation left it.
        let inner = self.lock();
        if inner.generation != generation {
            return Ok(self.flushed_offset());
        }
        Ok(self.flushed_offset.fetch_max(end, Ordering::AcqRel).max(end))
    }

    /// Flushes everything appended so far.
    pub async fn flush(&self) -> Result<i64> {
        let end = self.log_end_offset();
        self.flush_to(end).await
    }

    /// Reads whole batches from the one that holds `offset`, stopping before
    /// `upper_offset` (exclusive: the high watermark for consumers) and at
    /// `max_bytes`; with `min_one` the first batch is returned even if larger
    /// (as Kafka does since KIP-74, so a consumer can always make progress).
    /// A read stays within one segment (the first with a batch at or after
    /// `offset`: the cleaner may have left a segment's end empty); the
    /// caller asks again for more.
    pub fn read(&self, offset: i64, max_bytes: usize, upper_offset: i64, min_one: bool) -> Result<Bytes> {
        // The segment to read from; after the first, a later one read from
        // its start, when the cleaner left nothing at or after `offset` in
        // the one before.
        let mut later_segment: Option<i64> = None;
        loop {
            let (file, start_pos, segment_end, interval, next_base) = {
                let inner = self.lock_open()?;
                let log_start_offset = inner.log_start_offset();
                let log_end_offset = inner.active().next_offset;
                if offset < log_start_offset || offset > log_end_offset {
                    return Err(StorageError::OffsetOutOfRange { offset, log_start_offset, log_end_offset });
                }
                if offset >= upper_offset || offset == log_end_offset {
                    return Ok(Bytes::new());
                }
                let i = match later_segment {
                    None => inner.segments.partition_point(|s| s.base_offset <= offset) - 1,
                    Some(base) => match inner.segments.iter().position(|s| s.base_offset >= base) {
                        Some(i) => i,
                        None => return Ok(Bytes::new()),
                    },
                };
                let seg = &inner.segments[i];
                let pos = if later_segment.is_some() { 0 } else { seg.position_for(offset) };
                let next_base = inner.segments.get(i + 1).map(|s| s.base_offset);
                (seg.log()?, pos, seg.size, inner.config.index_interval_bytes as usize, next_base)
            };
            let mut pos = start_pos;
            let mut chunk_bytes = max_bytes.saturating_add(interval).max(HEADER_BYTES);
            loop {
                let want = chunk_bytes.min((segment_end.saturating_sub(pos)) as usize);
                if want == 0 {
                    // Nothing here ends at or after `offset`: a gap left by
                    // the cleaner runs into the next segment.
                    match next_base {
                        Some(base) if base < upper_offset => {
                            later_segment = Some(base);
                            break;
                        }
                        _ => return Ok(Bytes::new()),
                    }
                }
                let chunk = read_up_to(&file, pos, want)?;
                match select_batches(&chunk, offset, upper_offset, max_bytes, min_one) {
                    Selection::Range(r) => return Ok(Bytes::from(chunk).slice(r)),
                    Selection::NeedMore { from, bytes } => {
                        if chunk.len() < want {
                            return Ok(Bytes::new()); // the file was cut under us
                        }
                        pos += from as u64;
                        chunk_bytes = chunk_bytes.max(bytes);
                    }
                }
            }
        }
    }

    /// The first batch that ends at or after `from_offset` and starts below
    /// `upper_offset` whose largest timestamp is at least `timestamp`, as
    /// stored bytes; the caller finds the record inside it (and skips those
    /// below `from_offset`, which the log start may cut through).
    pub fn batch_for_timestamp(&self, timestamp: i64, from_offset: i64, upper_offset: i64) -> Result<Option<Bytes>> {
        // Segment by segment: one whose batches at the time all lie before
        // `from_offset` hands over to the next.
        let mut after_base = i64::MIN;
        loop {
            let (file, mut pos, end, base) = {
                let inner = self.lock_open()?;
                let Some(seg) = inner.segments.iter().find(|s| s.base_offset > after_base && s.next_offset > from_offset && s.max_timestamp >= timestamp)
                else {
                    return Ok(None);
                };
                if seg.base_offset >= upper_offset {
                    return Ok(None);
                }
                (seg.log()?, seg.position_for_timestamp(timestamp), seg.size, seg.base_offset)
            };
            while pos + HEADER_BYTES as u64 <= end {
                let head = read_up_to(&file, pos, HEADER_BYTES)?;
                let Ok(h) = BatchHeader::parse(&head) else { return Ok(None) };
                if h.base_offset >= upper_offset {
                    return Ok(None);
                }
                if h.max_timestamp >= timestamp && h.last_offset() >= from_offset {
                    let batch = read_up_to(&file, pos, h.total_bytes())?;
                    return Ok(Some(Bytes::from(batch)));
                }
                pos += h.total_bytes() as u64;
            }
            after_base = base;
        }
    }

    /// Removes every batch at or after the one holding `offset`; returns the
    /// new log end offset. Below the log start, the log is emptied and restarts
    /// at `offset`.
    pub fn truncate_to(&self, offset: i64) -> Result<i64> {
        let _start_file = self.start_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut inner = self.lock_open()?;
        if offset >= inner.active().next_offset {
            return Ok(inner.active().next_offset);
        }
        self.settle_merges(&inner)?;
        let now = now_ms();
        let emptied = offset <= inner.log_start_offset();
        if emptied {
            self.empty_to(&mut inner, offset, now)?;
        } else {
            while inner.active().base_offset >= offset {
                let seg = inner.segments.pop().expect("the first segment starts below offset");
                seg.delete_files()?;
            }
            let seg = inner.active_mut();
            let mut pos = seg.position_for(offset);
            let cut = loop {
                if pos >= seg.size {
                    // `offset` is in a gap the cleaner left at the segment's end.
                    break (seg.size, offset);
                }
                let head = read_up_to(&*seg.log()?, pos, HEADER_BYTES)?;
                let h = BatchHeader::parse(&head)?;
                if h.last_offset() >= offset {
                    // The batch holding `offset` goes whole; one past a gap
                    // (the cleaner's) before `offset` leaves the end there.
                    break (pos, h.base_offset.min(offset));
                }
                pos += h.total_bytes() as u64;
            };
            seg.truncate_at(cut.0, cut.1)?;
        }
        inner.generation += 1;
        lower_cleaned_to(&self.dir, &mut inner, offset)?;
        let end = inner.active().next_offset;
        if !emptied {
            // Snapshots above the new end describe batches that are gone
            // (`empty_to` already removed an emptied log's).
            inner.pending_snapshot = None;
            self.snapshot_guard.truncated(&self.dir, Some(end))?;
        }
        inner.rebuild_state(&self.dir)?;
        if let Err(e) = inner.active().log()?.sync_data() {
            *self.fsync_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("sync truncation: {e}"));
            return Err(StorageError::FsyncFailed { dir: self.dir.display().to_string(), reason: format!("sync truncation: {e}") });
        }
        sync_dir(&self.dir)?;
        self.high_watermark.fetch_min(end, Ordering::AcqRel);
        self.flushed_offset.fetch_min(end, Ordering::AcqRel);
        Ok(end)
    }

    /// Empties the log and restarts it at `offset` (a follower that fell
    /// behind the leader's log start). Returns the new log end.
    pub fn restart_at(&self, offset: i64) -> Result<i64> {
        let _start_file = self.start_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut inner = self.lock_open()?;
        self.settle_merges(&inner)?;
        self.empty_to(&mut inner, offset, now_ms())?;
        inner.generation += 1;
        lower_cleaned_to(&self.dir, &mut inner, offset)?;
        inner.rebuild_state(&self.dir)?;
        sync_dir(&self.dir)?;
        self.high_watermark.store(offset.max(0), Ordering::Release);
        self.flushed_offset.store(offset.max(0), Ordering::Release);
        Ok(offset.max(0))
    }

    /// Completes or undoes merges a failed cleaner pass left behind (see
    /// [`crate::merge::settle_running`]); `inner` is the log, locked.
    fn settle_merges(&self, inner: &Inner) -> Result<()> {
        let live: Vec<i64> = inner.segments.iter().map(|s| s.base_offset).collect();
        crate::merge::settle_running(&self.dir, &live, &self.files).map(|_| ())
    }

    /// The same, for a cleaner pass about to start.
    pub(crate) fn settle_merges_before_cleaning(&self) -> Result<()> {
        self.settle_merges(&*self.lock_open()?)
    }

    /// Deletes every segment and starts the log again, empty, at `offset`.
    /// The start file names `offset` first (fsynced), or keeps naming the
    /// current start when that is higher, until the old segments are gone;
    /// segments go from the last. So a crash at any step leaves either a
    /// prefix of the old log from no lower a start than before, which
    /// replication truncates again, or segments that all end below the
    /// start file, which [`PartitionLog::open`] replaces with an empty log
    /// there: never a log that starts again at 0 and hands out offsets a
    /// second time, nor one that shows again records below its start that
    /// DeleteRecords removed. The caller holds `start_lock`.
    fn empty_to(&self, inner: &mut Inner, offset: i64, now: i64) -> Result<()> {
        let offset = offset.max(0);
        let meanwhile = offset.max(inner.start);
        write_start_file(&self.dir, meanwhile)?;
        inner.start = meanwhile;
        // The old log's producer snapshots go before its segments: one at
        // the new base would bring its producers back into the new log.
        inner.pending_snapshot = None;
        self.snapshot_guard.truncated(&self.dir, None)?;
        while let Some(seg) = inner.segments.pop() {
            seg.delete_files()?;
        }
        inner.segments.push(Segment::create(&self.dir, offset, now, &self.files)?);
        if offset < meanwhile {
            // The new segment is on disk before the start file goes down.
            sync_dir(&self.dir)?;
            write_start_file(&self.dir, offset)?;
            inner.start = offset;
        }
        Ok(())
    }

    /// Deletes closed segments past `retention.ms` or beyond `retention.bytes`,
    /// never data at or above the high watermark. When every segment has
    /// passed `retention.ms`, the active one included, the active segment is
    /// rolled first (as Kafka does) and deleted too: the log keeps its end
    /// offset in a new, empty segment. Returns how many segments were
    /// deleted. It fsyncs the directory: call it on a blocking thread.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        // Until the files are gone: a close meanwhile waits for it.
        let _files = self.start_lock.lock().unwrap_or_else(|p| p.into_inner());
        let removed: Vec<Segment> = {
            let mut inner = self.lock();
            let config = inner.config.clone();
            if !config.delete || inner.closed || self.config_is_provisional() {
                // cleanup.policy=compact: the cleaner alone removes records;
                // a closed log goes whole with its directory; the topic's
                // own settings are not known yet.
                return Ok(0);
            }
            let high_watermark = self.high_watermark();
            let mut total: u64 = inner.segments.iter().map(Segment::record_bytes).sum();
            let mut count = 0;
            while inner.segments.len() - count > 1 {
                let seg = &inner.segments[count];
                if seg.next_offset > high_watermark {
                    break;
                }
                let expired = config.retention_ms >= 0 && seg.max_timestamp < now_ms - config.retention_ms;
                let oversized = config.retention_bytes >= 0 && total - seg.size >= config.retention_bytes as u64;
                if !(expired || oversized) {
                    break;
                }
                total -= seg.size;
                count += 1;
            }
            let active = inner.active();
            let active_expired = config.retention_ms >= 0 && active.size > 0 && active.max_timestamp < now_ms - config.retention_ms;
            if count + 1 == inner.segments.len() && active_expired && active.next_offset <= high_watermark {
                let base = inner.active().next_offset;
                self.roll(&mut inner, base, now_ms)?;
                // The new segment must exist on disk before the old ones go,
                // or a crash could leave no segment and the log would restart at 0.
                sync_dir(&self.dir)?;
                inner.dir_dirty = false;
                count += 1;
            }
            let removed = inner.segments.drain(..count).collect();
            let log_start = inner.log_start_offset();
            inner.producers.forget_below(log_start);
            removed
        };
        for seg in &removed {
            seg.delete_files()?;
        }
        if !removed.is_empty() {
            tracing::info!(dir = %self.dir.display(), segments = removed.len(), log_start_offset = self.log_start_offset(), "retention deleted segments");
        }
        Ok(removed.len())
    }

    /// Moves the log start offset up to `offset` (DeleteRecords, KIP-107;
    /// on a follower, the leader's log start): reads below it are out of
    /// range, ListOffsets' earliest is it, and segments wholly below it are
    /// deleted. Never past the log end; never backward (a smaller offset is
    /// no change). Records at or above the high watermark must not be
    /// deleted: the caller checks `offset` against it. Returns the log
    /// start offset. It writes and fsyncs files: call it on a blocking thread.
    pub fn advance_log_start(&self, offset: i64) -> Result<i64> {
        // One advance at a time, so the file never goes back to an older offset.
        let _writing = self.start_lock.lock().unwrap_or_else(|p| p.into_inner());
        let target = {
            let inner = self.lock_open()?;
            let target = offset.min(inner.active().next_offset);
            if target <= inner.log_start_offset() {
                return Ok(inner.log_start_offset());
            }
            target
        };
        write_start_file(&self.dir, target)?;
        let removed: Vec<Segment> = {
            let mut inner = self.lock();
            inner.start = inner.start.max(target);
            let below = inner.segments.iter().take(inner.segments.len() - 1).take_while(|s| s.next_offset <= target).count();
            let removed = inner.segments.drain(..below).collect();
            let log_start = inner.log_start_offset();
            inner.producers.forget_below(log_start);
            removed
        };
        for seg in &removed {
            seg.delete_files()?;
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        tracing::info!(dir = %self.dir.display(), log_start_offset = target, segments_deleted = removed.len(), "log start offset moved");
        Ok(self.log_start_offset())
    }

    /// What a cleaner pass may take now: the closed segments from the log
    /// start up to the cleanable end (below the active segment, the last
    /// stable offset and the high watermark, and older than
    /// `min.compaction.lag.ms`). `None` when the log is not compacted or
    /// nothing is cleanable.
    pub(crate) fn clean_plan(&self, now: i64) -> Result<Option<CleanPlan>> {
        if !self.is_compacted() {
            return Ok(None);
        }
        let end = self.last_stable_offset().min(self.high_watermark());
        let inner = self.lock();
        let config = inner.config.clone();
        if !config.compact || inner.closed || self.config_is_provisional() {
            return Ok(None);
        }
        let end = end.min(inner.active().base_offset);
        let lag_horizon = now.saturating_sub(config.min_compaction_lag_ms);
        let mut segments = Vec::new();
        for seg in &inner.segments[..inner.segments.len() - 1] {
            if seg.next_offset > end || (config.min_compaction_lag_ms > 0 && seg.max_timestamp > lag_horizon) {
                break;
            }
            segments.push(PlannedSegment {
                base_offset: seg.base_offset,
                next_offset: seg.next_offset,
                size: seg.size,
                max_timestamp: seg.max_timestamp,
                created_ms: seg.created_ms,
            });
        }
        if segments.is_empty() {
            return Ok(None);
        }
        let first_dirty = segments.partition_point(|s| s.next_offset <= inner.cleaned_to);
        let clean_bytes: u64 = segments[..first_dirty].iter().map(|s| s.size).sum();
        let dirty_bytes: u64 = segments[first_dirty..].iter().map(|s| s.size).sum();
        let aborted = inner.producers.aborted_between(inner.log_start_offset(), end);
        Ok(Some(CleanPlan {
            config,
            segments,
            first_dirty,
            clean_bytes,
            dirty_bytes,
            aborted,
            generation: inner.generation,
            index_interval_bytes: inner.config.index_interval_bytes,
        }))
    }

    /// The `.log` file of closed segment `base_offset`, if the log still has
    /// it. `Closed` once the log is closed: the file would be opened by its
    /// name, which may belong to a new log of the same name by then.
    pub(crate) fn segment_file(&self, base_offset: i64) -> Result<Option<Arc<File>>> {
        let inner = self.lock_open()?;
        let found = inner.segments[..inner.segments.len() - 1].iter().find(|s| s.base_offset == base_offset);
        found.map(Segment::log).transpose()
    }

    /// Holds off [`PartitionLog::close`] while a cleaner step changes files
    /// by their names; `Closed` if it already ran. The caller must not
    /// take `start_lock` again.
    fn hold_files(&self) -> Result<MutexGuard<'_, ()>> {
        let held = self.start_lock.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.lock_open()?);
        Ok(held)
    }

    /// [`PartitionLog::hold_files`] for a step on the copy `cleaned`; `None`
    /// once the log is closed, with the copy let go of (its directory goes
    /// whole, and the file cache must not keep the deleted file's space).
    fn hold_files_for_copy(&self, cleaned: &Segment) -> Result<Option<MutexGuard<'_, ()>>> {
        match self.hold_files() {
            Ok(held) => Ok(Some(held)),
            Err(StorageError::Closed(_)) => {
                cleaned.forget_file();
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A new, empty `.cleaned` copy of segment `base_offset` to write into.
    pub(crate) fn create_cleaned(&self, planned: &PlannedSegment) -> Result<Segment> {
        let _files = self.hold_files()?;
        Segment::create_cleaned(&self.dir, planned.base_offset, planned.created_ms, &self.files)
    }

    /// Deletes a cleaned copy that will not be installed. Nothing to do
    /// once the log is closed: its directory goes whole.
    pub(crate) fn discard_cleaned(&self, cleaned: &Segment) -> Result<()> {
        match self.hold_files_for_copy(cleaned)? {
            Some(_files) => self.discard_cleaned_held(cleaned),
            None => Ok(()),
        }
    }

    /// [`PartitionLog::discard_cleaned`] for a caller that holds `start_lock`
    /// and found the log open under it.
    fn discard_cleaned_held(&self, cleaned: &Segment) -> Result<()> {
        Segment::delete_cleaned(&self.dir, cleaned.base_offset, &self.files)
    }

    /// Puts a cleaned copy (fsynced by the caller) in place of its segment,
    /// if the log still has that segment as `planned` saw it; returns
    /// whether it did. The old index files go first, durably, so no crash
    /// leaves the new `.log` with the old index; the rename is the switch.
    /// A segment the cleaner emptied is deleted instead, unless it is the
    /// first. `aborts_dropped` are the ABORT markers (producer id, offset)
    /// the copy leaves out: their transactions leave the aborted list, and
    /// the segment's transaction index is rewritten without them before
    /// the switch (the data they aborted went in an earlier pass, so the old
    /// segment does not need them either).
    pub(crate) fn install_cleaned(&self, mut cleaned: Segment, planned: &PlannedSegment, generation: u64, aborts_dropped: &[(i64, i64)]) -> Result<bool> {
        let unchanged = |inner: &Inner| -> Option<usize> {
            let i = inner.segments.iter().position(|s| s.base_offset == planned.base_offset)?;
            let same = !inner.closed && inner.generation == generation && i + 1 < inner.segments.len() && inner.segments[i].size == planned.size;
            same.then_some(i)
        };
        // Every file below is named in the log's directory: a close (and a
        // new log of the same name) waits until the switch is done.
        let Some(_files) = self.hold_files_for_copy(&cleaned)? else { return Ok(false) };
        if unchanged(&self.lock()).is_none() {
            self.discard_cleaned_held(&cleaned)?;
            return Ok(false);
        }
        crate::cleaner::pause("switching-one");
        delete_index_files(&self.dir, planned.base_offset)?;
        sync_dir(&self.dir)?;
        crate::cleaner::step("before-swap")?;
        {
            let mut inner = self.lock();
            let Some(i) = unchanged(&inner) else {
                drop(inner);
                self.discard_cleaned_held(&cleaned)?;
                return Ok(false);
            };
            if !aborts_dropped.is_empty() {
                for &(producer_id, offset) in aborts_dropped {
                    inner.producers.forget_aborted(producer_id, offset);
                }
                let entries = inner.producers.aborted_ending_in(planned.base_offset, inner.segments[i].next_offset);
                snapshot::write_txn_index(&self.dir, planned.base_offset, &entries)?;
                sync_dir(&self.dir)?;
            }
            if cleaned.size == 0 && i > 0 {
                // Nothing left: the segment goes (the log start stays with
                // the first one). Reads and opens pass over the gap.
                let old = inner.segments.remove(i);
                old.delete_files()?;
                drop(inner);
                self.discard_cleaned_held(&cleaned)?;
                sync_dir(&self.dir)?;
                return Ok(true);
            }
            cleaned.install_cleaned(&inner.segments[i])?;
            // Switched: the log in memory follows before anything can fail
            // (a segment without index files gets them rebuilt on open).
            inner.segments[i] = cleaned;
            crate::cleaner::step("after-swap")?;
            inner.segments[i].write_indexes()?;
        }
        sync_dir(&self.dir)?;
        Ok(true)
    }

    /// Puts a cleaned copy (fsynced by the caller) of the consecutive
    /// segments `group` in place of them all, if the log still has them as
    /// the plan saw them; returns whether it did. The switch is crash-safe
    /// as [`crate::merge`] describes. `aborts_dropped` as for
    /// [`PartitionLog::install_cleaned`].
    pub(crate) fn install_merged(&self, mut cleaned: Segment, group: &[PlannedSegment], generation: u64, aborts_dropped: &[(i64, i64)]) -> Result<bool> {
        let first = group[0].base_offset;
        let last = group[group.len() - 1].base_offset;
        let unchanged = |inner: &Inner| -> Option<usize> {
            let i = inner.segments.iter().position(|s| s.base_offset == first)?;
            let same = !inner.closed
                && inner.generation == generation
                && i + group.len() < inner.segments.len()
                && group.iter().zip(&inner.segments[i..]).all(|(p, s)| p.base_offset == s.base_offset && p.size == s.size);
            same.then_some(i)
        };
        // As for a single segment: a close waits until the merge is done.
        let Some(_files) = self.hold_files_for_copy(&cleaned)? else { return Ok(false) };
        let entries: Vec<AbortedTxn> = {
            let mut inner = self.lock();
            let Some(i) = unchanged(&inner) else {
                drop(inner);
                self.discard_cleaned_held(&cleaned)?;
                return Ok(false);
            };
            if cleaned.size == 0 && i > 0 {
                // Nothing left: the segments go, oldest first, so no crash
                // leaves a tombstone's key with its older value back.
                for &(producer_id, offset) in aborts_dropped {
                    inner.producers.forget_aborted(producer_id, offset);
                }
                for old in inner.segments.drain(i..i + group.len()) {
                    old.delete_files()?;
                    sync_dir(&self.dir)?;
                }
                drop(inner);
                self.discard_cleaned_held(&cleaned)?;
                return Ok(true);
            }
            let end = inner.segments[i + group.len() - 1].next_offset;
            let kept = |a: &AbortedTxn| !aborts_dropped.contains(&(a.producer_id, a.last_offset));
            inner.producers.aborted_ending_in(first, end).into_iter().filter(kept).collect()
        };
        crate::cleaner::pause("switching-merged");
        crate::merge::begin(&self.dir, first, last, &entries)?;
        crate::cleaner::step("before-swap")?;
        let mut inner = self.lock();
        let Some(i) = unchanged(&inner) else {
            drop(inner);
            crate::merge::abandon(&self.dir, first, last, &self.files)?;
            return Ok(false);
        };
        let end = inner.segments[i + group.len() - 1].next_offset;
        cleaned.install_cleaned(&inner.segments[i])?;
        // Switched: the log in memory follows at once, so whatever fails
        // from here leaves it matching the files (the marker makes the
        // next open finish the rest).
        cleaned.next_offset = end;
        for &(producer_id, offset) in aborts_dropped {
            inner.producers.forget_aborted(producer_id, offset);
        }
        let replaced: Vec<Segment> = inner.segments.splice(i..i + group.len(), [cleaned]).collect();
        for old in &replaced[1..] {
            old.forget_file();
        }
        sync_dir(&self.dir)?;
        crate::cleaner::step("after-swap")?;
        inner.segments[i].write_indexes()?;
        let later: Vec<i64> = replaced[1..].iter().map(|s| s.base_offset).collect();
        crate::merge::finish(&self.dir, first, last, &later)?;
        Ok(true)
    }

    /// Records where the next cleaner pass starts, durably, for a pass
    /// planned at `generation`; returns false (and records nothing) when a
    /// truncation came since, as records past it may be new and uncleaned.
    pub(crate) fn checkpoint_cleaned(&self, offset: i64, generation: u64) -> Result<bool> {
        let mut inner = self.lock();
        if inner.generation != generation || inner.closed {
            return Ok(false);
        }
        write_offset_file(&self.dir, CLEANER_FILE, offset)?;
        inner.cleaned_to = offset;
        Ok(true)
    }

    /// Writes `contents` to the file `name` in the log's directory unless
    /// it exists; what it held if it did. `Closed` once the log is closed,
    /// whose directory may be gone or hold a new log by now.
    pub fn mark(&self, name: &str, contents: &str) -> Result<Option<String>> {
        let _open = self.lock_open()?;
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::write(&path, contents).map_err(StorageError::io(format!("write {}", path.display())))?;
                Ok(None)
            }
            Err(e) => Err(StorageError::Io { context: format!("read {}", path.display()), source: e }),
        }
    }

    /// Whether [`PartitionLog::close`] ran: the log is being deleted, and
    /// nothing may be served from or written to it again.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Holds off [`PartitionLog::close`], as a retention pass under way does.
    #[cfg(test)]
    pub(crate) fn hold_start(&self) -> std::sync::MutexGuard<'_, ()> {
        self.start_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops further appends and file changes; used before the log's
    /// directory is deleted. Waits for a start move or retention under way.
    pub fn close(&self) {
        let _files = self.start_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut inner = self.lock();
        inner.closed = true;
        self.closed.store(true, Ordering::Release);
        self.snapshot_guard.closed();
        for seg in &inner.segments {
            seg.forget_file();
        }
    }
}

#[cfg(test)]
mod fsync_tests {
    use super::*;
    use crate::batch::build_batch;

    /// Issue 14, part 2, fault 1: after a failed fsync, a later one that
    /// succeeds must not move the flushed offset past data that may have
    /// been dropped with the failed one.
    #[tokio::test]
    async fn after_a_failed_fsync_nothing_more_is_reported_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let files = Arc::new(FileCache::new(16));
        let (log, _) = PartitionLog::open_with(&dir.path().join("t-0"), LogConfig::default(), &files).unwrap();
        log.append(&build_batch(0, &[b"a".as_slice()]), 0).unwrap();
        assert_eq!(log.flush().await.unwrap(), 1);
        log.append(&build_batch(0, &[b"b".as_slice()]), 0).unwrap();
        log.fail_next_fsync.store(true, Ordering::SeqCst);
        assert!(matches!(log.flush().await, Err(StorageError::FsyncFailed { .. })));
        assert_eq!(log.flushed_offset(), 1);
        // The disk answers again; the pages of "b" may be gone all the same.
        log.append(&build_batch(0, &[b"c".as_slice()]), 0).unwrap();
        let again = log.flush().await.unwrap_err();
        assert!(matches!(again, StorageError::FsyncFailed { .. }), "{again}");
        assert!(again.to_string().contains("until the node restarts"), "{again}");
        assert_eq!(log.flushed_offset(), 1, "the flushed offset moved past a failed fsync");
    }

    /// A produce's fsync can still run when its replica becomes a follower
    /// and truncates to the new leader: the flushed offset must not end up
    /// past the cut, where the new leader's records are appended and not
    /// yet synced (a follower reports it, and the high watermark counts it).
    #[tokio::test]
    async fn a_flush_that_a_truncation_overtook_reports_nothing_past_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let files = Arc::new(FileCache::new(16));
        let (log, _) = PartitionLog::open_with(&dir.path().join("t-0"), LogConfig::default(), &files).unwrap();
        let log = Arc::new(log);
        log.append(&build_batch(0, &[b"a".as_slice()]), 0).unwrap();
        assert_eq!(log.flush().await.unwrap(), 1);
        log.append(&build_batch(0, &[b"b".as_slice(), b"c".as_slice()]), 0).unwrap();
        // The fsync has taken its files and end offset (3), and waits.
        let (release, flushing) = held_flush(&log).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(log.truncate_to(1).unwrap(), 1);
        log.append(&build_batch(0, &[b"x".as_slice(), b"y".as_slice()]), 1).unwrap();
        release.send(()).unwrap();
        assert_eq!(flushing.await.unwrap().unwrap(), 1);
        assert_eq!(log.flushed_offset(), 1, "x and y were reported flushed by an fsync that ran before they were written");
        assert_eq!(log.flush().await.unwrap(), 3);
    }

    /// A flush of everything appended, started and held inside its blocking
    /// fsync (its files and end offset taken) until `release` is sent to.
    async fn held_flush(log: &Arc<PartitionLog>) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<Result<i64>>) {
        let (release, held) = std::sync::mpsc::channel();
        *log.hold_next_fsync.lock().unwrap() = Some(held);
        let flushing = tokio::spawn({
            let log = log.clone();
            async move { log.flush().await }
        });
        while log.hold_next_fsync.lock().unwrap().is_some() {
            tokio::task::yield_now().await;
        }
        (release, flushing)
    }

    /// A log of a topic being deleted, in a manager, with one unflushed record.
    fn doomed_log(dir: &Path) -> (crate::manager::LogManager, crate::manager::TopicPartition, Arc<PartitionLog>) {
        let manager = crate::manager::LogManager::open(dir, |_| LogConfig::default(), 16).unwrap();
        let tp = crate::manager::TopicPartition::new("doomed", 0);
        let log = manager.get_or_create(&tp, LogConfig::default()).unwrap();
        log.append(&build_batch(0, &[b"a".as_slice()]), 0).unwrap();
        (manager, tp, log)
    }

    /// A follower's round (or a produce) can still hold a log when its topic
    /// is deleted: its flush then finds the files gone. That is the topic's
    /// end, not a failed disk, and must not read as one (a storage error
    /// fences the whole broker).
    #[tokio::test]
    async fn a_flush_of_a_deleted_log_says_it_is_closed_not_that_the_disk_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, tp, log) = doomed_log(dir.path());
        manager.remove(&tp).unwrap();
        let e = log.flush().await.unwrap_err();
        assert!(matches!(e, StorageError::Closed(_)), "{e}");
        assert!(matches!(log.truncate_to(0), Err(StorageError::Closed(_))));
        // Its files' names may be a new log's by now: nothing is read either.
        assert!(matches!(log.read(0, 1 << 20, 1, true), Err(StorageError::Closed(_))));
        assert!(matches!(log.advance_log_start(1), Err(StorageError::Closed(_))));
        assert_eq!(log.enforce_retention(i64::MAX).unwrap(), 0);
        assert!(!dir.path().join(tp.to_string()).exists(), "a closed log wrote into its old directory again");
        manager.flush_all().await.unwrap();
    }

    /// A producer-state snapshot a flush took before its log was deleted
    /// must not be written where a new log of the same name lives by then.
    #[tokio::test]
    async fn a_flush_under_way_when_its_log_is_deleted_writes_no_snapshot_into_a_new_log_of_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let manager = crate::manager::LogManager::open(dir.path(), |_| LogConfig::default(), 16).unwrap();
        let tp = crate::manager::TopicPartition::new("doomed", 0);
        let small = LogConfig { segment_bytes: crate::config::SEGMENT_BYTES_MIN, ..LogConfig::default() };
        let log = manager.get_or_create(&tp, small).unwrap();
        // Enough to roll, which leaves the new segment's snapshot to the next flush.
        for _ in 0..3 {
            log.append(&build_batch(0, &[[7u8; 600].as_slice()]), 0).unwrap();
        }
        assert!(log.lock().pending_snapshot.is_some(), "no roll");
        let (release, flushing) = held_flush(&log).await;
        manager.remove(&tp).unwrap();
        let again = manager.get_or_create(&tp, LogConfig::default()).unwrap();
        release.send(()).unwrap();
        let _ = flushing.await.unwrap();
        let written = crate::snapshot::snapshot_offsets(again.dir()).unwrap();
        assert!(written.is_empty(), "the deleted log's producer-state snapshots {written:?} went into the new log's directory");
    }

    /// The deletion can also come while the fsync runs, renaming the
    /// directory from under it: still the topic's end, and no fsync failure
    /// is remembered.
    #[tokio::test]
    async fn a_deletion_under_a_running_fsync_is_not_an_fsync_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, tp, log) = doomed_log(dir.path());
        let (release, flushing) = held_flush(&log).await;
        manager.remove(&tp).unwrap();
        release.send(()).unwrap();
        let e = flushing.await.unwrap().unwrap_err();
        assert!(matches!(e, StorageError::Closed(_)), "{e}");
        assert!(log.fsync_failed.lock().unwrap().is_none());
    }
}
