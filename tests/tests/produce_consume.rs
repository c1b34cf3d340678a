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

/// The codec of every batch stored in partition `partition` of `topic`
/// under `data_dir`, and the values of its records, read from its segment
/// files.
fn stored(data_dir: &std::path::Path, topic: &str, partition: i32) -> (Vec<i16>, Vec<String>) {
    fn find(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == name) {
                    return Some(path);
                }
                if let Some(found) = find(&path, name) {
                    return Some(found);
                }
            }
        }
        None
    }
    let dir = find(data_dir, &format!("{topic}-{partition}")).expect("the partition's directory");
    let mut segments: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "log")).collect();
    segments.sort();
    let (mut codecs, mut values) = (Vec::new(), Vec::new());
    for segment in segments {
        let bytes = bytes::Bytes::from(std::fs::read(&segment).unwrap());
        let mut pos = 0;
        while pos < bytes.len() {
            let h = runnel_storage::batch::BatchHeader::parse(&bytes[pos..]).expect("a stored batch");
            codecs.push(h.compression());
            pos += h.total_bytes();
        }
        for set in runnel_storage::compression::decode_record_sets(&bytes).expect("stored batches decode") {
            values.extend(set.records.iter().map(|r| String::from_utf8(r.value.clone().expect("a value").to_vec()).expect("utf8")));
        }
    }
    (codecs, values)
}

/// Issue 16, compression.type: a topic's codec is what its batches are
/// stored with, whatever the producer sent (here lz4), and consumers read
/// the same records; `producer` keeps the producer's codec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_compression_type_is_the_codec_batches_are_stored_with() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let cases = [("as-zstd", "zstd", 4), ("as-gzip", "gzip", 1), ("plain", "uncompressed", 0), ("as-sent", "producer", 3)];
    for (topic, codec, _) in cases {
        create_topic(&node.bootstrap, topic, PARTITIONS, &[("compression.type", codec)]).await;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &node.bootstrap)
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    const N: usize = 600;
    for (topic, _, _) in cases {
        let sends: Vec<_> = (0..N)
            .map(|i| {
                let (key, value) = (format!("key-{i}"), format!("value {i} of {topic}, long enough to be worth compressing"));
                let producer = producer.clone();
                async move { producer.send(FutureRecord::to(topic).key(&key).payload(&value), Duration::from_secs(30)).await.map_err(|(e, _)| e) }
            })
            .collect();
        for sent in futures::future::join_all(sends).await {
            sent.expect("acknowledged");
        }
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    for (topic, codec, id) in cases {
        let mut want: Vec<String> = (0..N).map(|i| format!("value {i} of {topic}, long enough to be worth compressing")).collect();
        want.sort();
        let mut on_disk = Vec::new();
        let mut ends = HashMap::new();
        for p in 0..PARTITIONS {
            let (codecs, values) = stored(&dir.path().join("node"), topic, p);
            assert!(!codecs.is_empty() && codecs.iter().all(|c| *c == id), "{topic} ({codec}): stored codecs {codecs:?}");
            ends.insert(p, values.len() as i64);
            on_disk.extend(values);
        }
        on_disk.sort();
        assert_eq!(on_disk, want, "{topic}: every record stored once, as sent");
        if id == 4 {
            continue; // the rdkafka crate's librdkafka is built without zstd
        }
        let mut got: Vec<String> = consume_all(&node.bootstrap, topic, &ends).into_values().flatten().map(|(_, _, value)| value).collect();
        got.sort();
        assert_eq!(got, want, "{topic}: every record consumed once, as sent");
    }
}
