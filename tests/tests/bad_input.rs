//! Bad input gets a Kafka error or a closed connection, never a crash; other
//! connections keep being served.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest, ProduceRequest, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use rand::{RngExt, SeedableRng};
use runnel_storage::batch::{build_batch, build_keyed_batch};
use runnel_tests::wire::{call, frame, is_closed, read_frame};
use runnel_tests::{Node, temp_dir};

fn metadata(topic: &str) -> RequestKind {
    RequestKind::Metadata(
        MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.into()))))]))
            .with_allow_auto_topic_creation(true),
    )
}

fn produce(topic: &str, records: Vec<u8>, acks: i16) -> RequestKind {
    RequestKind::Produce(ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from(records)))]),
        ]))
}

fn produce_error(response: ResponseKind) -> (i16, i64) {
    let ResponseKind::Produce(r) = response else { panic!("not a produce response") };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A node that still answers Metadata on a fresh connection.
fn assert_serving(node: &mut Node) {
    assert!(node.is_running(), "runnel died; log:\n{}", node.log());
    let mut s = node.connect();
    let ResponseKind::Metadata(m) = call(&mut s, ApiKey::Metadata, 9, &metadata("alive")) else { panic!() };
    assert_eq!(m.brokers.len(), 1);
}

#[test]
fn bad_frames_close_only_their_connection() {
    let dir = temp_dir();
    let mut node = Node::start(&dir.path().join("node"), &["--frame-bytes-max", "2097152"]);
    let mut bystander = node.connect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        ("length over the maximum", (3 * 1024 * 1024i32).to_be_bytes().to_vec()),
        ("zero length", 0i32.to_be_bytes().to_vec()),
        ("unknown api key", frame_with(|f| f[4..6].copy_from_slice(&999i16.to_be_bytes()))),
        ("unsupported version", frame_with(|f| f[6..8].copy_from_slice(&99i16.to_be_bytes()))),
        ("array length of two billion", {
            // Metadata v0: header, then a topics array that claims i32::MAX entries.
            let mut body = Vec::new();
            body.extend_from_slice(&3i16.to_be_bytes());
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&1i32.to_be_bytes());
            body.extend_from_slice(&(-1i16).to_be_bytes());
            body.extend_from_slice(&i32::MAX.to_be_bytes());
            let mut f = (body.len() as i32).to_be_bytes().to_vec();
            f.extend_from_slice(&body);
            f
        }),
        ("truncated body", {
            let mut f = frame(ApiKey::Metadata, 9, 1, &metadata("x"));
            let cut = f.len() - 3;
            f.truncate(cut);
            f[0..4].copy_from_slice(&((cut - 4) as i32).to_be_bytes());
            f
        }),
    ];
    for (what, bytes) in cases {
        let mut s = node.connect();
        s.write_all(&bytes).expect("send");
        assert!(is_closed(&mut s), "{what}: connection should be closed");
        assert_serving(&mut node);
    }
    // The connection opened before all this still works.
    let ResponseKind::Metadata(_) = call(&mut bystander, ApiKey::Metadata, 9, &metadata("x")) else { panic!() };
}

fn frame_with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = frame(ApiKey::Metadata, 9, 1, &metadata("x"));
    edit(&mut f);
    f
}

#[test]
fn api_versions_newer_than_known_gets_the_kip_511_fallback() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let mut s = node.connect();
    let mut f = frame(ApiKey::ApiVersions, 3, 7, &RequestKind::ApiVersions(ApiVersionsRequest::default()));
    f[6..8].copy_from_slice(&42i16.to_be_bytes());
    s.write_all(&f).unwrap();
    let body = read_frame(&mut s).expect("a response");
    assert_eq!(&body[0..4], &7i32.to_be_bytes(), "correlation id");
    assert_eq!(&body[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    // The connection stays open, and a supported version then works.
    let ResponseKind::ApiVersions(r) = call(&mut s, ApiKey::ApiVersions, 3, &RequestKind::ApiVersions(ApiVersionsRequest::default())) else { panic!() };
    assert_eq!(r.error_code, 0);
    assert!(r.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));
}

