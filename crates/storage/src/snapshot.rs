//! The two files that let a log open without reading every batch header
//! (Kafka's `.snapshot` and `.txnindex`):
//!
//! - `<offset>.snapshot`: the producer state (sequences, epochs, open
//!   transactions) and the leader-epoch cache as they were below `offset`,
//!   the base of a segment. Written when a segment is rolled, by the next
//!   flush, after the data below `offset` is fsynced, to a temporary file
//!   that is fsynced and renamed: a snapshot on disk is whole, and the data
//!   it describes is on disk too. The newest [`SNAPSHOTS_KEPT`] are kept.
//! - `<base>.txnindex`: the aborted transactions whose ABORT marker is in
//!   the segment at `base`, written whole (temporary file, fsync, rename)
//!   when the segment is sealed; a segment without one has none.
//!
//! On open, the log takes the newest snapshot at a segment base, reads the
//! transaction indexes of the segments below it and the batch headers of
//! the segments from it on only. A snapshot or index that does not read
//! (torn, corrupt, or of a newer format) is passed over with a warning and
//! the log reads more batch headers instead: both files are caches of what
//! the log holds, never the only copy.
//!
//! Both formats are big-endian, start with a magic and a format version,
//! and carry a CRC-32C of what follows; golden fixtures in
//! `tests/compat/storage-v2` hold their first version.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Result, StorageError};
use crate::producer_state::{AbortedTxn, ProducerState, Reader, Writer};
use crate::segment::file_name;

pub const SNAPSHOT_EXTENSION: &str = "snapshot";
pub const TXN_INDEX_EXTENSION: &str = "txnindex";
const SNAPSHOT_MAGIC: [u8; 4] = *b"RNPS";
const TXN_INDEX_MAGIC: [u8; 4] = *b"RNTX";
/// The snapshot format this version writes and reads.
pub const SNAPSHOT_VERSION: u16 = 1;
/// The transaction index format this version writes and reads.
pub const TXN_INDEX_VERSION: u16 = 1;
/// Magic, version, CRC.
const HEADER_BYTES: usize = 4 + 2 + 4;
const TXN_ENTRY_BYTES: usize = 24;
/// Snapshots kept in a log's directory; older ones go when one is written.
pub const SNAPSHOTS_KEPT: usize = 2;

/// The state of a log below `offset`.
#[derive(Debug)]
pub struct Snapshot {
    pub offset: i64,
    pub producers: ProducerState,
    /// `(leader epoch, first offset written in it)`, epochs ascending.
    pub epochs: Vec<(i32, i64)>,
}

fn frame(magic: [u8; 4], version: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Checks magic, version and CRC; returns the body.
fn unframe<'a>(bytes: &'a [u8], magic: [u8; 4], version: u16, what: &str) -> std::result::Result<&'a [u8], String> {
    if bytes.len() < HEADER_BYTES || bytes[..4] != magic {
        return Err(format!("not a {what} file"));
    }
    let found = u16::from_be_bytes([bytes[4], bytes[5]]);
    if found != version {
        return Err(format!("{what} format {found}; this Runnel reads format {version}"));
    }
    let crc = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    let body = &bytes[HEADER_BYTES..];
    if crc32c::crc32c(body) != crc {
        return Err(format!("{what} checksum does not match (a torn or damaged file)"));
    }
    Ok(body)
}

/// A snapshot's bytes, format [`SNAPSHOT_VERSION`].
pub fn encode_snapshot(offset: i64, producers: &ProducerState, epochs: &[(i32, i64)]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut w = Writer(&mut body);
    w.i64(offset);
    producers.encode_snapshot(&mut w);
    w.u32(epochs.len() as u32);
    for (epoch, start) in epochs {
        w.i32(*epoch);
        w.i64(*start);
    }
    frame(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, &body)
}

/// Reads a snapshot; every byte must be accounted for.
pub fn decode_snapshot(bytes: &[u8]) -> std::result::Result<Snapshot, String> {
    let mut r = Reader(unframe(bytes, SNAPSHOT_MAGIC, SNAPSHOT_VERSION, "producer-state snapshot")?);
    let offset = r.i64()?;
    let producers = ProducerState::decode_snapshot(&mut r)?;
    let mut epochs = Vec::new();
    for _ in 0..r.count(12)? {
        epochs.push((r.i32()?, r.i64()?));
    }
    if !r.is_empty() {
        return Err("bytes left after the snapshot".into());
    }
    Ok(Snapshot { offset, producers, epochs })
}

