//! Idempotent producers: InitProducerId hands out fresh ids; a retried batch
//! gets its original offset and is not written twice, also after a crash; a
//! sequence gap is refused; librdkafka with enable.idempotence=true works.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, MetadataRequest, ProduceRequest, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use runnel_storage::batch::{build_batch, set_producer};
use runnel_tests::wire::call;
use runnel_tests::{Node, temp_dir};

fn init_producer_id(node: &Node) -> (i64, i16) {
    let mut s = node.connect();
    let ResponseKind::InitProducerId(r) = call(
        &mut s,
        ApiKey::InitProducerId,
        4,
        &RequestKind::InitProducerId(InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000)),
    ) else {
        panic!("not an InitProducerId response")
    };
    assert_eq!(r.error_code, 0);
    (r.producer_id.0, r.producer_epoch)
}

/// Produces one idempotent batch of `records` records; returns (error code, base offset).
fn produce(node: &Node, producer_id: i64, epoch: i16, sequence: i32, records: usize) -> (i16, i64) {
    let values: Vec<Vec<u8>> = (0..records).map(|i| format!("s{}", sequence as usize + i).into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let mut batch = build_batch(1000, &refs);
    set_producer(&mut batch, producer_id, epoch, sequence);
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("idem")))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from(batch)))]),
    ]);
    let mut s = node.connect();
    let ResponseKind::Produce(r) = call(&mut s, ApiKey::Produce, 9, &RequestKind::Produce(request)) else { panic!() };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn log_end(node: &Node) -> i64 {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &node.bootstrap).set("group.id", "x").create().unwrap();
    c.fetch_watermarks("idem", 0, Duration::from_secs(10)).unwrap().1
}

#[test]
fn retries_are_deduplicated_and_gaps_refused_across_a_crash() {
    let dir = temp_dir();
    let mut node = Node::start(&dir.path().join("node"), &[]);
    let mut s = node.connect();
    call(
        &mut s,
        ApiKey::Metadata,
        9,
        &RequestKind::Metadata(
            MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("idem"))))]))
                .with_allow_auto_topic_creation(true),
        ),
    );
    let (a, epoch) = init_producer_id(&node);
    let (b, _) = init_producer_id(&node);
    assert_ne!(a, b, "every InitProducerId gets a fresh id");
    assert_eq!(epoch, 0);

    assert_eq!(produce(&node, a, 0, 0, 3), (0, 0));
    assert_eq!(produce(&node, b, 0, 0, 1), (0, 3));
    assert_eq!(produce(&node, a, 0, 3, 2), (0, 4));
    // A retry of the first batch: original offset, nothing written.
    assert_eq!(produce(&node, a, 0, 0, 3), (0, 0));
    assert_eq!(log_end(&node), 6);
    // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER.
    assert_eq!(produce(&node, a, 0, 9, 1).0, 45);

    // After SIGKILL and restart the producer state comes back from the log.
    node.kill();
    node.restart();
    assert_eq!(produce(&node, a, 0, 3, 2), (0, 4), "retry after restart is still a duplicate");
    assert_eq!(produce(&node, a, 0, 5, 1), (0, 6));
    assert_eq!(log_end(&node), 7);
    let (c, _) = init_producer_id(&node);
    assert!(c > a && c > b, "ids are not reused after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_idempotent_producer_delivers_each_message_once() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--default-partitions", "3"]);
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &node.bootstrap).set("enable.idempotence", "true").set("linger.ms", "2").create().unwrap();
    let mut pending = Vec::new();
    for i in 0..20_000 {
        let key = format!("k{}", i % 100);
        let value = format!("v{i}");
        pending.push(producer.send_result(FutureRecord::to("idem-rd").key(&key).payload(&value)).map_err(|(e, _)| e).expect("queued"));
    }
    let mut seen = std::collections::HashSet::new();
    for d in pending {
        let d = tokio::time::timeout(Duration::from_secs(60), d).await.expect("in time").expect("not cancelled").expect("delivered");
        assert!(seen.insert((d.partition, d.offset)), "two messages at one offset");
    }
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &node.bootstrap).set("group.id", "x").create().unwrap();
    let total: i64 = (0..3).map(|p| c.fetch_watermarks("idem-rd", p, Duration::from_secs(10)).unwrap().1).sum();
    assert_eq!(total, 20_000, "exactly one copy of each message");
}
