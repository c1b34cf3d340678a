//! Behaviour of `PartitionLog` that the broker and users rely on.

use std::time::Duration;

use proptest::prelude::*;
use runnel_storage::batch::{BatchHeader, Marker, TRANSACTIONAL, build_batch, marker_batch, set_attributes, set_producer, validate};
use runnel_storage::producer_state::{AbortedTxn, ProducerError};
use runnel_storage::{FlushPolicy, LogConfig, LogManager, PartitionLog, StorageError, TopicPartition};

fn small_config() -> LogConfig {
    LogConfig { segment_bytes: 4096, index_interval_bytes: 256, ..LogConfig::default() }
}

fn batch_of(n: usize, timestamp: i64, fill: u8) -> Vec<u8> {
    let value = vec![fill; 100];
    let values: Vec<&[u8]> = (0..n).map(|_| value.as_slice()).collect();
    build_batch(timestamp, &values)
}

/// Every batch from `from` to the end, read the way a consumer would.
fn read_all(log: &PartitionLog, from: i64) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    let end = log.log_end_offset();
    while next < end {
        let bytes = log.read(next, 1000, end, true).expect("read");
        assert!(!bytes.is_empty(), "read at {next} below end {end} returned nothing");
        let mut pos = 0;
        while pos < bytes.len() {
            let h = BatchHeader::parse(&bytes[pos..]).expect("header");
            let whole = &bytes[pos..pos + h.total_bytes()];
            validate(whole).expect("stored batch validates");
            next = h.last_offset() + 1;
            out.push((h, whole.to_vec()));
            pos += h.total_bytes();
        }
    }
    out
}

#[test]
fn offsets_are_assigned_contiguously_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    let a = log.append(&batch_of(3, 10, 1), 5).unwrap();
    let b = log.append(&batch_of(1, 20, 2), 5).unwrap();
    assert_eq!((a.base_offset, a.last_offset), (0, 2));
    assert_eq!((b.base_offset, b.last_offset), (3, 3));
    assert_eq!(log.log_end_offset(), 4);
    let batches = read_all(&log, 0);
    assert_eq!(batches.len(), 2);
    assert_eq!((batches[1].0.base_offset, batches[1].0.leader_epoch), (3, 5));
    // A read from inside a batch starts at that batch.
    let mid = log.read(1, 10_000, 4, true).unwrap();
    assert_eq!(BatchHeader::parse(&mid).unwrap().base_offset, 0);
    // The upper bound is respected.
    let bounded = log.read(0, 10_000, 3, true).unwrap();
    assert_eq!(bounded.len(), batches[0].1.len());
    assert!(log.read(3, 10_000, 3, true).unwrap().is_empty());
    // max_bytes smaller than one batch: one batch with min_one, none without.
    assert_eq!(log.read(0, 10, 4, true).unwrap().len(), batches[0].1.len());
    assert!(log.read(0, 10, 4, false).unwrap().is_empty());
    // Out of range.
    assert!(matches!(log.read(5, 100, 5, true), Err(StorageError::OffsetOutOfRange { offset: 5, .. })));
    assert!(log.read(4, 100, 4, true).unwrap().is_empty());
}

#[test]
fn a_record_set_of_many_batches_is_stored_as_sent_with_each_batch_stamped() {
    // 700 batches make 1,400 pieces for the log's vectored write, more
    // than one pwritev takes; the segment is big enough to hold them all.
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_bytes: 16 << 20, ..LogConfig::default() };
    let (log, _) = PartitionLog::open(dir.path(), config).unwrap();
    log.append(&batch_of(2, 5, 0), 3).unwrap();
    let sent: Vec<Vec<u8>> = (0..700).map(|i| batch_of(1 + i % 3, 1_000 + i as i64, i as u8)).collect();
    let info = log.append(&sent.concat(), 7).unwrap();
    assert_eq!(info.batch_count, 700);
    assert_eq!(info.base_offset, 2);
    let stored = read_all(&log, 2);
    assert_eq!(stored.len(), 700);
    let mut next = 2;
    for (i, ((header, bytes), original)) in stored.iter().zip(&sent).enumerate() {
        assert_eq!((header.base_offset, header.leader_epoch), (next, 7), "batch {i}");
        // Everything but the base offset and the leader epoch is as sent.
        assert_eq!(bytes.len(), original.len(), "batch {i}");
        assert_eq!(bytes[8..12], original[8..12], "batch {i}");
        assert_eq!(bytes[16..], original[16..], "batch {i}");
        next = header.last_offset() + 1;
    }
    assert_eq!(log.log_end_offset(), next);
    // And after a reopen, which rebuilds from the file.
    drop(log);
    let (log, _) = PartitionLog::open(dir.path(), LogConfig { segment_bytes: 16 << 20, ..LogConfig::default() }).unwrap();
    assert_eq!(read_all(&log, 0).len(), 701);
    assert_eq!(log.log_end_offset(), next);
}

#[test]
fn a_corrupt_batch_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    let good = batch_of(2, 1, 1);
    let mut bad = batch_of(2, 1, 1);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut set = good.clone();
    set.extend_from_slice(&bad);
    assert!(matches!(log.append(&set, 0), Err(StorageError::InvalidBatch(_))));
    assert_eq!(log.log_end_offset(), 0);
    log.append(&good, 0).unwrap();
    assert_eq!(log.log_end_offset(), 2);
}

/// Kafka's checks of a producer's batch beyond its CRC: as many records as
/// its offsets span, at least one, and records that parse as that many.
/// A batch that claims two billion records would otherwise move the log
/// end by two billion offsets, and make every reader that decodes it try
/// to reserve room for them.
#[test]
fn batches_whose_counts_lie_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    let good = batch_of(2, 1, 1);
    let attributes = BatchHeader::parse(&good).unwrap().attributes;
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        edit(&mut b);
        let length = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        set_attributes(&mut b, attributes); // CRC made to fit
        b
    };
    let count = |n: i32| move |b: &mut Vec<u8>| b[57..61].copy_from_slice(&n.to_be_bytes());
    let delta = |n: i32| move |b: &mut Vec<u8>| b[23..27].copy_from_slice(&n.to_be_bytes());
    for (what, bad, invalid_record) in [
        ("two billion records counted, two spanned", with(&count(i32::MAX)), true),
        ("no records counted", with(&|b| (count(0)(b), delta(-1)(b)).1), false),
        ("one counted, two spanned", with(&count(1)), true),
        ("two billion counted and spanned, two held", with(&|b| (count(i32::MAX)(b), delta(i32::MAX - 1)(b)).1), false),
        ("three counted and spanned, two held", with(&|b| (count(3)(b), delta(2)(b)).1), false),
        ("a trailing byte after the records", with(&|b| b.push(0)), false),
    ] {
        let result = log.append(&bad, 0);
        match result {
            Err(StorageError::InvalidRecord(_)) if invalid_record => {}
            Err(StorageError::InvalidBatch(_)) if !invalid_record => {}
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(log.log_end_offset(), 0, "{what}");
    }
    log.append(&good, 0).unwrap();
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn segments_roll_by_size_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
        for i in 0..100 {
            log.append(&batch_of(2, i, i as u8), 0).unwrap();
        }
        assert!(log.segment_count() > 5, "{} segments", log.segment_count());
        assert_eq!(read_all(&log, 0).len(), 100);
    }
    let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.contains(&"00000000000000000000.log".to_string()));
    assert!(names.iter().any(|n| n.ends_with(".index")) && names.iter().any(|n| n.ends_with(".timeindex")));
    let (log, report) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!((report.truncated_bytes, report.indexes_rebuilt), (0, 0));
    assert_eq!(log.log_end_offset(), 200);
    let batches = read_all(&log, 0);
    assert_eq!(batches.len(), 100);
    for (i, (h, _)) in batches.iter().enumerate() {
        assert_eq!(h.base_offset, 2 * i as i64);
    }
    // Reads from every offset find the batch holding it.
    for offset in 0..200 {
        let bytes = log.read(offset, 100, 200, true).unwrap();
        let h = BatchHeader::parse(&bytes).unwrap();
        assert!(h.base_offset <= offset && offset <= h.last_offset());
    }
}

