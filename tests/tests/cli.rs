//! runnelctl as a user meets it (issue 13): bad counts and counts past the
//! per-broker replica limit refused (over Kafka's CreateTopics too), a closed
//! pipe ends it quietly, a Kafka address gets a hint instead of "transport
//! error".

use std::process::Command;

use runnel_tests::{Node, runnelctl, runnelctl_bin, temp_dir};

#[test]
fn zero_partitions_or_replicas_are_refused_and_nothing_is_created() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "zp", "-p", "0"]);
    assert!(!ok && err.contains("partitions"), "{err}");
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "zp", "-r", "0"]);
    assert!(!ok && err.contains("replication factor"), "{err}");
    let (ok, out, _) = runnelctl(&node.rpc, &["topic", "list"]);
    assert!(ok && !out.contains("\"zp\""), "{out}");
    // Without a count, the node's defaults.
    let (ok, out, err) = runnelctl(&node.rpc, &["topic", "create", "zp"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["partitions"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_closed_pipe_ends_runnelctl_quietly() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "wide", "-p", "3000"]);
    assert!(ok, "{err}");
    // More output than a pipe holds, read one line: runnelctl gets EPIPE.
    let script = format!("set -o pipefail; {} -b {} topic describe wide | head -1 >/dev/null", runnelctl_bin().display(), node.rpc);
    let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status.code());
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_kafka_address_given_to_runnelctl_gets_a_hint() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let out = Command::new(runnelctl_bin()).args(["-b", &node.bootstrap, "cluster", "status"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is a Kafka listener") && stderr.contains("9093"), "{stderr}");
}

#[test]
fn a_creation_past_the_replica_limit_is_refused_with_nothing_created() {
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use runnel_tests::wire::call;

    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--replicas-per-broker-max", "10"]);
    // runnelctl: eleven replicas on one broker are refused, with the reason.
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "wide", "-p", "11"]);
    assert!(!ok && err.contains("limit of 10") && err.contains("replicas_per_broker_max"), "{err}");
    let (ok, out, _) = runnelctl(&node.rpc, &["topic", "list"]);
    assert!(ok && !out.contains("\"wide\""), "{out}");
    // Ten fit.
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "wide", "-p", "10"]);
    assert!(ok, "{err}");

    // A Kafka client: CreateTopics gets POLICY_VIOLATION with the message, in
    // a validate-only request too; CreatePartitions past the limit as well.
    let mut conn = node.connect();
    for validate_only in [true, false] {
        let create = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default().with_name(TopicName(StrBytes::from_static_str("more"))).with_num_partitions(1).with_replication_factor(1),
            ])
            .with_timeout_ms(10_000)
            .with_validate_only(validate_only);
        let ResponseKind::CreateTopics(r) = call(&mut conn, ApiKey::CreateTopics, 5, &RequestKind::CreateTopics(create)) else { panic!() };
        assert_eq!(r.topics[0].error_code, ResponseError::PolicyViolation.code(), "validate_only {validate_only}");
        assert!(r.topics[0].error_message.as_ref().is_some_and(|m| m.contains("limit of 10")), "{:?}", r.topics[0].error_message);
    }
    let grow = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default().with_name(TopicName(StrBytes::from_static_str("wide"))).with_count(12).with_assignments(None)])
        .with_timeout_ms(10_000);
    let ResponseKind::CreatePartitions(r) = call(&mut conn, ApiKey::CreatePartitions, 3, &RequestKind::CreatePartitions(grow)) else { panic!() };
    assert_eq!(r.results[0].error_code, ResponseError::PolicyViolation.code());
    let (ok, out, _) = runnelctl(&node.rpc, &["topic", "describe", "wide"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok && v["partitions"].as_array().map(Vec::len) == Some(10), "{out}");
    let (ok, out, _) = runnelctl(&node.rpc, &["topic", "list"]);
    assert!(ok && !out.contains("\"more\""), "{out}");
}

#[test]
fn add_partitions_describe_config_and_shell_completion() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "grow", "-p", "2", "--config", "retention.ms=3600000"]);
    assert!(ok, "{err}");

    // add-partitions sets the total, as kafka-topics --alter --partitions does.
    let (ok, out, err) = runnelctl(&node.rpc, &["topic", "add-partitions", "grow", "--total", "4"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["partitions"].as_array().map(Vec::len), Some(4), "{out}");
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "add-partitions", "grow", "--total", "3"]);
    assert!(!ok && err.contains("partition"), "fewer partitions are refused: {err}");

    // describe-config: every config with its value and source.
    let (ok, out, err) = runnelctl(&node.rpc, &["topic", "describe-config", "grow"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entry = |name: &str| v["configs"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or_else(|| panic!("{name} missing: {out}"));
    assert_eq!((entry("retention.ms")["value"].clone(), entry("retention.ms")["source"].clone()), ("3600000".into(), "topic".into()));
    assert_eq!(entry("segment.bytes")["source"], "default");
    assert_eq!(entry("compression.type")["value"], "producer");

    // Completion scripts, without a cluster; a closed pipe ends it quietly.
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(runnelctl_bin()).args(["completion", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("add-partitions"), "{shell}");
    }
    let script = format!("set -o pipefail; {} completion zsh | head -1 >/dev/null", runnelctl_bin().display());
    let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
