//! 100k records with acks=all to a 3-partition topic, consumed back by
//! assignment: every record once, in order per partition, keys on the
//! partitions librdkafka's default partitioner picks. Then SIGKILL after the
//! last acknowledgement, restart, and read everything again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use runnel_tests::{Node, librdkafka_partition, temp_dir};

const RECORDS: usize = 100_000;
const PARTITIONS: i32 = 3;

async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = admin.create_topics(&[topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))).await.expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

/// Produces RECORDS keyed records with acks=all; returns (key, partition, offset) per record.
async fn produce_all(bootstrap: &str, topic: &str) -> Vec<(String, i32, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let key = format!("key-{}", i % 1000);
        let value = format!("value-{i}");
        let mut record = FutureRecord::to(topic).key(&key).payload(&value);
        let delivery = loop {
            match producer.send_result(record) {
                Ok(d) => break d,
                Err((e, back)) => {
                    assert!(matches!(e, rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)), "{e}");
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        };
        deliveries.push((key, delivery));
    }
    let mut acked = Vec::with_capacity(RECORDS);
    for (key, d) in deliveries {
        let delivery =
            tokio::time::timeout(Duration::from_secs(60), d).await.expect("delivery in time").expect("delivery not cancelled").expect("acknowledged");
        acked.push((key, delivery.partition, delivery.offset));
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    acked
}

/// Reads every partition from the beginning to `ends`, by assignment.
fn consume_all(bootstrap: &str, topic: &str, ends: &HashMap<i32, i64>) -> HashMap<i32, Vec<(i64, String, String)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-assign-only")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got: HashMap<i32, Vec<(i64, String, String)>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = |got: &HashMap<i32, Vec<(i64, String, String)>>| ends.iter().all(|(p, end)| got.get(p).map_or(0, |v| v.len() as i64) >= *end);
    while !done(&got) {
        assert!(Instant::now() < deadline, "consumed {:?} of {ends:?} before the deadline", got.iter().map(|(p, v)| (p, v.len())).collect::<Vec<_>>());
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => panic!("consume error: {e}"),
            Some(Ok(m)) => {
                let key = String::from_utf8(m.key().expect("key").to_vec()).expect("utf8 key");
                let value = String::from_utf8(m.payload().expect("value").to_vec()).expect("utf8 value");
                got.entry(m.partition()).or_default().push((m.offset(), key, value));
            }
        }
    }
    got
}

fn check(acked: &[(String, i32, i64)], consumed: &HashMap<i32, Vec<(i64, String, String)>>) {
    // Every acknowledged record is at its offset with its key and value, once.
    let total: usize = consumed.values().map(Vec::len).sum();
    assert_eq!(total, acked.len(), "consumed exactly the acknowledged records");
    for (p, records) in consumed {
        for (i, (offset, _, _)) in records.iter().enumerate() {
            assert_eq!(*offset, i as i64, "partition {p}: offsets are dense and in order");
        }
    }
    for (i, (key, partition, offset)) in acked.iter().enumerate() {
        assert_eq!(*partition, librdkafka_partition(key.as_bytes(), PARTITIONS), "key {key} on the default partitioner's partition");
        let (o, k, v) = &consumed[partition][*offset as usize];
        assert_eq!((o, k, v), (offset, key, &format!("value-{i}")));
    }
    // Per partition, produce order is offset order.
    let mut last: HashMap<i32, i64> = HashMap::new();
    for (_, partition, offset) in acked {
        let prev = last.insert(*partition, *offset);
        assert!(prev.is_none_or(|p| p < *offset), "partition {partition}: acknowledgements in offset order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_records_survive_sigkill() {
    let dir = temp_dir();
    let mut node = Node::start(&dir.path().join("node"), &[]);
    create_topic(&node.bootstrap, "orders", PARTITIONS, &[]).await;
    let started = Instant::now();
    let acked = produce_all(&node.bootstrap, "orders").await;
    println!("produced {RECORDS} records with acks=all in {:?}", started.elapsed());
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for (_, p, o) in &acked {
        let e = ends.entry(*p).or_default();
        *e = (*e).max(o + 1);
    }
    assert_eq!(ends.len(), PARTITIONS as usize, "keys spread over every partition");
    check(&acked, &consume_all(&node.bootstrap, "orders", &ends));

    // SIGKILL right after the last acknowledgement: nothing acknowledged is lost.
    node.kill();
    node.restart();
    check(&acked, &consume_all(&node.bootstrap, "orders", &ends));
    assert!(node.is_running());
}