#[test]
fn damaged_and_missing_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
        for i in 0..60 {
            log.append(&batch_of(1, i, 0), 0).unwrap();
        }
    }
    std::fs::remove_file(dir.path().join("00000000000000000000.index")).unwrap();
    let second = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "index")).min().unwrap();
    std::fs::write(&second, [0xffu8; 13]).unwrap();
    let (log, report) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert!(report.indexes_rebuilt >= 2, "{report:?}");
    assert_eq!(read_all(&log, 0).len(), 60);
    for offset in [0, 17, 33, 59] {
        let h = BatchHeader::parse(&log.read(offset, 100, 60, true).unwrap()).unwrap();
        assert_eq!(h.base_offset, offset);
    }
}

#[test]
fn lookup_by_timestamp_finds_the_first_batch_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    for i in 0..50 {
        log.append(&batch_of(1, 1000 + i * 10, 0), 0).unwrap();
    }
    let end = log.log_end_offset();
    let find = |ts| log.batch_for_timestamp(ts, 0, end).unwrap().map(|b| BatchHeader::parse(&b).unwrap().base_offset);
    assert_eq!(find(0), Some(0));
    assert_eq!(find(1000), Some(0));
    assert_eq!(find(1001), Some(1));
    assert_eq!(find(1250), Some(25));
    assert_eq!(find(1490), Some(49));
    assert_eq!(find(1491), None);
    assert_eq!(log.batch_for_timestamp(1250, 0, 20).unwrap(), None, "upper bound respected");
    // Batches ending before the offset asked from are passed over, across
    // segments too.
    let from = |ts, offset| log.batch_for_timestamp(ts, offset, end).unwrap().map(|b| BatchHeader::parse(&b).unwrap().base_offset);
    assert_eq!(from(1000, 30), Some(30));
    assert_eq!(from(1250, 49), Some(49));
    assert_eq!(from(1000, 50), None);
    assert!(log.segment_count() > 1, "the lookups cross segments");
}

#[test]
fn retention_deletes_whole_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_ms: 1000, ..small_config() };
    let (log, _) = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let now = 1_000_000;
    for i in 0..40 {
        // The first half is old, the second half recent.
        let ts = if i < 20 { now - 10_000 } else { now };
        log.append(&batch_of(5, ts, 0), 0).unwrap();
    }
    log.advance_high_watermark(log.log_end_offset());
    let before = log.segment_count();
    let deleted = log.enforce_retention(now).unwrap();
    assert!(deleted > 0 && log.segment_count() == before - deleted, "deleted {deleted} of {before}, {} left", log.segment_count());
    let start = log.log_start_offset();
    assert!(start > 0 && start <= 100, "start {start}: only the old half may go");
    assert!(matches!(log.read(0, 100, 200, true), Err(StorageError::OffsetOutOfRange { .. })));
    assert_eq!(read_all(&log, start).last().unwrap().0.base_offset, 195);

    // By size: keep at most ~3 segments' worth.
    log.set_config(LogConfig { retention_ms: -1, retention_bytes: 3 * 4096, ..small_config() });
    for _ in 0..100 {
        log.append(&batch_of(1, now, 0), 0).unwrap();
    }
    log.advance_high_watermark(log.log_end_offset());
    log.enforce_retention(now).unwrap();
    assert!(log.size_bytes() <= 4 * 4096, "{} bytes left", log.size_bytes());
    assert_eq!(log.log_end_offset(), 300);
    // Everything expired, the active segment included: it is rolled and
    // deleted too (as Kafka does); an empty segment keeps the log end.
    log.set_config(LogConfig { retention_ms: 0, ..small_config() });
    log.enforce_retention(now + 1_000_000).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), 300);
    assert_eq!(log.log_start_offset(), 300);
}

/// Issue 13: with `retention.ms=5000` and `segment.ms=1000` the active
/// segment (offsets 100-149 there) stayed readable for minutes and across a
/// restart. An expired active segment is rolled and deleted; one with
/// recent records, or with records above the high watermark, is kept.
#[test]
fn an_expired_active_segment_is_rolled_and_deleted_and_stays_deleted_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_ms: 5000, ..small_config() };
    let (log, _) = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let now = 1_000_000;
    for _ in 0..3 {
        log.append(&batch_of(2, now, 0), 0).unwrap();
    }
    assert_eq!(log.segment_count(), 1, "one active segment");
    assert_eq!(log.enforce_retention(now + 5000).unwrap(), 0, "not expired yet");
    assert_eq!(log.enforce_retention(now + 6000).unwrap(), 0, "expired, but above the high watermark");
    log.advance_high_watermark(log.log_end_offset());
    assert_eq!(log.enforce_retention(now + 6000).unwrap(), 1);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (6, 6));
    assert!(matches!(log.read(0, 100, 6, true), Err(StorageError::OffsetOutOfRange { .. })));
    drop(log);
    let (log, _) = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (6, 6), "the deleted records do not come back, offsets are not reused");
    log.append(&batch_of(1, now, 0), 0).unwrap();
    assert_eq!(log.log_end_offset(), 7);
}

#[test]
fn retention_keeps_data_above_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), LogConfig { retention_ms: 0, ..small_config() }).unwrap();
    for _ in 0..40 {
        log.append(&batch_of(1, 0, 0), 0).unwrap();
    }
    assert_eq!(log.enforce_retention(1_000_000).unwrap(), 0);
    log.advance_high_watermark(40);
    assert!(log.enforce_retention(1_000_000).unwrap() > 0);
}

#[test]
fn truncation_cuts_at_batch_boundaries_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    for i in 0..60 {
        log.append(&batch_of(2, i, 0), 0).unwrap();
    }
    log.advance_high_watermark(120);
    assert_eq!(log.high_watermark(), 120);
    assert_eq!(log.truncate_to(51).unwrap(), 50, "offset 51 is inside the batch at 50");
    assert_eq!(log.high_watermark(), 50);
    assert_eq!(read_all(&log, 0).last().unwrap().0.last_offset(), 49);
    let info = log.append(&batch_of(1, 0, 9), 3).unwrap();
    assert_eq!(info.base_offset, 50);
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(log.log_end_offset(), 51);
    assert_eq!(log.truncate_to(0).unwrap(), 0);
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.segment_count(), 1);
}

#[tokio::test]
async fn group_commit_covers_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    let log = std::sync::Arc::new(log);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let info = log.append(&batch_of(1, t, 0), 0).unwrap();
                let flushed = log.flush_to(info.last_offset + 1).await.unwrap();
                assert!(flushed > info.last_offset);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(log.flushed_offset(), 160);
}

