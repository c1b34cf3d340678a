//! Log compaction: the cleaner's pass over one log with
//! `cleanup.policy=compact` (Kafka's `LogCleaner`, one segment at a time).
//!
//! # A pass
//! 1. **Plan** ([`PartitionLog::clean_plan`]): the closed segments from the
//!    log start up to the cleanable end, which is below the active segment,
//!    the last stable offset (no open transaction is cleaned) and the high
//!    watermark (every replica has what is cleaned), and stops at the first
//!    segment younger than `min.compaction.lag.ms`. Segments below the
//!    cleaner offset ([`crate::log::CLEANER_FILE`]) were cleaned before; the
//!    rest are dirty. A pass runs when the dirty share of the bytes reaches
//!    `min.cleanable.dirty.ratio`, or when the first dirty segment is older
//!    than `max.compaction.lag.ms`, or when a cleaned segment's first pass
//!    becomes `delete.retention.ms` old (KIP-534: tombstones go from a log
//!    that takes nothing new; that time is kept in memory after each pass,
//!    and taken from the files at open, which gives each log one pass).
//! 2. **Map**: an [`OffsetMap`] of bounded size takes key -> latest offset
//!    from the dirty segments, whole segments only; the pass cleans up to
//!    the last segment that fit.
//! 3. **Copy**: each segment from the log start up to there, oldest first,
//!    is copied to `<base>.log.cleaned` keeping a record when no later
//!    record has its key; keyless records, records of aborted transactions
//!    and tombstones past `delete.retention.ms` go. A tombstone's time is
//!    counted from when a pass first cleaned its segment (as Kafka's
//!    KIP-534 delete horizon), never from the producer's timestamp: it
//!    outlives its first pass, so a consumer reading the log then still
//!    sees the delete. That time is the segment file's modification time,
//!    which the first pass sets and later rewrites keep. A batch keeps its
//!    base offset and last offset delta, so offsets never change; a batch
//!    left with no record goes whole, leaving a gap in the offsets, as
//!    Kafka's do. A transaction marker goes when tombstones do (its
//!    segment was first cleaned `delete.retention.ms` ago) and the pass saw no
//!    batch of its transaction, so a transaction's data never outlives its
//!    marker, and an aborted transaction's marker outlives its data by one
//!    pass, as in Kafka. A compressed batch is read decompressed, and the
//!    records it keeps are compressed again with its codec (its header,
//!    attributes included, stays); one whose records do
//!    not decompress stays whole and its keys are not mapped.
//! 4. **Swap**: the copy is fsynced; the segment's index files are deleted
//!    and the directory synced; the copy is renamed over the `.log` file
//!    (the atomic switch); new index files are written. A crash before the
//!    rename leaves the old segment and a `.cleaned` file that the next open
//!    deletes; after it, the cleaned segment, whose index is rebuilt if it
//!    was not written. Segments go oldest first, so a tombstone is never
//!    dropped while an older value of its key is still on disk.
//! 5. **Checkpoint**: the cleaner offset moves to the end of the pass.
//!
//! Each replica cleans its own copy; a follower copies what its leader's
//! log holds, gaps and all, and reads and appends accept the gaps.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::hash::Hasher;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use crate::batch::{BatchHeader, HEADER_BYTES, Marker, RecordSpan, marker_in, record_spans, with_records, with_section};
use crate::error::{Result, StorageError};
use crate::log::{CleanPlan, PartitionLog, PlannedSegment};
use crate::producer_state::AbortedTxn;

/// Memory one [`OffsetMap`] entry is counted as: a 16-byte key hash, an
/// 8-byte offset and the hash table's own share.
pub const MAP_ENTRY_BYTES: usize = 40;

/// The steps of a pass where a crash test stops it (see [`step`]).
pub const STEPS: &[&str] = &["after-copy", "before-swap", "after-swap", "before-checkpoint"];

