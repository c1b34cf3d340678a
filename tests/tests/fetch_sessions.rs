//! Incremental fetch sessions (KIP-227) over the wire: a full fetch at
//! session epoch 0 opens a session; incremental fetches name only what
//! changed and are answered only with partitions that have something new;
//! unknown sessions and epochs out of turn get Kafka's errors; epoch -1
//! closes a session; a node started with no session slots answers every
//! fetch in full with session id 0.

use std::net::TcpStream;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, MetadataRequest, ProduceRequest, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_storage::batch::build_batch;
use runnel_tests::wire::call;
use runnel_tests::{Node, temp_dir};

const TOPIC: &str = "sessions";
const FETCH_VERSION: i16 = 12;
/// Kafka's FETCH_SESSION_ID_NOT_FOUND and INVALID_FETCH_SESSION_EPOCH.
const SESSION_NOT_FOUND: i16 = 70;
const INVALID_EPOCH: i16 = 71;

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

fn create_topic(s: &mut TcpStream) {
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic()))])).with_allow_auto_topic_creation(true);
    let ResponseKind::Metadata(r) = call(s, ApiKey::Metadata, 9, &RequestKind::Metadata(request)) else { panic!("not a Metadata response") };
    assert_eq!(r.topics[0].partitions.len(), 3, "{r:?}");
}

fn produce(s: &mut TcpStream, partition: i32, value: &str) {
    let batch = build_batch(1_000, &[value.as_bytes()]);
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(5_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(topic())
            .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(Bytes::from(batch)))]),
    ]);
    let ResponseKind::Produce(r) = call(s, ApiKey::Produce, 9, &RequestKind::Produce(request)) else { panic!("not a Produce response") };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

fn fetch(s: &mut TcpStream, session_id: i32, epoch: i32, partitions: &[(i32, i64)], forget: &[i32]) -> FetchResponse {
    let sent: Vec<FetchPartition> = partitions
        .iter()
        .map(|(p, offset)| FetchPartition::default().with_partition(*p).with_fetch_offset(*offset).with_partition_max_bytes(1 << 20))
        .collect();
    let topics = if sent.is_empty() { vec![] } else { vec![FetchTopic::default().with_topic(topic()).with_partitions(sent)] };
    let forgotten = if forget.is_empty() { vec![] } else { vec![ForgottenTopic::default().with_topic(topic()).with_partitions(forget.to_vec())] };
    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(200)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten);
    let ResponseKind::Fetch(r) = call(s, ApiKey::Fetch, FETCH_VERSION, &RequestKind::Fetch(request)) else { panic!("not a Fetch response") };
    r
}

/// `(partition, records bytes, high watermark)` of every partition answered.
fn answered(r: &FetchResponse) -> Vec<(i32, usize, i64)> {
    let mut out: Vec<_> =
        r.responses.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.records.as_ref().map_or(0, Bytes::len), p.high_watermark))).collect();
    out.sort_unstable();
    out
}

#[test]
fn incremental_fetches_answer_only_partitions_with_something_new() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--default-partitions", "3"]);
    let mut s = node.connect();
    create_topic(&mut s);
    produce(&mut s, 0, "zero");

    // Epoch 0: a new session, every partition answered.
    let full = fetch(&mut s, 0, 0, &[(0, 0), (1, 0), (2, 0)], &[]);
    assert_eq!(full.error_code, 0);
    let id = full.session_id;
    assert!(id > 0, "a session was opened: {full:?}");
    let first = answered(&full);
    assert_eq!(first.iter().map(|(p, _, hw)| (*p, *hw)).collect::<Vec<_>>(), vec![(0, 1), (1, 0), (2, 0)]);
    assert!(first[0].1 > 0, "partition 0's record came back");

    // Epoch 1 moves partition 0 past its record; nothing is new anywhere.
    let quiet = fetch(&mut s, id, 1, &[(0, 1)], &[]);
    assert_eq!((quiet.error_code, quiet.session_id), (0, id));
    assert!(answered(&quiet).is_empty(), "nothing changed, nothing answered: {quiet:?}");

    // A record on partition 2: only partition 2 is answered, though the
    // request named no partition (the session reads from offset 0 there).
    produce(&mut s, 2, "two");
    let r = fetch(&mut s, id, 2, &[], &[]);
    let two = answered(&r);
    assert_eq!(two.len(), 1, "{r:?}");
    assert_eq!((two[0].0, two[0].2), (2, 1));
    assert!(two[0].1 > 0);

    // Forgetting partition 2 and producing to it and to 1: only 1 comes back.
    produce(&mut s, 1, "one");
    produce(&mut s, 2, "two again");
    let r = fetch(&mut s, id, 3, &[], &[2]);
    assert_eq!(answered(&r).iter().map(|(p, _, _)| *p).collect::<Vec<_>>(), vec![1]);

    // Out of turn and unknown sessions get Kafka's errors.
    assert_eq!(fetch(&mut s, id, 9, &[], &[]).error_code, INVALID_EPOCH);
    assert_eq!(fetch(&mut s, id.wrapping_add(7), 1, &[], &[]).error_code, SESSION_NOT_FOUND);
    let metrics = node.http_get("/metrics").1;
    assert!(metrics.contains("\nrunnel_fetch_sessions 1\n"), "{metrics}");

    // Epoch -1 closes it: a sessionless full answer, and the id is gone.
    let closed = fetch(&mut s, id, -1, &[(0, 0), (1, 0)], &[]);
    assert_eq!((closed.error_code, closed.session_id), (0, 0));
    assert_eq!(answered(&closed).len(), 2);
    assert_eq!(fetch(&mut s, id, 4, &[], &[]).error_code, SESSION_NOT_FOUND);
}