#[tokio::test]
async fn manager_reopens_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    {
        let manager = LogManager::open(dir.path(), |_| small_config(), 64).unwrap();
        for p in 0..3 {
            let log = manager.get_or_create(&TopicPartition::new("t-1", p), small_config()).unwrap();
            for _ in 0..=p {
                log.append(&batch_of(1, 0, 0), 0).unwrap();
            }
        }
        manager.flush_all().await.unwrap();
        manager.remove(&TopicPartition::new("t-1", 2)).unwrap();
    }
    let manager = LogManager::open(dir.path(), |_| small_config(), 64).unwrap();
    assert_eq!(manager.all().len(), 2);
    assert_eq!(manager.get(&TopicPartition::new("t-1", 1)).unwrap().log_end_offset(), 2);
    let _ = FlushPolicy::Interval(Duration::from_millis(5));
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Issue 13: 100,000 partitions on one node ran into the 20,000
/// file-descriptor limit (three descriptors per segment, held forever).
/// Segment files are now opened on use through a bounded cache.
#[tokio::test]
async fn many_logs_hold_no_more_files_open_than_the_cache_allows() {
    let dir = tempfile::tempdir().unwrap();
    let before = open_fds();
    let manager = LogManager::open(dir.path(), |_| small_config(), 16).unwrap();
    for p in 0..300 {
        let log = manager.get_or_create(&TopicPartition::new("wide", p), small_config()).unwrap();
        // Enough to roll a segment or two (4 KiB segments), then read back.
        for _ in 0..60 {
            log.append(&batch_of(1, 0, 7), 0).unwrap();
        }
        log.flush().await.unwrap();
        log.advance_high_watermark(log.log_end_offset());
        assert_eq!(read_all(&log, 0).len(), 60);
    }
    let (open, max) = manager.open_files();
    assert!(open <= max && max == 16, "{open} of {max}");
    assert!(open_fds() < before + 150, "{} descriptors for 300 logs ({before} before)", open_fds());
    drop(manager);
    // And every log opens again, within the same bound.
    let manager = LogManager::open(dir.path(), |_| small_config(), 16).unwrap();
    assert_eq!(manager.all().len(), 300);
    assert!(manager.all().iter().all(|(_, log)| log.log_end_offset() == 60));
    assert!(open_fds() < before + 150);
}

/// A removal is a rename then a delete; a crash between the two leaves a
/// directory the next open finishes deleting.
#[test]
fn a_removal_interrupted_by_a_crash_finishes_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let manager = LogManager::open(dir.path(), |_| small_config(), 16).unwrap();
        for p in 0..3 {
            manager.get_or_create(&TopicPartition::new("gone", p), small_config()).unwrap().append(&batch_of(1, 0, 0), 0).unwrap();
        }
        manager.remove(&TopicPartition::new("gone", 0)).unwrap();
    }
    // As if the process died after the rename of partition 1.
    std::fs::rename(dir.path().join("gone-1"), dir.path().join("gone-1.12345.deleted")).unwrap();
    let manager = LogManager::open(dir.path(), |_| small_config(), 16).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["gone-2".to_string()]);
    assert_eq!(manager.all().len(), 1);
}

fn idempotent(producer_id: i64, epoch: i16, sequence: i32, records: usize) -> Vec<u8> {
    let mut b = batch_of(records, 0, 1);
    set_producer(&mut b, producer_id, epoch, sequence);
    b
}

#[test]
fn idempotent_retries_get_their_offsets_back_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
        assert_eq!(log.append(&idempotent(9, 0, 0, 2), 0).unwrap().base_offset, 0);
        assert_eq!(log.append(&batch_of(1, 0, 0), 0).unwrap().base_offset, 2);
        assert_eq!(log.append(&idempotent(9, 0, 2, 3), 0).unwrap().base_offset, 3);
        let retry = log.append(&idempotent(9, 0, 0, 2), 0).unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (0, 1));
        assert_eq!(log.log_end_offset(), 6, "a duplicate appends nothing");
        assert!(matches!(log.append(&idempotent(9, 0, 7, 1), 0), Err(StorageError::Producer(ProducerError::OutOfOrder { expected: 5, got: 7, .. }))));
    }
    // The state is rebuilt from the log on open.
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    let retry = log.append(&idempotent(9, 0, 2, 3), 0).unwrap();
    assert!(retry.duplicate && retry.base_offset == 3);
    assert_eq!(log.append(&idempotent(9, 0, 5, 1), 0).unwrap().base_offset, 6);
    // After truncation the removed batch is no longer a duplicate: it is appended again.
    log.truncate_to(6).unwrap();
    let again = log.append(&idempotent(9, 0, 5, 1), 0).unwrap();
    assert!(!again.duplicate && again.base_offset == 6);
    // Two batches in one set from an idempotent producer are refused.
    let mut two = idempotent(9, 0, 6, 1);
    two.extend(idempotent(9, 0, 7, 1));
    assert!(matches!(log.append(&two, 0), Err(StorageError::InvalidRecord(_))));
}

#[test]
fn leader_epochs_are_cached_and_replicated_batches_keep_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = PartitionLog::open(&dir.path().join("leader"), small_config()).unwrap();
    for (epoch, n) in [(0, 3), (2, 2), (5, 1)] {
        for _ in 0..n {
            leader.append(&batch_of(2, 0, 0), epoch).unwrap();
        }
    }
    // Epoch 0: offsets 0..6, epoch 2: 6..10, epoch 5: 10..12.
    assert_eq!(leader.latest_epoch(), Some(5));
    assert_eq!(leader.end_offset_for_epoch(0), Some((0, 6)));
    assert_eq!(leader.end_offset_for_epoch(1), Some((0, 6)), "epoch 1 never led here: the end of epoch 0");
    assert_eq!(leader.end_offset_for_epoch(2), Some((2, 10)));
    assert_eq!(leader.end_offset_for_epoch(5), Some((5, 12)));
    assert_eq!(leader.end_offset_for_epoch(9), Some((5, 12)));
    assert_eq!(leader.end_offset_for_epoch(-1), None);

    // A follower copies the leader's bytes as they are.
    let (follower, _) = PartitionLog::open(&dir.path().join("follower"), small_config()).unwrap();
    let mut next = 0;
    while next < leader.log_end_offset() {
        let bytes = leader.read(next, 300, leader.log_end_offset(), true).unwrap();
        let info = follower.append_replicated(&bytes).unwrap();
        assert_eq!(info.base_offset, next);
        next = info.last_offset + 1;
    }
    assert_eq!(
        read_all(&follower, 0).iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
        read_all(&leader, 0).iter().map(|(_, b)| b.clone()).collect::<Vec<_>>()
    );
    assert_eq!(follower.end_offset_for_epoch(2), Some((2, 10)));
    // Gaps and epochs going backwards are refused.
    let again = leader.read(0, 300, 12, true).unwrap();
    assert!(matches!(follower.append_replicated(&again), Err(StorageError::InvalidRecord(_))));
    // Truncation and reopening keep the cache true.
    follower.truncate_to(8).unwrap();
    assert_eq!(follower.end_offset_for_epoch(5), Some((2, 8)));
    drop(follower);
    let (follower, _) = PartitionLog::open(&dir.path().join("follower"), small_config()).unwrap();
    assert_eq!(follower.latest_epoch(), Some(2));
    assert_eq!(follower.end_offset_for_epoch(0), Some((0, 6)));
}

