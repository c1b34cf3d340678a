//! One segment: a `.log` file of batches starting at `base_offset`, with a
//! sparse `.index` (relative offset -> file position) and `.timeindex`
//! (running maximum timestamp -> relative offset).
//!
//! The indexes live in memory. Their files are written whole when the
//! segment is sealed (rolled away from), and not fsynced: on open, the last
//! segment's indexes are always rebuilt from its batches, and an older
//! segment's index is used only if it passes its checks (entry sizes,
//! strictly increasing offsets and positions, positions inside the log
//! file); otherwise it is rebuilt. Flushes fsync `.log` files only: an index
//! that lost its tail in a crash costs a scan on open, never data.
//!
//! A segment's aborted transactions are in its `.txnindex` (see
//! [`crate::snapshot`]), which the log writes when it seals the segment.
//!
//! The `.log` file is opened through the node's [`FileCache`] when it is
//! written or read, so a segment holds no file descriptor of its own.

use std::fs::File;
use std::io::{BufReader, IoSlice, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{BatchHeader, HEADER_BYTES, Marker, control_in, validate};
use crate::error::{Result, StorageError};
use crate::files::FileCache;

const INDEX_ENTRY_BYTES: usize = 8;
const TIME_INDEX_ENTRY_BYTES: usize = 12;

pub(crate) fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// `(offset relative to the segment base, byte position)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// `(largest timestamp up to and including this batch, its relative offset)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

pub(crate) struct Segment {
    pub dir: PathBuf,
    pub base_offset: i64,
    /// The offset the next batch appended here would get.
    pub next_offset: i64,
    /// Bytes of complete batches in the `.log` file.
    pub size: u64,
    files: Arc<FileCache>,
    log_path: PathBuf,
    pub index: Vec<IndexEntry>,
    pub time_index: Vec<TimeEntry>,
    bytes_since_index: u64,
    /// Largest record timestamp in the segment, -1 when empty.
    pub max_timestamp: i64,
    pub created_ms: i64,
    /// Written since the last fsync of its files.
    pub dirty: bool,
}

/// What opening a segment found.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Bytes cut from the end of the `.log` file (a torn or corrupt tail).
    pub truncated_bytes: u64,
    pub reason: Option<String>,
    pub index_rebuilt: bool,
}

