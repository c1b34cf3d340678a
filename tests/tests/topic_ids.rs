//! The newest versions of Produce, Metadata and ListOffsets that Kafka 4
//! clients ask for first, over the wire: Produce v13 names topics by id
//! (KIP-516) and an id no topic has is UNKNOWN_TOPIC_ID; Metadata v13 has
//! a top-level error code (KIP-1102); ListOffsets v8 to v10 answer the
//! tiered-storage offsets as Kafka does when tiered storage is off.

use bytes::Bytes;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::ProduceResponse;
use kafka_protocol::messages::{
    ApiKey, DeleteRecordsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_storage::batch::build_batch;
use runnel_tests::wire::call;
use runnel_tests::{Node, temp_dir};

const UNKNOWN_TOPIC_ID: i16 = 100;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// Creates `topic` (one partition) through Metadata v13 and returns its id.
fn create(s: &mut std::net::TcpStream, topic: &str) -> uuid::Uuid {
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name(topic)))])).with_allow_auto_topic_creation(true);
    let ResponseKind::Metadata(r) = call(s, ApiKey::Metadata, 13, &RequestKind::Metadata(request)) else { panic!("not a Metadata response") };
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!((r.topics[0].error_code, r.topics[0].partitions.len()), (0, 1), "{r:?}");
    assert!(!r.topics[0].topic_id.is_nil(), "{r:?}");
    r.topics[0].topic_id
}

fn produce_by_id(s: &mut std::net::TcpStream, id: uuid::Uuid, values: &[&[u8]]) -> ProduceResponse {
    let batch = build_batch(runnel_tests::now_ms(), values);
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(5_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_topic_id(id)
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from(batch)))]),
    ]);
    let ResponseKind::Produce(r) = call(s, ApiKey::Produce, 13, &RequestKind::Produce(request)) else { panic!("not a Produce response") };
    r
}

#[test]
fn produce_v13_names_topics_by_id() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let mut s = node.connect();
    let id = create(&mut s, "by-id");
    let r = produce_by_id(&mut s, id, &[b"a", b"b", b"c"]);
    assert_eq!(r.responses[0].topic_id, id, "the answer names the topic by id: {r:?}");
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0), "{r:?}");
    let r = produce_by_id(&mut s, id, &[b"d"]);
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 3, "{r:?}");

    // An id no topic has: refused with UNKNOWN_TOPIC_ID, nothing written anywhere.
    let stranger = uuid::Uuid::from_u128(0xfeed);
    let r = produce_by_id(&mut s, stranger, &[b"lost"]);
    assert_eq!(r.responses[0].topic_id, stranger, "{r:?}");
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, UNKNOWN_TOPIC_ID, "{r:?}");
    assert!(p.error_message.as_ref().is_some_and(|m| m.contains(&stranger.to_string())), "{r:?}");

    // What was written reads back by id, all four records.
    let request = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
        FetchTopic::default().with_topic_id(id).with_partitions(vec![FetchPartition::default().with_partition(0).with_partition_max_bytes(1 << 20)]),
    ]);
    let ResponseKind::Fetch(f) = call(&mut s, ApiKey::Fetch, 13, &RequestKind::Fetch(request)) else { panic!("not a Fetch response") };
    let p = &f.responses[0].partitions[0];
    assert_eq!((f.responses[0].topic_id, p.error_code, p.high_watermark), (id, 0, 4), "{f:?}");
}

fn list_offsets(s: &mut std::net::TcpStream, version: i16, topic: &str, timestamp: i64) -> ListOffsetsPartitionResponse {
    let request = ListOffsetsRequest::default().with_replica_id(kafka_protocol::messages::BrokerId(-1)).with_timeout_ms(5_000).with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp).with_current_leader_epoch(-1)]),
    ]);
    let ResponseKind::ListOffsets(r) = call(s, ApiKey::ListOffsets, version, &RequestKind::ListOffsets(request)) else { panic!("not a ListOffsets response") };
    r.topics[0].partitions[0].clone()
}

#[test]
fn list_offsets_v8_to_v10_answer_as_kafka_without_tiered_storage() {
    const EARLIEST_LOCAL: i64 = -4;
    const LATEST_TIERED: i64 = -5;
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let mut s = node.connect();
    let id = create(&mut s, "offsets");
    for _ in 0..5 {
        assert_eq!(produce_by_id(&mut s, id, &[b"x"]).responses[0].partition_responses[0].error_code, 0);
    }
    // The log starts at offset 2 after DeleteRecords.
    let request = DeleteRecordsRequest::default().with_timeout_ms(5_000).with_topics(vec![
        DeleteRecordsTopic::default()
            .with_name(name("offsets"))
            .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(2)]),
    ]);
    let ResponseKind::DeleteRecords(r) = call(&mut s, ApiKey::DeleteRecords, 2, &RequestKind::DeleteRecords(request)) else { panic!() };
    assert_eq!(r.topics[0].partitions[0].low_watermark, 2, "{r:?}");

    for version in 8..=10 {
        let p = list_offsets(&mut s, version, "offsets", EARLIEST_LOCAL);
        assert_eq!((p.error_code, p.offset, p.timestamp, p.leader_epoch), (0, 2, -1, 0), "v{version}: the earliest local offset is the log start: {p:?}");
        assert_eq!(list_offsets(&mut s, version, "offsets", -2).offset, 2, "v{version}");
        assert_eq!(list_offsets(&mut s, version, "offsets", -1).offset, 5, "v{version}");
        if version >= 9 {
            let p = list_offsets(&mut s, version, "offsets", LATEST_TIERED);
            assert_eq!((p.error_code, p.offset, p.timestamp, p.leader_epoch), (0, -1, -1, -1), "v{version}: nothing is tiered: {p:?}");
        }
    }
}
