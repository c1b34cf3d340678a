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
    // `runnel healthcheck`, the container health check, asks the same endpoint.
    let check = |args: &[&str]| std::process::Command::new(runnel_tests::runnel_bin()).arg("healthcheck").args(args).output().unwrap().status.success();
    assert!(check(&["--http-listener", &node.http]));
    assert!(check(&["--http-listener", &node.http, "--live"]));
    let mut node = node;
    node.kill();
    assert!(!check(&["--http-listener", &node.http]));
}

#[test]
fn a_data_directory_of_another_node_or_cluster_is_refused() {
    let dir = temp_dir();
    let data = dir.path().join("node");
    let mut node = Node::start(&data, &[]);
    node.terminate();
    let identity: serde_json::Value = serde_json::from_slice(&std::fs::read(data.join("node.json")).unwrap()).unwrap();
    assert_eq!(identity["node_id"], 1);
    assert!(identity["cluster_id"].as_str().is_some_and(|c| !c.is_empty()), "{identity}");

    let out = Command::new(runnel_bin())
        .args(["dev", "--node-id", "2", "--kafka-listener", "127.0.0.1:0", "--rpc-listener", "127.0.0.1:0", "--http-listener", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to node 1"), "{}", String::from_utf8_lossy(&out.stderr));

    // The same data directory claiming another cluster: the node stops with a clear error.
    let other = serde_json::json!({"node_id": 1, "cluster_id": "some-other-cluster"});
    std::fs::write(data.join("node.json"), serde_json::to_vec(&other).unwrap()).unwrap();
    let out = Command::new(runnel_bin())
        .args(["dev", "--kafka-listener", "127.0.0.1:0", "--rpc-listener", "127.0.0.1:0", "--http-listener", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to cluster some-other-cluster"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 14: a data directory a newer Runnel wrote is refused with a
/// message, not misread; the files carry their format version.
#[test]
fn a_data_directory_of_a_newer_format_is_refused_and_left_alone() {
    let dir = temp_dir();
    let data = dir.path().join("node");
    let mut node = Node::start(&data, &[]);
    node.terminate();
    let mut identity: serde_json::Value = serde_json::from_slice(&std::fs::read(data.join("node.json")).unwrap()).unwrap();
    assert_eq!(identity["format_version"], 1, "{identity}");
    identity["format_version"] = serde_json::json!(2);
    let newer = serde_json::to_vec(&identity).unwrap();
    std::fs::write(data.join("node.json"), &newer).unwrap();
    let out = Command::new(runnel_bin())
        .args(["dev", "--kafka-listener", "127.0.0.1:0", "--rpc-listener", "127.0.0.1:0", "--http-listener", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is format 2") && stderr.contains("written by a newer Runnel"), "{stderr}");
    assert_eq!(std::fs::read(data.join("node.json")).unwrap(), newer, "the file is left as it was");
}

/// Issue 13: logs carried ANSI colour codes into files, and a normal start
/// and SIGTERM printed openraft ERROR lines.
#[test]
fn logs_off_a_terminal_are_plain_or_json_and_a_normal_run_logs_no_errors() {
    let dir = temp_dir();
    let mut node = Node::start(&dir.path().join("text"), &[]);
    assert!(node.terminate().success());
    let log = node.log();
    assert!(!log.contains('\u{1b}'), "colour codes in a log file:\n{log}");
    assert!(!log.lines().any(|l| l.contains(" ERROR ")), "errors in a normal run:\n{log}");

    let mut node = Node::start(&dir.path().join("json"), &["--log-format", "json"]);
    assert!(node.terminate().success());
    let log = node.log();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "stopped cleanly"), "{log}");
    assert!(lines.iter().all(|l| l["level"] != "ERROR"), "{log}");
}
