//! Start-up validation and clean shutdown of the node binary.

use std::process::Command;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use runnel_tests::{Node, runnel_bin, temp_dir};

#[test]
fn invalid_configuration_is_refused_with_a_clear_message() {
    let dir = temp_dir();
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "--kafka-listener", "not-an-address"], "not HOST:PORT"),
        (&["serve", "--kafka-listener", "0.0.0.0:0"], "advertised_kafka"),
        (&["serve", "--flush-policy", "sometimes"], "flush_policy"),
        (&["serve", "--config", "/nonexistent/runnel.toml"], "read config file"),
    ];
    for (args, expected) in cases {
        let out = Command::new(runnel_bin()).args(*args).arg("--data-dir").arg(dir.path()).output().expect("run runnel");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_keeps_data() {
    let dir = temp_dir();
    let mut node = Node::start(&dir.path().join("node"), &["--flush-policy", "interval", "--flush-interval-ms", "60000"]);
    let p: FutureProducer = ClientConfig::new().set("bootstrap.servers", &node.bootstrap).set("acks", "1").create().unwrap();
    for i in 0..100 {
        let v = format!("{i}");
        p.send(FutureRecord::<(), _>::to("graceful").payload(&v), Duration::from_secs(10)).await.expect("delivered");
    }
    let status = node.terminate();
    assert!(status.success(), "exit status {status}; log:\n{}", node.log());
    assert!(node.log().contains("stopped cleanly"));
    // Under the interval policy nothing was fsynced before shutdown; the
    // shutdown flush must have written all 100 records.
    node.restart();
    let c: rdkafka::consumer::BaseConsumer = ClientConfig::new().set("bootstrap.servers", &node.bootstrap).set("group.id", "x").create().unwrap();
    use rdkafka::consumer::Consumer;
    let (low, high) = c.fetch_watermarks("graceful", 0, Duration::from_secs(10)).unwrap();
    assert_eq!((low, high), (0, 100));
}

#[test]
fn health_and_readiness_endpoints() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    assert_eq!(node.http_get("/healthz"), (200, "ok\n".to_string()));
    // The harness returns once the node registered, so it is ready.
    assert_eq!(node.http_get("/readyz"), (200, "ready\n".to_string()));
    assert_eq!(node.http_get("/nope").0, 404);
}
