//! ListOffsets by timestamp with librdkafka, and retention deleting old segments.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use runnel_tests::{Node, temp_dir};

async fn create_topic(bootstrap: &str, name: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin");
    let mut topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    for r in admin.create_topics(&[topic], &AdminOptions::new()).await.expect("create") {
        r.expect("created");
    }
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new().set("bootstrap.servers", bootstrap).set("acks", "all").set("linger.ms", "0").create().expect("producer")
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "unused").set("enable.auto.commit", "false").create().expect("consumer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_finds_the_first_record_at_or_after() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    create_topic(&node.bootstrap, "timed", &[]).await;
    let p = producer(&node.bootstrap);
    // Records at 1000, 2000, ..., 20000 ms: one batch each (linger 0, awaited one by one).
    for i in 1..=20i64 {
        let value = format!("v{i}");
        p.send(FutureRecord::<(), _>::to("timed").payload(&value).timestamp(i * 1000), Duration::from_secs(10)).await.expect("delivered");
    }
    let c = consumer(&node.bootstrap);
    let lookup = |ts: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("timed", 0, Offset::Offset(ts)).unwrap();
        let found = c.offsets_for_times(tpl, Timeout::After(Duration::from_secs(10))).expect("offsets_for_times");
        found.find_partition("timed", 0).unwrap().offset()
    };
    assert_eq!(lookup(0), Offset::Offset(0));
    assert_eq!(lookup(1000), Offset::Offset(0));
    assert_eq!(lookup(1001), Offset::Offset(1));
    assert_eq!(lookup(10_000), Offset::Offset(9));
    assert_eq!(lookup(20_000), Offset::Offset(19));
    // Past the newest record: no offset (librdkafka reports the end).
    assert_eq!(lookup(20_001), Offset::End);
    let (low, high) = c.fetch_watermarks("timed", 0, Duration::from_secs(10)).expect("watermarks");
    assert_eq!((low, high), (0, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_segments() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--retention-check-interval-ms", "200"]);
    // Small segments, and records older than a minute are expired.
    create_topic(&node.bootstrap, "expiring", &[("segment.bytes", "2048"), ("retention.ms", "60000")]).await;
    let p = producer(&node.bootstrap);
    let old = runnel_tests::now_ms() - 3_600_000;
    let value = vec![b'x'; 500];
    for i in 0..40i64 {
        let ts = if i < 30 { old } else { runnel_tests::now_ms() };
        p.send(FutureRecord::<(), _>::to("expiring").payload(&value).timestamp(ts), Duration::from_secs(10)).await.expect("delivered");
    }
    let c = consumer(&node.bootstrap);
    let deadline = Instant::now() + Duration::from_secs(20);
    let low = loop {
        let (low, high) = c.fetch_watermarks("expiring", 0, Duration::from_secs(10)).expect("watermarks");
        assert_eq!(high, 40);
        if low > 0 {
            break low;
        }
        assert!(Instant::now() < deadline, "retention deleted nothing within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Only expired data went: the 10 recent records are all still there.
    assert!(low <= 30, "log start {low} passed the first recent record");
    let segments = std::fs::read_dir(node.data_dir.join("logs/expiring-0"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
        .count();
    assert!(segments >= 1);
    let first_segment_gone = !node.data_dir.join("logs/expiring-0/00000000000000000000.log").exists();
    assert!(first_segment_gone, "the oldest segment file was deleted");
}
