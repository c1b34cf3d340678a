//! A bounded cache of open segment files, shared by every log of a node, so
//! a node with many partitions holds a fixed number of file descriptors
//! instead of three per segment: a segment's `.log` file is opened when it
//! is written or read and closed again when less recently used files need
//! the room. (Index files are not kept open at all: they live in memory and
//! are written whole when a segment is sealed.)
//!
//! # Invariants
//! - At most `capacity` files are held by the cache. A caller keeps the
//!   `Arc<File>` it was given for as long as it needs it (an fsync in
//!   progress, a read): eviction only drops the cache's reference.
//! - An fsync through a newly opened descriptor flushes the file's dirty
//!   pages whichever descriptor wrote them (Linux syncs the inode), so
//!   closing a file with unflushed writes loses nothing.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Result, StorageError};

/// The fewest files the cache will hold, whatever it is asked.
pub const OPEN_FILES_MIN: usize = 16;

pub struct FileCache {
    capacity: usize,
    inner: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    /// Path -> (file, its last use).
    files: HashMap<PathBuf, (Arc<File>, u64)>,
    /// Last use -> path, oldest first.
    order: BTreeMap<u64, PathBuf>,
    clock: u64,
}

impl FileCache {
    pub fn new(capacity: usize) -> FileCache {
        FileCache { capacity: capacity.max(OPEN_FILES_MIN), inner: Mutex::new(Lru::default()) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Files open in the cache now.
    pub fn len(&self) -> usize {
        self.lock().files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open file at `path`, opening it (read and write, not created) if
    /// the cache does not hold it.
    pub fn open(&self, path: &Path) -> Result<Arc<File>> {
        if let Some(file) = self.touch(path) {
            return Ok(file);
        }
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(StorageError::io(format!("open {}", path.display())))?;
        Ok(self.insert(path, file))
    }

    /// Creates (or empties) the file at `path` and caches it.
    pub fn create(&self, path: &Path) -> Result<Arc<File>> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).map_err(StorageError::io(format!("create {}", path.display())))?;
        Ok(self.insert(path, file))
    }

    /// Drops the cache's handle on `path` (the file is being deleted or
    /// renamed).
    pub fn forget(&self, path: &Path) {
        let mut lru = self.lock();
        if let Some((_, used)) = lru.files.remove(path) {
            lru.order.remove(&used);
        }
    }

    /// Drops every handle under `dir`.
    pub fn forget_dir(&self, dir: &Path) {
        let mut lru = self.lock();
        let gone: Vec<PathBuf> = lru.files.keys().filter(|p| p.starts_with(dir)).cloned().collect();
        for path in gone {
            if let Some((_, used)) = lru.files.remove(&path) {
                lru.order.remove(&used);
            }
        }
    }

    fn touch(&self, path: &Path) -> Option<Arc<File>> {
        let mut lru = self.lock();
        let tick = lru.clock + 1;
        let (file, used) = lru.files.get_mut(path)?;
        let (file, old) = (file.clone(), std::mem::replace(used, tick));
        lru.clock = tick;
        lru.order.remove(&old);
        lru.order.insert(tick, path.to_path_buf());
        Some(file)
    }

    fn insert(&self, path: &Path, file: File) -> Arc<File> {
        let file = Arc::new(file);
        let mut lru = self.lock();
        lru.clock += 1;
        let tick = lru.clock;
        if let Some((_, old)) = lru.files.insert(path.to_path_buf(), (file.clone(), tick)) {
            lru.order.remove(&old);
        }
        lru.order.insert(tick, path.to_path_buf());
        while lru.files.len() > self.capacity {
            let Some((_, oldest)) = lru.order.pop_first() else { break };
            lru.files.remove(&oldest);
        }
        file
    }
}

/// The soft limit on open files after raising it to the hard limit, or
/// None where it cannot be read.
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_holds_at_most_its_capacity_and_keeps_the_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(OPEN_FILES_MIN);
        let paths: Vec<PathBuf> = (0..40).map(|i| dir.path().join(format!("f{i}"))).collect();
        for p in &paths {
            cache.create(p).unwrap();
            // The first file is used all along: it stays.
            cache.open(&paths[0]).unwrap();
        }
        assert_eq!(cache.len(), OPEN_FILES_MIN);
        assert!(cache.lock().files.contains_key(&paths[0]));
        assert!(!cache.lock().files.contains_key(&paths[1]), "the least recently used went");
        // An evicted file opens again, and a handle outlives its eviction.
        let held = cache.open(&paths[1]).unwrap();
        for p in &paths[2..30] {
            cache.open(p).unwrap();
        }
        use std::io::Write;
        (&*held).write_all(b"still open").unwrap();
        assert_eq!(std::fs::read(&paths[1]).unwrap(), b"still open");
        cache.forget_dir(dir.path());
        assert!(cache.is_empty());
    }
}
