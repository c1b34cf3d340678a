//! Log cleaner throughput: one pass over a compacted log of 400,000 updates
//! (100-byte values, 16 records a batch) over 10,000 keys, in 8 MiB
//! segments; each iteration cleans a fresh copy of the dirty log.
//! `cargo bench -p runnel-storage --bench clean`
//!
//! The offset map's memory is its key count times
//! `runnel_storage::cleaner::MAP_ENTRY_BYTES`; the bench prints both.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use runnel_storage::batch::build_keyed_batch;
use runnel_storage::cleaner::{MAP_ENTRY_BYTES, OffsetMap};
use runnel_storage::{LogConfig, PartitionLog};

const UPDATES: usize = 400_000;
const KEYS: usize = 10_000;
const PER_BATCH: usize = 16;

fn config() -> LogConfig {
    LogConfig { segment_bytes: 8 << 20, compact: true, delete: false, min_cleanable_dirty_ratio: 0.0, ..LogConfig::default() }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn clean(c: &mut Criterion) {
    let template = tempfile::tempdir().expect("tempdir");
    let dirty = template.path().join("dirty");
    let bytes = {
        let (log, _) = PartitionLog::open(&dirty, config()).expect("open");
        let value = vec![b'v'; 100];
        for batch in 0..UPDATES / PER_BATCH {
            let keys: Vec<String> = (0..PER_BATCH).map(|i| format!("key-{:06}", (batch * PER_BATCH + i) * 7919 % KEYS)).collect();
            let records: Vec<_> = keys.iter().map(|k| (Some(k.as_bytes()), Some(value.as_slice()))).collect();
            log.append(&build_keyed_batch(1_000, &records), 0).expect("append");
        }
        log.size_bytes()
    };
    let mut group = c.benchmark_group("clean");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    let mut map = OffsetMap::with_memory(128 << 20);
    let mut round = 0;
    group.bench_function("one_pass_400k_updates_10k_keys", |b| {
        b.iter_batched(
            || {
                // The last iteration's copy (its log is dropped by now).
                let _ = std::fs::remove_dir_all(template.path().join(format!("copy-{round}")));
                round += 1;
                let dir = template.path().join(format!("copy-{round}"));
                copy_dir(&dirty, &dir);
                let (log, _) = PartitionLog::open(&dir, config()).expect("open");
                log.advance_high_watermark(log.log_end_offset());
                log
            },
            |log| {
                let report = log.clean(&mut map, runnel_storage::log::now_ms(), &mut |_| {}).expect("clean").expect("a pass");
                assert!(report.bytes_after < report.bytes_before / 10, "{report:?}");
                log // dropped after the measurement
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
    eprintln!("log of {bytes} bytes; offset map held {} keys, {} bytes at {MAP_ENTRY_BYTES} bytes a key", map.len(), map.len() * MAP_ENTRY_BYTES);
}

criterion_group!(benches, clean);
criterion_main!(benches);
