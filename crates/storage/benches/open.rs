//! Opening a partition log of 256 MiB in 8 MiB segments (1 KiB batches of
//! ten 100-byte records from one idempotent producer), with its newest
//! producer-state snapshot and without any (as an earlier Runnel left it:
//! every batch header read). The files are in the page cache: on a cold
//! disk the difference is the reading of every segment.
//! `cargo bench -p runnel-storage --bench open`

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use runnel_storage::batch::{build_batch, set_producer};
use runnel_storage::{LogConfig, PartitionLog};

const LOG_BYTES: u64 = 256 << 20;

fn config() -> LogConfig {
    LogConfig { segment_bytes: 8 << 20, ..LogConfig::default() }
}

fn remove_snapshots(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            std::fs::remove_file(path).expect("remove snapshot");
        }
    }
}

fn open(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (log, _) = PartitionLog::open(dir.path(), config()).expect("open");
        let value = [7u8; 100];
        let values: Vec<&[u8]> = (0..10).map(|_| value.as_slice()).collect();
        let mut sequence = 0;
        while log.size_bytes() < LOG_BYTES {
            let mut batch = build_batch(1_000, &values);
            set_producer(&mut batch, 1, 0, sequence);
            sequence += 10;
            log.append(&batch, 0).expect("append");
            if sequence % 100_000 == 0 {
                rt.block_on(log.flush()).expect("flush");
            }
        }
        rt.block_on(log.flush()).expect("flush");
    }
    let mut group = c.benchmark_group("open_256mib_log");
    group.sample_size(10);
    group.bench_function("with_snapshot", |b| {
        b.iter(|| {
            let (log, report) = PartitionLog::open(dir.path(), config()).expect("open");
            assert_eq!(report.segments_read, 1);
            log
        })
    });
    remove_snapshots(dir.path());
    group.bench_function("without_snapshot", |b| {
        b.iter(|| {
            let (log, report) = PartitionLog::open(dir.path(), config()).expect("open");
            assert_eq!(report.segments_read, report.segment_count);
            log
        })
    });
    group.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
