//! Per-log settings. Topic configs map onto these one to one.

use std::time::Duration;

/// When appended bytes are forced to disk.
///
/// - `Always` (the default): every acknowledged produce waits for an fsync
///   that covers its batch. Concurrent appends share one fsync (group commit),
///   so the cost is one `fdatasync` per flush round, not per batch. The high
///   watermark of a single-replica log only moves past flushed data.
/// - `Interval`: appends are acknowledged once they are in the page cache; a
///   background task fsyncs every `interval`. A power failure can lose the last
///   interval of acknowledged writes; a process crash loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushPolicy {
    #[default]
    Always,
    Interval(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would exceed this size.
    pub segment_bytes: u64,
    /// Roll to a new segment when the active one is older than this.
    pub segment_ms: i64,
    /// Delete closed segments whose newest record is older than this; -1 keeps forever.
    pub retention_ms: i64,
    /// Delete the oldest closed segments while the log is larger than this; -1 for no limit.
    pub retention_bytes: i64,
    /// Bytes between entries of the sparse offset and time indexes.
    pub index_interval_bytes: u32,
    pub flush: FlushPolicy,
    /// `cleanup.policy` holds `delete`: retention deletes old segments.
    pub delete: bool,
    /// `cleanup.policy` holds `compact`: the cleaner keeps the latest record
    /// per key in closed segments (see [`crate::cleaner`]).
    pub compact: bool,
    /// A tombstone (a record with a key and no value) stays this long after
    /// the newest record of its segment, so consumers that read slowly still
    /// see the delete.
    pub delete_retention_ms: i64,
    /// A record is not compacted away until it is at least this old.
    pub min_compaction_lag_ms: i64,
    /// A log whose oldest uncleaned record is older than this is cleaned
    /// whatever its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// The share of a log's cleanable bytes that must be uncleaned before
    /// the cleaner takes it.
    pub min_cleanable_dirty_ratio: f64,
}

/// Segments address positions with `u32`, as Kafka's index does.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// A floor that keeps a segment able to hold a header and an index entry.
pub const SEGMENT_BYTES_MIN: u64 = 1024;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            flush: FlushPolicy::Always,
            delete: true,
            compact: false,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

/// A setting out of its range; the message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

impl LogConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(InvalidConfig(format!("segment.bytes must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_MAX}, got {}", self.segment_bytes)));
        }
        if self.segment_ms < 1 {
            return Err(InvalidConfig(format!("segment.ms must be positive, got {}", self.segment_ms)));
        }
        if self.retention_ms < -1 {
            return Err(InvalidConfig(format!("retention.ms must be -1 or more, got {}", self.retention_ms)));
        }
        if self.retention_bytes < -1 {
            return Err(InvalidConfig(format!("retention.bytes must be -1 or more, got {}", self.retention_bytes)));
        }
        if self.index_interval_bytes == 0 {
            return Err(InvalidConfig("index.interval.bytes must be positive".into()));
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return Err(InvalidConfig(format!("min.cleanable.dirty.ratio must be from 0 to 1, got {}", self.min_cleanable_dirty_ratio)));
        }
        Ok(())
    }
}