/// Reads `<offset>.snapshot` in `dir`; it must say it is at `offset`.
pub fn read_snapshot(dir: &Path, offset: i64) -> std::result::Result<Snapshot, String> {
    let path = dir.join(file_name(offset, SNAPSHOT_EXTENSION));
    let bytes = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let snap = decode_snapshot(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if snap.offset != offset {
        return Err(format!("{} says it is at offset {}", path.display(), snap.offset));
    }
    Ok(snap)
}

/// The offsets of the snapshots in `dir`, ascending.
pub fn snapshot_offsets(dir: &Path) -> Result<Vec<i64>> {
    let suffix = format!(".{SNAPSHOT_EXTENSION}");
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(StorageError::io(format!("list {}", dir.display())))? {
        let entry = entry.map_err(StorageError::io("list log directory"))?;
        let name = entry.file_name();
        if let Some(offset) = name.to_str().and_then(|n| n.strip_suffix(&suffix)).and_then(|s| s.parse::<i64>().ok()) {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Writes `bytes` as `dir/name` whole: a temporary file, fsynced, renamed.
/// The caller syncs the directory when the rename must last.
fn write_whole(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

/// Writes a snapshot (bytes from [`encode_snapshot`]) at `offset` and
/// deletes all but the newest [`SNAPSHOTS_KEPT`].
pub(crate) fn write_snapshot(dir: &Path, offset: i64, bytes: &[u8]) -> std::io::Result<()> {
    write_whole(dir, &file_name(offset, SNAPSHOT_EXTENSION), bytes)?;
    let offsets = snapshot_offsets(dir).map_err(std::io::Error::other)?;
    for old in offsets.iter().rev().skip(SNAPSHOTS_KEPT) {
        remove_if_present(&dir.join(file_name(*old, SNAPSHOT_EXTENSION)))?;
    }
    Ok(())
}

/// Deletes the snapshots above `offset` (all of them with `None`): the
/// log below them changed.
pub(crate) fn delete_snapshots_above(dir: &Path, offset: Option<i64>) -> Result<()> {
    for o in snapshot_offsets(dir)? {
        if offset.is_none_or(|limit| o > limit) {
            let path = dir.join(file_name(o, SNAPSHOT_EXTENSION));
            remove_if_present(&path).map_err(StorageError::io(format!("delete {}", path.display())))?;
        }
    }
    Ok(())
}

/// A transaction index's bytes, format [`TXN_INDEX_VERSION`].
pub fn encode_txn_index(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + entries.len() * TXN_ENTRY_BYTES);
    let mut w = Writer(&mut body);
    w.u32(entries.len() as u32);
    for a in entries {
        w.i64(a.producer_id);
        w.i64(a.first_offset);
        w.i64(a.last_offset);
    }
    frame(TXN_INDEX_MAGIC, TXN_INDEX_VERSION, &body)
}

/// Reads a transaction index; every byte must be accounted for.
pub fn decode_txn_index(bytes: &[u8]) -> std::result::Result<Vec<AbortedTxn>, String> {
    let mut r = Reader(unframe(bytes, TXN_INDEX_MAGIC, TXN_INDEX_VERSION, "transaction index")?);
    let mut entries = Vec::new();
    for _ in 0..r.count(TXN_ENTRY_BYTES)? {
        entries.push(AbortedTxn { producer_id: r.i64()?, first_offset: r.i64()?, last_offset: r.i64()? });
    }
    if !r.is_empty() {
        return Err("bytes left after the transaction index".into());
    }
    Ok(entries)
}

/// The aborted transactions of the segment at `base` (none without a file).
pub fn read_txn_index(dir: &Path, base: i64) -> std::result::Result<Vec<AbortedTxn>, String> {
    let path = dir.join(file_name(base, TXN_INDEX_EXTENSION));
    match std::fs::read(&path) {
        Ok(bytes) => decode_txn_index(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("read {}: {e}", path.display())),
    }
}

/// Writes the transaction index of the segment at `base` whole; with no
/// entries, removes it.
pub(crate) fn write_txn_index(dir: &Path, base: i64, entries: &[AbortedTxn]) -> Result<()> {
    let name = file_name(base, TXN_INDEX_EXTENSION);
    let done = if entries.is_empty() { remove_if_present(&dir.join(&name)) } else { write_whole(dir, &name, &encode_txn_index(entries)) };
    done.map_err(StorageError::io(format!("write {}", dir.join(&name).display())))
}

/// What names the transaction index a merge of segments from `base` will
/// install (see [`crate::merge`]).
pub(crate) const TXN_INDEX_MERGING_EXTENSION: &str = "txnindex.merging";

/// Writes, whole, the transaction index a merge of segments from `base`
/// will install, even an empty one: its presence says the merge has not
/// installed it yet.
pub(crate) fn write_merging_txn_index(dir: &Path, base: i64, entries: &[AbortedTxn]) -> Result<()> {
    let name = file_name(base, TXN_INDEX_MERGING_EXTENSION);
    write_whole(dir, &name, &encode_txn_index(entries)).map_err(StorageError::io(format!("write {}", dir.join(&name).display())))
}

/// Installs the transaction index a merge of segments from `base` wrote,
/// if it is still there: as `<base>.txnindex` (removed when empty).
pub(crate) fn install_merging_txn_index(dir: &Path, base: i64) -> Result<()> {
    let path = dir.join(file_name(base, TXN_INDEX_MERGING_EXTENSION));
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::Io { context: format!("read {}", path.display()), source: e }),
    };
    // Written whole (temporary file, fsync, rename), so a failure to read
    // it is damage: without the producer-state snapshots, the log reads
    // every batch header on open and rewrites every transaction index.
    match decode_txn_index(&bytes) {
        Ok(entries) => write_txn_index(dir, base, &entries)?,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "a merge's transaction index does not read; rebuilding the log's from its batches");
            for offset in snapshot_offsets(dir)? {
                remove_if_present(&dir.join(file_name(offset, SNAPSHOT_EXTENSION))).map_err(StorageError::io("remove producer-state snapshot"))?;
            }
        }
    }
    remove_merging_txn_index(dir, base)
}