/// A follower of a cleaned leader holds batches with gaps between their
/// offsets; truncated to an offset inside such a gap, its log ends at that
/// offset (not at the next batch's base, past records it would then never
/// fetch), and it goes on from there.
#[test]
fn truncating_into_a_gap_between_batches_ends_the_log_at_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = PartitionLog::open(&dir.path().join("leader"), small_config()).unwrap();
    leader.append(&batch_of(5, 0, 1), 0).unwrap(); // 0..5
    leader.append(&batch_of(5, 0, 2), 0).unwrap(); // 5..10
    let (follower, _) = PartitionLog::open(&dir.path().join("follower"), small_config()).unwrap();
    follower.append_replicated(&leader.read(0, 1 << 20, 5, true).unwrap()).unwrap();
    // The second batch as a cleaned leader serves it: at offset 20, after a gap.
    let mut second = leader.read(5, 1 << 20, 10, true).unwrap().to_vec();
    second[..8].copy_from_slice(&20i64.to_be_bytes());
    follower.append_replicated(&second).unwrap();
    assert_eq!(follower.log_end_offset(), 25);
    assert_eq!(follower.truncate_to(12).unwrap(), 12, "12 lies in the gap");
    assert_eq!(follower.log_end_offset(), 12);
    let kept = follower.read(0, 1 << 20, 12, true).unwrap();
    let h = BatchHeader::parse(&kept).unwrap();
    assert_eq!((h.base_offset, h.last_offset(), kept.len()), (0, 4, h.total_bytes()), "only the batch below the gap is left");
    let mut next = leader.read(5, 1 << 20, 10, true).unwrap().to_vec();
    next[..8].copy_from_slice(&12i64.to_be_bytes());
    assert_eq!(follower.append_replicated(&next).unwrap().base_offset, 12);
    drop(follower);
    let (follower, _) = PartitionLog::open(&dir.path().join("follower"), small_config()).unwrap();
    assert_eq!(follower.log_end_offset(), 17);
}

/// A cleaned leader's gap wider than a segment's 32-bit relative offsets
/// reach: the follower starts a new segment at the batch after the gap
/// (as Kafka rolls there), so every batch keeps an index entry that
/// addresses it, before and after reopening.
#[test]
fn a_batch_beyond_the_reach_of_the_segment_s_index_starts_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = PartitionLog::open(&dir.path().join("leader"), small_config()).unwrap();
    leader.append(&batch_of(5, 0, 1), 0).unwrap(); // 0..5
    leader.append(&batch_of(5, 0, 2), 0).unwrap(); // 5..10
    let (follower, _) = PartitionLog::open(&dir.path().join("follower"), small_config()).unwrap();
    follower.append_replicated(&leader.read(0, 1 << 20, 5, true).unwrap()).unwrap();
    let far = 5_000_000_000i64;
    let mut second = leader.read(5, 1 << 20, 10, true).unwrap().to_vec();
    second[..8].copy_from_slice(&far.to_be_bytes());
    follower.append_replicated(&second).unwrap();
    let check = |log: &PartitionLog| {
        assert_eq!(log.segment_count(), 2, "the far batch is in a segment of its own");
        assert_eq!(log.log_end_offset(), far + 5);
        for (offset, base) in [(3, 0), (far + 2, far), (far - 1, far)] {
            let got = log.read(offset, 1 << 20, far + 5, true).unwrap();
            assert_eq!(BatchHeader::parse(&got).unwrap().base_offset, base, "reading from {offset}");
        }
    };
    check(&follower);
    drop(follower);
    let (follower, _) = PartitionLog::open(&dir.path().join("follower"), small_config()).unwrap();
    check(&follower);
    assert!(follower.append_replicated(&leader.read(0, 1 << 20, 5, true).unwrap()).is_err(), "offsets still only go up");
}

#[test]
fn idempotent_producer_state_follows_replication_to_a_new_leader() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = PartitionLog::open(&dir.path().join("leader"), small_config()).unwrap();
    let (follower, _) = PartitionLog::open(&dir.path().join("follower"), small_config()).unwrap();
    leader.append(&idempotent(7, 0, 0, 2), 1).unwrap();
    leader.append(&idempotent(7, 0, 2, 2), 1).unwrap();
    follower.append_replicated(&leader.read(0, 1 << 20, 4, true).unwrap()).unwrap();
    // The follower becomes leader: the producer's retry of its last batch is
    // a duplicate there too, and its next batch continues the sequence.
    let retry = follower.append(&idempotent(7, 0, 2, 2), 2).unwrap();
    assert!(retry.duplicate && retry.base_offset == 2);
    assert_eq!(follower.append(&idempotent(7, 0, 4, 1), 2).unwrap().base_offset, 4);
    assert!(matches!(follower.append(&idempotent(7, 0, 9, 1), 2), Err(StorageError::Producer(ProducerError::OutOfOrder { .. }))));
}

fn transactional(producer_id: i64, epoch: i16, sequence: i32, records: usize) -> Vec<u8> {
    let mut b = idempotent(producer_id, epoch, sequence, records);
    set_attributes(&mut b, TRANSACTIONAL);
    b
}

#[test]
fn open_transactions_hold_back_the_stable_offset_and_aborts_are_listed_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
        log.append(&batch_of(2, 0, 0), 0).unwrap(); // 0..2, outside any transaction
        log.append(&transactional(7, 0, 0, 2), 0).unwrap(); // 2..4, producer 7
        log.append(&transactional(8, 0, 0, 1), 0).unwrap(); // 4, producer 8
        log.append(&transactional(7, 0, 2, 1), 0).unwrap(); // 5, producer 7
        log.advance_high_watermark(6);
        assert_eq!(log.last_stable_offset(), 2, "producer 7's transaction is open from offset 2");
        assert_eq!(log.open_transactions(), 2);
        assert_eq!(log.append_marker(7, 0, Marker::Commit, 0, 0).unwrap().base_offset, 6);
        assert_eq!(log.last_stable_offset(), 4, "the high watermark has not reached the marker yet, and producer 8 is open");
        log.append_marker(8, 0, Marker::Abort, 0, 0).unwrap(); // 7
        log.advance_high_watermark(8);
        assert_eq!(log.last_stable_offset(), 8);
        assert_eq!(log.aborted_between(0, 8), vec![AbortedTxn { producer_id: 8, first_offset: 4, last_offset: 7 }]);
        assert_eq!(log.aborted_between(0, 4), vec![], "the aborted records start at 4");
        // A client cannot write a marker itself.
        assert!(matches!(log.append(&marker_batch(7, 0, Marker::Commit, 0, 0), 0), Err(StorageError::InvalidRecord(_))));
        // A marker of an older epoch than the producer's is fenced.
        log.append(&transactional(7, 1, 0, 1), 0).unwrap(); // 8, epoch 1
        assert!(matches!(log.append_marker(7, 0, Marker::Abort, 0, 0), Err(StorageError::Producer(ProducerError::FencedEpoch { .. }))));
        log.advance_high_watermark(9);
        assert_eq!(log.last_stable_offset(), 8);
    }
    // Everything is rebuilt from the log, markers included.
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    log.advance_high_watermark(9);
    assert_eq!(log.last_stable_offset(), 8, "producer 7's second transaction is still open");
    assert_eq!(log.aborted_between(5, 100), vec![AbortedTxn { producer_id: 8, first_offset: 4, last_offset: 7 }]);
    assert_eq!(read_all(&log, 0).iter().filter(|(h, _)| h.is_control()).count(), 2, "markers are stored like any batch");
    // Truncating away a marker reopens its transaction.
    log.truncate_to(7).unwrap();
    assert_eq!(log.aborted_between(0, 100), vec![]);
    assert_eq!(log.open_transactions(), 1);
}

/// A deposed transaction coordinator's marker that arrives late must not
/// end the producer's next transaction (same producer epoch, as
/// transactions of one producer instance share it): a marker of an older
/// coordinator epoch than one already written is refused, also after a
/// reopen, which reads the epoch back from the markers.
#[test]
fn a_marker_from_an_older_coordinator_epoch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
        log.append(&transactional(7, 0, 0, 1), 0).unwrap(); // 0: first transaction
        log.append_marker(7, 0, Marker::Commit, 5, 0).unwrap(); // 1: written by the coordinator of epoch 5
        log.append(&transactional(7, 0, 1, 1), 0).unwrap(); // 2: the next transaction
        let stale = log.append_marker(7, 0, Marker::Abort, 4, 0).unwrap_err();
        assert!(matches!(stale, StorageError::Producer(ProducerError::StaleCoordinator { coordinator_epoch: 4, current: 5, .. })), "{stale}");
        assert!(log.has_open_transaction(7, 0), "the stale marker ended nothing");
        assert_eq!(log.producers()[0].coordinator_epoch, 5);
    }
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert!(matches!(log.append_marker(7, 0, Marker::Abort, 4, 0), Err(StorageError::Producer(ProducerError::StaleCoordinator { .. }))));
    log.append_marker(7, 0, Marker::Commit, 6, 0).unwrap();
    assert!(!log.has_open_transaction(7, 0));
    assert_eq!(log.producers()[0].coordinator_epoch, 6);
}