#[cfg(test)]
thread_local! {
    /// The step at which a unit test makes this thread's pass stop.
    pub(crate) static STOP_AT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// A point of a pass where crash tests stop it: in unit tests the pass
/// returns an error there, leaving the files as a crash would; with the
/// `failpoints` feature the process aborts there when `cleaner-crash-at`
/// names the step.
pub(crate) fn step(name: &'static str) -> Result<()> {
    debug_assert!(STEPS.contains(&name));
    #[cfg(test)]
    if STOP_AT.with(|s| s.get()) == Some(name) {
        return Err(StorageError::Cleaner(format!("stopped at step {name}")));
    }
    #[cfg(feature = "failpoints")]
    crate::failpoints::cleaner_crash_at(name);
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// What a unit test runs when this thread's pass reaches a point (see [`pause`]).
    #[allow(clippy::type_complexity)]
    pub(crate) static AT_PAUSE: std::cell::RefCell<Option<(&'static str, Box<dyn FnMut()>)>> = const { std::cell::RefCell::new(None) };
}

/// A point of a pass where a unit test runs its own code on the cleaner's
/// thread (as another thread could act there); nothing outside tests.
pub(crate) fn pause(_name: &'static str) {
    #[cfg(test)]
    AT_PAUSE.with(|p| {
        if let Some((at, f)) = p.borrow_mut().as_mut()
            && *at == _name
        {
            f();
        }
    });
}

/// Key -> offset of its latest record, for at most a fixed number of keys.
/// Keys are kept as 128-bit hashes (Kafka keeps MD5s), so the memory is
/// bounded whatever the key sizes.
pub struct OffsetMap {
    entries: HashMap<u128, i64>,
    capacity: usize,
}

fn key_hash(key: &[u8]) -> u128 {
    let mut a = std::hash::DefaultHasher::new();
    a.write(key);
    let mut b = std::hash::DefaultHasher::new();
    b.write_u8(0x5a);
    b.write(key);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

impl OffsetMap {
    /// A map that holds as many keys as `bytes` allow, at least one.
    pub fn with_memory(bytes: usize) -> OffsetMap {
        OffsetMap { entries: HashMap::new(), capacity: (bytes / MAP_ENTRY_BYTES).max(1) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn clear(&mut self) {
        self.entries.clear();
    }

    /// Records `offset` as the latest of `key`; false when the map is full
    /// and `key` is new.
    fn insert(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = key_hash(key);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&hash) {
            return false;
        }
        self.entries.insert(hash, offset);
        true
    }

    fn latest(&self, key: &[u8]) -> Option<i64> {
        self.entries.get(&key_hash(key)).copied()
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Segments replaced by a cleaned copy.
    pub segments_cleaned: usize,
    /// Segments that went because their cleaned records joined the
    /// segment before them in one file.
    pub segments_merged: usize,
    /// Bytes read, mapping and copying.
    pub bytes_read: u64,
    /// Sizes of the cleaned segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    /// Keys in the offset map.
    pub keys: usize,
    /// The cleaner offset after the pass.
    pub cleaned_to: i64,
}

/// What happens to one batch.
enum Fate {
    Keep,
    Drop,
    /// Write this batch instead: the same header, fewer records.
    Rewrite(Vec<u8>),
}

fn is_aborted(aborted: &[AbortedTxn], h: &BatchHeader) -> bool {
    h.is_transactional()
        && !h.is_control()
        && aborted.iter().any(|a| a.producer_id == h.producer_id && a.first_offset <= h.base_offset && h.base_offset <= a.last_offset)
}

/// The records section of a data batch whose keys the cleaner reads (not a
/// control batch, not aborted), decompressed when the batch is compressed,
/// with its records. `None` for every other batch, and for one whose
/// records do not decompress or parse: such a batch is kept whole.
fn readable_records<'a>(h: &BatchHeader, batch: &'a [u8], aborted: &[AbortedTxn]) -> Option<(Cow<'a, [u8]>, Vec<RecordSpan>)> {
    if h.is_control() || is_aborted(aborted, h) {
        return None;
    }
    let section = &batch[HEADER_BYTES..];
    let records = match h.compression() {
        0 => Cow::Borrowed(section),
        codec => Cow::Owned(crate::compression::decompress(codec, section, crate::compression::MAX_DECOMPRESSED_BATCH_BYTES).ok()?),
    };
    let spans = record_spans(&records, h.record_count)?;
    Some((records, spans))
}

fn fate(h: &BatchHeader, batch: &[u8], map: &OffsetMap, aborted: &[AbortedTxn], drop_tombstones: bool) -> Fate {
    if is_aborted(aborted, h) {
        return Fate::Drop;
    }
    let Some((records, spans)) = readable_records(h, batch, aborted) else { return Fate::Keep };
    let keep: Vec<std::ops::Range<usize>> = spans
        .iter()
        .filter(|r| {
            let Some(key) = &r.key else { return false };
            let offset = h.base_offset + r.offset_delta;
            let latest = map.latest(&records[key.clone()]).is_none_or(|l| offset >= l);
            latest && !(r.value.is_none() && drop_tombstones)
        })
        .map(|r| r.span.clone())
        .collect();
    if keep.len() == spans.len() {
        return Fate::Keep;
    }
    if keep.is_empty() {
        return Fate::Drop;
    }
    match h.compression() {
        0 => Fate::Rewrite(with_records(batch, &keep)),
        // The records kept, compressed again with the batch's codec.
        codec => {
            let mut kept = Vec::with_capacity(records.len());
            for r in &keep {
                kept.extend_from_slice(&records[r.clone()]);
            }
            match crate::compression::compress(codec, &kept) {
                Some(section) => Fate::Rewrite(with_section(batch, &section, keep.len())),
                None => Fate::Keep,
            }
        }
    }
}

/// Calls `f` with every batch of the first `size` bytes of `file`, in
/// order, until it returns false; returns whether it saw them all. Reads
/// by position in chunks: the file handle is shared, and its cursor is not
/// this pass's.
fn for_each_batch(file: &File, size: u64, read: &mut u64, mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<bool>) -> Result<bool> {
    const CHUNK: usize = 1 << 20;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut buf_pos = 0u64; // file position of buf[0]
    let mut pos = 0u64;
    while pos + HEADER_BYTES as u64 <= size {
        let at = (pos - buf_pos) as usize;
        if at + HEADER_BYTES > buf.len() || at + BatchHeader::parse(&buf[at..])?.total_bytes() > buf.len() {
            // Refill from `pos`, with room for at least this whole batch.
            let mut head = [0u8; HEADER_BYTES];
            file.read_exact_at(&mut head, pos).map_err(StorageError::io("read segment to clean"))?;
            let need = BatchHeader::parse(&head)?.total_bytes().max(CHUNK).min((size - pos) as usize);
            buf.resize(need, 0);
            file.read_exact_at(&mut buf, pos).map_err(StorageError::io("read segment to clean"))?;
            buf_pos = pos;
            continue;
        }
        let h = BatchHeader::parse(&buf[at..])?;
        let total = h.total_bytes();
        pos += total as u64;
        *read += total as u64;
        if !f(&h, &buf[at..at + total])? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// When the cleaner first cleaned a segment below the cleaner offset: its
/// file's modification time, in ms (see the module docs).
fn first_cleaned_ms(file: &File) -> Result<i64> {
    let modified = file.metadata().and_then(|m| m.modified()).map_err(StorageError::io("stat a segment to clean"))?;
    Ok(modified.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

impl PartitionLog {
    /// Sets the time [`first_cleaned_ms`] reads of segment `base_offset`,
    /// durably. A segment the pass removed whole needs none.
    fn set_first_cleaned(&self, base_offset: i64, ms: i64) -> Result<()> {
        let Some(file) = self.segment_file(base_offset)? else { return Ok(()) };
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        file.set_modified(time).map_err(StorageError::io("set a cleaned segment's modification time"))?;
        file.sync_all().map_err(StorageError::io("sync a cleaned segment"))
    }

    /// The earliest time, at or after `from`, when a cleaned segment's
    /// first pass becomes `delete.retention.ms` old (its tombstones and
    /// markers may go then); `i64::MAX` when there is none. Segments are
    /// not read: one without a tombstone costs a pass that removes nothing,
    /// once per horizon.
    fn next_tombstone_horizon(&self, plan: &CleanPlan, from: i64) -> Result<i64> {
        let mut next = i64::MAX;
        for seg in &plan.segments[..plan.first_dirty] {
            let Some(file) = self.segment_file(seg.base_offset)? else { continue };
            let at = first_cleaned_ms(&file)?.saturating_add(plan.config.delete_retention_ms);
            if at >= from {
                next = next.min(at);
            }
        }
        Ok(next)
    }

    /// The share of the cleanable bytes no pass has cleaned yet; `None`
    /// when the log is not compacted or holds nothing cleanable.
    pub fn dirty_ratio(&self, now_ms: i64) -> Result<Option<f64>> {
        Ok(self.clean_plan(now_ms)?.map(|p| dirty_share(&p)))
    }

    /// Runs one cleaner pass if the log is due one (see the module docs);
    /// `None` when it was not, or when the log changed under the pass
    /// (truncated, deleted), which leaves it as it was. `throttle` is
    /// called with the bytes read and written as the pass goes, and may
    /// sleep to hold an I/O rate. It reads, writes and fsyncs files: call it
    /// on a blocking thread.
    pub fn clean(&self, map: &mut OffsetMap, now_ms: i64, throttle: &mut dyn FnMut(u64)) -> Result<Option<CleanReport>> {
        match self.clean_pass(map, now_ms, throttle) {
            // Deleted under the pass: its directory goes whole (the copy,
            // reopened by name from the file cache, may be gone with it).
            Err(StorageError::Closed(_)) => Ok(None),
            Err(StorageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound && self.is_closed() => Ok(None),
            done => done,
        }
    }

    fn clean_pass(&self, map: &mut OffsetMap, now_ms: i64, throttle: &mut dyn FnMut(u64)) -> Result<Option<CleanReport>> {
        let Some(plan) = self.clean_plan(now_ms)? else { return Ok(None) };
        // A merge an earlier pass could not finish is finished first: its
        // marker would make a crash during this pass delete what it copies.
        self.settle_merges_before_cleaning()?;
        let overdue = plan.config.max_compaction_lag_ms < i64::MAX
            && plan.segments.get(plan.first_dirty).is_some_and(|s| s.max_timestamp < now_ms.saturating_sub(plan.config.max_compaction_lag_ms));
        let dirty_due = plan.dirty_bytes > 0 && (dirty_share(&plan) >= plan.config.min_cleanable_dirty_ratio || overdue);
        // KIP-534: tombstones past delete.retention.ms go even from a log
        // that takes no new record.
        let retention = plan.config.delete_retention_ms;
        let mut tombstones_due = self.tombstones_due_ms.load(Ordering::Relaxed);
        if tombstones_due == i64::MIN {
            tombstones_due = self.next_tombstone_horizon(&plan, i64::MIN)?;
            self.set_tombstones_due(tombstones_due, retention);
        }
        if !dirty_due && (tombstones_due > now_ms || plan.first_dirty == 0) {
            if plan.first_dirty == 0 {
                // Nothing cleaned (a truncation took it): nothing is due.
                self.set_tombstones_due(i64::MAX, retention);
            }
            return Ok(None);
        }
        let mut report = CleanReport::default();
        // Map the dirty segments, whole ones only; a pass for tombstones
        // alone maps none (the dirty ones wait for their ratio) and
        // rewrites the cleaned segments.
        map.clear();
        let mut mapped = plan.first_dirty;
        let to_map = if dirty_due { &plan.segments[plan.first_dirty..] } else { &[][..] };
        for seg in to_map {
            let Some(file) = self.segment_file(seg.base_offset)? else { return Ok(None) };
            let before = report.bytes_read;
            let whole = for_each_batch(&file, seg.size, &mut report.bytes_read, |h, batch| {
                let Some((records, spans)) = readable_records(h, batch, &plan.aborted) else { return Ok(true) };
                Ok(spans.iter().all(|r| r.key.as_ref().is_none_or(|k| map.insert(&records[k.clone()], h.base_offset + r.offset_delta))))
            })?;
            throttle(report.bytes_read - before);
            if !whole {
                break;
            }
            mapped += 1;
        }
        if mapped == plan.first_dirty && dirty_due {
            return Err(StorageError::Cleaner(format!(
                "the offset map holds {} keys, fewer than the segment at offset {} has; raise log.cleaner.dedupe.buffer.size",
                map.capacity(),
                plan.segments[plan.first_dirty].base_offset
            )));
        }
        report.keys = map.len();
        let horizon = now_ms.saturating_sub(plan.config.delete_retention_ms);
        // Segments from here on are cleaned for the first time by this pass.
        let first_dirty_base = plan.segments.get(plan.first_dirty).map_or(i64::MAX, |s| s.base_offset);
        // Producers whose transaction had a batch in the segments copied so
        // far and no marker after it yet.
        let mut in_transaction = std::collections::HashSet::new();
        for group in groups(&plan.segments[..mapped], plan.config.segment_bytes) {
            let mut copy = self.create_cleaned(&group[0])?;
            let mut pending = Vec::new();
            let mut headers = Vec::new();
            let mut removed = 0u64;
            // (producer id, offset) of the ABORT markers this copy drops.
            let mut aborts_dropped = Vec::new();
            let before = report.bytes_read;
            let mut copied = Ok(true);
            // When the group's segments were first cleaned: the copy keeps
            // the latest of those times (or now, for one cleaned now).
            let mut cleaned_at = i64::MIN;
            for planned in group {
                let Some(file) = self.segment_file(planned.base_offset)? else {
                    self.discard_cleaned(&copy)?;
                    return Ok(None);
                };
                let first_cleaned = if planned.base_offset < first_dirty_base { first_cleaned_ms(&file)? } else { now_ms };
                cleaned_at = cleaned_at.max(first_cleaned);
                let drop_tombstones = first_cleaned < horizon;
                copied = for_each_batch(&file, planned.size, &mut report.bytes_read, |h, batch| {
                    if h.is_control() {
                        // A marker goes past delete.retention.ms once this
                        // pass saw no batch of its transaction (Kafka's
                        // rule): with none left, it has nothing to commit
                        // or abort.
                        let batches_seen = in_transaction.remove(&h.producer_id);
                        if drop_tombstones && !batches_seen {
                            removed += h.record_count.max(0) as u64;
                            if marker_in(&batch[HEADER_BYTES..]) == Some(Marker::Abort) {
                                aborts_dropped.push((h.producer_id, h.base_offset));
                            }
                            return Ok(true);
                        }
                    } else if h.is_transactional() {
                        in_transaction.insert(h.producer_id);
                    }
                    let kept = match fate(h, batch, map, &plan.aborted, drop_tombstones) {
                        Fate::Keep => batch.to_vec(),
                        Fate::Drop => {
                            removed += h.record_count.max(0) as u64;
                            return Ok(true);
                        }
                        Fate::Rewrite(kept) => {
                            let count = BatchHeader::parse(&kept)?.record_count;
                            removed += (h.record_count - count).max(0) as u64;
                            kept
                        }
                    };
                    headers.push(BatchHeader::parse(&kept)?);
                    pending.extend_from_slice(&kept);
                    if pending.len() >= 1 << 20 {
                        copy.append(&pending, &headers, plan.index_interval_bytes)?;
                        pending.clear();
                        headers.clear();
                    }
                    Ok(true)
                });
                if copied.is_err() {
                    break;
                }
            }
            let flushed = copied.and_then(|_| if pending.is_empty() { Ok(()) } else { copy.append(&pending, &headers, plan.index_interval_bytes) });
            if let Err(e) = flushed {
                self.discard_cleaned(&copy)?;
                return Err(e);
            }
            throttle(report.bytes_read - before + copy.size);
            if removed == 0 && group.len() == 1 {
                self.discard_cleaned(&copy)?;
                if group[0].base_offset >= first_dirty_base {
                    // Cleaned for the first time, and left as it was.
                    self.set_first_cleaned(group[0].base_offset, now_ms)?;
                }
                continue;
            }
            copy.log()?.sync_data().map_err(StorageError::io("sync cleaned segment"))?;
            step("after-copy")?;
            let after = copy.size;
            let installed = match group {
                [planned] => self.install_cleaned(copy, planned, plan.generation, &aborts_dropped)?,
                _ => self.install_merged(copy, group, plan.generation, &aborts_dropped)?,
            };
            if !installed {
                return Ok(None);
            }
            self.set_first_cleaned(group[0].base_offset, cleaned_at)?;
            report.segments_cleaned += group.len();
            report.segments_merged += group.len() - 1;
            report.bytes_before += group.iter().map(|p| p.size).sum::<u64>();
            report.bytes_after += after;
            report.records_removed += removed;
        }
        step("before-checkpoint")?;
        report.cleaned_to = plan.segments[mapped - 1].next_offset;
        if !self.checkpoint_cleaned(report.cleaned_to, plan.generation)? {
            // Truncated meanwhile: this pass's end may no longer be clean.
            return Ok(None);
        }
        // What this pass kept waits for the next cleaned segment's horizon.
        let next = match self.clean_plan(now_ms)? {
            Some(after) => self.next_tombstone_horizon(&after, now_ms)?,
            None => i64::MAX,
        };
        self.set_tombstones_due(next, retention);
        tracing::info!(
            dir = %self.dir().display(),
            segments = report.segments_cleaned,
            merged = report.segments_merged,
            bytes_before = report.bytes_before,
            bytes_after = report.bytes_after,
            records_removed = report.records_removed,
            keys = report.keys,
            cleaned_to = report.cleaned_to,
            "cleaned log"
        );
        Ok(Some(report))
    }
}

/// The segments a pass cleans, split into runs that each become one
/// segment: consecutive segments whose current sizes sum to at most
/// `segment.bytes` (a cleaned segment is usually far smaller than the
/// segment it came from, so the next pass joins it with its neighbours),
/// and whose offsets one segment's 32-bit relative index can address.
fn groups(segments: &[PlannedSegment], segment_bytes: u64) -> Vec<&[PlannedSegment]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let mut end = start + 1;
        let mut size = segments[start].size;
        while end < segments.len()
            && size + segments[end].size <= segment_bytes
            && segments[end].next_offset - segments[start].base_offset <= i64::from(i32::MAX)
        {
            size += segments[end].size;
            end += 1;
        }
        out.push(&segments[start..end]);
        start = end;
    }
    out
}

fn dirty_share(plan: &CleanPlan) -> f64 {
    let total = plan.clean_bytes + plan.dirty_bytes;
    if total == 0 { 0.0 } else { plan.dirty_bytes as f64 / total as f64 }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::batch::{KeyValue, TRANSACTIONAL, build_keyed_batch, compress_batch, set_attributes, set_producer};
    use crate::config::LogConfig;

    /// Small segments, compacted, cleaned whenever anything is dirty;
    /// tombstones kept unless a test says otherwise.
    fn compacted() -> LogConfig {
        LogConfig { segment_bytes: 1024, index_interval_bytes: 128, compact: true, delete: false, min_cleanable_dirty_ratio: 0.0, ..LogConfig::default() }
    }

    fn open(dir: &Path, config: LogConfig) -> PartitionLog {
        PartitionLog::open(dir, config).unwrap().0
    }

    /// Appends `key=value` (`None`: a tombstone) with an old timestamp and
    /// returns its offset.
    fn put(log: &PartitionLog, key: &str, value: Option<&str>) -> i64 {
        put_at(log, 1_000, key, value)
    }

    fn put_at(log: &PartitionLog, timestamp: i64, key: &str, value: Option<&str>) -> i64 {
        let batch = build_keyed_batch(timestamp, &[(Some(key.as_bytes()), value.map(str::as_bytes))]);
        log.append(&batch, 0).unwrap().base_offset
    }

    /// Every record the log serves from its start: (offset, key, value).
    fn records(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        while offset < end {
            let bytes = log.read(offset, 1 << 20, end, true).unwrap();
            assert!(!bytes.is_empty(), "nothing served at {offset} below the end {end}");
            let mut pos = 0;
            while pos < bytes.len() {
                let h = BatchHeader::parse(&bytes[pos..]).unwrap();
                let batch = &bytes[pos..pos + h.total_bytes()];
                if !h.is_control() {
                    let body = match h.compression() {
                        0 => batch[HEADER_BYTES..].to_vec(),
                        codec => crate::compression::decompress(codec, &batch[HEADER_BYTES..], usize::MAX).unwrap(),
                    };
                    for r in record_spans(&body, h.record_count).unwrap() {
                        let key = r.key.map(|k| String::from_utf8(body[k].to_vec()).unwrap()).unwrap_or_default();
                        let value = r.value.map(|v| String::from_utf8(body[v].to_vec()).unwrap());
                        out.push((h.base_offset + r.offset_delta, key, value));
                    }
                }
                offset = h.last_offset() + 1;
                pos += h.total_bytes();
            }
        }
        out
    }

    /// The latest value of every key, as a consumer reading from the start ends with.
    fn latest(records: &[(i64, String, Option<String>)]) -> BTreeMap<String, Option<String>> {
        records.iter().map(|(_, k, v)| (k.clone(), v.clone())).collect()
    }

    fn clean(log: &PartitionLog) -> Option<CleanReport> {
        log.advance_high_watermark(log.log_end_offset());
        log.clean(&mut OffsetMap::with_memory(1 << 20), crate::log::now_ms(), &mut |_| {}).unwrap()
    }

    /// 300 updates over 10 keys: `key-<i % 10>` = `v<offset, 7 digits>`.
    fn fill(log: &PartitionLog) {
        for i in 0..300 {
            let offset = log.log_end_offset();
            put(log, &format!("key-{}", i % 10), Some(&format!("v{offset:07}")));
        }
    }

    #[test]
    fn a_pass_keeps_the_latest_record_per_key_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), compacted());
        fill(&log);
        let before = records(&log);
        let size_before = log.size_bytes();
        let end = log.log_end_offset();
        let report = clean(&log).expect("a pass ran");
        assert!(report.segments_cleaned > 10 && report.records_removed > 200, "{report:?}");
        let after = records(&log);
        assert_eq!(latest(&after), latest(&before), "a latest value changed");
        assert_eq!(log.log_end_offset(), end);
        // Every record kept is at its original offset, and below the cleaner
        // offset each key appears once.
        for (offset, _, value) in &after {
            assert_eq!(value.as_deref(), Some(format!("v{offset:07}").as_str()));
        }
        let mut seen = std::collections::HashSet::new();
        for (offset, key, _) in after.iter().filter(|(o, ..)| *o < report.cleaned_to) {
            assert!(seen.insert(key.clone()), "{key} twice below {} (at {offset})", report.cleaned_to);
        }
        assert!(log.size_bytes() < size_before / 5, "{} of {size_before} bytes left", log.size_bytes());
        assert_eq!(clean(&log), None, "nothing is dirty after a pass");
        // A restart reads the cleaned segments, gaps and all.
        drop(log);
        let log = open(dir.path(), compacted());
        assert_eq!(records(&log), after);
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(crate::log::read_cleaner_file(dir.path()).unwrap(), report.cleaned_to);
    }

    /// Issue 16: compressed batches, which producers mostly send, are
    /// cleaned too, with every codec: the keys in them are mapped, the
    /// records kept are compressed again with the batch's codec, and every
    /// record keeps its offset.
    #[test]
    fn compressed_batches_are_cleaned_with_their_codec() {
        for codec in 1..=4i16 {
            let dir = tempfile::tempdir().unwrap();
            let log = open(dir.path(), compacted());
            for _ in 0..60 {
                let first = log.log_end_offset();
                let values: Vec<(String, String)> = (0..5).map(|i| (format!("key-{}", (first + i) % 10), format!("v{:07}", first + i))).collect();
                let kv: Vec<KeyValue<'_>> = values.iter().map(|(k, v)| (Some(k.as_bytes()), Some(v.as_bytes()))).collect();
                log.append(&compress_batch(&build_keyed_batch(1_000, &kv), codec).unwrap(), 0).unwrap();
            }
            let before = records(&log);
            let size_before = log.size_bytes();
            let report = clean(&log).expect("a pass ran");
            assert!(report.records_removed > 200, "codec {codec}: {report:?}");
            let after = records(&log);
            assert_eq!(latest(&after), latest(&before), "codec {codec}: a latest value changed");
            for (offset, _, value) in &after {
                assert_eq!(value.as_deref(), Some(format!("v{offset:07}").as_str()), "codec {codec}: a record moved");
            }
            assert!(log.size_bytes() < size_before / 2, "codec {codec}: {} of {size_before} bytes left", log.size_bytes());
            // What is left is still compressed with the codec.
            let bytes = log.read(log.log_start_offset(), 1 << 20, log.log_end_offset(), true).unwrap();
            let h = BatchHeader::parse(&bytes).unwrap();
            assert_eq!(h.compression(), codec);
            crate::batch::validate(&bytes[..h.total_bytes()]).unwrap();
        }
    }

    #[test]
    fn a_read_inside_a_gap_serves_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), compacted());
        fill(&log);
        clean(&log).unwrap();
        let kept: Vec<i64> = records(&log).iter().map(|(o, ..)| *o).collect();
        let gap = (0..log.log_end_offset()).find(|o| !kept.contains(o)).expect("a gap");
        let next = *kept.iter().find(|o| **o > gap).unwrap();
        let bytes = log.read(gap, 1 << 20, log.log_end_offset(), true).unwrap();
        assert_eq!(BatchHeader::parse(&bytes).unwrap().base_offset, next);
    }

    #[test]
    fn tombstones_remove_their_keys_and_go_after_delete_retention() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), compacted());
        // Written now, so delete.retention.ms (a day by default) keeps the tombstones.
        let now = crate::log::now_ms();
        for round in 0..2 {
            for i in 0..100 {
                put_at(&log, now, &format!("key-{}", i % 10), Some(&format!("{round}-{i}")));
            }
            for k in 0..5 {
                put_at(&log, now, &format!("key-{k}"), None);
            }
        }
        for i in 0..40 {
            put_at(&log, now, &format!("other-{i}"), Some("x")); // roll the deletes into closed segments
        }
        clean(&log).unwrap();
        let after = latest(&records(&log));
        for k in 0..5 {
            assert_eq!(after.get(&format!("key-{k}")), Some(&None), "the tombstone of key-{k} stays for delete.retention.ms");
        }
        for k in 5..10 {
            assert!(matches!(after.get(&format!("key-{k}")), Some(Some(_))));
        }
        // Past delete.retention.ms the tombstones go too, and with them every
        // trace of their keys.
        // (A pass runs when there is something dirty: more records.)
        std::thread::sleep(std::time::Duration::from_millis(5));
        log.set_config(LogConfig { delete_retention_ms: 1, ..compacted() });
        for i in 0..40 {
            put_at(&log, now, &format!("more-{i}"), Some("x"));
        }
        clean(&log).unwrap();
        let after = records(&log);
        assert!(after.iter().all(|(_, k, _)| !["key-0", "key-1", "key-2", "key-3", "key-4"].contains(&k.as_str())), "{after:?}");
    }

    /// delete.retention.ms counts from a tombstone's first pass, not from
    /// its timestamp: one written with an old timestamp (a backfill, a
    /// mirror) still outlives the pass that removes the value it deletes,
    /// so a consumer reading the log meanwhile sees the delete.
    #[test]
    fn a_tombstone_outlives_its_first_pass_whatever_its_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { delete_retention_ms: 1, ..compacted() };
        let log = open(dir.path(), config.clone());
        put(&log, "gone", Some("value")); // timestamp 1,000: long past
        put(&log, "gone", None);
        for i in 0..40 {
            put(&log, &format!("other-{i}"), Some("x"));
        }
        clean(&log).unwrap();
        let after = records(&log);
        let gone: Vec<_> = after.iter().filter(|(_, k, _)| k == "gone").map(|(_, _, v)| v.clone()).collect();
        assert_eq!(gone, vec![None], "the value went, its tombstone stays for this pass");
        // Reopened (the time of the first pass is on disk), and past
        // delete.retention.ms, the next pass removes it.
        drop(log);
        let log = open(dir.path(), config);
        std::thread::sleep(std::time::Duration::from_millis(5));
        for i in 0..40 {
            put(&log, &format!("more-{i}"), Some("x"));
        }
        clean(&log).unwrap();
        assert!(records(&log).iter().all(|(_, k, _)| k != "gone"), "a pass after delete.retention.ms removes it");
    }

    /// KIP-534: a tombstone past delete.retention.ms goes from a log that
    /// takes no new record; before then, and once gone, a quiet log is
    /// left alone; a restart works the next horizon out from the files.
    /// Passes run at given times (the time of a segment's first pass is
    /// the pass's own), so nothing depends on the machine's speed.
    #[test]
    fn tombstones_go_past_delete_retention_from_a_log_with_nothing_new() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { delete_retention_ms: 300, ..compacted() };
        let log = open(dir.path(), config.clone());
        let clean_at = |log: &PartitionLog, at: i64| {
            log.advance_high_watermark(log.log_end_offset());
            log.clean(&mut OffsetMap::with_memory(1 << 20), at, &mut |_| {}).unwrap()
        };
        let held = |log: &PartitionLog, key: &str| records(log).iter().filter(|(_, k, _)| k == key).count();
        let t0 = crate::log::now_ms();
        put(&log, "gone", Some("value"));
        put(&log, "gone", None);
        for i in 0..40 {
            put(&log, &format!("other-{i}"), Some("x"));
        }
        clean_at(&log, t0).expect("a first pass");
        assert_eq!(held(&log, "gone"), 1, "the tombstone outlives its first pass");
        assert_eq!(clean_at(&log, t0 + 100), None, "nothing new and nothing past its horizon");
        let report = clean_at(&log, t0 + 400).expect("a pass for the tombstone alone");
        assert!(report.records_removed >= 1, "{report:?}");
        assert_eq!(held(&log, "gone"), 0, "past delete.retention.ms the tombstone is gone");
        assert_eq!(clean_at(&log, t0 + 401), None, "and the log is left alone after");

        put(&log, "again", Some("value"));
        put(&log, "again", None);
        for i in 0..40 {
            put(&log, &format!("more-{i}"), Some("x"));
        }
        let t1 = t0 + 1_000;
        clean_at(&log, t1).expect("a pass for the new records");
        assert_eq!(held(&log, "again"), 1);
        // After a restart the horizons come from the files: segments past
        // theirs (those first cleaned at t0, unless the t1 pass merged them
        // with its own) get one pass, which keeps the younger tombstone;
        // then the tombstone's own horizon is waited for, with nothing new
        // written.
        drop(log);
        let log = open(dir.path(), config);
        clean_at(&log, t1 + 100);
        assert_eq!(held(&log, "again"), 1, "the tombstone's horizon has not passed");
        assert_eq!(clean_at(&log, t1 + 200), None);
        clean_at(&log, t1 + 400).expect("a pass for the tombstone alone");
        assert_eq!(held(&log, "again"), 0, "{:?}", records(&log));
    }

    /// Appends a transaction of producer `pid` (sequence `seq`) writing
    /// `key=value`, then its marker.
    fn txn(log: &PartitionLog, pid: i64, seq: i32, key: &str, value: &str, marker: Marker) {
        let mut b = build_keyed_batch(1_000, &[(Some(key.as_bytes()), Some(value.as_bytes()))]);
        set_producer(&mut b, pid, 0, seq);
        set_attributes(&mut b, TRANSACTIONAL);
        log.append(&b, 0).unwrap();
        log.append_marker(pid, 0, marker, 0, 0).unwrap();
    }

    #[test]
    fn keyless_records_and_aborted_transactions_go_and_markers_stay() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), compacted());
        txn(&log, 7, 0, "t", "committed", Marker::Commit);
        txn(&log, 8, 0, "t", "aborted", Marker::Abort);
        log.append(&crate::batch::build_batch(1_000, &[b"no key".as_slice()]), 0).unwrap();
        for i in 0..40 {
            put(&log, &format!("other-{i}"), Some("x"));
        }
        clean(&log).unwrap();
        let after = records(&log);
        let t: Vec<_> = after.iter().filter(|(_, k, _)| k == "t").map(|(_, _, v)| v.clone().unwrap()).collect();
        assert_eq!(t.len(), 1, "{t:?}");
        assert!(t[0].ends_with("committed"), "{t:?}");
        assert!(after.iter().all(|(_, k, _)| !k.is_empty()), "a keyless record survived");
        // Both markers are still there.
        assert_eq!(markers(&log).len(), 2);
    }

    /// The markers a log serves from its start, as (producer id, offset).
    fn markers(log: &PartitionLog) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let bytes = log.read(offset, 1 << 20, log.log_end_offset(), true).unwrap();
            let h = BatchHeader::parse(&bytes).unwrap();
            if h.is_control() {
                out.push((h.producer_id, h.base_offset));
            }
            offset = h.last_offset() + 1;
        }
        out
    }

    #[test]
    fn markers_go_past_delete_retention_once_their_transaction_left_no_batch() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), compacted());
        // Producer 7's value of t is replaced by producer 9's; producer 8's
        // is aborted; producer 10 commits a transaction twice, the first's
        // value replaced by the second's.
        txn(&log, 7, 0, "t", "first", Marker::Commit);
        txn(&log, 8, 0, "t", "aborted", Marker::Abort);
        txn(&log, 9, 0, "t", "latest", Marker::Commit);
        txn(&log, 10, 0, "u", "u1", Marker::Commit);
        txn(&log, 10, 1, "u", "u2", Marker::Commit);
        // Producer 8 commits a transaction after its aborted one.
        txn(&log, 8, 1, "v", "v1", Marker::Commit);
        for i in 0..40 {
            put(&log, &format!("other-{i}"), Some("x"));
        }
        let all = markers(&log);
        assert_eq!(all.iter().map(|m| m.0).collect::<Vec<_>>(), [7, 8, 9, 10, 10, 8]);
        let aborted = log.aborted_between(0, log.log_end_offset());
        assert_eq!(aborted.iter().map(|a| (a.producer_id, a.last_offset)).collect::<Vec<_>>(), [(8, all[1].1)]);

        // Younger than delete.retention.ms, every marker stays.
        clean(&log).unwrap();
        assert_eq!(markers(&log), all);
        // Past it, the markers of 7 and of 10's first transaction go (their
        // data went in the first pass), and 8's (its aborted data went in
        // the first pass too); those of the values still there stay.
        // (A pass runs when there is something dirty: more records.)
        std::thread::sleep(std::time::Duration::from_millis(5));
        log.set_config(LogConfig { delete_retention_ms: 1, ..compacted() });
        for i in 0..40 {
            put(&log, &format!("more-{i}"), Some("x"));
        }
        clean(&log).unwrap();
        assert_eq!(markers(&log), [all[2], all[4], all[5]]);
        // Its marker gone, producer 8's abort leaves the aborted list: a
        // read_committed consumer told of it would skip 8's committed
        // transaction as aborted, with no marker to end the skipping.
        assert_eq!(log.aborted_between(0, log.log_end_offset()), []);
        let values: BTreeMap<_, _> = latest(&records(&log));
        assert_eq!(values["t"].as_deref(), Some("latest"));
        assert_eq!(values["u"].as_deref(), Some("u2"));

        // Reopened, the log has no open transaction: the last stable offset
        // is its end, and read_committed reads the same.
        let end = log.log_end_offset();
        drop(log);
        let log = open(dir.path(), LogConfig { delete_retention_ms: 1, ..compacted() });
        log.advance_high_watermark(log.log_end_offset());
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(log.last_stable_offset(), end);
        assert_eq!(latest(&records(&log))["t"].as_deref(), Some("latest"));
        assert_eq!(log.aborted_between(0, log.log_end_offset()), [], "the transaction index was rewritten too");
    }

    #[test]
    fn an_open_transaction_and_the_active_segment_are_not_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), compacted());
        let mut b = build_keyed_batch(1_000, &[(Some(b"key-1".as_slice()), Some(b"open".as_slice()))]);
        set_producer(&mut b, 9, 0, 0);
        set_attributes(&mut b, TRANSACTIONAL);
        let open_at = log.append(&b, 0).unwrap().base_offset;
        fill(&log);
        log.advance_high_watermark(log.log_end_offset());
        assert_eq!(log.last_stable_offset(), open_at);
        assert_eq!(clean(&log), None, "nothing below the last stable offset to clean");
        log.append_marker(9, 0, Marker::Abort, 0, 0).unwrap();
        let report = clean(&log).unwrap();
        assert!(report.cleaned_to <= log.log_end_offset());
        let active_base = log.lock_segments_bases().last().copied().unwrap();
        assert!(report.cleaned_to <= active_base);
    }

    #[test]
    fn a_small_map_cleans_what_fits_and_the_next_pass_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), compacted());
        for i in 0..300 {
            put(&log, &format!("unique-{i}"), Some("x"));
        }
        log.advance_high_watermark(log.log_end_offset());
        let mut map = OffsetMap::with_memory(60 * MAP_ENTRY_BYTES);
        let first = log.clean(&mut map, crate::log::now_ms(), &mut |_| {}).unwrap().unwrap();
        assert!(first.keys <= 60 && first.cleaned_to < log.log_end_offset() - 100, "{first:?}");
        let second = log.clean(&mut map, crate::log::now_ms(), &mut |_| {}).unwrap().unwrap();
        assert!(second.cleaned_to > first.cleaned_to);
        // Unique keys: nothing to remove, every record stays.
        assert_eq!(records(&log).len(), 300);
        let err = log.clean(&mut OffsetMap::with_memory(1), crate::log::now_ms(), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("log.cleaner.dedupe.buffer.size"), "{err}");
    }

    /// Runs a pass that stops at `stop`, as a crash there would.
    fn clean_stopping_at(log: &PartitionLog, stop: &'static str) {
        STOP_AT.with(|s| s.set(Some(stop)));
        log.advance_high_watermark(log.log_end_offset());
        let stopped = log.clean(&mut OffsetMap::with_memory(1 << 20), crate::log::now_ms(), &mut |_| {});
        STOP_AT.with(|s| s.set(None));
        assert!(stopped.is_err(), "{stop}: the pass did not stop");
    }

    fn file_names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_old_or_the_cleaned_log() {
        for stop in STEPS {
            let dir = tempfile::tempdir().unwrap();
            let log = open(dir.path(), compacted());
            fill(&log);
            let before = records(&log);
            let end = log.log_end_offset();
            clean_stopping_at(&log, stop);
            drop(log);
            let log = open(dir.path(), compacted());
            let leftovers: Vec<_> = file_names(dir.path()).into_iter().filter(|n| n.ends_with(".cleaned")).collect();
            assert!(leftovers.is_empty(), "{stop}: {leftovers:?}");
            let after = records(&log);
            assert_eq!(latest(&after), latest(&before), "{stop}: a latest value was lost");
            assert_eq!(log.log_end_offset(), end, "{stop}");
            for (offset, _, value) in &after {
                assert_eq!(value.as_deref(), Some(format!("v{offset:07}").as_str()), "{stop}");
            }
            clean(&log).expect("the next pass runs");
            assert_eq!(latest(&records(&log)), latest(&before), "{stop}");
        }
    }

    /// 240 updates: every fourth to a key of its own, which stays; the
    /// rest to three hot keys. A pass leaves each segment about a quarter
    /// of its size.
    fn fill_sparse(log: &PartitionLog, from: usize) {
        for i in from..from + 240 {
            let offset = log.log_end_offset();
            let key = if i % 4 == 0 { format!("own-{i}") } else { format!("hot-{}", i % 3) };
            put(log, &key, Some(&format!("v{offset:07}")));
        }
    }

    fn segment_count(dir: &Path) -> usize {
        file_names(dir).iter().filter(|n| n.ends_with(".log")).count()
    }

    /// What a pass, a crash or a reopen must never change: the latest value
    /// of every key, offsets that only go up, each record at its offset.
    fn check_log(log: &PartitionLog, before: &[(i64, String, Option<String>)], what: &str) {
        let after = records(log);
        assert_eq!(latest(&after), latest(before), "{what}: a latest value changed");
        assert!(after.windows(2).all(|w| w[0].0 < w[1].0), "{what}: offsets do not go up");
        for (offset, _, value) in &after {
            assert_eq!(value.as_deref(), Some(format!("v{offset:07}").as_str()), "{what}");
        }
    }

    #[test]
    fn small_cleaned_segments_are_merged_by_the_next_pass() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), compacted());
        fill_sparse(&log, 0);
        let first = clean(&log).expect("a first pass");
        assert_eq!(first.segments_merged, 0, "full segments are not merged: {first:?}");
        fill_sparse(&log, 240);
        let segments_before = segment_count(dir.path());
        let before = records(&log);
        let end = log.log_end_offset();
        let second = clean(&log).expect("a second pass");
        assert!(second.segments_merged >= 4, "{second:?}");
        check_log(&log, &before, "after the merging pass");
        assert_eq!(log.log_end_offset(), end);
        let segments_after = segment_count(dir.path());
        assert!(segments_after <= segments_before - second.segments_merged, "{segments_after} segments, {segments_before} before: {second:?}");
        let files = file_names(dir.path());
        assert!(files.iter().all(|n| !n.contains("merging") && !n.ends_with(".cleaned")), "{files:?}");
        // Reopened, the merged segments read the same, and none overlaps
        // another.
        drop(log);
        let (log, report) = PartitionLog::open(dir.path(), compacted()).unwrap();
        assert_eq!(report.segments_dropped, 0);
        check_log(&log, &before, "reopened");
        assert_eq!(log.log_end_offset(), end);
    }

    /// `fill_sparse`'s history, a pass over it, and as much again: the next
    /// pass merges the small segments the first one left.
    fn cleaned_then_grown(dir: &Path) -> PartitionLog {
        let log = open(dir, compacted());
        fill_sparse(&log, 0);
        clean(&log).unwrap();
        fill_sparse(&log, 240);
        log
    }

    #[test]
    fn a_crash_at_any_step_of_a_merging_pass_leaves_the_old_or_the_merged_segments() {
        for stop in STEPS {
            let dir = tempfile::tempdir().unwrap();
            let log = cleaned_then_grown(dir.path());
            let before = records(&log);
            let end = log.log_end_offset();
            clean_stopping_at(&log, stop);
            drop(log);
            let (log, report) = PartitionLog::open(dir.path(), compacted()).unwrap();
            assert_eq!(report.segments_dropped, 0, "{stop}: segments dropped on open");
            let files = file_names(dir.path());
            assert!(files.iter().all(|n| !n.contains("merging") && !n.ends_with(".cleaned")), "{stop}: {files:?}");
            check_log(&log, &before, stop);
            assert_eq!(log.log_end_offset(), end, "{stop}");
            let report = clean(&log).expect("the next pass runs");
            check_log(&log, &before, &format!("{stop}, then a whole pass"));
            drop(log);
            let (log, _) = PartitionLog::open(dir.path(), compacted()).unwrap();
            check_log(&log, &before, &format!("{stop}, a whole pass and a reopen ({report:?})"));
        }
    }

    /// A new log's file names and records.
    type Snapshot = (Vec<String>, Vec<(i64, String, Option<String>)>);

    fn sorted_names(dir: &Path) -> Vec<String> {
        let mut names = file_names(dir);
        names.sort();
        names
    }

    /// When this thread's pass reaches `point` (the switch of one segment
    /// or of a merge), deletes the log at `dir` on another thread and makes
    /// a new one of the same name filled by `fill_new`, as deleting and
    /// re-creating a topic does, and gives that a moment: a pass that holds
    /// the deletion off goes on without it. The thread yields the new log
    /// as it left it.
    fn recreate_at_switch(
        log: &std::sync::Arc<PartitionLog>,
        dir: &Path,
        point: &'static str,
        fill_new: fn(&PartitionLog),
    ) -> std::sync::mpsc::Receiver<std::thread::JoinHandle<Snapshot>> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut once = Some((log.clone(), dir.to_path_buf()));
        let act = move || {
            let Some((old, dir)) = once.take() else { return };
            let done_tx = done_tx.clone();
            let thread = std::thread::spawn(move || {
                // As the log manager deletes a log: close, rename, remove.
                old.close();
                let gone = dir.with_extension("deleted");
                std::fs::rename(&dir, &gone).unwrap();
                std::fs::remove_dir_all(&gone).unwrap();
                let new = open(&dir, compacted());
                fill_new(&new);
                let left = (sorted_names(&dir), records(&new));
                drop(new);
                let _ = done_tx.send(());
                left
            });
            handle_tx.send(thread).unwrap();
            let _ = done_rx.recv_timeout(std::time::Duration::from_millis(500));
        };
        AT_PAUSE.with(|p| *p.borrow_mut() = Some((point, Box::new(act))));
        handle_rx
    }

    /// The new log is as its thread left it, on disk and reopened.
    fn check_untouched(dir: &Path, thread: std::sync::mpsc::Receiver<std::thread::JoinHandle<Snapshot>>) {
        AT_PAUSE.with(|p| *p.borrow_mut() = None);
        let (names, kept) = thread.recv().expect("the pass reached the switch").join().unwrap();
        assert_eq!(sorted_names(dir), names, "the deleted log's pass changed the new log's files");
        let (new, report) = PartitionLog::open(dir, compacted()).unwrap();
        assert_eq!(report.segments_dropped, 0);
        assert_eq!(records(&new), kept, "the new log lost records");
    }

    #[test]
    fn a_pass_on_a_deleted_log_leaves_a_new_log_of_its_name_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let log = std::sync::Arc::new(open(&path, compacted()));
        fill(&log);
        log.advance_high_watermark(log.log_end_offset());
        let thread = recreate_at_switch(&log, &path, "switching-one", fill);
        let pass = log.clean(&mut OffsetMap::with_memory(1 << 20), crate::log::now_ms(), &mut |_| {});
        assert!(pass.is_ok(), "a deletion under a pass is no failure: {pass:?}");
        check_untouched(&path, thread);
    }

    #[test]
    fn a_crash_in_a_merging_pass_on_a_deleted_log_leaves_a_new_log_of_its_name_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        std::fs::create_dir(&path).unwrap();
        let log = std::sync::Arc::new(cleaned_then_grown(&path));
        let thread = recreate_at_switch(&log, &path, "switching-merged", |new| fill_sparse(new, 0));
        clean_stopping_at(&log, "before-swap");
        check_untouched(&path, thread);
    }

    /// Where the second pass of `fill_sparse`'s history merges: the first
    /// segment of its group, read from the marker of a pass stopped there.
    fn where_the_second_pass_merges() -> i64 {
        let dir = tempfile::tempdir().unwrap();
        let log = cleaned_then_grown(dir.path());
        clean_stopping_at(&log, "before-swap");
        let marker = file_names(dir.path()).into_iter().find(|n| n.contains(".merging-")).expect("the second pass merges");
        marker.split_once(".merging-").and_then(|(first, _)| first.parse().ok()).expect("a marker names its first segment")
    }

    /// A merge whose marker is still there (its finish failed after the
    /// switch) is finished before the next pass, which then runs: with two
    /// markers at one segment, an open took one pass's copy for the other's
    /// and deleted segments never merged.
    #[test]
    fn a_merge_left_unfinished_is_finished_before_the_next_pass() {
        let first = where_the_second_pass_merges();
        for stop in [Some("before-swap"), None] {
            let dir = tempfile::tempdir().unwrap();
            let log = cleaned_then_grown(dir.path());
            let before = records(&log);
            let end = log.log_end_offset();
            std::fs::File::create(dir.path().join(format!("{first:020}.merging-{first:020}"))).unwrap();
            match stop {
                Some(stop) => clean_stopping_at(&log, stop),
                None => {
                    let report = clean(&log).expect("the pass runs");
                    assert!(report.segments_merged > 0, "{report:?}");
                    let files = file_names(dir.path());
                    assert!(files.iter().all(|n| !n.contains("merging")), "{files:?}");
                }
            }
            drop(log);
            let (log, report) = PartitionLog::open(dir.path(), compacted()).unwrap();
            assert_eq!(report.segments_dropped, 0, "{stop:?}");
            check_log(&log, &before, &format!("{stop:?}, reopened"));
            assert_eq!(log.log_end_offset(), end, "{stop:?}");
        }
    }

    /// A marker a failed merge left is settled before a truncation: the
    /// segments that later fill its range hold new records, which the next
    /// open must not take for the merge's leftovers.
    #[test]
    fn a_truncation_settles_a_merge_left_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let log = cleaned_then_grown(dir.path());
        clean(&log).expect("the merging pass");
        let first = log.lock_segments_bases()[0];
        std::fs::File::create(dir.path().join(format!("{first:020}.merging-{:020}", 1_000_000))).unwrap();
        let cut = log.lock_segments_bases()[2];
        assert_eq!(log.truncate_to(cut).unwrap(), cut);
        fill_sparse(&log, 480);
        let before = records(&log);
        let end = log.log_end_offset();
        assert!(log.segment_count() > 4, "new segments after the cut");
        drop(log);
        let (log, report) = PartitionLog::open(dir.path(), compacted()).unwrap();
        assert_eq!(report.segments_dropped, 0);
        check_log(&log, &before, "reopened");
        assert_eq!(log.log_end_offset(), end);
    }

    #[test]
    fn a_follower_copies_a_cleaned_log_gaps_and_all() {
        let dir = tempfile::tempdir().unwrap();
        let leader = open(&dir.path().join("leader"), compacted());
        fill(&leader);
        clean(&leader).unwrap();
        let follower = open(&dir.path().join("follower"), compacted());
        let end = leader.log_end_offset();
        while follower.log_end_offset() < end {
            let bytes = leader.read(follower.log_end_offset(), 4096, end, true).unwrap();
            follower.append_replicated(&bytes).unwrap();
        }
        assert_eq!(records(&follower), records(&leader));
        // A follower refuses offsets that go back.
        let again = leader.read(0, 4096, end, true).unwrap();
        assert!(follower.append_replicated(&again).is_err());
    }

    /// A follower truncated below the cleaner offset (its new leader's log
    /// differs there) copies new records over offsets the cleaner had
    /// passed: they are dirty, also after a restart, so an older value of
    /// their key below the cut goes (or a tombstone there would later bring
    /// it back).
    #[test]
    fn a_truncation_below_the_cleaner_offset_makes_what_follows_dirty_again() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path(), compacted());
            put(&log, "key-1", Some("old"));
            for i in 0..200 {
                put(&log, &format!("other-{i}"), Some("x"));
            }
            clean(&log).unwrap();
            let cleaned = crate::log::read_cleaner_file(dir.path()).unwrap();
            assert!(cleaned > 100, "{cleaned}");
            let cut = log.truncate_to(cleaned - 50).unwrap();
            assert_eq!(crate::log::read_cleaner_file(dir.path()).unwrap(), cut, "lowered on disk too");
            put(&log, "key-1", Some("newest"));
            for i in 0..100 {
                put(&log, &format!("next-{i}"), Some("x"));
            }
        }
        let log = open(dir.path(), compacted());
        clean(&log).unwrap();
        let key1: Vec<_> = records(&log).into_iter().filter(|(_, k, _)| k == "key-1").map(|(_, _, v)| v).collect();
        assert_eq!(key1, vec![Some("newest".to_string())]);
    }

    #[test]
    fn retention_leaves_a_compact_only_log_alone() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig { retention_ms: 0, ..compacted() });
        fill(&log);
        log.advance_high_watermark(log.log_end_offset());
        assert_eq!(log.enforce_retention(crate::log::now_ms()).unwrap(), 0);
        log.set_config(LogConfig { retention_ms: 0, delete: true, ..compacted() });
        assert!(log.enforce_retention(crate::log::now_ms()).unwrap() > 0, "compact,delete deletes by retention too");
    }
}
