//! Compacted topics through a leader's SIGKILL (issue 16): 100,000 updates
//! over 1,000 keys plus tombstones go to a three-replica compacted topic;
//! the partition leader is killed while its (throttled) cleaner is in a
//! pass; then a consumer from offset 0 sees one latest value per live key
//! and none for deleted keys, and every replica's log, read from its files,
//! holds the same latest values in far fewer bytes than were written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use runnel_storage::{LogConfig, PartitionLog};
use runnel_tests::{Cluster, runnelctl, wait_for};

const TOPIC: &str = "profiles";
const KEYS: usize = 1_000;
const UPDATES: usize = 100_000;

/// key -> latest value (`None`: deleted).
type Latest = BTreeMap<String, Option<String>>;

fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics.lines().filter_map(|l| l.strip_prefix(prefix)).filter_map(|v| v.trim().parse::<f64>().ok()).sum()
}

fn leader(cluster: &Cluster, via: usize) -> Option<u64> {
    let (ok, out, _) = runnelctl(&cluster.nodes[via].rpc, &["topic", "describe", TOPIC]);
    let v: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
    v["partitions"][0]["leader"].as_u64()
}

/// Sends every update, then the tombstones, then more updates of the live
/// keys (so the tombstones end up in closed segments); returns what a
/// reader must end with.
fn produce(bootstrap: &str) -> Latest {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "16384")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let mut latest = Latest::new();
    let mut send = |key: String, value: Option<String>| {
        let mut record = BaseRecord::<str, str>::to(TOPIC).key(&key);
        if let Some(v) = &value {
            record = record.payload(v);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        latest.insert(key, value);
    };
    for i in 0..UPDATES {
        send(format!("key-{}", i % KEYS), Some(format!("value-{i}-{}", "x".repeat(20))));
    }
    for k in (0..KEYS).step_by(10) {
        send(format!("key-{k}"), None);
    }
    for i in 0..5_000 {
        let k = i % KEYS;
        if !k.is_multiple_of(10) {
            send(format!("key-{k}"), Some(format!("late-{i}")));
        }
    }
    producer.flush(Duration::from_secs(60)).expect("every update acknowledged");
    latest
}

/// Every (key, value) a consumer reads from offset 0 to the high watermark.
fn consume(bootstrap: &str) -> Vec<(String, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "compaction-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (_, high) = consumer.fetch_watermarks(TOPIC, 0, Duration::from_secs(10)).expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = -1;
    let deadline = Instant::now() + Duration::from_secs(60);
    while last < high - 1 && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                last = m.offset();
                let key = String::from_utf8(m.key().expect("compacted records have keys").to_vec()).unwrap();
                out.push((key, m.payload().map(|v| String::from_utf8(v.to_vec()).unwrap())));
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    assert_eq!(last, high - 1, "read to the high watermark");
    out
}

/// The records in a replica's log files: (key, value) in offset order,
/// and the log's size in bytes.
fn replica_records(data_dir: &std::path::Path) -> (Vec<(String, Option<String>)>, u64) {
    use kafka_protocol::records::RecordBatchDecoder;
    let (log, _) = PartitionLog::open(&data_dir.join("logs").join(format!("{TOPIC}-0")), LogConfig::default()).expect("the replica's log opens");
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut out = Vec::new();
    while offset < end {
        let bytes = log.read(offset, 1 << 20, end, true).expect("read");
        assert!(!bytes.is_empty(), "nothing at {offset} below {end}");
        offset = runnel_storage::batch::next_offset_after(&bytes).expect("whole batches");
        let mut buf = bytes;
        for set in RecordBatchDecoder::decode_all(&mut buf).expect("batches decode") {
            for r in set.records.iter().filter(|r| !r.control) {
                let key = String::from_utf8(r.key.clone().expect("a key").to_vec()).unwrap();
                out.push((key, r.value.as_ref().map(|v| String::from_utf8(v.to_vec()).unwrap())));
            }
        }
    }
    (out, log.size_bytes())
}