#[test]
fn without_session_slots_every_fetch_is_answered_in_full() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--default-partitions", "3", "--max-incremental-fetch-session-cache-slots", "0"]);
    let mut s = node.connect();
    create_topic(&mut s);
    let r = fetch(&mut s, 0, 0, &[(0, 0), (1, 0), (2, 0)], &[]);
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(answered(&r).len(), 3);
}

/// The topic's id, from Metadata v12.
fn topic_id(s: &mut TcpStream) -> uuid::Uuid {
    let request = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic()))]));
    let ResponseKind::Metadata(r) = call(s, ApiKey::Metadata, 12, &RequestKind::Metadata(request)) else { panic!("not a Metadata response") };
    assert!(!r.topics[0].topic_id.is_nil(), "{r:?}");
    r.topics[0].topic_id
}

/// A Fetch of the given version naming topics by id: `(topic id, partition, offset)`.
fn fetch_by_id(s: &mut TcpStream, version: i16, session: (i32, i32), partitions: &[(uuid::Uuid, i32, i64)], forget: &[(uuid::Uuid, i32)]) -> FetchResponse {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (id, p, offset) in partitions {
        let partition = FetchPartition::default().with_partition(*p).with_fetch_offset(*offset).with_partition_max_bytes(1 << 20);
        match topics.iter_mut().find(|t| t.topic_id == *id) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(FetchTopic::default().with_topic_id(*id).with_partitions(vec![partition])),
        }
    }
    let forgotten = forget.iter().map(|(id, p)| ForgottenTopic::default().with_topic_id(*id).with_partitions(vec![*p])).collect();
    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(200)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten);
    let ResponseKind::Fetch(r) = call(s, ApiKey::Fetch, version, &RequestKind::Fetch(request)) else { panic!("not a Fetch response") };
    r
}

/// `(topic id, partition, error code, record bytes)` of every partition answered.
fn answered_by_id(r: &FetchResponse) -> Vec<(uuid::Uuid, i32, i16, usize)> {
    let mut out: Vec<_> = r
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, p.partition_index, p.error_code, p.records.as_ref().map_or(0, Bytes::len))))
        .collect();
    out.sort_unstable();
    out
}

/// Fetch v13 and later (KIP-516) name topics by id, in requests, sessions
/// and responses: an id no topic has is answered UNKNOWN_TOPIC_ID, a
/// session forgets partitions by id, and a topic deleted and created again
/// under the same name is another topic to a session that held the old one.
#[test]
fn from_fetch_v13_topics_are_named_by_id() {
    const UNKNOWN_TOPIC_ID: i16 = 100;
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--default-partitions", "3"]);
    let mut s = node.connect();
    create_topic(&mut s);
    produce(&mut s, 0, "zero");
    let id = topic_id(&mut s);
    let stranger = uuid::Uuid::from_u128(0x5eed);
    for version in 13..=18 {
        let r = fetch_by_id(&mut s, version, (0, -1), &[(id, 0, 0), (stranger, 0, 0)], &[]);
        let got = answered_by_id(&r);
        assert_eq!(got.len(), 2, "v{version}: {r:?}");
        let known = got.iter().find(|p| p.0 == id).unwrap();
        assert!(known.2 == 0 && known.3 > 0, "v{version}: the record comes back under the topic's id: {r:?}");
        assert_eq!(got.iter().find(|p| p.0 == stranger).unwrap().2, UNKNOWN_TOPIC_ID, "v{version}");
    }

    // A session by id: opened with two partitions, one forgotten by id.
    let full = fetch_by_id(&mut s, 13, (0, 0), &[(id, 0, 1), (id, 1, 0)], &[]);
    let session = full.session_id;
    assert!(session > 0, "{full:?}");
    produce(&mut s, 1, "one");
    produce(&mut s, 0, "zero again");
    let r = fetch_by_id(&mut s, 13, (session, 1), &[], &[(id, 1)]);
    assert_eq!(answered_by_id(&r).iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(), vec![(id, 0)], "{r:?}");

    // The topic is deleted and created again under its name: the session's
    // partition is of the old id, which no topic has now.
    let (ok, _, err) = runnel_tests::runnelctl(&node.rpc, &["topic", "delete", TOPIC]);
    assert!(ok, "{err}");
    let mut epoch = 2;
    runnel_tests::wait_for("the topic to be created again", std::time::Duration::from_secs(20), || {
        let request =
            MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic()))])).with_allow_auto_topic_creation(true);
        let ResponseKind::Metadata(r) = call(&mut s, ApiKey::Metadata, 12, &RequestKind::Metadata(request)) else { panic!("not a Metadata response") };
        (r.topics[0].error_code == 0 && r.topics[0].topic_id != id).then_some(())
    });
    runnel_tests::wait_for("the old id to be unknown to the session", std::time::Duration::from_secs(20), || {
        let r = fetch_by_id(&mut s, 13, (session, epoch), &[], &[]);
        epoch += 1;
        assert_eq!(r.error_code, 0, "{r:?}");
        answered_by_id(&r).iter().any(|p| p.0 == id && p.2 == UNKNOWN_TOPIC_ID).then_some(())
    });
}