/// Removes the transaction index a merge of segments from `base` wrote.
pub(crate) fn remove_merging_txn_index(dir: &Path, base: i64) -> Result<()> {
    let path = dir.join(file_name(base, TXN_INDEX_MERGING_EXTENSION));
    remove_if_present(&path).map_err(StorageError::io(format!("remove {}", path.display())))
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_index_reads_back_and_refuses_damage() {
        let entries = vec![AbortedTxn { producer_id: 3, first_offset: 10, last_offset: 14 }, AbortedTxn { producer_id: 4, first_offset: 2, last_offset: 20 }];
        let bytes = encode_txn_index(&entries);
        assert_eq!(decode_txn_index(&bytes).unwrap(), entries);
        for cut in 0..bytes.len() {
            assert!(decode_txn_index(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[HEADER_BYTES + 9] ^= 1;
        assert!(decode_txn_index(&flipped).unwrap_err().contains("checksum"));
        let mut newer = bytes;
        newer[5] = 2;
        assert!(decode_txn_index(&newer).unwrap_err().contains("format 2"));
    }

    #[test]
    fn only_the_newest_snapshots_are_kept_and_truncation_drops_those_above() {
        let dir = tempfile::tempdir().unwrap();
        for offset in [10, 20, 30, 40] {
            write_snapshot(dir.path(), offset, &encode_snapshot(offset, &ProducerState::default(), &[(0, 0)])).unwrap();
        }
        assert_eq!(snapshot_offsets(dir.path()).unwrap(), vec![30, 40]);
        assert_eq!(read_snapshot(dir.path(), 40).unwrap().epochs, vec![(0, 0)]);
        delete_snapshots_above(dir.path(), Some(35)).unwrap();
        assert_eq!(snapshot_offsets(dir.path()).unwrap(), vec![30]);
        std::fs::copy(dir.path().join(file_name(30, SNAPSHOT_EXTENSION)), dir.path().join(file_name(50, SNAPSHOT_EXTENSION))).unwrap();
        assert!(read_snapshot(dir.path(), 50).unwrap_err().contains("at offset 30"));
        delete_snapshots_above(dir.path(), None).unwrap();
        assert!(snapshot_offsets(dir.path()).unwrap().is_empty());
    }
}
