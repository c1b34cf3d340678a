//! SCRAM users kept in the cluster metadata (issue 18): created with
//! runnelctl on a node whose SASL listener has no users file, they
//! authenticate at once, survive a restart (they are in the Raft log and
//! snapshots), and are refused once deleted.

use std::process::Command;

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