/// Transaction version 2 bumps the producer epoch at every end, and the
/// coordinator's marker (at the bumped epoch) can still be on its way when
/// the producer's first batch of its next transaction arrives. That batch
/// must not be taken into the transaction still open here (it would commit
/// or abort with it): it is refused until the marker is written, and then
/// opens a transaction of its own.
#[test]
fn a_batch_at_a_newer_epoch_waits_for_the_marker_of_the_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    log.append(&transactional(7, 0, 0, 2), 0).unwrap(); // 0..2: the transaction at epoch 0
    assert!(log.has_open_transaction(7, 0));
    assert!(!log.has_open_transaction(7, 1), "open at epoch 0, not at epoch 1");
    let early = log.append(&transactional(7, 1, 0, 1), 0).unwrap_err();
    assert!(matches!(early, StorageError::Producer(ProducerError::PreviousTransactionOpen { epoch: 1, open: 0, .. })), "{early}");
    assert_eq!(log.log_end_offset(), 2, "nothing appended");
    log.append_marker(7, 1, Marker::Abort, 0, 0).unwrap(); // 2: the end, at the bumped epoch
    assert!(!log.has_open_transaction(7, 0) && !log.has_open_transaction(7, 1));
    log.append(&transactional(7, 1, 0, 1), 0).unwrap(); // 3: the next transaction
    assert!(log.has_open_transaction(7, 1));
    log.append_marker(7, 2, Marker::Commit, 0, 0).unwrap(); // 4
    let aborted = log.aborted_between(0, log.log_end_offset());
    assert_eq!(aborted.iter().map(|a| (a.first_offset, a.last_offset)).collect::<Vec<_>>(), vec![(0, 2)], "only the first transaction aborted: {aborted:?}");
}

#[test]
fn an_open_transaction_whose_start_was_deleted_holds_the_stable_offset_at_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    log.append(&transactional(7, 0, 0, 2), 0).unwrap(); // 0..2, open
    log.append(&batch_of(3, 0, 0), 0).unwrap(); // 2..5
    log.advance_high_watermark(5);
    assert_eq!(log.last_stable_offset(), 0);
    log.advance_log_start(3).unwrap();
    // Never below the log start: a read_committed consumer told the LSO
    // can fetch from it.
    assert_eq!(log.last_stable_offset(), 3);
}

#[test]
fn followers_follow_transactions_through_replicated_markers() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = PartitionLog::open(&dir.path().join("leader"), small_config()).unwrap();
    let (follower, _) = PartitionLog::open(&dir.path().join("follower"), small_config()).unwrap();
    leader.append(&transactional(3, 0, 0, 2), 1).unwrap();
    leader.append_marker(3, 0, Marker::Abort, 4, 1).unwrap();
    leader.append(&transactional(5, 0, 0, 1), 1).unwrap();
    follower.append_replicated(&leader.read(0, 1 << 20, leader.log_end_offset(), true).unwrap()).unwrap();
    follower.advance_high_watermark(4);
    assert_eq!(follower.aborted_between(0, 4), vec![AbortedTxn { producer_id: 3, first_offset: 0, last_offset: 2 }]);
    assert_eq!(follower.last_stable_offset(), 3, "producer 5's transaction is open on the follower too");
}

/// One step of the crash property test.
#[derive(Debug, Clone)]
enum Step {
    Append { records: usize, fill: u8 },
    Flush,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1usize..6, any::<u8>()).prop_map(|(records, fill)| Step::Append { records, fill }),
        1 => Just(Step::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random appends and flushes, then a crash that tears the unflushed tail at
    /// a random byte (or leaves garbage after it), then reopen: every flushed
    /// (acknowledged) batch is there byte for byte, and nothing after the last
    /// intact batch survives.
    #[test]
    fn crash_at_a_random_tail_byte_loses_no_acknowledged_batch(
        steps in proptest::collection::vec(step(), 1..60),
        cut_fraction in 0.0f64..1.0,
        garbage in proptest::collection::vec(any::<u8>(), 0..100),
        drop_index in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 2048, index_interval_bytes: 200, ..LogConfig::default() };
        let mut acknowledged = Vec::new(); // (base offset, stamped bytes) of flushed batches
        let mut written = Vec::new();
        {
            let (log, _) = PartitionLog::open(dir.path(), config.clone()).unwrap();
            for s in &steps {
                match s {
                    Step::Append { records, fill } => {
                        let info = log.append(&batch_of(*records, 7, *fill), 1).unwrap();
                        written.push(info.base_offset);
                    }
                    Step::Flush => {
                        let flushed = rt.block_on(log.flush()).unwrap();
                        acknowledged = read_all(&log, 0).into_iter().filter(|(h, _)| h.last_offset() < flushed).map(|(h, b)| (h.base_offset, b)).collect();
                    }
                }
            }
        }
        // Crash: the active segment loses a random part of what follows the
        // last flushed byte, possibly with garbage in its place.
        let mut logs: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "log")).collect();
        logs.sort();
        let active = logs.last().unwrap().clone();
        let base: i64 = active.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let durable_in_active: usize = acknowledged.iter().filter(|(o, _)| *o >= base).map(|(_, b)| b.len()).sum();
        let len = std::fs::metadata(&active).unwrap().len() as usize;
        let cut = durable_in_active + ((len - durable_in_active) as f64 * cut_fraction) as usize;
        let mut content = std::fs::read(&active).unwrap();
        content.truncate(cut);
        content.extend_from_slice(&garbage);
        std::fs::write(&active, &content).unwrap();
        if drop_index {
            let _ = std::fs::remove_file(active.with_extension("index"));
        }

        let (log, _) = PartitionLog::open(dir.path(), config).unwrap();
        let recovered = read_all(&log, 0);
        for (offset, bytes) in &acknowledged {
            let found = recovered.iter().find(|(h, _)| h.base_offset == *offset);
            prop_assert!(found.is_some(), "acknowledged batch at {} lost", offset);
            prop_assert_eq!(&found.unwrap().1, bytes);
        }
        // Everything recovered is a whole, valid batch in sequence (read_all
        // validated each); offsets are contiguous and the log continues.
        let mut next = 0;
        for (h, _) in &recovered {
            prop_assert_eq!(h.base_offset, next);
            next = h.last_offset() + 1;
        }
        prop_assert_eq!(log.log_end_offset(), next);
        prop_assert!(written.len() >= recovered.len());
        let info = log.append(&batch_of(1, 0, 0), 2).unwrap();
        prop_assert_eq!(info.base_offset, next);
    }
}

