//! The cost of one applied metadata change, as the state machine pays it:
//! apply the command, then publish a copy of the state for brokers and the
//! admin API. Offset commits are the most frequent entries (a consumer
//! committing after every message makes one per message), so the copy must
//! not grow with the number of partitions.
//! The second group measures what the metadata stream sends a broker-only
//! node per offset commit, and prints the sizes.
//! `cargo bench -p runnel-controller --bench apply`

use std::collections::BTreeMap;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use runnel_controller::command::Command;
use runnel_controller::metadata::MetadataImage;
use runnel_controller::records::{NodeId, OffsetCommit, OffsetRecord};
use runnel_controller::store::{AppliedState, encode_state};
use runnel_controller::types::{Request, TypeConfig, encode};
use uuid::Uuid;

/// Three brokers, `topics` topics of 100 partitions at RF 3, one group.
fn image(topics: usize) -> MetadataImage {
    let mut image = MetadataImage::default();
    for id in 1..=3 {
        let register = Command::RegisterBroker {
            id: NodeId(id),
            kafka_host: format!("runnel-{id}"),
            kafka_port: 9092,
            external: None,
            rpc_address: format!("runnel-{id}:9093"),
            rack: None,
        };
        image.apply(&register).expect("register");
    }
    for t in 0..topics {
        let create = Command::CreateTopic {
            name: format!("topic-{t}"),
            id: Uuid::from_u128(t as u128 + 1),
            partitions: 100,
            replication_factor: 3,
            configs: BTreeMap::new(),
        };
        image.apply(&create).expect("create");
    }
    image
}

fn commit(offset: i64) -> Command {
    let record = OffsetRecord { offset, leader_epoch: 0, metadata: None, commit_time_ms: 0 };
    Command::CommitOffsets { commits: vec![("group".into(), vec![OffsetCommit { topic: "topic-0".into(), partition: 0, record }])] }
}

fn apply_and_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("offset_commit_apply_and_publish");
    for &topics in &[10usize, 100, 1000] {
        let mut image = image(topics);
        // The copy published after the previous entry is still held while
        // the next one applies, as in the state machine, so an apply that
        // changes a shared collection pays for copying it.
        let mut published = image.clone();
        let mut offset = 0;
        group.bench_with_input(BenchmarkId::new("partitions", topics * 100), &topics, |b, _| {
            b.iter(|| {
                offset += 1;
                let _ = image.apply(&commit(offset));
                // What StateMachine::publish does after every apply.
                published = std::hint::black_box(image.clone());
            })
        });
        drop(published);
    }
    group.finish();
}

/// What the metadata stream sends a broker-only node per offset commit:
/// the whole state (before the stream carried entries, and still to a watcher that fell far
/// behind), or the entry it applies itself.
fn stream_message(c: &mut Criterion) {
    let mut group = c.benchmark_group("offset_commit_stream_message");
    for &topics in &[10usize, 100, 1000] {
        let mut image = image(topics);
        let _ = image.apply(&commit(1));
        let state = AppliedState { image, ..AppliedState::default() };
        let full = encode_state(&state).expect("encode");
        let entry = Entry::<TypeConfig> { log_id: LogId::new(CommittedLeaderId::new(1, NodeId(1)), 2), payload: EntryPayload::Normal(Request(commit(2))) };
        let delta = encode(&entry).expect("encode");
        println!("{} partitions: whole state {} bytes, entry {} bytes", topics * 100, full.len(), delta.len());
        group.bench_with_input(BenchmarkId::new("whole_state/partitions", topics * 100), &topics, |b, _| b.iter(|| encode_state(&state).expect("encode")));
        group.bench_with_input(BenchmarkId::new("entry/partitions", topics * 100), &topics, |b, _| b.iter(|| encode(&entry).expect("encode")));
    }
    group.finish();
}

criterion_group!(benches, apply_and_publish, stream_message);
criterion_main!(benches);
