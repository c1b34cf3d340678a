//! runnelctl as a user meets it (issue 13): bad counts refused, a closed
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