impl Segment {
    /// Creates a new, empty segment (replacing any files of the same name).
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64, files: &Arc<FileCache>) -> Result<Segment> {
        let log_path = dir.join(file_name(base_offset, "log"));
        files.create(&log_path)?;
        // Index files of an earlier segment of this name must not survive.
        delete_index_files(dir, base_offset)?;
        remove_if_present(&dir.join(file_name(base_offset, crate::snapshot::TXN_INDEX_EXTENSION)))?;
        Ok(Segment { log_path, dirty: true, ..Segment::create_empty(dir, base_offset, now_ms, files) })
    }

    /// Creates the `.cleaned` file the cleaner writes a new copy of segment
    /// `base_offset` into; [`Segment::install_cleaned`] puts it in place.
    pub fn create_cleaned(dir: &Path, base_offset: i64, created_ms: i64, files: &Arc<FileCache>) -> Result<Segment> {
        let path = dir.join(file_name(base_offset, "log.cleaned"));
        files.create(&path)?;
        let mut seg = Segment::create_empty(dir, base_offset, created_ms, files);
        seg.log_path = path;
        Ok(seg)
    }

    fn create_empty(dir: &Path, base_offset: i64, created_ms: i64, files: &Arc<FileCache>) -> Segment {
        Segment {
            dir: dir.to_path_buf(),
            base_offset,
            next_offset: base_offset,
            size: 0,
            files: files.clone(),
            log_path: dir.join(file_name(base_offset, "log")),
            index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
            max_timestamp: -1,
            created_ms,
            dirty: false,
        }
    }

    /// Renames this `.cleaned` copy over the segment's `.log` file. The
    /// caller deleted the old index files first (and synced the directory),
    /// so a crash at any point leaves the old segment, or the new one with
    /// no index (rebuilt on open), never the new log with the old index.
    pub fn install_cleaned(&mut self, old: &Segment) -> Result<()> {
        let target = self.dir.join(file_name(self.base_offset, "log"));
        std::fs::rename(&self.log_path, &target).map_err(StorageError::io(format!("rename {} over {}", self.log_path.display(), target.display())))?;
        self.files.forget(&self.log_path);
        old.forget_file();
        self.log_path = target;
        // The old segment's end stays the end of this one, gaps and all.
        self.next_offset = old.next_offset;
        Ok(())
    }

    /// Deletes the `.log.cleaned` file of `base_offset`, if any.
    pub fn delete_cleaned(dir: &Path, base_offset: i64, files: &FileCache) -> Result<()> {
        let path = dir.join(file_name(base_offset, "log.cleaned"));
        files.forget(&path);
        remove_if_present(&path)
    }

    /// Writes the index files from memory (a newly installed cleaned segment).
    pub fn write_indexes(&self) -> Result<()> {
        self.rewrite_indexes()
    }

    /// Opens an existing segment. `full_check` validates every batch's CRC
    /// (done for the last segment, whose tail may be torn); otherwise only the
    /// batches after the last index entry are checked.
    pub fn open(dir: &Path, base_offset: i64, full_check: bool, index_interval_bytes: u32, now_ms: i64, files: &Arc<FileCache>) -> Result<(Segment, Recovery)> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let log = files.open(&log_path)?;
        let file_len = log.metadata().map_err(StorageError::io("stat segment"))?.len();
        let mut seg = Segment { log_path, ..Segment::create_empty(dir, base_offset, now_ms, files) };
        let mut recovery = Recovery::default();
        let loaded = if full_check { None } else { seg.load_indexes(file_len)? };
        let (scan_from, expected_offset) = match loaded {
            Some((position, offset)) => (u64::from(position), offset),
            None => {
                recovery.index_rebuilt = true;
                seg.index.clear();
                seg.time_index.clear();
                (0, base_offset)
            }
        };
        let outcome = seg.scan(scan_from, expected_offset, file_len, index_interval_bytes)?;
        seg.size = outcome.valid_end;
        seg.next_offset = outcome.next_offset;
        if outcome.valid_end < file_len {
            recovery.truncated_bytes = file_len - outcome.valid_end;
            recovery.reason = outcome.stop_reason;
            log.set_len(outcome.valid_end).map_err(StorageError::io("truncate torn segment tail"))?;
            log.sync_all().map_err(StorageError::io("sync truncated segment"))?;
        }
        // A sealed segment keeps index files that match it; the last one's
        // are rebuilt at every open anyway.
        if !full_check && (recovery.index_rebuilt || outcome.indexes_grew) {
            seg.rewrite_indexes()?;
        }
        Ok((seg, recovery))
    }

    /// The segment's `.log` file, opened through the cache.
    pub fn log(&self) -> Result<Arc<File>> {
        self.files.open(&self.log_path)
    }

    /// The segment will take no more appends: its index files are written
    /// from memory, so the next open can use them instead of scanning.
    pub fn seal(&self) -> Result<()> {
        self.rewrite_indexes()
    }

    /// Loads both index files if they pass their checks. Returns the position
    /// and absolute offset of the last indexed batch, where a tail scan starts.
    fn load_indexes(&mut self, log_len: u64) -> Result<Option<(u32, i64)>> {
        let read_all = |ext: &str| -> Result<Vec<u8>> {
            let path = self.dir.join(file_name(self.base_offset, ext));
            match std::fs::read(&path) {
                Ok(raw) => Ok(raw),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(StorageError::Io { context: format!("read {}", path.display()), source: e }),
            }
        };
        let raw = read_all("index")?;
        let raw_time = read_all("timeindex")?;
        if raw.is_empty() || raw.len() % INDEX_ENTRY_BYTES != 0 || raw_time.len() % TIME_INDEX_ENTRY_BYTES != 0 {
            return Ok(None);
        }
        let mut index = Vec::with_capacity(raw.len() / INDEX_ENTRY_BYTES);
        for chunk in raw.chunks_exact(INDEX_ENTRY_BYTES) {
            let e = IndexEntry {
                relative_offset: u32::from_be_bytes(chunk[0..4].try_into().expect("4 bytes")),
                position: u32::from_be_bytes(chunk[4..8].try_into().expect("4 bytes")),
            };
            let increasing = index.last().is_none_or(|p: &IndexEntry| e.relative_offset > p.relative_offset && e.position > p.position);
            // A cleaned segment's first batch may start after its base offset.
            let first_ok = !index.is_empty() || e.position == 0;
            if !increasing || !first_ok || u64::from(e.position) + HEADER_BYTES as u64 > log_len {
                return Ok(None);
            }
            index.push(e);
        }
        let mut time_index = Vec::with_capacity(raw_time.len() / TIME_INDEX_ENTRY_BYTES);
        for chunk in raw_time.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
            let e = TimeEntry {
                timestamp: i64::from_be_bytes(chunk[0..8].try_into().expect("8 bytes")),
                relative_offset: u32::from_be_bytes(chunk[8..12].try_into().expect("4 bytes")),
            };
            let increasing = time_index.last().is_none_or(|p: &TimeEntry| e.timestamp > p.timestamp && e.relative_offset > p.relative_offset);
            let last_indexed = index.last().expect("index is non-empty").relative_offset;
            if !increasing || e.relative_offset > last_indexed {
                return Ok(None);
            }
            time_index.push(e);
        }
        let last = *index.last().expect("index is non-empty");
        self.max_timestamp = time_index.last().map_or(-1, |t| t.timestamp);
        self.index = index;
        self.time_index = time_index;
        Ok(Some((last.position, self.base_offset + i64::from(last.relative_offset))))
    }

    /// Reads batches from `from` to `file_len`, validating each, and adds index
    /// entries for them. Stops at the first batch that is torn, corrupt, or out
    /// of sequence.
    fn scan(&mut self, from: u64, expected_offset: i64, file_len: u64, index_interval_bytes: u32) -> Result<ScanOutcome> {
        let log = self.log()?;
        let mut reader = BufReader::with_capacity(1 << 20, &*log);
        reader.seek(SeekFrom::Start(from)).map_err(StorageError::io("seek segment"))?;
        let mut pos = from;
        let mut next = expected_offset;
        let mut stop_reason = None;
        let mut grew = false;
        let mut buf = Vec::new();
        while pos < file_len {
            let remaining = file_len - pos;
            if remaining < HEADER_BYTES as u64 {
                stop_reason = Some(format!("{remaining} trailing bytes are shorter than a batch header"));
                break;
            }
            buf.resize(HEADER_BYTES, 0);
            reader.read_exact(&mut buf).map_err(StorageError::io("read segment"))?;
            let header = match BatchHeader::parse(&buf) {
                Ok(h) => h,
                Err(e) => {
                    stop_reason = Some(e.to_string());
                    break;
                }
            };
            let total = header.total_bytes() as u64;
            if total > remaining {
                stop_reason = Some(format!("batch at position {pos} needs {total} bytes, {remaining} remain"));
                break;
            }
            buf.resize(total as usize, 0);
            reader.read_exact(&mut buf[HEADER_BYTES..]).map_err(StorageError::io("read segment"))?;
            if let Err(e) = validate(&buf) {
                stop_reason = Some(format!("batch at position {pos}: {e}"));
                break;
            }
            // Offsets only go up; a gap is a batch the cleaner removed.
            if header.base_offset < next {
                stop_reason = Some(format!("batch at position {pos} has base offset {}, below {next}", header.base_offset));
                break;
            }
            grew |= self.note_batch(&header, pos as u32, total, index_interval_bytes);
            pos += total;
            next = header.last_offset() + 1;
        }
        Ok(ScanOutcome { valid_end: pos, next_offset: next, stop_reason, indexes_grew: grew })
    }

    /// Records a batch written at `position` in the in-memory indexes.
    /// Returns whether an entry was added.
    fn note_batch(&mut self, header: &BatchHeader, position: u32, bytes: u64, index_interval_bytes: u32) -> bool {
        let relative_offset = (header.base_offset - self.base_offset) as u32;
        let mut added = false;
        let due = self.index.is_empty() || self.bytes_since_index >= u64::from(index_interval_bytes);
        if due && self.index.last().is_none_or(|e| relative_offset > e.relative_offset) {
            self.index.push(IndexEntry { relative_offset, position });
            self.bytes_since_index = 0;
            added = true;
            let running_max = self.max_timestamp.max(header.max_timestamp);
            if self.time_index.last().is_none_or(|t| running_max > t.timestamp && relative_offset > t.relative_offset) {
                self.time_index.push(TimeEntry { timestamp: running_max, relative_offset });
            }
        }
        self.bytes_since_index += bytes;
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        added
    }

    /// Writes both index files from memory, replacing their contents.
    fn rewrite_indexes(&self) -> Result<()> {
        let mut raw = Vec::with_capacity(self.index.len() * INDEX_ENTRY_BYTES);
        for e in &self.index {
            raw.extend_from_slice(&e.relative_offset.to_be_bytes());
            raw.extend_from_slice(&e.position.to_be_bytes());
        }
        let path = self.dir.join(file_name(self.base_offset, "index"));
        std::fs::write(&path, &raw).map_err(StorageError::io(format!("write {}", path.display())))?;
        let mut raw = Vec::with_capacity(self.time_index.len() * TIME_INDEX_ENTRY_BYTES);
        for e in &self.time_index {
            raw.extend_from_slice(&e.timestamp.to_be_bytes());
            raw.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        let path = self.dir.join(file_name(self.base_offset, "timeindex"));
        std::fs::write(&path, &raw).map_err(StorageError::io(format!("write {}", path.display())))?;
        Ok(())
    }

    /// Appends already-stamped batches (`bytes` holds them back to back).
    pub fn append(&mut self, bytes: &[u8], headers: &[BatchHeader], index_interval_bytes: u32) -> Result<()> {
        self.append_parts(&mut [IoSlice::new(bytes)], headers, index_interval_bytes)
    }

    /// Appends stamped batches given in pieces that are written back to
    /// back in one positional vectored write, so a produced record set is
    /// stored without first being copied whole to stamp its headers.
    pub fn append_parts(&mut self, parts: &mut [IoSlice<'_>], headers: &[BatchHeader], index_interval_bytes: u32) -> Result<()> {
        let start = self.size;
        let log = self.log()?;
        if let Err(e) = write_all_vectored_at(&log, parts, start) {
            // Leave no partial batch behind: cut the file back to where it was.
            let _ = log.set_len(start);
            return Err(StorageError::Io { context: "append to segment".into(), source: e });
        }
        let mut pos = start;
        for h in headers {
            let total = h.total_bytes() as u64;
            self.note_batch(h, pos as u32, total, index_interval_bytes);
            pos += total;
            self.next_offset = h.last_offset() + 1;
        }
        self.size = pos;
        self.dirty = true;
        Ok(())
    }

    /// Position of the batch to start scanning from when looking for `offset`.
    pub fn position_for(&self, offset: i64) -> u64 {
        let relative = (offset - self.base_offset).max(0) as u64;
        let i = self.index.partition_point(|e| u64::from(e.relative_offset) <= relative);
        if i == 0 { 0 } else { u64::from(self.index[i - 1].position) }
    }

    /// Position to start scanning from for the first batch whose max timestamp
    /// is at least `timestamp`: every batch before it has a smaller maximum.
    pub fn position_for_timestamp(&self, timestamp: i64) -> u64 {
        let i = self.time_index.partition_point(|e| e.timestamp < timestamp);
        if i == 0 {
            return 0;
        }
        self.position_for(self.base_offset + i64::from(self.time_index[i - 1].relative_offset))
    }

    /// Cuts the segment at `position`, where a batch starting at `next_offset` begins.
    pub fn truncate_at(&mut self, position: u64, next_offset: i64) -> Result<()> {
        let log = self.log()?;
        log.set_len(position).map_err(StorageError::io("truncate segment"))?;
        self.size = position;
        self.next_offset = next_offset;
        let relative = (next_offset - self.base_offset) as u32;
        self.index.retain(|e| u64::from(e.position) < position);
        self.time_index.retain(|e| e.relative_offset < relative);
        self.max_timestamp = self.time_index.last().map_or(-1, |t| t.timestamp);
        self.bytes_since_index = 0;
        self.rewrite_indexes()?;
        // The maximum timestamp of the kept tail after the last time entry is
        // not known without a scan; recompute it from the remaining batches.
        let from = self.index.last().map_or(0, |e| u64::from(e.position));
        let mut reader = BufReader::new(&*log);
        reader.seek(SeekFrom::Start(from)).map_err(StorageError::io("seek segment"))?;
        let mut pos = from;
        let mut head = [0u8; HEADER_BYTES];
        while pos + (HEADER_BYTES as u64) <= position {
            reader.read_exact(&mut head).map_err(StorageError::io("read segment"))?;
            let h = BatchHeader::parse(&head)?;
            self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
            let skip = h.total_bytes() - HEADER_BYTES;
            reader.seek_relative(skip as i64).map_err(StorageError::io("seek segment"))?;
            pos += h.total_bytes() as u64;
        }
        self.dirty = true;
        Ok(())
    }

    /// Calls `f` with the header of every batch, in order, and the marker
    /// and coordinator epoch of each control batch.
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader, Option<(Marker, i32)>)) -> Result<()> {
        let log = self.log()?;
        let mut reader = BufReader::with_capacity(64 * 1024, &*log);
        reader.seek(SeekFrom::Start(0)).map_err(StorageError::io("seek segment"))?;
        let mut pos = 0u64;
        let mut head = [0u8; HEADER_BYTES];
        let mut body = Vec::new();
        while pos + HEADER_BYTES as u64 <= self.size {
            reader.read_exact(&mut head).map_err(StorageError::io("read segment"))?;
            let h = BatchHeader::parse(&head)?;
            let rest = h.total_bytes() - HEADER_BYTES;
            if h.is_control() {
                // A marker: read its one small record for what it says.
                body.resize(rest, 0);
                reader.read_exact(&mut body).map_err(StorageError::io("read segment"))?;
                f(&h, control_in(&body));
            } else {
                f(&h, None);
                reader.seek_relative(rest as i64).map_err(StorageError::io("seek segment"))?;
            }
            pos += h.total_bytes() as u64;
        }
        Ok(())
    }

    /// Drops the file cache's handle on this segment's `.log` file.
    pub fn forget_file(&self) {
        self.files.forget(&self.log_path);
    }

    pub fn delete_files(&self) -> Result<()> {
        self.files.forget(&self.log_path);
        delete_segment_files(&self.dir, self.base_offset)
    }

    pub fn record_bytes(&self) -> u64 {
        self.size
    }
}

