//! `LogManager`: the data directory of one node's partition logs.
//!
//! Layout: `<root>/<topic>-<partition>/` per partition, as Kafka lays out its
//! log directories. Topic names cannot hold `/`, and the partition is the text
//! after the last `-`, so every legal topic name maps to one directory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::files::FileCache;
use crate::log::{OpenReport, PartitionLog, now_ms};
use crate::progress::Progress;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition { topic: topic.into(), partition }
    }

    fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition: i32 = partition.parse().ok()?;
        (!topic.is_empty() && partition >= 0).then(|| TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The suffix a partition directory gets when its log is removed: renamed
/// first (one atomic step), deleted after; a removal a crash interrupted is
/// finished at the next start.
const DELETED_SUFFIX: &str = ".deleted";

pub struct LogManager {
    root: PathBuf,
    logs: RwLock<BTreeMap<TopicPartition, Arc<PartitionLog>>>,
    files: Arc<FileCache>,
}

impl LogManager {
    /// Opens (and recovers) every partition log under `root`, holding at
    /// most `open_files_max` segment files open at once. `config_for` gives
    /// the settings of a topic's logs. Logs progress every few seconds when
    /// there are many.
    pub fn open(root: &Path, config_for: impl Fn(&str) -> LogConfig, open_files_max: usize) -> Result<LogManager> {
        std::fs::create_dir_all(root).map_err(StorageError::io(format!("create data directory {}", root.display())))?;
        let files = Arc::new(FileCache::new(open_files_max));
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(root).map_err(StorageError::io(format!("list {}", root.display())))? {
            let entry = entry.map_err(StorageError::io("list data directory"))?;
            if !entry.file_type().map_err(StorageError::io("stat data directory entry"))?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(DELETED_SUFFIX) {
                // A removal a crash interrupted: finish it.
                std::fs::remove_dir_all(entry.path()).map_err(StorageError::io(format!("delete {}", entry.path().display())))?;
                continue;
            }
            let Some(tp) = TopicPartition::from_dir_name(&name) else {
                tracing::warn!(dir = %name, "ignoring a directory that is not <topic>-<partition>");
                continue;
            };
            dirs.push((tp, entry.path()));
        }
        let total = dirs.len();
        let mut progress = Progress::new("opening partition logs", total);
        let mut logs = BTreeMap::new();
        for (i, (tp, dir)) in dirs.into_iter().enumerate() {
            let (log, report) = PartitionLog::open_with(&dir, config_for(&tp.topic), &files)?;
            log_report(&tp, &report);
            logs.insert(tp, Arc::new(log));
            progress.step(i + 1);
        }
        if total > 0 {
            tracing::info!(logs = total, elapsed = ?progress.elapsed(), open_files_max = files.capacity(), "opened partition logs");
        }
        Ok(LogManager { root: root.to_path_buf(), logs: RwLock::new(logs), files })
    }

    /// Segment files open now, and the most that may be.
    pub fn open_files(&self) -> (usize, usize) {
        (self.files.len(), self.files.capacity())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the data directory takes writes again after a failure: writes
    /// one page to a scratch file, fsyncs it and removes it. A full disk
    /// fails the write (or, with delayed allocation, the fsync).
    pub fn probe(&self) -> Result<()> {
        use std::io::Write;
        #[cfg(feature = "failpoints")]
        crate::failpoints::disk_full()?;
        let path = self.root.join(".probe");
        let result = std::fs::File::create(&path)
            .and_then(|mut f| {
                f.write_all(&[0u8; 4096])?;
                f.sync_all()
            })
            .map_err(StorageError::io(format!("probe {}", path.display())));
        let _ = std::fs::remove_file(&path);
        result
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<PartitionLog>> {
        self.logs.read().unwrap_or_else(|p| p.into_inner()).get(tp).cloned()
    }

    /// The log of `tp`, created empty if it does not exist.
    pub fn get_or_create(&self, tp: &TopicPartition, config: LogConfig) -> Result<Arc<PartitionLog>> {
        if let Some(log) = self.get(tp) {
            return Ok(log);
        }
        let mut logs = self.logs.write().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = logs.get(tp) {
            return Ok(log.clone());
        }
        let (log, report) = PartitionLog::open_with(&self.root.join(tp.to_string()), config, &self.files)?;
        log_report(tp, &report);
        let log = Arc::new(log);
        logs.insert(tp.clone(), log.clone());
        Ok(log)
    }

    /// Closes and deletes the log of `tp` and its directory: renamed first,
    /// so a crash part-way leaves a directory the next start deletes rather
    /// than a log with missing segments.
    pub fn remove(&self, tp: &TopicPartition) -> Result<()> {
        let log = self.logs.write().unwrap_or_else(|p| p.into_inner()).remove(tp);
        if let Some(log) = log {
            log.close();
        }
        let dir = self.root.join(tp.to_string());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let doomed = self.root.join(format!("{tp}.{nanos}{DELETED_SUFFIX}"));
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StorageError::Io { context: format!("rename {} for deletion", dir.display()), source: e }),
        }
        std::fs::remove_dir_all(&doomed).map_err(StorageError::io(format!("delete {}", doomed.display())))
    }

    pub fn all(&self) -> Vec<(TopicPartition, Arc<PartitionLog>)> {
        self.logs.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Runs retention over every log; returns the segments deleted.
    pub fn enforce_retention(&self) -> usize {
        let now = now_ms();
        let mut deleted = 0;
        for (tp, log) in self.all() {
            match log.enforce_retention(now) {
                Ok(n) => deleted += n,
                Err(e) => tracing::error!(partition = %tp, error = %e, "retention failed"),
            }
        }
        deleted
    }

    /// Fsyncs every log; used at shutdown and by the interval flush policy.
    pub async fn flush_all(&self) -> Result<()> {
        for (_, log) in self.all() {
            match log.flush().await {
                // Deleted since `all()` listed it.
                Ok(_) | Err(StorageError::Closed(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn log_report(tp: &TopicPartition, report: &OpenReport) {
    if report.truncated_bytes > 0 || report.segments_dropped > 0 || report.indexes_rebuilt > 0 {
        tracing::warn!(partition = %tp, truncated_bytes = report.truncated_bytes, segments_dropped = report.segments_dropped, indexes_rebuilt = report.indexes_rebuilt, "recovered log");
    } else {
        tracing::debug!(partition = %tp, segments = report.segment_count, "opened log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_round_trip() {
        for (topic, p) in [("orders", 0), ("a-b-c", 12), ("x.y_z", 3)] {
            let tp = TopicPartition::new(topic, p);
            assert_eq!(TopicPartition::from_dir_name(&tp.to_string()), Some(tp));
        }
        assert_eq!(TopicPartition::from_dir_name("nopartition"), None);
        assert_eq!(TopicPartition::from_dir_name("-3"), None);
        assert_eq!(TopicPartition::from_dir_name("t-x"), None);
    }
}