/// DeleteRecords (KIP-107): the log start offset moves inside a segment;
/// reads below it are out of range, whole segments below it go, it
/// survives a restart, and it never moves backward or past the log end.
#[test]
fn the_log_start_offset_moves_forward_only_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    for _ in 0..40 {
        log.append(&batch_of(5, 1000, 0), 0).unwrap();
    }
    log.advance_high_watermark(log.log_end_offset());
    let before = log.segment_count();
    assert_eq!(log.advance_log_start(103).unwrap(), 103);
    assert_eq!(log.log_start_offset(), 103);
    assert!(log.segment_count() < before, "segments wholly below 103 are deleted");
    assert!(matches!(log.read(102, 1000, 200, true), Err(StorageError::OffsetOutOfRange { log_start_offset: 103, .. })));
    // Reading at the start returns the batch that holds it (100-104), as Kafka does.
    assert_eq!(read_all(&log, 103).first().unwrap().0.base_offset, 100);
    assert_eq!(log.advance_log_start(50).unwrap(), 103, "never backward");
    drop(log);

    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_start_offset(), 103, "kept across a restart");
    assert_eq!(log.advance_log_start(10_000).unwrap(), 200, "never past the log end");
    assert_eq!(log.segment_count(), 1, "the active segment stays");
    log.append(&batch_of(5, 1000, 0), 0).unwrap();
    assert_eq!(read_all(&log, 200).first().unwrap().0.base_offset, 200);
    drop(log);
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (200, 205));

    // A follower restarted at an older offset by its leader starts there.
    assert_eq!(log.truncate_to(150).unwrap(), 150);
    assert_eq!(log.log_start_offset(), 150);
    drop(log);
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_start_offset(), 150);
}

/// The log start offset file as the first version wrote it (frozen in
/// tests/compat/storage-v1) still reads; a newer format is refused by name.
#[test]
fn the_frozen_log_start_offset_file_still_reads() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/storage-v1/log-start-offset");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&fixture, dir.path().join(runnel_storage::log::START_FILE)).unwrap();
    assert_eq!(runnel_storage::log::read_start_file(dir.path()).unwrap(), 42);
    std::fs::write(dir.path().join(runnel_storage::log::START_FILE), "runnel-log-start-offset 2\n42\n").unwrap();
    let err = runnel_storage::log::read_start_file(dir.path()).unwrap_err().to_string();
    assert!(err.contains("newer Runnel"), "{err}");
    std::fs::write(dir.path().join(runnel_storage::log::START_FILE), "runnel-log-start-offset 1\nforty\n").unwrap();
    assert!(runnel_storage::log::read_start_file(dir.path()).is_err());
}

/// The high-watermark checkpoint as its first version wrote it (frozen in
/// tests/compat/storage-v3) still reads; a newer format is refused by name.
#[test]
fn the_frozen_high_watermark_checkpoint_still_reads() {
    use runnel_storage::checkpoint;
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/storage-v3/high-watermarks");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&fixture, dir.path().join(checkpoint::FILE)).unwrap();
    let expected: std::collections::BTreeMap<String, i64> =
        [("audit-0", 120), ("orders-0", 350), ("orders-2", 0), ("web.clicks_v2-11", 4096)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(checkpoint::read(dir.path()).unwrap(), expected);
    // What this version writes reads back the same, byte for byte the fixture.
    let again = tempfile::tempdir().unwrap();
    checkpoint::write(again.path(), &expected, std::time::SystemTime::now(), true).unwrap();
    assert_eq!(std::fs::read(again.path().join(checkpoint::FILE)).unwrap(), std::fs::read(&fixture).unwrap());
    std::fs::write(dir.path().join(checkpoint::FILE), "runnel-high-watermarks 2\naudit-0 1\n").unwrap();
    let err = checkpoint::read(dir.path()).unwrap_err().to_string();
    assert!(err.contains("newer Runnel"), "{err}");
    std::fs::write(dir.path().join(checkpoint::FILE), "runnel-high-watermarks 1\naudit-0 -3\n").unwrap();
    assert!(checkpoint::read(dir.path()).is_err());
}

/// A restarted node's logs start at the high watermarks of the last
/// checkpoint (capped at each log end), not at their log ends; without a
/// checkpoint, or for a log made after it was written (a topic deleted and
/// made again under its name), at the log start.
#[test]
fn reopened_logs_take_their_high_watermark_from_the_checkpoint() {
    use runnel_storage::{LogManager, TopicPartition};
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (TopicPartition::new("a", 0), TopicPartition::new("b", 0));
    {
        let logs = LogManager::open(dir.path(), |_| small_config(), 16).unwrap();
        for (tp, hw) in [(&a, 6), (&b, 9)] {
            let log = logs.get_or_create(tp, small_config()).unwrap();
            for i in 0..10 {
                log.append(&batch_of(1, 0, i), 0).unwrap();
            }
            log.advance_high_watermark(hw);
        }
        assert!(logs.checkpoint_high_watermarks(false).unwrap());
        assert!(!logs.checkpoint_high_watermarks(true).unwrap(), "nothing changed: nothing written");
        logs.get(&a).unwrap().advance_high_watermark(7); // after the checkpoint: not in it
        // b's tail is cut below its checkpointed high watermark.
        logs.get(&b).unwrap().truncate_to(8).unwrap();
    }
    let logs = LogManager::open(dir.path(), |_| small_config(), 16).unwrap();
    assert_eq!(logs.get(&a).unwrap().high_watermark(), 6);
    assert_eq!(logs.get(&a).unwrap().log_end_offset(), 10);
    assert_eq!(logs.get(&b).unwrap().high_watermark(), 8, "never past the log end");
    // b is deleted and made again while a checkpoint is being written: its
    // contents, read before, hold the old b's high watermark; the node
    // stops before the next one.
    let taken = std::time::SystemTime::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    logs.remove(&b).unwrap();
    let b_again = logs.get_or_create(&b, small_config()).unwrap();
    for i in 0..3 {
        b_again.append(&batch_of(1, 0, i), 0).unwrap();
    }
    let read_before = [("a-0".to_string(), 6), ("b-0".to_string(), 8)].into_iter().collect();
    runnel_storage::checkpoint::write(dir.path(), &read_before, taken, false).unwrap();
    drop((b_again, logs));
    let logs = LogManager::open(dir.path(), |_| small_config(), 16).unwrap();
    assert_eq!(logs.get(&b).unwrap().high_watermark(), 0, "the checkpoint's entry was the deleted log's");
    assert_eq!(logs.get(&a).unwrap().high_watermark(), 6);
    std::fs::remove_file(dir.path().join(runnel_storage::checkpoint::FILE)).unwrap();
    drop(logs);
    let logs = LogManager::open(dir.path(), |_| small_config(), 16).unwrap();
    assert_eq!(logs.get(&a).unwrap().high_watermark(), 0, "without a checkpoint: the log start, not the log end");
}

/// The cleaner offset file as its first version wrote it (frozen in
/// tests/compat/storage-v1) still reads; a newer format is refused by name.
#[test]
fn the_frozen_cleaner_offset_file_still_reads() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/storage-v1/cleaner-offset");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&fixture, dir.path().join(runnel_storage::log::CLEANER_FILE)).unwrap();
    assert_eq!(runnel_storage::log::read_cleaner_file(dir.path()).unwrap(), 42);
    std::fs::write(dir.path().join(runnel_storage::log::CLEANER_FILE), "runnel-cleaner-offset 2\n42\n").unwrap();
    let err = runnel_storage::log::read_cleaner_file(dir.path()).unwrap_err().to_string();
    assert!(err.contains("newer Runnel"), "{err}");
}

