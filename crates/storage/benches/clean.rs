//! Log cleaner throughput: one pass over a compacted log of 400,000 updates
//! (100-byte values, 16 records a batch) over 10,000 keys, in 1 MiB
//! segments, uncompressed and with lz4 and zstd batches (which the cleaner
//! decompresses and compresses again); each iteration cleans a fresh copy
//! of the dirty log.
//! `cargo bench -p runnel-storage --bench clean`
//!
//! The offset map's memory is its key count times
//! `runnel_storage::cleaner::MAP_ENTRY_BYTES`; the bench prints both.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use runnel_storage::batch::{build_keyed_batch, compress_batch};
use runnel_storage::cleaner::{MAP_ENTRY_BYTES, OffsetMap};
use runnel_storage::{LogConfig, PartitionLog};

const UPDATES: usize = 400_000;
const KEYS: usize = 10_000;
const PER_BATCH: usize = 16;

fn config() -> LogConfig {
    LogConfig { segment_bytes: 1 << 20, compact: true, delete: false, min_cleanable_dirty_ratio: 0.0, ..LogConfig::default() }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn clean(c: &mut Criterion) {
    let mut group = c.benchmark_group("clean");
    group.sample_size(10);
    let template = tempfile::tempdir().expect("tempdir");
    let mut map = OffsetMap::with_memory(128 << 20);
    let mut round = 0;
    for (name, codec) in [("none", 0i16), ("lz4", 3), ("zstd", 4)] {
        let dirty = template.path().join(format!("dirty-{name}"));
        let bytes = {
            let (log, _) = PartitionLog::open(&dirty, config()).expect("open");
            // Values that compress about as well as typical JSON does.
            let values: Vec<Vec<u8>> = (0..PER_BATCH).map(|i| format!("{{\"n\":{i:04},\"pad\":\"{}\"}}", "ab".repeat(42)).into_bytes()).collect();
            for batch in 0..UPDATES / PER_BATCH {
                let keys: Vec<String> = (0..PER_BATCH).map(|i| format!("key-{:06}", (batch * PER_BATCH + i) * 7919 % KEYS)).collect();
                let records: Vec<_> = keys.iter().zip(&values).map(|(k, v)| (Some(k.as_bytes()), Some(v.as_slice()))).collect();
                let plain = build_keyed_batch(1_000, &records);
                let stored = if codec == 0 { plain } else { compress_batch(&plain, codec).expect("compress") };
                log.append(&stored, 0).expect("append");
            }
            log.size_bytes()
        };
        group.throughput(Throughput::Elements(UPDATES as u64));
        group.bench_function(format!("one_pass_400k_updates_10k_keys_{name}"), |b| {
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
                    assert!(report.records_removed as usize > UPDATES / 2, "{report:?}");
                    log // dropped after the measurement
                },
                criterion::BatchSize::PerIteration,
            )
        });
        eprintln!("{name}: log of {bytes} bytes; offset map held {} keys, {} bytes at {MAP_ENTRY_BYTES} bytes a key", map.len(), map.len() * MAP_ENTRY_BYTES);
    }
    group.finish();
}

criterion_group!(benches, clean);
criterion_main!(benches);
