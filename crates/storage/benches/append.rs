//! Append throughput of one partition log, with and without an fsync per
//! append; and the checks of a producer's batch before it (CRC alone, then
//! with the walk over its records), on a batch of 10,000 small records and
//! on compressed batches of 1,000 records with each codec.
//! `cargo bench -p runnel-storage --bench append`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use runnel_storage::batch::{build_batch, validate_record_set};
use runnel_storage::log::check_produced_set;
use runnel_storage::{LogConfig, PartitionLog};

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("append");
    for &records in &[1usize, 16, 64] {
        let value = vec![7u8; 1024];
        let values: Vec<&[u8]> = (0..records).map(|_| value.as_slice()).collect();
        let batch = build_batch(0, &values);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).expect("open");
        group.bench_with_input(BenchmarkId::new("page_cache", records), &batch, |b, batch| b.iter(|| log.append(batch, 0).expect("append")));
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).expect("open");
        group.bench_with_input(BenchmarkId::new("fsync_each", records), &batch, |b, batch| {
            b.iter(|| {
                let info = log.append(batch, 0).expect("append");
                rt.block_on(log.flush_to(info.last_offset + 1)).expect("flush")
            })
        });
    }
    group.finish();
}

fn checks(c: &mut Criterion) {
    let mut group = c.benchmark_group("checks");
    let value = vec![7u8; 100];
    let values: Vec<&[u8]> = (0..10_000).map(|_| value.as_slice()).collect();
    let batch = build_batch(0, &values);
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("crc", |b| b.iter(|| validate_record_set(&batch).expect("valid")));
    group.bench_function("crc_and_records", |b| b.iter(|| check_produced_set(&batch).expect("valid")));
    group.finish();

    // Compressed batches as producers send them (1,000 JSON-like records of
    // about 100 bytes, each codec): the CRC alone (what a plain topic
    // checked before), and with the records decompressed and walked.
    let values: Vec<Vec<u8>> = (0..1_000u32)
        .map(|i| {
            format!(r#"{{"user":{},"event":"click","page":"/items/{}","ms":{}}}"#, i * 7919 % 10_007, i % 97, 1_700_000_000_000u64 + u64::from(i)).into_bytes()
        })
        .collect();
    let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let plain = build_batch(0, &values);
    let mut group = c.benchmark_group("checks_compressed");
    for (name, codec) in [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)] {
        let batch = runnel_storage::batch::compress_batch(&plain, codec).expect("compress");
        // Throughput in the records' uncompressed bytes, comparable across codecs.
        group.throughput(Throughput::Bytes(plain.len() as u64));
        group.bench_with_input(BenchmarkId::new("crc", name), &batch, |b, batch| b.iter(|| validate_record_set(batch).expect("valid")));
        group.bench_with_input(BenchmarkId::new("crc_and_records", name), &batch, |b, batch| b.iter(|| check_produced_set(batch).expect("valid")));
    }
    group.finish();
}

criterion_group!(benches, append, checks);
criterion_main!(benches);