/// A compacted log as the first cleaner left it (frozen in
/// tests/compat/storage-v1/cleaned-log: segments with gaps in their
/// offsets, a cleaner offset) opens and serves the same records.
#[test]
fn the_frozen_cleaned_log_still_reads() {
    use runnel_storage::batch::{BatchHeader, HEADER_BYTES, build_keyed_batch};
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/storage-v1/cleaned-log");
    let config = LogConfig { segment_bytes: 1024, compact: true, delete: false, min_cleanable_dirty_ratio: 0.0, ..LogConfig::default() };
    if !fixture.exists() && std::env::var_os("RUNNEL_WRITE_MISSING_FIXTURES").is_some() {
        let (log, _) = PartitionLog::open(&fixture, config.clone()).unwrap();
        for i in 0..60 {
            let value = format!("value-{i}");
            log.append(&build_keyed_batch(1_000, &[(Some(format!("key-{}", i % 4).as_bytes()), Some(value.as_bytes()))]), 0).unwrap();
        }
        log.advance_high_watermark(log.log_end_offset());
        log.clean(&mut runnel_storage::cleaner::OffsetMap::with_memory(1 << 16), 2_000, &mut |_| {}).unwrap().expect("a pass");
        drop(log);
        let _ = std::fs::remove_file(fixture.join("log-start-offset"));
    }
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&fixture).expect("tests/compat/storage-v1/cleaned-log") {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let (log, _) = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 60));
    let mut seen = Vec::new();
    let mut offset = 0;
    while offset < 60 {
        let bytes = log.read(offset, 1 << 16, 60, true).unwrap();
        let h = BatchHeader::parse(&bytes).unwrap();
        let raw = &bytes[HEADER_BYTES..h.total_bytes()];
        // One record per batch: its value is the last bytes before the (empty) headers.
        let text = String::from_utf8_lossy(raw).into_owned();
        seen.push((h.base_offset, text.split("value-").nth(1).unwrap().trim_end_matches('\0').to_string()));
        offset = h.last_offset() + 1;
    }
    // Below the cleaner offset one record per key is left; above it, all.
    let cleaned_to = runnel_storage::log::read_cleaner_file(dir.path()).unwrap();
    assert!(cleaned_to > 4 && cleaned_to < 60, "{cleaned_to}");
    let below: Vec<_> = seen.iter().filter(|(o, _)| *o < cleaned_to).collect();
    assert!(below.len() <= 4, "{below:?}");
    assert!(seen.iter().all(|(o, v)| v == &o.to_string()), "{seen:?}");
    assert_eq!(seen.last().unwrap().0, 59);
}

/// What a log knows of its producers and transactions: a log opened from a
/// producer-state snapshot must know exactly what one that read every
/// batch header knows.
#[allow(clippy::type_complexity)]
fn producer_view(log: &PartitionLog) -> (Vec<runnel_storage::producer_state::ProducerSummary>, Vec<AbortedTxn>, usize, Vec<Option<(i32, i64)>>) {
    (log.producers(), log.aborted_between(0, i64::MAX), log.open_transactions(), (-1..8).map(|e| log.end_offset_for_epoch(e)).collect())
}

fn files_ending(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().ends_with(suffix)).collect();
    files.sort();
    files
}

/// Thirty rounds over many small segments, each flushed: an idempotent
/// producer, transactions of three producers (every fourth aborted), one
/// transaction that spans segments and is aborted, leader epochs 0 to 2,
/// and a transaction left open at the end.
fn transactional_history(log: &PartitionLog) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut sequences = std::collections::HashMap::new();
    let mut next = |pid: i64, n: i32| {
        let s = sequences.entry(pid).or_insert(0);
        *s += n;
        *s - n
    };
    log.append(&transactional(200, 0, next(200, 1), 1), 0).unwrap();
    for round in 0..30 {
        let epoch = round / 10;
        log.append(&idempotent(1, 0, next(1, 3), 3), epoch).unwrap();
        let pid = 100 + i64::from(round % 3);
        log.append(&transactional(pid, 0, next(pid, 2), 2), epoch).unwrap();
        if round < 29 {
            let marker = if round % 4 == 0 { Marker::Abort } else { Marker::Commit };
            log.append_marker(pid, 0, marker, 0, epoch).unwrap();
        }
        if round == 20 {
            log.append_marker(200, 0, Marker::Abort, 0, epoch).unwrap();
        }
        log.advance_high_watermark(log.log_end_offset());
        rt.block_on(log.flush()).unwrap();
    }
}

/// A log reopens from its newest producer-state snapshot and the
/// transaction indexes below it, reading the batch headers of its active
/// segment only, and knows what a log that read them all knows: sequences
/// for duplicate detection, open and aborted transactions, leader epochs.
#[test]
fn a_reopened_log_reads_only_the_batches_after_its_newest_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
        transactional_history(&log);
        assert!(log.segment_count() > 4, "the history spans many segments: {}", log.segment_count());
        producer_view(&log)
    };
    assert_eq!(before.1.len(), 9, "eight aborted rounds and the long transaction");
    assert_eq!(before.2, 1, "the last round's transaction is open");
    assert!(!files_ending(dir.path(), ".txnindex").is_empty());
    let (log, report) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(report.segments_read, 1, "{report:?}");
    assert_eq!(producer_view(&log), before);
    // The idempotent producer's last batch (sequence 87) is a duplicate;
    // its next one goes on.
    assert!(log.append(&idempotent(1, 0, 87, 3), 2).unwrap().duplicate);
    drop(log);

    // Without snapshots, every segment is read, to the same state.
    for f in files_ending(dir.path(), ".snapshot") {
        std::fs::remove_file(f).unwrap();
    }
    let (log, report) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(report.segments_read, report.segment_count);
    assert_eq!(producer_view(&log), before);
}

/// Snapshots and transaction indexes are caches: a damaged one is passed
/// over, more of the log is read, and the state is the same.
#[test]
fn a_damaged_snapshot_or_transaction_index_costs_reading_not_state() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
        transactional_history(&log);
        producer_view(&log)
    };
    let snapshots = files_ending(dir.path(), ".snapshot");
    assert_eq!(snapshots.len(), runnel_storage::snapshot::SNAPSHOTS_KEPT);
    let newest = snapshots.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(newest, &bytes).unwrap();
    let (log, report) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert!(report.segments_read > 1 && report.segments_read < report.segment_count, "{report:?}");
    assert_eq!(producer_view(&log), before);
    drop(log);

    // A transaction index below every snapshot cut short: the whole log is
    // read, and the index is written again.
    let index = files_ending(dir.path(), ".txnindex").into_iter().next().unwrap();
    let whole = std::fs::read(&index).unwrap();
    std::fs::write(&index, &whole[..whole.len() - 5]).unwrap();
    let (log, report) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(report.segments_read, report.segment_count, "{report:?}");
    assert_eq!(producer_view(&log), before);
    assert_eq!(std::fs::read(&index).unwrap(), whole);
}

/// Truncation (a follower's, after a leader change) removes the snapshots
/// above the new end, so a reopen never brings back producers or aborted
/// transactions of batches that are gone; emptying the log removes them all.
#[test]
fn truncation_leaves_no_snapshot_of_batches_that_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    transactional_history(&log);
    let offsets = runnel_storage::snapshot::snapshot_offsets(dir.path()).unwrap();
    let cut = offsets[0] - 3;
    log.truncate_to(cut).unwrap();
    let end = log.log_end_offset();
    assert!(runnel_storage::snapshot::snapshot_offsets(dir.path()).unwrap().iter().all(|o| *o <= end));
    let truncated = producer_view(&log);
    drop(log);
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(producer_view(&log), truncated);
    // More history after the truncation rolls new segments and snapshots.
    transactional_history_after(&log);
    let grown = producer_view(&log);
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(report.segments_read, 1);
    assert_eq!(producer_view(&log), grown);
    log.restart_at(5_000).unwrap();
    assert!(runnel_storage::snapshot::snapshot_offsets(dir.path()).unwrap().is_empty());
    assert!(files_ending(dir.path(), ".txnindex").is_empty());
    drop(log);
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert!(log.producers().is_empty() && log.aborted_between(0, i64::MAX).is_empty());
}

