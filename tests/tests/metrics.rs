//! `/metrics`: Prometheus text that reports what a node does and holds.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use runnel_tests::{Node, temp_dir, wait_for};

/// Samples by series (name with labels), checking every line parses.
fn parse(text: &str) -> BTreeMap<String, f64> {
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line:?}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_requests_bytes_partitions_raft_and_group_lag() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--default-partitions", "1"]);
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &node.bootstrap).create().unwrap();
    for i in 0..10 {
        producer.send(FutureRecord::<(), _>::to("measured").payload(&format!("value-{i}")), Duration::from_secs(10)).await.expect("delivered");
    }
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &node.bootstrap).set("group.id", "watchers").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("measured", 0, Offset::Offset(4)).unwrap();
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");

    let (status, body) = node.http_get("/metrics");
    assert_eq!(status, 200);
    let m = parse(&body);
    let get = |series: &str| *m.get(series).unwrap_or_else(|| panic!("{series} missing from:\n{body}"));
    assert!(get(r#"runnel_requests_total{api="Produce"}"#) >= 10.0);
    assert!(get(r#"runnel_request_duration_seconds_count{api="Produce"}"#) >= 10.0);
    assert!(get(r#"runnel_topic_bytes_in_total{topic="measured"}"#) > 70.0);
    assert_eq!(get("runnel_partitions"), 1.0);
    assert_eq!(get("runnel_leader_partitions"), 1.0);
    assert_eq!(get("runnel_under_replicated_partitions"), 0.0);
    assert_eq!(get("runnel_offline_partitions"), 0.0);
    assert_eq!(get(r#"runnel_log_end_offset{topic="measured",partition="0"}"#), 10.0);
    assert!(get(r#"runnel_log_size_bytes{topic="measured",partition="0"}"#) > 0.0);
    assert_eq!(get("runnel_raft_is_leader"), 1.0);
    assert_eq!(get("runnel_raft_leader_id"), 1.0);
    assert!(get("runnel_raft_term") >= 1.0);
    assert!(get("runnel_raft_commit_index") >= get("runnel_raft_applied_index"));
    assert_eq!(get("runnel_consumer_groups"), 1.0);
    assert_eq!(get(r#"runnel_consumer_group_lag{group="watchers",topic="measured",partition="0"}"#), 6.0);

    // Reading counts bytes out; the next commit moves the lag.
    consumer.assign(&tpl).unwrap();
    wait_for("a message", Duration::from_secs(10), || consumer.poll(Duration::from_millis(200)).map(|r| r.expect("consume")).map(|_| ()));
    tpl.set_partition_offset("measured", 0, Offset::Offset(10)).unwrap();
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    let m = parse(&node.http_get("/metrics").1);
    assert!(m[r#"runnel_topic_bytes_out_total{topic="measured"}"#] > 0.0);
    assert_eq!(m[r#"runnel_consumer_group_lag{group="watchers",topic="measured",partition="0"}"#], 0.0);
}

/// Issue 13: `runnel_request_errors_total` never appeared, and there was no
/// ISR size, connection count or process figure (open file descriptors
/// would have shown a node running out of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_connections_isr_size_and_process_figures_are_reported() {
    use std::io::{Read, Write};
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--default-partitions", "1"]);
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &node.bootstrap).create().unwrap();
    producer.send(FutureRecord::<(), _>::to("counted").payload("v"), Duration::from_secs(10)).await.expect("delivered");

    // A negative frame length closes the connection; so does an unknown API.
    let mut bad = node.connect();
    bad.write_all(&(-1i32).to_be_bytes()).unwrap();
    assert_eq!(bad.read(&mut [0u8; 4]).unwrap_or(0), 0, "the connection is closed");
    let mut unknown = node.connect();
    let mut frame = 10i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0xff, 0xff]); // API key 9999
    unknown.write_all(&frame).unwrap();
    assert_eq!(unknown.read(&mut [0u8; 4]).unwrap_or(0), 0, "the connection is closed");
    let _open = node.connect();

    let body = wait_for("the refusals to be counted", Duration::from_secs(5), || {
        let body = node.http_get("/metrics").1;
        body.contains(r#"runnel_request_errors_total{api="unknown"}"#).then_some(body)
    });
    let m = parse(&body);
    let get = |series: &str| *m.get(series).unwrap_or_else(|| panic!("{series} missing from:\n{body}"));
    assert!(get(r#"runnel_request_errors_total{api="frame"}"#) >= 1.0);
    assert!(get(r#"runnel_request_errors_total{api="unknown"}"#) >= 1.0);
    assert!(get("runnel_connections") >= 1.0);
    assert_eq!(get(r#"runnel_partition_isr_size{topic="counted",partition="0"}"#), 1.0);
    assert!(get("runnel_process_open_fds") > 5.0);
    assert!(get("runnel_process_max_fds") >= get("runnel_process_open_fds"));
    assert!(get("runnel_process_resident_memory_bytes") > 1_000_000.0);
    assert!(get("runnel_process_cpu_seconds") > 0.0);
}