/// How many pieces one `pwritev` takes at most (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Writes every byte of `parts`, back to back, at `pos` of `file`
/// (`pwritev`, continued after a short write).
fn write_all_vectored_at(file: &File, mut parts: &mut [IoSlice<'_>], mut pos: u64) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let n = parts.len().min(IOV_MAX);
        match rustix::io::pwritev(file, &parts[..n], pos) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                IoSlice::advance_slices(&mut parts, written);
                pos += written as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::Io { context: format!("delete {}", path.display()), source: e }),
    }
}

/// Removes a segment's two index files; missing files are not an error.
pub(crate) fn delete_index_files(dir: &Path, base_offset: i64) -> Result<()> {
    ["index", "timeindex"].iter().try_for_each(|ext| remove_if_present(&dir.join(file_name(base_offset, ext))))
}

/// Removes a segment's files (its `.log`, indexes and transaction index);
/// missing files are not an error.
pub(crate) fn delete_segment_files(dir: &Path, base_offset: i64) -> Result<()> {
    remove_if_present(&dir.join(file_name(base_offset, "log")))?;
    remove_if_present(&dir.join(file_name(base_offset, crate::snapshot::TXN_INDEX_EXTENSION)))?;
    delete_index_files(dir, base_offset)
}

pub(crate) struct ScanOutcome {
    pub valid_end: u64,
    pub next_offset: i64,
    pub stop_reason: Option<String>,
    pub indexes_grew: bool,
}

