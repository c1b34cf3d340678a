//! Feature levels (issue 14): a new cluster starts at the newest level its
//! binaries support, and what that level allows works at once; the level
//! survives a restart of every node and never goes back. The upgrade of a
//! cluster at an older level is in `compat.rs` (2a9fcc0's data) and
//! `tests/compat/rolling-upgrade.sh`.

use std::time::Duration;

use runnel_tests::{Cluster, runnelctl, wait_for};
use serde_json::Value;

fn features(rpc: &str) -> Value {
    let (ok, out, err) = runnelctl(rpc, &["cluster", "features"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The newest level this version supports (`features::LEVEL_MAX`).
const NEWEST: u64 = 17;

#[test]
fn a_new_cluster_starts_at_the_newest_level_and_keeps_it_through_restarts() {
    let mut cluster = Cluster::start(3, 6000);
    let rpc = cluster.nodes[0].rpc.clone();
    let f = features(&rpc);
    assert_eq!(f["finalized_level"], NEWEST, "{f}");
    let nodes = f["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{f}");
    assert!(nodes.iter().all(|n| n["supported_min"] == 1 && n["supported_max"] == NEWEST && n["error"].is_null()), "{f}");

    // Nothing higher to finalize; a level no node supports is refused,
    // naming the nodes.
    let (ok, _, err) = runnelctl(&rpc, &["cluster", "upgrade"]);
    assert!(!ok && err.contains(&format!("at feature level {NEWEST} already")), "{err}");
    let (ok, _, err) = runnelctl(&rpc, &["cluster", "upgrade", "--level", &(NEWEST + 1).to_string()]);
    let refused = format!("feature level {} needs every node to support it", NEWEST + 1);
    assert!(!ok && err.contains(&refused) && err.contains(&format!("node 1 supports up to {NEWEST}")), "{err}");

    // Level 2 accepts the topic configs Kafka tools set.
    let (ok, _, err) = runnelctl(&rpc, &["topic", "create", "lz4", "-p", "2", "-r", "3", "--config", "compression.type=lz4"]);
    assert!(ok, "{err}");

    // Every node killed and restarted: the level is in the Raft log and
    // snapshot.
    cluster.restart_all();
    for node in &cluster.nodes {
        wait_for("the level after a restart", Duration::from_secs(20), || (features(&node.rpc)["finalized_level"] == NEWEST).then_some(()));
    }
    let (ok, out, err) = runnelctl(&cluster.nodes[1].rpc, &["topic", "describe", "lz4"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["configs"]["compression.type"], "lz4", "{out}");
}
