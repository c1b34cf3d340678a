//! The crash-safe switch of a cleaner pass that cleans several consecutive
//! closed segments into one (Kafka's cleaner groups small segments the same
//! way), so a compacted log does not keep a file per segment ever rolled.
//!
//! With the copy of segments `first..=last` written to
//! `<first>.log.cleaned` and fsynced:
//! 1. [`begin`]: `<first>.txnindex.merging` (the transaction index the
//!    merged segment will have) and an empty marker
//!    `<first>.merging-<last>` naming the segments it replaces are written,
//!    `<first>`'s offset and time indexes deleted, the directory synced;
//! 2. the copy is renamed over `<first>.log` (the switch), the directory
//!    synced;
//! 3. [`finish`]: the transaction index is installed, the files of the
//!    segments after `first` up to `last` deleted, the directory synced,
//!    and the marker removed, last.
//!
//! On open, [`recover`] runs before the segments are read: a marker whose
//! copy is still there is a merge that never switched (the marker goes
//! first, then the copy and the index; the old segments stay); a marker
//! without its copy is a merge that switched, and step 3 runs again (it is
//! idempotent). So a log holds the old segments or the merged one, never
//! both: the segment scan would take the merged segment's overlap with the
//! ones it replaced for damage and drop everything after it.

use std::path::Path;

use crate::error::{Result, StorageError};
use crate::files::FileCache;
use crate::log::sync_dir;
use crate::producer_state::AbortedTxn;
use crate::segment::{Segment, delete_index_files, delete_segment_files, file_name};
use crate::snapshot;

fn marker_name(first: i64, last: i64) -> String {
    file_name(first, &format!("merging-{last:020}"))
}

/// `(first, last)` of a marker's file name.
fn parse_marker(name: &str) -> Option<(i64, i64)> {
    let (first, last) = name.split_once(".merging-")?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

fn remove_marker(dir: &Path, first: i64, last: i64) -> Result<()> {
    let path = dir.join(marker_name(first, last));
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::Io { context: format!("remove {}", path.display()), source: e }),
        _ => Ok(()),
    }
}

/// Step 1: records the merge of segments `first..=last` into the copy at
/// `first`, whose transaction index will hold `entries`.
pub(crate) fn begin(dir: &Path, first: i64, last: i64, entries: &[AbortedTxn]) -> Result<()> {
    snapshot::write_merging_txn_index(dir, first, entries)?;
    let marker = dir.join(marker_name(first, last));
    std::fs::File::create(&marker).map_err(StorageError::io(format!("create {}", marker.display())))?;
    delete_index_files(dir, first)?;
    sync_dir(dir)
}

/// Step 3, after the switch: `later` are the bases of the segments after
/// `first` up to `last`, whose files go.
pub(crate) fn finish(dir: &Path, first: i64, last: i64, later: &[i64]) -> Result<()> {
    snapshot::install_merging_txn_index(dir, first)?;
    for &base in later {
        delete_segment_files(dir, base)?;
    }
    sync_dir(dir)?;
    remove_marker(dir, first, last)
}

/// Gives up a merge before its switch (the log changed under the pass):
/// the marker goes first, so no crash leaves a marker without its copy,
/// which would read as a merge that switched.
pub(crate) fn abandon(dir: &Path, first: i64, last: i64, files: &FileCache) -> Result<()> {
    remove_marker(dir, first, last)?;
    sync_dir(dir)?;
    Segment::delete_cleaned(dir, first, files)?;
    snapshot::remove_merging_txn_index(dir, first)
}

/// Completes or undoes every merge a crash interrupted in `dir`, whose
/// file names are `names` (see the module docs); returns how many there
/// were.
pub(crate) fn recover(dir: &Path, names: &[String], files: &FileCache) -> Result<usize> {
    settle(dir, names, &[], files)
}

/// Completes or undoes, in a running log, the merges whose markers are
/// still in `dir` after an error (after a switch, or while a merge was given
/// up): as [`recover`] does on open, except that segments the log holds
/// (`live`, their bases) are never deleted. The caller holds the log's lock,
/// under which a merge switches and finishes, so a marker without its copy
/// is a switched merge, and one with it has not switched. Run before a
/// cleaner pass and before a truncation: a marker left in place would make
/// the next open delete the segments that later fill its range.
pub(crate) fn settle_running(dir: &Path, live: &[i64], files: &FileCache) -> Result<usize> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(StorageError::io(format!("list {}", dir.display())))? {
        names.push(entry.map_err(StorageError::io("list log directory"))?.file_name().to_string_lossy().into_owned());
    }
    if !names.iter().any(|n| parse_marker(n).is_some()) {
        return Ok(0);
    }
    settle(dir, &names, live, files)
}

fn settle(dir: &Path, names: &[String], live: &[i64], files: &FileCache) -> Result<usize> {
    let mut markers = Vec::new();
    let mut bases = Vec::new();
    for name in names {
        if let Some(marker) = parse_marker(name) {
            markers.push(marker);
        } else if let Some(base) = name.strip_suffix(".log").and_then(|stem| stem.parse::<i64>().ok()) {
            bases.push(base);
        }
    }
    for &(first, last) in &markers {
        if dir.join(file_name(first, "log.cleaned")).exists() {
            tracing::info!(dir = %dir.display(), first, last, "undoing a merge of cleaned segments that did not switch");
            abandon(dir, first, last, files)?;
        } else {
            tracing::info!(dir = %dir.display(), first, last, "completing a merge of cleaned segments");
            let later: Vec<i64> = bases.iter().copied().filter(|b| *b > first && *b <= last && !live.contains(b)).collect();
            finish(dir, first, last, &later)?;
        }
    }
    Ok(markers.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_names_its_first_and_last_segment() {
        let name = marker_name(100, 4_000_000_000);
        assert_eq!(name, "00000000000000000100.merging-00000000004000000000");
        assert_eq!(parse_marker(&name), Some((100, 4_000_000_000)));
        assert_eq!(parse_marker("00000000000000000100.log"), None);
        assert_eq!(parse_marker("00000000000000000100.merging-x"), None);
    }
}
