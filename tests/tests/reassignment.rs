//! Partition reassignment (issue 17): a partition moves to a broker that
//! did not hold it while acks=all writes go on, its leader leaving; nothing
//! acknowledged is lost or duplicated, the old replica's log goes, and a
//! move that cannot finish can be cancelled; a move whose leaving leader is
//! killed midway completes on the rest; the automatic balancer fills a new
//! broker and empties a gone one.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use runnel_tests::{Cluster, runnelctl, wait_for};
use serde_json::Value;

fn describe(rpc: &str, topic: &str) -> Value {
    let (ok, out, err) = runnelctl(rpc, &["topic", "describe", topic]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

fn reassignments(rpc: &str) -> Vec<Value> {
    let (ok, out, err) = runnelctl(rpc, &["partition", "reassignments"]);
    assert!(ok, "{err}");
    serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
}

fn live_brokers(rpc: &str) -> usize {
    let (ok, out, _) = runnelctl(rpc, &["broker", "list"]);
    if !ok {
        return 0;
    }
    serde_json::from_str::<Value>(&out).map_or(0, |v| v.as_array().map_or(0, |b| b.iter().filter(|b| b["fenced"] == false).count()))
}

/// Three controller-brokers and a broker-only node, topic `moving` (one
/// partition, RF 3, min.insync 2), and a move for it: the broker that does
/// not hold it leads, the old leader leaves. (cluster, an admin address,
/// the old leader, the target replicas)
fn four_brokers_and_a_move() -> (Cluster, String, u64, Vec<u64>) {
    let cluster = Cluster::start_with(&["controller,broker", "controller,broker", "controller,broker", "broker"], 2000, &[]);
    let rpc = cluster.nodes[0].rpc.clone();
    wait_for("four live brokers", Duration::from_secs(30), || (live_brokers(&rpc) == 4).then_some(()));
    let (ok, _, err) = runnelctl(&rpc, &["topic", "create", "moving", "-p", "1", "-r", "3", "--config", "min.insync.replicas=2"]);
    assert!(ok, "{err}");
    let before = describe(&rpc, "moving")["partitions"][0].clone();
    let replicas = ids(&before["replicas"]);
    let leader = before["leader"].as_u64().unwrap();
    let newcomer = (1..=4).find(|b| !replicas.contains(b)).unwrap();
    let target: Vec<u64> = std::iter::once(newcomer).chain(replicas.iter().copied().filter(|r| *r != leader)).collect();
    (cluster, rpc, leader, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moves_to_another_broker_under_acks_all_writes_and_a_stuck_move_is_cancelled() {
    let (cluster, rpc, leader, target) = four_brokers_and_a_move();

    // acks=all writes before, during and after the move.
    let bootstrap = cluster.bootstrap();
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("acks", "all").set("enable.idempotence", "true").set("linger.ms", "0").create().unwrap();
    let send = |i: usize| {
        let producer = producer.clone();
        async move {
            let v = format!("m-{i}");
            producer.send(FutureRecord::<(), _>::to("moving").partition(0).payload(&v), Duration::from_secs(30)).await.map(|_| v).map_err(|(e, _)| e)
        }
    };
    let mut acked = BTreeSet::new();
    for i in 0..100 {
        acked.insert(send(i).await.expect("acked before the move"));
    }
    let target_arg = target.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let (ok, _, err) = runnelctl(&rpc, &["partition", "reassign", "--topic", "moving", "--partition", "0", "--replicas", &target_arg]);
    assert!(ok, "{err}");
    let started = Instant::now();
    let mut longest = Duration::ZERO;
    for i in 100..400 {
        let t = Instant::now();
        acked.insert(send(i).await.expect("acked during the move: only retriable errors, retried by the client"));
        longest = longest.max(t.elapsed());
    }
    println!("300 acks=all writes during the move; the longest took {longest:?}");
    let done = wait_for("the move to complete", Duration::from_secs(60), || {
        let p = describe(&rpc, "moving")["partitions"][0].clone();
        (reassignments(&rpc).is_empty() && ids(&p["replicas"]) == target).then_some(p)
    });
    println!("move completed within {:?}", started.elapsed());
    let mut isr = ids(&done["isr"]);
    isr.sort();
    let mut want = target.clone();
    want.sort();
    assert_eq!(isr, want, "every target replica in sync: {done}");
    assert!(target.contains(&done["leader"].as_u64().unwrap()), "the leader is a target replica: {done}");
    for i in 400..450 {
        acked.insert(send(i).await.expect("acked after the move"));
    }

    // Everything acknowledged, once each, read from the moved partition.
    let (ok, out, err) = runnelctl(&rpc, &["consume", "moving"]);
    assert!(ok, "{err}");
    let values: Vec<String> = out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["value"].as_str().unwrap().to_string()).collect();
    assert_eq!(values.len(), 450, "no record lost or written twice");
    assert_eq!(values.iter().cloned().collect::<BTreeSet<_>>(), acked);
    // The old leader's copy goes.
    let old = cluster.nodes[leader as usize - 1].data_dir.clone();
    wait_for("the old replica's log to be removed", Duration::from_secs(30), || {
        let found = walk(&old).into_iter().any(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("moving-0")));
        (!found).then_some(())
    });

    // A move onto a broker that is stopped cannot finish; it is listed,
    // then cancelled back to where it started.
    cluster.nodes[3].pause();
    wait_for("broker 4 fenced", Duration::from_secs(30), || (live_brokers(&rpc) == 3).then_some(()));
    let (ok, _, err) = runnelctl(&rpc, &["topic", "create", "stuck", "-p", "1", "-r", "3"]);
    assert!(ok, "{err}");
    let original = ids(&describe(&rpc, "stuck")["partitions"][0]["replicas"]);
    assert!(!original.contains(&4));
    let (ok, _, err) = runnelctl(&rpc, &["partition", "reassign", "--topic", "stuck", "--partition", "0", "--replicas", "4,1,2"]);
    assert!(ok, "{err}");
    let listed = reassignments(&rpc);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((ids(&listed[0]["adding"]), listed[0]["topic"].as_str()), (vec![4], Some("stuck")));
    let (ok, _, err) = runnelctl(&rpc, &["partition", "reassign", "--topic", "stuck", "--partition", "0", "--cancel"]);
    assert!(ok, "{err}");
    assert!(reassignments(&rpc).is_empty());
    assert_eq!(ids(&describe(&rpc, "stuck")["partitions"][0]["replicas"]), original);
    let (ok, _, err) = runnelctl(&rpc, &["partition", "reassign", "--topic", "stuck", "--partition", "0", "--cancel"]);
    assert!(!ok && err.contains("no reassignment"), "{err}");
    let (ok, _, err) = runnelctl(&rpc, &["partition", "reassign", "--topic", "stuck", "--partition", "0", "--replicas", "1,9"]);
    assert!(!ok && err.contains("9"), "{err}");
    cluster.nodes[3].resume();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            }
            out.push(path);
        }
    }
    out
}

