//! The replica manager's settings, and topic configs as log settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use runnel_controller::metadata::NodeId;
use runnel_storage::{InvalidConfig, LogConfig};

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub node_id: NodeId,
    /// Where the partition logs live, one directory per partition.
    pub log_dir: PathBuf,
    /// Defaults for every topic's log; topic configs override them.
    pub log: LogConfig,
    /// A follower that has not caught up for this long leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// How often retention runs over every log.
    pub retention_check_interval: Duration,
    /// Segment files held open at once across every log (they are opened
    /// when written or read, the least recently used closed first).
    pub open_files_max: usize,
    /// Bytes per second this node's followers fetch for partitions catching
    /// up, over all leaders; `None`: as fast as they can.
    pub catch_up_bytes_per_sec: Option<u64>,
    /// The log cleaner of compacted topics.
    pub cleaner: crate::cleaner::CleanerConfig,
}

impl ReplicaConfig {
    pub const DEFAULT_REPLICA_LAG_TIME_MAX: Duration = Duration::from_secs(10);
    pub const DEFAULT_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(60);
    /// Where the process's open-files limit is not known.
    pub const DEFAULT_OPEN_FILES_MAX: usize = 4096;

    /// The share of the process's open-files limit segment files may use:
    /// half, the rest left to connections, sockets between nodes and the
    /// Raft store.
    pub fn open_files_for_limit(limit: u64) -> usize {
        usize::try_from(limit / 2).unwrap_or(usize::MAX).max(runnel_storage::files::OPEN_FILES_MIN)
    }

    pub fn new(node_id: NodeId, log_dir: PathBuf) -> ReplicaConfig {
        ReplicaConfig {
            node_id,
            log_dir,
            log: LogConfig::default(),
            replica_lag_time_max: Self::DEFAULT_REPLICA_LAG_TIME_MAX,
            retention_check_interval: Self::DEFAULT_RETENTION_CHECK_INTERVAL,
            open_files_max: Self::DEFAULT_OPEN_FILES_MAX,
            catch_up_bytes_per_sec: None,
            cleaner: crate::cleaner::CleanerConfig::default(),
        }
    }

    /// Checks ranges; the message names the bad setting.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.replica_lag_time_max < Duration::from_millis(100) {
            return Err(InvalidConfig(format!("replica_lag_time_max_ms must be at least 100, got {}", self.replica_lag_time_max.as_millis())));
        }
        if self.catch_up_bytes_per_sec.is_some_and(|rate| rate < 1024 * 1024) {
            return Err(InvalidConfig(format!(
                "replica_catch_up_max_bytes_per_sec must be 0 (no limit) or at least 1048576 (1 MiB/s), got {}",
                self.catch_up_bytes_per_sec.unwrap_or_default()
            )));
        }
        if self.cleaner.dedupe_buffer_bytes < 1024 * 1024 {
            return Err(InvalidConfig(format!("log_cleaner_dedupe_buffer_size must be at least 1048576 (1 MiB), got {}", self.cleaner.dedupe_buffer_bytes)));
        }
        if self.cleaner.backoff.is_zero() {
            return Err(InvalidConfig("log_cleaner_backoff_ms must be at least 1".into()));
        }
        if self.retention_check_interval.is_zero() {
            return Err(InvalidConfig("retention_check_interval_ms must be at least 1".into()));
        }
        self.log.validate()
    }
}

/// The log settings of a topic: the broker defaults with its overrides
/// applied. The overrides have passed the controller's validation.
pub fn log_config(defaults: &LogConfig, configs: &BTreeMap<String, String>) -> LogConfig {
    let mut c = defaults.clone();
    let long = |k: &str| configs.get(k).and_then(|v| v.trim().parse::<i64>().ok());
    if let Some(v) = long("retention.ms") {
        c.retention_ms = v;
    }
    if let Some(v) = long("retention.bytes") {
        c.retention_bytes = v;
    }
    if let Some(v) = long("segment.bytes") {
        c.segment_bytes = v as u64;
    }
    if let Some(v) = long("segment.ms") {
        c.segment_ms = v;
    }
    if let Some(policy) = configs.get("cleanup.policy") {
        let parts: Vec<&str> = policy.split(',').map(str::trim).collect();
        c.delete = parts.contains(&"delete");
        c.compact = parts.contains(&"compact");
    }
    if let Some(v) = long("delete.retention.ms") {
        c.delete_retention_ms = v;
    }
    if let Some(v) = long("min.compaction.lag.ms") {
        c.min_compaction_lag_ms = v;
    }
    if let Some(v) = long("max.compaction.lag.ms") {
        c.max_compaction_lag_ms = v;
    }
    if let Some(v) = configs.get("min.cleanable.dirty.ratio").and_then(|v| v.trim().parse::<f64>().ok()) {
        c.min_cleanable_dirty_ratio = v;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_map_onto_log_settings() {
        let c = BTreeMap::from([("retention.ms".to_string(), "1000".to_string()), ("segment.bytes".to_string(), "4096".to_string())]);
        let lc = log_config(&LogConfig::default(), &c);
        assert_eq!((lc.retention_ms, lc.segment_bytes), (1000, 4096));
        assert_eq!(log_config(&LogConfig::default(), &BTreeMap::new()), LogConfig::default());
        let compacted = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact, delete".to_string()),
            ("min.cleanable.dirty.ratio".to_string(), "0.1".to_string()),
            ("delete.retention.ms".to_string(), "5".to_string()),
        ]);
        let lc = log_config(&LogConfig::default(), &compacted);
        assert_eq!((lc.compact, lc.delete, lc.min_cleanable_dirty_ratio, lc.delete_retention_ms), (true, true, 0.1, 5));
        let lc = log_config(&LogConfig::default(), &BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]));
        assert_eq!((lc.compact, lc.delete), (true, false));
    }

    #[test]
    fn a_catch_up_limit_below_one_mib_per_second_is_refused_by_name() {
        let mut c = ReplicaConfig::new(NodeId(1), PathBuf::from("logs"));
        c.validate().expect("no limit by default");
        c.catch_up_bytes_per_sec = Some(1000);
        assert!(c.validate().unwrap_err().0.contains("replica_catch_up_max_bytes_per_sec"));
        c.catch_up_bytes_per_sec = Some(50 * 1024 * 1024);
        c.validate().expect("50 MiB/s");
    }
}
