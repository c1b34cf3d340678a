//! `runnelctl broker throttle` (issue 17): the catch-up replication limit
//! (Kafka's dynamic broker config follower.replication.throttled.rate) set
//! at run time for every broker and for one, the broker's own value winning,
//! each removal falling back a level, and the node applying each change
//! without a restart (its /metrics gauge).

use std::time::Duration;

use runnel_tests::{Node, runnelctl, temp_dir, wait_for};

fn limit(node: &Node) -> Option<i64> {
    node.http_get("/metrics").1.lines().find_map(|l| l.strip_prefix("runnel_replica_catch_up_max_bytes_per_sec ")).and_then(|v| v.trim().parse().ok())
}

#[test]
fn the_catch_up_throttle_is_set_for_every_broker_and_for_one_at_run_time() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let throttle = |args: &[&str]| {
        let mut all = vec!["broker", "throttle", "--kafka", node.bootstrap.as_str()];
        all.extend_from_slice(args);
        runnelctl(&node.rpc, &all)
    };
    let applied = |rate: i64| wait_for(&format!("a limit of {rate}"), Duration::from_secs(10), || (limit(&node) == Some(rate)).then_some(()));
    applied(0);
    for (args, expected) in [
        (vec!["--rate", "2097152"], 2_097_152),
        (vec!["--broker", "1", "--rate", "3145728"], 3_145_728),
        (vec!["--broker", "1", "--remove"], 2_097_152),
        (vec!["--remove"], 0),
    ] {
        let (ok, _, err) = throttle(&args);
        assert!(ok, "{args:?}: {err}");
        applied(expected);
    }
    let (ok, _, err) = throttle(&["--rate", "10"]);
    assert!(!ok && err.contains("at least 1048576"), "{err}");
    let (ok, _, err) = throttle(&["--broker", "9", "--rate", "2097152"]);
    assert!(!ok, "an unknown broker is refused: {err}");
}