/// Starts broker-only node 4 for `cluster`'s quorum; the directory holds
/// its data and goes with it.
fn join_fourth_broker(cluster: &Cluster) -> (runnel_tests::Node, tempfile::TempDir) {
    let quorum = cluster.nodes.iter().enumerate().map(|(i, n)| format!("{}@{}", i + 1, n.rpc)).collect::<Vec<_>>().join(",");
    let dir = runnel_tests::temp_dir();
    let node = runnel_tests::Node::serve(
        &dir.path().join("node-4"),
        runnel_tests::free_port(),
        runnel_tests::free_port(),
        &["--node-id", "4", "--controller-quorum", &quorum, "--roles", "broker", "--session-timeout-ms", "2000"].map(String::from),
    );
    (node, dir)
}

/// The replicas and leaderships each broker holds, from `broker list`.
fn loads(rpc: &str) -> std::collections::BTreeMap<u64, (u64, u64)> {
    let (ok, out, err) = runnelctl(rpc, &["broker", "list"]);
    assert!(ok, "{err}");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["fenced"] == false)
        .map(|b| (b["node_id"].as_u64().unwrap(), (b["replicas"].as_u64().unwrap(), b["leaders"].as_u64().unwrap())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_broker_gets_its_share_by_rebalance_and_a_decommissioned_one_ends_empty_under_load() {
    use std::sync::{Arc, Mutex};

    let cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &[]);
    let rpc = cluster.nodes[0].rpc.clone();
    const PARTITIONS: usize = 6;
    let (ok, _, err) = runnelctl(&rpc, &["topic", "create", "load", "-p", &PARTITIONS.to_string(), "-r", "3", "--config", "min.insync.replicas=2"]);
    assert!(ok, "{err}");

    // An idempotent acks=all producer at about 200 msgs/s for the whole test.
    let bootstrap = cluster.bootstrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(i32, i64, String)>>> = Arc::default();
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let load = {
        let (stop, acked, slowest) = (stop.clone(), acked.clone(), slowest.clone());
        tokio::spawn(async move {
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "0")
                .create()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(240);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                let value = format!("v-{i}");
                let key = format!("k-{}", i % 64);
                let t = Instant::now();
                let delivery = producer
                    .send(FutureRecord::to("load").key(&key).payload(&value), Duration::from_secs(60))
                    .await
                    .unwrap_or_else(|(e, _)| panic!("write {i} not acknowledged: {e}"));
                let (partition, offset) = (delivery.partition, delivery.offset);
                let took = t.elapsed();
                {
                    let mut s = slowest.lock().unwrap();
                    *s = (*s).max(took);
                }
                acked.lock().unwrap().push((partition, offset, value));
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A fourth broker joins; the rebalance gives it its share.
    let (fourth, _dir) = join_fourth_broker(&cluster);
    wait_for("four live brokers", Duration::from_secs(30), || (live_brokers(&rpc) == 4).then_some(()));
    assert_eq!(loads(&rpc)[&4], (0, 0), "a new broker holds nothing until partitions move");
    let (ok, out, err) = runnelctl(&rpc, &["cluster", "rebalance", "--wait", "--max-moves", "2"]);
    assert!(ok, "{err}");
    println!("rebalance: {out}\n{err}");
    let after = wait_for("the leaders to settle", Duration::from_secs(30), || {
        let l = loads(&rpc);
        (l.values().all(|(r, _)| (4..=5).contains(r)) && l.values().all(|(_, lead)| (1..=2).contains(lead))).then_some(l)
    });
    println!("after the rebalance: {after:?}");
    // 18 replicas over 4 brokers: 4 or 5 each; 6 leaderships: 1 or 2 each.
    assert!((4..=5).contains(&after[&4].0) && after[&4].1 >= 1, "{after:?}");

    // Broker 2 leaves the same way.
    let (ok, _, err) = runnelctl(&rpc, &["broker", "decommission", "2", "--wait", "--max-moves", "3"]);
    assert!(ok, "{err}");
    let after = wait_for("broker 2 empty", Duration::from_secs(30), || {
        let l = loads(&rpc);
        (l[&2] == (0, 0)).then_some(l)
    });
    println!("after decommissioning broker 2: {after:?}");
    assert!([1, 3, 4].iter().all(|b| after[b].0 == 6), "18 replicas over the three others: {after:?}");

    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    load.await.expect("the load ran to the end with every write acknowledged");
    let acked = acked.lock().unwrap().clone();
    let slowest = *slowest.lock().unwrap();
    println!("{} writes acknowledged, the slowest in {slowest:?}", acked.len());
    assert!(acked.len() > 200, "the load ran: {}", acked.len());

    // Every acknowledged write once, at its offset, in the order written.
    let (ok, out, err) = runnelctl(&rpc, &["consume", "load"]);
    assert!(ok, "{err}");
    let mut log: std::collections::BTreeMap<(i32, i64), String> = std::collections::BTreeMap::new();
    for line in out.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        log.insert((r["partition"].as_i64().unwrap() as i32, r["offset"].as_i64().unwrap()), r["value"].as_str().unwrap().to_string());
    }
    assert_eq!(log.len(), acked.len(), "nothing more in the log than was acknowledged (no duplicates)");
    for (p, o, v) in &acked {
        assert_eq!(log.get(&(*p, *o)), Some(v), "acknowledged write at {p}@{o}");
    }
    drop(fourth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_leaving_leader_is_killed_midway_still_completes_with_everything_acknowledged() {
    let (mut cluster, rpc, leader, target) = four_brokers_and_a_move();
    let rpc_of = |c: &Cluster, skip: u64| c.nodes.iter().enumerate().find(|(i, _)| *i as u64 + 1 != skip && *i < 3).map(|(_, n)| n.rpc.clone()).unwrap();
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap()).set("acks", "all").set("enable.idempotence", "true").create().unwrap();
    let mut acked = BTreeSet::new();
    for i in 0..500 {
        let v = format!("m-{i}");
        producer.send(FutureRecord::<(), _>::to("moving").partition(0).payload(&v), Duration::from_secs(30)).await.expect("acked");
        acked.insert(v);
    }
    let target_arg = target.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let (ok, _, err) = runnelctl(&rpc, &["partition", "reassign", "--topic", "moving", "--partition", "0", "--replicas", &target_arg]);
    assert!(ok, "{err}");
    // The leaving leader dies at once (it may be the controller leader too).
    cluster.nodes[leader as usize - 1].kill();
    let rpc = rpc_of(&cluster, leader);
    for i in 500..600 {
        let v = format!("m-{i}");
        producer
            .send(FutureRecord::<(), _>::to("moving").partition(0).payload(&v), Duration::from_secs(60))
            .await
            .expect("acked after the leader died: the rest of the ISR takes over");
        acked.insert(v);
    }
    let done = wait_for("the move to complete without the dead leader", Duration::from_secs(60), || {
        let p = describe(&rpc, "moving")["partitions"][0].clone();
        (reassignments(&rpc).is_empty() && ids(&p["replicas"]) == target && ids(&p["isr"]).len() == 3).then_some(p)
    });
    assert!(target.contains(&done["leader"].as_u64().unwrap()), "{done}");
    let (ok, out, err) = runnelctl(&rpc, &["consume", "moving"]);
    assert!(ok, "{err}");
    let values: Vec<String> = out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["value"].as_str().unwrap().to_string()).collect();
    assert_eq!(values.len(), acked.len(), "nothing lost, nothing twice");
    assert_eq!(values.into_iter().collect::<BTreeSet<_>>(), acked);
}

/// Replicas each registered broker holds, fenced ones included.
fn replicas_held(rpc: &str) -> std::collections::BTreeMap<u64, u64> {
    let (ok, out, err) = runnelctl(rpc, &["broker", "list"]);
    assert!(ok, "{err}");
    serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().iter().map(|b| (b["node_id"].as_u64().unwrap(), b["replicas"].as_u64().unwrap())).collect()
}

/// Issue 17, the automatic mode: with `auto_rebalance` on, a broker that
/// joins gets its share of replicas and leaderships with no command, and
/// the replicas of a broker gone past the grace period move to the others,
/// every partition ending with its full replica count in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_automatic_balancer_fills_a_new_broker_and_empties_a_gone_one() {
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &["--auto-rebalance", "true", "--auto-rebalance-grace-ms", "3000"]);
    let leader = wait_for("a controller leader", Duration::from_secs(10), || cluster.leader_seen_by(0));
    let rpc = cluster.nodes[(leader - 1) as usize].rpc.clone();
    let (ok, _, err) = runnelctl(&rpc, &["topic", "create", "auto", "-p", "6", "-r", "2"]);
    assert!(ok, "{err}");

    // A fourth broker joins: no rebalance command is given.
    let (fourth, _dir) = join_fourth_broker(&cluster);
    // 12 replicas over 4 brokers: 3 each; 6 leaderships: at least 1 each.
    let after = wait_for("the new broker to get its share by itself", Duration::from_secs(60), || {
        let l = loads(&rpc);
        (l.len() == 4 && l.values().all(|(r, lead)| *r == 3 && *lead >= 1)).then_some(l)
    });
    println!("after the new broker joined: {after:?}");

    // A broker that is not the controller leader goes: past the 3 s grace
    // its replicas move to the other three.
    let victim = (1..=3u64).find(|id| *id != leader).unwrap();
    cluster.nodes[(victim - 1) as usize].kill();
    let held = wait_for("the gone broker's replicas to move to the others", Duration::from_secs(60), || {
        let held = replicas_held(&rpc);
        (held.get(&victim) == Some(&0) && reassignments(&rpc).is_empty()).then_some(held)
    });
    println!("after broker {victim} went: {held:?}");
    for p in describe(&rpc, "auto")["partitions"].as_array().unwrap() {
        let replicas = ids(&p["replicas"]);
        assert_eq!(replicas.len(), 2, "{p}");
        assert!(!replicas.contains(&victim), "{p}");
        wait_for("a full ISR", Duration::from_secs(20), || {
            let now = describe(&rpc, "auto");
            let p = &now["partitions"][p["partition"].as_u64().unwrap() as usize];
            (ids(&p["isr"]).len() == 2).then_some(())
        });
    }
    drop(fourth);
}

