//! `LogManager`: the data directory of one node's partition logs.
//!
//! Layout: `<root>/<topic>-<partition>/` per partition, as Kafka lays out its
//! log directories. Topic names cannot hold `/`, and the partition is the text
//! after the last `-`, so every legal topic name maps to one directory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::checkpoint;
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
    /// The high watermarks the checkpoint file holds (see `checkpoint.rs`);
    /// its lock is held while the file is written.
    checkpointed: std::sync::Mutex<BTreeMap<String, i64>>,
}

#[cfg(test)]
thread_local! {
    /// Makes this thread's removals fail as a rename refused by the disk would.
    static FAIL_RENAME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A reopened log counts what it finds as flushed. After a process was
/// killed, some of that may still be only in the page cache (written, not
/// yet fsynced, not acknowledged), and counting it would let a high
/// watermark pass bytes that a power loss then takes. One `syncfs` of the
/// data directory's filesystem, before any log opens, makes it all durable
/// (one flush for every log, not an fsync per segment).
fn sync_filesystem(root: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    let dir = std::fs::File::open(root).map_err(StorageError::io(format!("open {}", root.display())))?;
    rustix::fs::syncfs(&dir).map_err(|e| StorageError::FsyncFailed { dir: root.display().to_string(), reason: format!("syncfs: {e}") })?;
    tracing::debug!(elapsed = ?started.elapsed(), "synced the data directory's filesystem");
    Ok(())
}

impl LogManager {
    /// Opens (and recovers) every partition log under `root`, holding at
    /// most `open_files_max` segment files open at once. `config_for` gives
    /// each topic's logs a provisional config: retention and the cleaner
    /// leave a log alone until [`PartitionLog::set_config`] gives it its
    /// topic's own settings (at start those are in metadata not known yet).
    /// Logs progress every few seconds when there are many.
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
        if total > 0 {
            sync_filesystem(root)?;
        }
        let checkpointed = checkpoint::read(root).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring the high-watermark checkpoint: each log's high watermark starts at its log start until its ISR shows it");
            BTreeMap::new()
        });
        // The file's modification time is when its contents were taken
        // (see `checkpoint::write`).
        let taken = std::fs::metadata(root.join(checkpoint::FILE)).and_then(|m| m.modified()).ok();
        let mut warned = false;
        let mut progress = Progress::new("opening partition logs", total);
        let mut logs = BTreeMap::new();
        for (i, (tp, dir)) in dirs.into_iter().enumerate() {
            let (log, report) = PartitionLog::open_with(&dir, config_for(&tp.topic), &files)?;
            log.make_config_provisional();
            log_report(&tp, &report);
            // An entry is of this log only if the directory was made before
            // the checkpoint's contents were taken: a topic deleted and made
            // again under its name since holds other records at those offsets.
            if let (Some(hw), Some(taken)) = (checkpointed.get(&tp.to_string()), taken) {
                match std::fs::metadata(&dir).and_then(|m| m.created()) {
                    Ok(made) if made < taken => log.restore_high_watermark(*hw),
                    Ok(_) => {}
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!(error = %e, "the filesystem does not tell when a directory was made: the high-watermark checkpoint is not used, and each log's high watermark starts at its log start until its ISR shows it");
                    }
                    Err(_) => {}
                }
            }
            logs.insert(tp, Arc::new(log));
            progress.step(i + 1);
        }
        if total > 0 {
            tracing::info!(logs = total, elapsed = ?progress.elapsed(), open_files_max = files.capacity(), "opened partition logs");
        }
        Ok(LogManager { root: root.to_path_buf(), logs: RwLock::new(logs), files, checkpointed: std::sync::Mutex::new(checkpointed) })
    }

    /// Writes the high-watermark checkpoint (see `checkpoint.rs`) if a
    /// log's high watermark changed, or a log came or went, since the last
    /// one; returns whether it wrote. `durable` (at shutdown) fsyncs it.
    /// File I/O: call it off the async workers.
    pub fn checkpoint_high_watermarks(&self, durable: bool) -> Result<bool> {
        let mut last = self.checkpointed.lock().unwrap_or_else(|p| p.into_inner());
        let taken = std::time::SystemTime::now();
        let now: BTreeMap<String, i64> = self.all().into_iter().map(|(tp, log)| (tp.to_string(), log.high_watermark())).collect();
        if *last == now {
            return Ok(false);
        }
        checkpoint::write(&self.root, &now, taken, durable)?;
        *last = now;
        Ok(true)
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
        self.get_or_make(tp, config).map(|(log, _)| log)
    }

    /// The same, and whether this call made the log.
    pub fn get_or_make(&self, tp: &TopicPartition, config: LogConfig) -> Result<(Arc<PartitionLog>, bool)> {
        if let Some(log) = self.get(tp) {
            return Ok((log, false));
        }
        let mut logs = self.logs.write().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = logs.get(tp) {
            return Ok((log.clone(), false));
        }
        let (log, report) = PartitionLog::open_with(&self.root.join(tp.to_string()), config, &self.files)?;
        log_report(tp, &report);
        let log = Arc::new(log);
        logs.insert(tp.clone(), log.clone());
        Ok((log, true))
    }

    /// Closes and deletes the log of `tp` and its directory: renamed first,
    /// so a crash part-way leaves a directory the next start deletes rather
    /// than a log with missing segments.
    ///
    /// The log is closed while it is still in the map (closing waits for a
    /// retention pass or start move under way on it, which must not hold up
    /// the map), and taken out of it only with its directory renamed away:
    /// a [`LogManager::get_or_create`] meanwhile gets the log being removed,
    /// closed or about to be, or afterwards a new, empty one; never a new
    /// log over the old directory's segments, deleted under it next. A
    /// rename that fails leaves the closed log in the map (an error for the
    /// caller, who tries again), never its segments to be opened again.
    pub fn remove(&self, tp: &TopicPartition) -> Result<()> {
        self.remove_if(tp, None)
    }

    /// [`LogManager::remove`], if `tp`'s log is `log` (or, with `None`, whatever it is).
    pub fn remove_if(&self, tp: &TopicPartition, log: Option<&Arc<PartitionLog>>) -> Result<()> {
        let doomed_log = self.get(tp);
        if let Some(expected) = log
            && !doomed_log.as_ref().is_some_and(|found| Arc::ptr_eq(found, expected))
        {
            // Removed already, perhaps made again since: not this call's.
            return Ok(());
        }
        if let Some(log) = &doomed_log {
            log.close();
        }
        let dir = self.root.join(tp.to_string());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let doomed = self.root.join(format!("{tp}.{nanos}{DELETED_SUFFIX}"));
        {
            let mut logs = self.logs.write().unwrap_or_else(|p| p.into_inner());
            match (logs.get(tp), &doomed_log) {
                (Some(now), Some(closed)) if Arc::ptr_eq(now, closed) => {}
                // Removed meanwhile by another call (and perhaps created
                // again): its directory is not this call's to rename.
                (_, Some(_)) | (Some(_), None) => return Ok(()),
                (None, None) => {}
            }
            #[cfg(test)]
            if FAIL_RENAME.with(|f| f.get()) {
                return Err(StorageError::Io { context: format!("rename {} for deletion", dir.display()), source: std::io::Error::from_raw_os_error(5) });
            }
            let renamed = match std::fs::rename(&dir, &doomed) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                // The closed log stays in the map until a later removal
                // renames its directory: a log made under the name now
                // would reopen the deleted segments.
                Err(e) => return Err(StorageError::Io { context: format!("rename {} for deletion", dir.display()), source: e }),
            };
            logs.remove(tp);
            if !renamed {
                return Ok(());
            }
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

    /// A log directory that cannot be renamed for deletion (a failing
    /// disk) is not reopened under its name: the closed log stays in
    /// its place until a removal gets it away.
    #[test]
    fn a_log_whose_directory_could_not_be_renamed_away_is_not_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let manager = LogManager::open(dir.path(), |_| LogConfig::default(), 16).unwrap();
        let tp = TopicPartition::new("doomed", 0);
        let old = manager.get_or_create(&tp, LogConfig::default()).unwrap();
        old.append(&crate::batch::build_batch(0, &[b"old".as_slice()]), 0).unwrap();

        FAIL_RENAME.with(|f| f.set(true));
        let failed = manager.remove(&tp);
        FAIL_RENAME.with(|f| f.set(false));
        assert!(failed.is_err(), "the removal reported no failure");
        let asked = manager.get_or_create(&tp, LogConfig::default()).unwrap();
        assert!(asked.is_closed(), "the deleted log's segments were opened again (log end {})", asked.log_end_offset());
        assert!(matches!(asked.read(0, 1 << 20, 1, true), Err(StorageError::Closed(_))));

        manager.remove(&tp).unwrap();
        assert!(!dir.path().join(tp.to_string()).exists());
        let new = manager.get_or_create(&tp, LogConfig::default()).unwrap();
        assert!(!new.is_closed());
        assert_eq!(new.log_end_offset(), 0, "a new log of the name holds the deleted one's records");
    }

    /// A log asked for under the name of one being removed is that log
    /// (closed by the end) or a new, empty one: never a new log over the old
    /// directory's segments, which the removal then renames and deletes
    /// from under it (a replica assigned here again at once, as a
    /// reassignment back to this node does it, would serve them).
    #[test]
    fn a_log_asked_for_while_its_name_is_removed_is_never_the_old_data_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let manager = Arc::new(LogManager::open(dir.path(), |_| LogConfig::default(), 16).unwrap());
        let tp = TopicPartition::new("doomed", 0);
        let old = manager.get_or_create(&tp, LogConfig::default()).unwrap();
        old.append(&crate::batch::build_batch(0, &[b"old".as_slice()]), 0).unwrap();

        // A retention pass under way holds the removal inside `close`.
        let retention = old.hold_start();
        let removing = std::thread::spawn({
            let (manager, tp) = (manager.clone(), tp.clone());
            move || manager.remove(&tp)
        });
        // Until the removal has taken the log out of the map, if it does so
        // before closing it (bounded: a removal that closes first never does).
        let until = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while std::time::Instant::now() < until && manager.logs.try_read().is_ok_and(|logs| logs.contains_key(&tp)) {
            std::thread::yield_now();
        }
        let (created_tx, created) = std::sync::mpsc::channel();
        let asking = std::thread::spawn({
            let (manager, tp) = (manager.clone(), tp.clone());
            move || {
                let log = manager.get_or_create(&tp, LogConfig::default());
                let _ = created_tx.send(());
                log
            }
        });
        // Time for an answer that does not wait for the removal.
        let _ = created.recv_timeout(std::time::Duration::from_millis(500));
        drop(retention);
        removing.join().unwrap().unwrap();
        let got = asking.join().unwrap().unwrap();
        assert!(old.is_closed());
        if Arc::ptr_eq(&got, &old) {
            assert!(got.append(&crate::batch::build_batch(0, &[b"late".as_slice()]), 0).is_err(), "the removed log took a write");
        } else {
            assert_eq!(got.log_end_offset(), 0, "a new log reopened the removed log's records");
            assert!(dir.path().join(tp.to_string()).is_dir(), "the new log's directory was deleted by the removal");
        }
        // Asked for again once removed: new and empty, in a directory of its own.
        let new = manager.get_or_create(&tp, LogConfig::default()).unwrap();
        assert!(!new.is_closed() && new.log_end_offset() == 0);
        new.append(&crate::batch::build_batch(0, &[b"new".as_slice()]), 0).unwrap();
        assert!(dir.path().join(tp.to_string()).is_dir());
    }

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