#[test]
fn corrupt_batches_and_bad_acks_are_refused_with_nothing_appended() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let mut s = node.connect();
    call(&mut s, ApiKey::Metadata, 9, &metadata("guarded")); // auto-creates
    let mut bad = build_batch(1, &[b"hello"]);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    assert_eq!(produce_error(call(&mut s, ApiKey::Produce, 9, &produce("guarded", bad, -1))).0, 2, "CORRUPT_MESSAGE");
    let mut old_magic = build_batch(1, &[b"hello"]);
    old_magic[16] = 1;
    assert_eq!(produce_error(call(&mut s, ApiKey::Produce, 9, &produce("guarded", old_magic, -1))).0, 43, "UNSUPPORTED_FOR_MESSAGE_FORMAT");
    // A partition with no batch at all: Kafka's "must have at least one
    // record batch per partition".
    assert_eq!(produce_error(call(&mut s, ApiKey::Produce, 9, &produce("guarded", Vec::new(), -1))).0, 87, "INVALID_RECORD");
    assert_eq!(produce_error(call(&mut s, ApiKey::Produce, 9, &produce("guarded", build_batch(1, &[b"x"]), 2))).0, 21, "INVALID_REQUIRED_ACKS");
    assert_eq!(produce_error(call(&mut s, ApiKey::Produce, 9, &produce("nope", build_batch(1, &[b"x"]), 1))).0, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let big = vec![0u8; 2 * 1024 * 1024];
    assert_eq!(produce_error(call(&mut s, ApiKey::Produce, 9, &produce("guarded", build_batch(1, &[&big]), 1))).0, 10, "MESSAGE_TOO_LARGE");
    // Nothing was appended: the first good batch gets offset 0.
    assert_eq!(produce_error(call(&mut s, ApiKey::Produce, 9, &produce("guarded", build_batch(1, &[b"ok"]), -1))), (0, 0));
}

/// Random bytes on many connections: the node survives and keeps serving.
/// The seed is printed; RUNNEL_FUZZ_SEED replays a run.
#[test]
fn random_bytes_on_the_socket_never_bring_the_node_down() {
    let seed: u64 = std::env::var("RUNNEL_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("RUNNEL_FUZZ_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = temp_dir();
    let mut node = Node::start(&dir.path().join("node"), &[]);
    let valid = frame(ApiKey::Metadata, 9, 1, &metadata("fuzz"));
    for _ in 0..300 {
        let mut s = node.connect();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let bytes: Vec<u8> = match rng.random_range(0..3) {
            // Pure noise.
            0 => (0..rng.random_range(1..200)).map(|_| rng.random()).collect(),
            // A valid frame with random bytes flipped.
            1 => {
                let mut f = valid.clone();
                for _ in 0..rng.random_range(1..6) {
                    let i = rng.random_range(4..f.len());
                    f[i] = rng.random();
                }
                f
            }
            // A plausible header with a random body.
            _ => {
                let body: Vec<u8> = (0..rng.random_range(0..100)).map(|_| rng.random()).collect();
                let mut f = ((body.len() + 10) as i32).to_be_bytes().to_vec();
                f.extend_from_slice(&(rng.random_range(0..70) as i16).to_be_bytes());
                f.extend_from_slice(&(rng.random_range(0..15) as i16).to_be_bytes());
                f.extend_from_slice(&1i32.to_be_bytes());
                f.extend_from_slice(&(-1i16).to_be_bytes());
                f.extend_from_slice(&body);
                f
            }
        };
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        // Drain whatever comes back until the node closes the connection.
        while read_frame(&mut s).is_some() {}
    }
    assert_serving(&mut node);
}

#[test]
fn offset_for_leader_epoch_and_stale_epochs() {
    use kafka_protocol::messages::OffsetForLeaderEpochRequest;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let mut s = node.connect();
    call(&mut s, ApiKey::Metadata, 9, &metadata("epochs"));
    for _ in 0..3 {
        assert_eq!(produce_error(call(&mut s, ApiKey::Produce, 9, &produce("epochs", build_batch(1, &[b"e"]), -1))).0, 0);
    }
    let ask = |current: i32, epoch: i32| {
        let request = OffsetForLeaderEpochRequest::default().with_replica_id(kafka_protocol::messages::BrokerId(-1)).with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("epochs")))
                .with_partitions(vec![OffsetForLeaderPartition::default().with_partition(0).with_current_leader_epoch(current).with_leader_epoch(epoch)]),
        ]);
        let mut s = node.connect();
        let ResponseKind::OffsetForLeaderEpoch(r) = call(&mut s, ApiKey::OffsetForLeaderEpoch, 4, &RequestKind::OffsetForLeaderEpoch(request)) else {
            panic!()
        };
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.end_offset)
    };
    assert_eq!(ask(-1, 0), (0, 0, 3), "epoch 0 ends at the log end");
    assert_eq!(ask(0, 0), (0, 0, 3));
    assert_eq!(ask(7, 0).0, 75, "UNKNOWN_LEADER_EPOCH for a newer epoch than the leader's");
}