/// The bytes a broker holds, as `broker list` shows them through `rpc`.
fn broker_bytes(rpc: &str) -> std::collections::BTreeMap<u64, u64> {
    let (ok, out, err) = runnelctl(rpc, &["broker", "list"]);
    assert!(ok, "{err}");
    let brokers = serde_json::from_str::<Value>(&out).unwrap();
    brokers.as_array().unwrap().iter().map(|b| (b["node_id"].as_u64().unwrap(), b["bytes"].as_u64().unwrap())).collect()
}

/// Brokers report their partition logs' sizes with their heartbeats:
/// `broker list` shows the bytes each holds through any node (one that
/// does not lead the controller quorum asks the leader), and a rebalance
/// plan counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_report_the_bytes_they_hold_and_plans_count_them() {
    let cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &[]);
    let rpcs: Vec<String> = cluster.nodes.iter().map(|n| n.rpc.clone()).collect();
    let (ok, _, err) = runnelctl(&rpcs[0], &["topic", "create", "sized", "-p", "3", "-r", "1"]);
    assert!(ok, "{err}");
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", cluster.bootstrap()).set("acks", "all").create().unwrap();
    let value = vec![b'x'; 1024];
    for _ in 0..2_000 {
        producer.send(FutureRecord::<(), _>::to("sized").partition(0).payload(&value), Duration::from_secs(10)).await.expect("acknowledged");
    }
    let holder = ids(&describe(&rpcs[0], "sized")["partitions"][0]["replicas"])[0];
    for rpc in &rpcs {
        let bytes = wait_for("the holder's bytes in broker list", Duration::from_secs(40), || {
            let bytes = broker_bytes(rpc);
            (bytes[&holder] >= 2_000 * 1024).then_some(bytes)
        });
        for (id, b) in &bytes {
            if *id != holder {
                assert!(*b < 100_000, "broker {id} holds only empty logs: {bytes:?}");
            }
        }
    }
    let (ok, out, err) = runnelctl(&rpcs[1], &["cluster", "rebalance", "--dry-run"]);
    assert!(ok, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let before = plan["before"].as_array().unwrap().iter().find(|l| l["node_id"] == holder).cloned().unwrap();
    assert!(before["bytes"].as_u64().unwrap() >= 2_000 * 1024, "{plan}");
}