fn check(what: &str, records: &[(String, Option<String>)], expected: &Latest) {
    let mut seen = Latest::new();
    for (k, v) in records {
        seen.insert(k.clone(), v.clone());
    }
    for (k, v) in expected {
        match v {
            Some(v) => assert_eq!(seen.get(k), Some(&Some(v.clone())), "{what}: the latest value of {k}"),
            None => assert!(matches!(seen.get(k), None | Some(None)), "{what}: {k} was deleted, and has {:?}", seen.get(k)),
        }
    }
    assert!(records.len() < UPDATES / 10, "{what}: {} records left of {}", records.len(), UPDATES);
}

#[test]
fn a_compacted_topic_keeps_the_latest_values_on_every_replica_through_a_leader_kill() {
    // The cleaner is throttled to 4 MB/s so a pass over what is written
    // takes seconds, and the kill lands inside one. Nothing is cleanable
    // while the records are produced (min.compaction.lag.ms of an hour):
    // a cleaner that kept up with a slow producer would leave no pass to
    // kill; the lag is lifted afterwards and the first pass covers it all.
    let mut cluster = Cluster::start_with(
        &["controller,broker"; 3],
        2000,
        &["--log-cleaner-backoff-ms", "100", "--log-cleaner-io-max-bytes-per-second", "4000000", "--replica-lag-time-max-ms", "3000"],
    );
    let bootstrap = cluster.bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("admin");
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "262144")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", "0")
        .set("min.compaction.lag.ms", "3600000");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for r in runtime.block_on(admin.create_topics(&[topic], &opts)).expect("create") {
        r.expect("created");
    }
    let expected = produce(&bootstrap);

    let victim = wait_for("the partition's leader", Duration::from_secs(10), || leader(&cluster, 0));
    let victim_index = (victim - 1) as usize;
    let cleaner_io = |cluster: &Cluster| metric(&cluster.nodes[victim_index].http_get("/metrics").1, "runnel_log_cleaner_io_bytes_total ");
    let before = cleaner_io(&cluster);
    let (ok, _, err) = runnelctl(&cluster.nodes[victim_index].rpc, &["topic", "alter-config", TOPIC, "--set", "min.compaction.lag.ms=0"]);
    assert!(ok, "{err}");
    wait_for("the leader's cleaner in a pass", Duration::from_secs(30), || (cleaner_io(&cluster) > before).then_some(()));
    eprintln!("SIGKILL of node {victim}, the leader, during a cleaner pass");
    cluster.nodes[victim_index].kill();
    let other = (victim_index + 1) % 3;
    wait_for("a new leader", Duration::from_secs(20), || leader(&cluster, other).filter(|l| *l != victim));
    cluster.nodes[victim_index].restart();

    // Every replica cleans its own copy to the end of its closed segments.
    wait_for("every replica cleaned", Duration::from_secs(120), || {
        cluster
            .nodes
            .iter()
            .all(|n| {
                let metrics = n.http_get("/metrics").1;
                let line = metrics.lines().find(|l| l.starts_with("runnel_log_cleaner_dirty_ratio{") && l.contains(TOPIC));
                line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok()).is_some_and(|r| r == 0.0)
            })
            .then_some(())
    });
    let interrupted = cluster.nodes[victim_index].log().contains("unfinished cleaner copy");
    eprintln!("the killed leader found an unfinished cleaner copy when it restarted: {interrupted}");
    check("a consumer from offset 0", &consume(&bootstrap), &expected);

    let mut sizes = Vec::new();
    for node in &mut cluster.nodes {
        node.terminate();
        let (records, bytes) = replica_records(&node.data_dir);
        check(&format!("the log files of {}", node.data_dir.display()), &records, &expected);
        sizes.push(bytes);
    }
    eprintln!("replica log sizes after cleaning: {sizes:?} bytes, of {UPDATES} updates written");
    assert!(sizes.iter().all(|s| *s < 3 << 20), "{sizes:?}");
}
