//! Feature levels (issue 14): a cluster starts at level 1, which every
//! older version reads; `runnelctl cluster upgrade` finalizes level 2 once
//! every node supports it, the level survives a restart of every node, and
//! it never goes back.

use std::time::Duration;

use runnel_tests::{Cluster, runnelctl, wait_for};
use serde_json::Value;

fn features(rpc: &str) -> Value {
    let (ok, out, err) = runnelctl(rpc, &["cluster", "features"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn an_upgrade_finalizes_the_level_every_node_supports_and_it_survives_restarts() {
    let mut cluster = Cluster::start(3, 6000);
    let rpc = cluster.nodes[0].rpc.clone();
    let f = features(&rpc);
    assert_eq!(f["finalized_level"], 1, "{f}");
    let nodes = f["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{f}");
    assert!(nodes.iter().all(|n| n["supported_min"] == 1 && n["supported_max"] == 2 && n["error"].is_null()), "{f}");

    // A dry run checks and changes nothing.
    let (ok, out, err) = runnelctl(&rpc, &["cluster", "upgrade", "--dry-run"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["finalized_level"], 2);
    assert_eq!(features(&rpc)["finalized_level"], 1);
    // A level no node supports is refused, naming the nodes.
    let (ok, _, err) = runnelctl(&rpc, &["cluster", "upgrade", "--level", "3"]);
    assert!(!ok && err.contains("feature level 3 needs every node to support it") && err.contains("node 1 supports up to 2"), "{err}");

    let (ok, out, err) = runnelctl(&rpc, &["cluster", "upgrade"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["finalized_level"], 2, "{out}");
    // Every node applies it; asked through another node, the same.
    for node in &cluster.nodes {
        wait_for("the level on every node", Duration::from_secs(10), || (features(&node.rpc)["finalized_level"] == 2).then_some(()));
    }
    let (ok, _, err) = runnelctl(&rpc, &["cluster", "upgrade"]);
    assert!(!ok && err.contains("at feature level 2 already"), "{err}");

    // Every node killed and restarted: the level is in the Raft log and
    // snapshot, and the stores record format 2.
    cluster.restart_all();
    for node in &cluster.nodes {
        wait_for("the level after a restart", Duration::from_secs(20), || (features(&node.rpc)["finalized_level"] == 2).then_some(()));
    }
    let (ok, _, err) = runnelctl(&cluster.nodes[1].rpc, &["topic", "create", "after-upgrade", "-p", "2", "-r", "3"]);
    assert!(ok, "{err}");
}
