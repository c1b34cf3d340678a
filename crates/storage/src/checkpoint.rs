//! The high-watermark checkpoint: one file per data directory,
//! `high-watermarks`, holding each partition log's high watermark as it
//! last was (Kafka's `replication-offset-checkpoint`).
//!
//! A reopened log must not take its log end as its high watermark: the
//! tail may hold records that no ISR had, and a replica restarted and then
//! elected would expose them (and a later failover could hand their offsets
//! to other records). Without the file a log starts at its log start and
//! waits for its leader or its ISR to show the high watermark again, which
//! after a full restart leaves consumers waiting until every replica has
//! fetched once. With it a log starts at what its high watermark was at the
//! last checkpoint (written every few seconds and at a clean shutdown),
//! capped at its log end: every offset below it was once on every member of
//! an ISR, so exposing it again is safe. (A leader answers `ListOffsets`
//! only once its high watermark has reached the log end it reopened with:
//! at once after a clean shutdown, whose checkpoint holds it.) The file's
//! modification time is when its contents were read, so an entry is taken
//! only for a log directory made before then; where the filesystem does not
//! tell when a directory was made, the file is not used.
//!
//! Format 1, text: the line `runnel-high-watermarks 1`, then one line per
//! log, `<topic>-<partition> <high watermark>`. Written to a temporary file
//! and renamed over the old one (fsynced, with the directory, at a clean
//! shutdown; see [`write`]). Frozen in `tests/compat/storage-v3/`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Result, StorageError};
use crate::log::sync_dir;

pub const FILE: &str = "high-watermarks";
const HEADER: &str = "runnel-high-watermarks 1";

/// The checkpointed high watermarks by log directory name; empty when
/// there is no file.
pub fn read(root: &Path) -> Result<BTreeMap<String, i64>> {
    let path = root.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(StorageError::Io { context: format!("read {}", path.display()), source: e }),
    };
    let bad = |why: String| StorageError::Corrupt(format!("{}: {why}", path.display()));
    let mut lines = text.lines();
    match lines.next() {
        Some(HEADER) => {}
        Some(other) if other.starts_with("runnel-high-watermarks ") => {
            return Err(bad(format!("format {other:?} was written by a newer Runnel; this one reads format 1")));
        }
        _ => return Err(bad("not a high-watermarks file".into())),
    }
    let mut out = BTreeMap::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed = line.rsplit_once(' ').and_then(|(name, hw)| Some((name, hw.parse::<i64>().ok().filter(|hw| *hw >= 0)?)));
        let Some((name, hw)) = parsed else {
            return Err(bad(format!("line {} is not `<topic>-<partition> <offset>`: {line:?}", i + 2)));
        };
        out.insert(name.to_string(), hw);
    }
    Ok(out)
}

/// Replaces the file with `entries` (directory name to high watermark),
/// its modification time set to `taken`, when they were read: a log
/// directory made at or after that time is not the one an entry names.
///
/// Only a `durable` write (at shutdown) fsyncs the file and the directory.
/// The periodic ones do not: each such fsync forces a journal commit that
/// the logs' own fsyncs, which acks=all acknowledgements wait for, queue
/// behind (docs/benchmarks.md measures the unsynced checkpoint beside
/// none), and a checkpoint lost to a power failure only
/// leaves the older one (ext4 flushes a renamed-over file's data with the
/// rename) or, on a filesystem that shows an empty or torn file, one that
/// does not parse and is ignored: never a high watermark above what was
/// reached.
pub fn write(root: &Path, entries: &BTreeMap<String, i64>, taken: std::time::SystemTime, durable: bool) -> Result<()> {
    let mut text = String::with_capacity(32 + entries.len() * 32);
    text.push_str(HEADER);
    text.push('\n');
    for (name, hw) in entries {
        text.push_str(&format!("{name} {hw}\n"));
    }
    let tmp = root.join(format!("{FILE}.tmp"));
    let io = |what: &'static str| StorageError::io(format!("{what} {}", tmp.display()));
    let mut file = std::fs::File::create(&tmp).map_err(io("create"))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io("write"))?;
    file.set_modified(taken).map_err(io("set the modification time of"))?;
    if durable {
        file.sync_all().map_err(io("sync"))?;
    }
    std::fs::rename(&tmp, root.join(FILE)).map_err(io("rename"))?;
    if durable { sync_dir(root) } else { Ok(()) }
}