/// New producers after a truncation, over several segments.
fn transactional_history_after(log: &PartitionLog) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for i in 0..20 {
        log.append(&transactional(300, 3, i * 3, 3), 3).unwrap();
        log.append_marker(300, 3, if i % 2 == 0 { Marker::Abort } else { Marker::Commit }, 1, 3).unwrap();
        log.advance_high_watermark(log.log_end_offset());
        rt.block_on(log.flush()).unwrap();
    }
}

/// A producer-state snapshot and a transaction index as their first
/// format wrote them (frozen in tests/compat/storage-v2) still read.
#[test]
fn the_frozen_snapshot_and_transaction_index_still_read() {
    use runnel_storage::snapshot::{decode_snapshot, decode_txn_index};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/storage-v2");
    let snapshot_path = fixtures.join("producer-state.snapshot");
    let index_path = fixtures.join("aborted.txnindex");
    if !snapshot_path.exists() && std::env::var_os("RUNNEL_WRITE_MISSING_FIXTURES").is_some() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
        transactional_history(&log);
        std::fs::create_dir_all(&fixtures).unwrap();
        std::fs::copy(files_ending(dir.path(), ".snapshot").last().unwrap(), &snapshot_path).unwrap();
        std::fs::copy(files_ending(dir.path(), ".txnindex").last().unwrap(), &index_path).unwrap();
    }
    let snap = decode_snapshot(&std::fs::read(&snapshot_path).expect("tests/compat/storage-v2/producer-state.snapshot")).unwrap();
    assert_eq!(snap.offset, 152);
    assert_eq!(snap.epochs, vec![(0, 0), (1, 61), (2, 121)]);
    let producers = snap.producers.summaries();
    let seen: Vec<_> = producers.iter().map(|p| (p.producer_id, p.epoch, p.last_sequence, p.coordinator_epoch)).collect();
    assert_eq!(seen, vec![(1, 0, 74, -1), (100, 0, 17, 0), (101, 0, 15, 0), (102, 0, 15, 0), (200, 0, 0, 0)]);
    assert_eq!(snap.producers.first_unstable_offset(), None);
    let aborted = decode_txn_index(&std::fs::read(&index_path).expect("tests/compat/storage-v2/aborted.txnindex")).unwrap();
    let expected =
        [(102, 124, 126), (200, 0, 127), (100, 149, 151)].map(|(producer_id, first_offset, last_offset)| AbortedTxn { producer_id, first_offset, last_offset });
    assert_eq!(aborted, expected);
}

/// A log in `dir` with sixty one-record batches, over several segments.
fn sixty_records(dir: &std::path::Path) -> PartitionLog {
    let (log, _) = PartitionLog::open(dir, small_config()).unwrap();
    for i in 0..60 {
        log.append(&batch_of(1, i, 1), 1).unwrap();
    }
    log
}

/// [`sixty_records`], all committed, with those below 40 deleted
/// (DeleteRecords).
fn sixty_records_deleted_below_40(dir: &std::path::Path) -> PartitionLog {
    let log = sixty_records(dir);
    log.advance_high_watermark(60);
    assert_eq!(log.advance_log_start(40).unwrap(), 40);
    log
}

/// What a crash leaves while a log is emptied to start again at another
/// offset (a follower behind its leader's log start, or one truncated below
/// its own start): the start file already names the new offset and the old
/// segments are gone from the last, some or all of them. The log opens
/// empty at that offset, not at 0 with offsets to hand out a second time.
#[test]
fn a_crash_while_a_log_is_emptied_never_starts_it_again_at_zero() {
    for left in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let log = sixty_records(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(log.flush()).unwrap();
        assert!(log.segment_count() >= 3, "{} segments", log.segment_count());
        drop(log);
        std::fs::write(dir.path().join(runnel_storage::log::START_FILE), "runnel-log-start-offset 1\n5000\n").unwrap();
        for segment in files_ending(dir.path(), ".log").into_iter().skip(left) {
            let stem = segment.file_stem().unwrap().to_string_lossy().into_owned();
            for file in std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()) {
                if file.file_name().unwrap().to_string_lossy().starts_with(&format!("{stem}.")) {
                    std::fs::remove_file(file).unwrap();
                }
            }
        }
        let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (5000, 5000), "with {left} old segment(s) left");
        assert_eq!(log.append(&batch_of(1, 100, 2), 2).unwrap().base_offset, 5000);
        assert_eq!(files_ending(dir.path(), ".log").len(), 1, "the old segments are gone");
    }
}

/// Emptying a log (a restart at the leader's start, a truncation below the
/// log's own start) leaves the start file naming the new start, so that a
/// crash right after it recovers to the same place.
#[test]
fn an_emptied_log_names_its_new_start_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let log = sixty_records_deleted_below_40(dir.path());
    assert_eq!(log.truncate_to(30).unwrap(), 30, "below the log start: the log is emptied and starts at 30");
    assert_eq!(runnel_storage::log::read_start_file(dir.path()).unwrap(), 30);
    assert_eq!(log.restart_at(7000).unwrap(), 7000);
    assert_eq!(runnel_storage::log::read_start_file(dir.path()).unwrap(), 7000);
    drop(log);
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (7000, 7000));
}

/// A truncation below the log start (a follower whose leader's log ends
/// below records that DeleteRecords removed here) that stops part way, as
/// a crash would stop it (here: the first segment cannot be deleted), does
/// not bring those records back: the start file names the lower offset only
/// once the old segments are gone.
#[test]
fn a_truncation_below_the_start_cut_short_shows_no_deleted_record_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = sixty_records_deleted_below_40(dir.path());
    let segments = files_ending(dir.path(), ".log");
    assert!(segments.len() >= 2, "{} segments", segments.len());
    let first = segments[0].clone();
    let kept = std::fs::read(&first).unwrap();
    std::fs::remove_file(&first).unwrap();
    std::fs::create_dir(&first).unwrap();
    std::fs::write(first.join("in-the-way"), b"").unwrap();
    assert!(log.truncate_to(30).is_err(), "the first segment cannot be deleted");
    drop(log);
    // The disk as a crash at that step leaves it.
    std::fs::remove_dir_all(&first).unwrap();
    std::fs::write(&first, kept).unwrap();

    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert!(log.log_start_offset() >= 40, "the log starts at {} after the crash, below the deleted records' end", log.log_start_offset());
    // Truncated again, the log starts where its leader's ends.
    assert_eq!(log.truncate_to(30).unwrap(), 30);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (30, 30));
}

/// A restart of the log at another offset that stops part way (as a crash
/// would; here the newest producer snapshot cannot be deleted) leaves
/// either the old log, or a new one without the old log's producers: a
/// snapshot at the new base must not bring them back.
#[test]
fn a_restart_cut_short_brings_no_producer_of_the_old_log_into_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    transactional_history(&log);
    let old_end = log.log_end_offset();
    let at = *runnel_storage::snapshot::snapshot_offsets(dir.path()).unwrap().last().unwrap();
    let snapshot = files_ending(dir.path(), ".snapshot").pop().unwrap();
    let kept = std::fs::read(&snapshot).unwrap();
    std::fs::remove_file(&snapshot).unwrap();
    std::fs::create_dir(&snapshot).unwrap();
    std::fs::write(snapshot.join("in-the-way"), b"").unwrap();
    assert!(log.restart_at(at).is_err(), "the snapshot at {at} cannot be deleted");
    drop(log);
    // The disk as a crash at that step leaves it.
    std::fs::remove_dir_all(&snapshot).unwrap();
    std::fs::write(&snapshot, kept).unwrap();

    let (log, _) = PartitionLog::open(dir.path(), small_config()).unwrap();
    let end = log.log_end_offset();
    assert!(end == old_end || log.producers().is_empty(), "a log ending at {end} (was {old_end}) with the old producers: {:?}", log.producers());
}