/// A zstd frame of RLE blocks that decompresses to `bytes` zeros from four
/// bytes per 128 KiB: the shape of a zip bomb.
fn zstd_bomb(bytes: usize) -> Vec<u8> {
    const BLOCK: usize = 128 * 1024;
    let mut out = 0xFD2F_B528u32.to_le_bytes().to_vec();
    out.push(0x00); // no content size, no checksum, no dictionary
    out.push(7 << 3); // window 2^(10 + 7) bytes
    let blocks = bytes.div_ceil(BLOCK);
    for i in 0..blocks {
        let header = u32::from(i + 1 == blocks) | (1 << 1) | ((BLOCK as u32) << 3); // last?, RLE, size
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0);
    }
    out
}

/// `batch` (an uncompressed batch) with `section` as its records section,
/// the length and CRC made to fit and `codec` in its attributes.
fn with_section(batch: &[u8], section: &[u8], codec: i16) -> Vec<u8> {
    let mut out = batch[..61].to_vec();
    out.extend_from_slice(section);
    let length = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    runnel_storage::batch::set_attributes(&mut out, codec);
    out
}

/// The node's peak resident memory, from /proc.
fn peak_rss_mib(node: &Node) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid())).expect("read /proc status");
    let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmHWM");
    kib / 1024
}

fn list_offsets_error(s: &mut std::net::TcpStream, topic: &str, timestamp: i64) -> i16 {
    use kafka_protocol::messages::ListOffsetsRequest;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let request = ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp)]),
    ]);
    let ResponseKind::ListOffsets(r) = call(s, ApiKey::ListOffsets, 7, &RequestKind::ListOffsets(request)) else { panic!("not a list offsets response") };
    r.topics[0].partitions[0].error_code
}

