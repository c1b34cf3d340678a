//! SCRAM users kept in the cluster metadata (issue 18): created with
//! runnelctl on a node whose SASL listener has no users file, they
//! authenticate at once, survive a restart (they are in the Raft log and
//! snapshots), and are refused once deleted.

use std::process::Command;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord};

use runnel_tests::{Node, runnelctl, runnelctl_bin, temp_dir};

/// `runnelctl consume` as `user` with SCRAM-SHA-512; (exit ok, stderr).
fn consume_as(node: &Node, user: &str, password: &str) -> (bool, String) {
    let out = Command::new(runnelctl_bin())
        .env("RUNNEL_SASL_PASSWORD", password)
        .args([
            "-b",
            &node.rpc,
            "--timeout-secs",
            "5",
            "consume",
            "t",
            "--kafka",
            &node.bootstrap,
            "--sasl-mechanism",
            "SCRAM-SHA-512",
            "--sasl-username",
            user,
        ])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn scram_users_in_the_metadata_authenticate_survive_a_restart_and_go_when_deleted() {
    let dir = temp_dir();
    let mut node = Node::start(&dir.path().join("node"), &["--kafka-security-protocol", "SASL_PLAINTEXT"]);
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "t"]);
    assert!(ok, "{err}");
    // No users yet: nobody gets in.
    let (ok, err) = consume_as(&node, "dana", "d4na-pw");
    assert!(!ok && err.contains("authentication"), "{err}");
    let out =
        Command::new(runnelctl_bin()).env("RUNNEL_USER_PASSWORD", "d4na-pw").args(["-b", &node.rpc, "-o", "json", "user", "create", "dana"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users.as_array().map(Vec::len), Some(2), "both SCRAM mechanisms: {users}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("d4na"), "no secret is printed");
    let (ok, err) = consume_as(&node, "dana", "d4na-pw");
    assert!(ok, "{err}");
    let (ok, err) = consume_as(&node, "dana", "guess");
    assert!(!ok && err.contains("authentication"), "{err}");
    // Both failed authentications (an unknown user, a wrong password) are counted.
    let failed = counter(&node, "runnel_request_errors_total{api=\"sasl\"}");
    assert!(failed >= 2.0, "{failed}");

    node.restart();
    let (ok, err) = consume_as(&node, "dana", "d4na-pw");
    assert!(ok, "the user survives a restart: {err}");

    let (ok, out, err) = runnelctl(&node.rpc, &["user", "delete", "dana"]);
    assert!(ok && out.trim() == "[]", "{out} {err}");
    let (ok, err) = consume_as(&node, "dana", "d4na-pw");
    assert!(!ok && err.contains("authentication"), "{err}");
    let (ok, _, err) = runnelctl(&node.rpc, &["user", "delete", "dana"]);
    assert!(!ok && err.contains("no SCRAM credential"), "{err}");
    let (ok, _, err) = runnelctl(&node.rpc, &["user", "create", "eve", "--password", "x", "--mechanism", "PLAIN"]);
    assert!(!ok && err.contains("SCRAM-SHA-256 or SCRAM-SHA-512"), "{err}");
}

/// runnelctl as `user` over the Kafka listener with SCRAM-SHA-256: (exit ok, stdout, stderr).
fn runnelctl_as(node: &Node, user: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(runnelctl_bin())
        .env("RUNNEL_SASL_PASSWORD", format!("{user}-pw"))
        .args(["-b", &node.rpc, "--timeout-secs", "5", "-o", "json"])
        .args(args)
        .args(["--kafka", &node.bootstrap, "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", user])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `runnelctl acl` (issue 18): a super user grants alice write on topic t;
/// alice then writes there but cannot read it or grant herself more; the
/// binding survives a restart and, once deleted, writes are refused again.
#[test]
fn acls_made_with_runnelctl_decide_what_a_user_may_do_and_survive_a_restart() {
    let dir = temp_dir();
    let args = ["--kafka-security-protocol", "SASL_PLAINTEXT", "--authorizer", "acl", "--super-users", "User:admin"];
    let mut node = Node::start(&dir.path().join("node"), &args);
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "t"]);
    assert!(ok, "{err}");
    for user in ["admin", "alice"] {
        let out =
            Command::new(runnelctl_bin()).env("RUNNEL_USER_PASSWORD", format!("{user}-pw")).args(["-b", &node.rpc, "user", "create", user]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let produce = |node: &Node| runnelctl_as(node, "alice", &["produce", "t", "hello"]);
    let (ok, _, err) = produce(&node);
    assert!(!ok && err.to_lowercase().contains("authorization"), "no binding yet: {err}");

    let (ok, _, err) = runnelctl_as(&node, "admin", &["acl", "create", "--topic", "t", "--principal", "User:alice", "--operation", "write"]);
    assert!(ok, "{err}");
    let (ok, _, err) = produce(&node);
    assert!(ok, "{err}");
    let (ok, _, err) = runnelctl_as(&node, "alice", &["consume", "t"]);
    assert!(!ok && err.to_lowercase().contains("authorization"), "write does not grant read: {err}");
    let (ok, _, err) = runnelctl_as(&node, "alice", &["acl", "create", "--cluster", "--principal", "User:alice", "--operation", "all"]);
    assert!(!ok && err.contains("ClusterAuthorizationFailed: this principal may not manage ACLs"), "{err}");

    node.restart();
    let (ok, out, err) = runnelctl_as(&node, "admin", &["acl", "list", "--principal", "User:alice"]);
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let expected = serde_json::json!([{
        "resource_type": "topic", "resource_name": "t", "pattern_type": "literal",
        "principal": "User:alice", "host": "*", "operation": "write", "permission": "allow"
    }]);
    assert_eq!(listed, expected, "the binding survives a restart");
    let (ok, _, err) = produce(&node);
    assert!(ok, "{err}");

    let (ok, out, err) = runnelctl_as(&node, "admin", &["acl", "delete", "--topic", "t", "--principal", "User:alice"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap(), expected, "delete lists what it removed");
    let (ok, _, err) = produce(&node);
    assert!(!ok && err.to_lowercase().contains("authorization"), "{err}");
    let (ok, _, err) = runnelctl_as(&node, "admin", &["acl", "delete"]);
    assert!(!ok && err.contains("name a resource"), "{err}");
    // Refusals are counted (this life of the node saw the last produce's).
    let denied = denied_count(&node);
    assert!(denied >= 1.0, "{denied}");

    // An idempotent producer of a principal that may write nowhere (it may
    // read t, so its Metadata requests are allowed) is refused at
    // InitProducerId (KIP-679), and that refusal is counted too.
    let (ok, _, err) = runnelctl_as(&node, "admin", &["acl", "create", "--topic", "t", "--principal", "User:alice", "--operation", "read"]);
    assert!(ok, "{err}");
    let denied = denied_count(&node);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &node.bootstrap)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "SCRAM-SHA-256")
        .set("sasl.username", "alice")
        .set("sasl.password", "alice-pw")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let _ = producer.send(BaseRecord::<(), _>::to("t").payload("idempotent"));
    runnel_tests::wait_for("the idempotent producer's refusal to be counted", std::time::Duration::from_secs(15), || {
        producer.poll(std::time::Duration::from_millis(100));
        (denied_count(&node) > denied).then_some(())
    });
}

/// `runnel_authorization_denied_total` on `node`.
fn denied_count(node: &Node) -> f64 {
    counter(node, "runnel_authorization_denied_total")
}

/// The value of one metric `series` (name and labels) on `node`.
fn counter(node: &Node, series: &str) -> f64 {
    let metrics = node.http_get("/metrics").1;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
}

/// A KIP-848 member whose regular expression matches a topic its principal
/// may not describe is never assigned that topic (nor does its group's
/// description name it), only the matching topics it may read.
#[test]
fn a_kip848_regex_is_not_assigned_topics_the_member_may_not_describe() {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let dir = temp_dir();
    let args = ["--kafka-security-protocol", "SASL_PLAINTEXT", "--authorizer", "acl", "--super-users", "User:admin"];
    let node = Node::start(&dir.path().join("node"), &args);
    for topic in ["feed-public", "feed-secret"] {
        let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", topic, "--partitions", "2"]);
        assert!(ok, "{err}");
    }
    for user in ["admin", "bob"] {
        let out =
            Command::new(runnelctl_bin()).env("RUNNEL_USER_PASSWORD", format!("{user}-pw")).args(["-b", &node.rpc, "user", "create", user]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for binding in [["--topic", "feed-public"], ["--group", "feeds"]] {
        let (ok, _, err) = runnelctl_as(&node, "admin", &["acl", "create", binding[0], binding[1], "--principal", "User:bob", "--operation", "read"]);
        assert!(ok, "{err}");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &node.bootstrap)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "SCRAM-SHA-256")
        .set("sasl.username", "bob")
        .set("sasl.password", "bob-pw")
        .set("group.id", "feeds")
        .set("group.protocol", "consumer")
        .create()
        .unwrap();
    consumer.subscribe(&["^feed-.*"]).unwrap();
    // The coordinator computes the whole target at the member's first
    // heartbeat, so once anything is assigned, everything it would assign is.
    let assigned = runnel_tests::wait_for("bob's member to be assigned partitions", std::time::Duration::from_secs(30), || {
        let _ = consumer.poll(std::time::Duration::from_millis(100));
        let tpl = consumer.assignment().ok()?;
        let names: Vec<(String, i32)> = tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        (!names.is_empty()).then_some(names)
    });
    assert_eq!(assigned, vec![("feed-public".to_string(), 0), ("feed-public".to_string(), 1)]);
    // The client could not have named feed-secret's partitions anyway (its
    // metadata hides the topic); the coordinator's own record shows it never
    // assigned them.
    let (ok, out, err) = runnelctl(&node.rpc, &["group", "describe", "feeds"]);
    assert!(ok, "{err}");
    let described: serde_json::Value = serde_json::from_str(&out).unwrap();
    let held: Vec<String> = described["members"][0]["assignment"].as_array().unwrap().iter().map(|a| a["topic"].as_str().unwrap().to_string()).collect();
    assert_eq!(held, vec!["feed-public", "feed-public"], "{described}");
}