/// Whether `broker list` through `rpc` shows broker `id`, and if so whether fenced.
fn listed(rpc: &str, id: u64) -> Option<bool> {
    let (ok, out, _) = runnelctl(rpc, &["broker", "list"]);
    if !ok {
        return None;
    }
    let brokers = serde_json::from_str::<Value>(&out).ok()?;
    brokers.as_array()?.iter().find(|b| b["node_id"] == id).map(|b| b["fenced"] == true)
}

/// The end of a decommission (issue 17): `broker unregister` refuses a
/// live broker and a stopped one that still holds replicas, and removes a
/// stopped, emptied one from the cluster.
#[test]
fn a_decommissioned_and_stopped_broker_is_unregistered_and_no_other() {
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &[]);
    let rpc = cluster.nodes[0].rpc.clone();
    let (mut fourth, _dir) = join_fourth_broker(&cluster);
    wait_for("four live brokers", Duration::from_secs(30), || (live_brokers(&rpc) == 4).then_some(()));
    let (ok, _, err) = runnelctl(&rpc, &["topic", "create", "spread", "-p", "8", "-r", "1"]);
    assert!(ok, "{err}");
    assert!(replicas_held(&rpc).get(&4).is_some_and(|n| *n > 0), "broker 4 holds some of the partitions");

    let (ok, _, err) = runnelctl(&rpc, &["broker", "unregister", "4"]);
    assert!(!ok && err.contains("is live"), "{err}");
    let (ok, _, err) = runnelctl(&rpc, &["broker", "decommission", "4", "--wait"]);
    assert!(ok, "{err}");
    assert_eq!(replicas_held(&rpc).get(&4).copied().unwrap_or(0), 0);
    fourth.kill();
    wait_for("broker 4 fenced", Duration::from_secs(30), || (listed(&rpc, 4) == Some(true)).then_some(()));
    let (ok, out, err) = runnelctl(&rpc, &["broker", "unregister", "4"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"unregistered\":4"), "{out}");
    assert_eq!(listed(&rpc, 4), None, "broker 4 is gone from the list");
    let (ok, _, err) = runnelctl(&rpc, &["broker", "unregister", "4"]);
    assert!(!ok && err.contains("not registered"), "{err}");

    // Three brokers and a topic of replication factor 3: broker 1 cannot be
    // emptied, and the decommission says so and moves nothing, not even
    // the partitions that could move.
    let (ok, _, err) = runnelctl(&rpc, &["topic", "create", "everywhere", "-p", "2", "-r", "3"]);
    assert!(ok, "{err}");
    let held = replicas_held(&rpc);
    assert!(held[&1] > 2, "broker 1 holds spread's partitions as well: {held:?}");
    let (ok, _, err) = runnelctl(&rpc, &["broker", "decommission", "1", "--wait"]);
    assert!(!ok && err.contains("broker 1 would still hold 2 of its") && err.contains("nothing was moved"), "{err}");
    assert_eq!(replicas_held(&rpc), held);
    let (ok, out, err) = runnelctl(&rpc, &["partition", "reassignments"]);
    assert!(ok && !out.contains("spread"), "{out}{err}");

    // A stopped broker that still holds replicas stays.
    cluster.nodes[2].kill();
    wait_for("broker 3 fenced", Duration::from_secs(30), || (listed(&rpc, 3) == Some(true)).then_some(()));
    let (ok, _, err) = runnelctl(&rpc, &["broker", "unregister", "3"]);
    assert!(!ok && err.contains("decommission"), "{err}");
    assert_eq!(listed(&rpc, 3), Some(true));
}