/// Batches that claim more than they hold: two billion records, a record
/// with two billion headers, a compressed batch that decompresses to a
/// gigabyte. The places that read inside batches (every produce, which
/// checks the records as Kafka does, and ListOffsets by timestamp) once
/// reserved what the batch claimed and took the node down, or held the
/// whole decompressed gigabyte. Now each is a Kafka error, the node's peak
/// memory stays small, and it keeps serving.
#[test]
fn batches_that_claim_more_than_they_hold_get_errors_not_memory() {
    let dir = temp_dir();
    let mut node = Node::start(&dir.path().join("node"), &[]);
    for args in [&["topic", "create", "keyed", "--config", "cleanup.policy=compact"][..], &["topic", "create", "plain"][..]] {
        let (ok, _, err) = runnel_tests::runnelctl(&node.rpc, args);
        assert!(ok, "{args:?}: {err}");
    }
    let mut s = node.connect();
    let now = runnel_tests::now_ms();
    let one = build_keyed_batch(now, &[(Some(b"k"), Some(b"v"))]);
    let produced = |s: &mut std::net::TcpStream, topic: &str, batch: &[u8]| {
        let ResponseKind::Produce(r) = call(s, ApiKey::Produce, 9, &produce(topic, batch.to_vec(), -1)) else { panic!("not a produce response") };
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
    };

    // Counts that do not match the offsets, or the bytes, are refused on
    // every topic (INVALID_RECORD, CORRUPT_MESSAGE), as Kafka does.
    let mut many = one.clone();
    many[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    runnel_storage::batch::set_attributes(&mut many, 0);
    let mut spanned = many.clone();
    spanned[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    runnel_storage::batch::set_attributes(&mut spanned, 0);
    // The record's header count (its last byte, 0) made i32::MAX.
    let mut section = one[61..one.len() - 1].to_vec();
    section.extend([0xfe, 0xff, 0xff, 0xff, 0x0f]);
    section[0] = ((section.len() - 1) as u8) << 1;
    let headers = with_section(&one, &section, 0);
    for topic in ["keyed", "plain"] {
        assert_eq!(produced(&mut s, topic, &many).0, 87, "{topic}: two billion counted, one spanned: INVALID_RECORD");
        assert_eq!(produced(&mut s, topic, &spanned).0, 2, "{topic}: two billion counted and spanned, one held: CORRUPT_MESSAGE");
        assert_eq!(produced(&mut s, topic, &headers).0, 2, "{topic}: two billion headers: CORRUPT_MESSAGE");
    }

    // Compressed, the same record is read on every topic too, as Kafka
    // does, and refused: no consumer is served a batch it cannot read.
    // (Such a batch written by an earlier version, which stored compressed
    // batches unread on plain topics, gets an error from a lookup by
    // timestamp: decode_record_sets's bounds, unit-tested in the storage
    // crate.)
    let headers_zstd = runnel_storage::batch::compress_batch(&headers, 4).unwrap();
    for topic in ["keyed", "plain"] {
        assert_eq!(produced(&mut s, topic, &headers_zstd).0, 2, "{topic}: compressed, two billion headers: CORRUPT_MESSAGE");
    }

    // A gigabyte of zeros in 32 KiB of zstd.
    let later = build_keyed_batch(now + 1000, &[(Some(b"k"), Some(b"v"))]);
    let bomb = with_section(&later, &zstd_bomb(1 << 30), 4);
    assert!(bomb.len() < 64 * 1024);
    for topic in ["keyed", "plain"] {
        let (code, message) = produced(&mut s, topic, &bomb);
        assert_eq!(code, 2, "the bomb on {topic}: CORRUPT_MESSAGE ({message})");
        assert!(message.contains("decompress to more than"), "{message}");
    }
    // Compressed batches that hold what they claim are taken.
    let good_zstd = runnel_storage::batch::compress_batch(&one, 4).unwrap();
    assert_eq!(produced(&mut s, "plain", &good_zstd), (0, String::new()));
    assert_eq!(list_offsets_error(&mut s, "plain", now), 0, "a lookup by timestamp reads it");

    let peak = peak_rss_mib(&node);
    println!("peak RSS {peak} MiB");
    assert!(peak < 512, "the node held {peak} MiB at its peak: a batch's claims were believed");
    // Good batches are still taken, after the plain topic's compressed one.
    assert_eq!(produced(&mut s, "keyed", &one), (0, String::new()));
    let ResponseKind::Produce(r) = call(&mut s, ApiKey::Produce, 9, &produce("plain", one.clone(), -1)) else { panic!() };
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 1);
    assert_serving(&mut node);
}