/// The outcome of choosing batches from a chunk of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    /// These bytes of the chunk (possibly none: the upper bound or the byte
    /// budget was reached).
    Range(std::ops::Range<usize>),
    /// Nothing chosen yet and the chunk ran out: read at least `bytes` more
    /// bytes starting at `from` (relative to the chunk) and choose again.
    NeedMore { from: usize, bytes: usize },
}

/// Walks `chunk` (which starts at a batch boundary) and chooses the batches
/// that end at or after `offset`, start before `upper_offset`, and fit in
/// `max_bytes`; the first one counts even when larger, if `min_one`.
pub(crate) fn select_batches(chunk: &[u8], offset: i64, upper_offset: i64, max_bytes: usize, min_one: bool) -> Selection {
    let mut pos = 0;
    let mut start: Option<usize> = None;
    loop {
        if pos + HEADER_BYTES > chunk.len() {
            return match start {
                Some(begin) => Selection::Range(begin..pos),
                None => Selection::NeedMore { from: pos, bytes: HEADER_BYTES },
            };
        }
        let Ok(h) = BatchHeader::parse(&chunk[pos..]) else {
            // Not a batch: only possible past a torn tail that recovery has
            // not seen yet. Serve what came before it.
            return Selection::Range(start.unwrap_or(pos)..pos);
        };
        if h.base_offset >= upper_offset {
            return Selection::Range(start.unwrap_or(pos)..pos);
        }
        let total = h.total_bytes();
        if h.last_offset() < offset {
            pos += total;
            continue;
        }
        let begin = *start.get_or_insert(pos);
        let taken = pos - begin;
        if taken + total > max_bytes && !(taken == 0 && min_one) {
            return Selection::Range(begin..pos);
        }
        if pos + total > chunk.len() {
            if taken == 0 {
                return Selection::NeedMore { from: pos, bytes: total };
            }
            return Selection::Range(begin..pos);
        }
        pos += total;
    }
}
