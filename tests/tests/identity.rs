//! Two clusters whose ports collide (issue 13): a second `runnel dev
//! --nodes 3` started next to a running node, and a second cluster whose
//! quorum names a running node's gRPC address. Neither may harm the other.

use std::process::Command;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use runnel_tests::{Node, free_port, runnel_bin, runnelctl, temp_dir, wait_for};

/// Produces `n` records to `topic` on `bootstrap` with acks=all and reads
/// them back; panics if any is missing.
async fn round_trip(bootstrap: &str, topic: &str, n: usize) {
    let p: FutureProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).set("acks", "all").create().unwrap();
    for i in 0..n {
        let v = format!("{i}");
        p.send(FutureRecord::<(), _>::to(topic).payload(&v), Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("produce to {topic} on {bootstrap}: {e:?}"));
    }
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "g").create().unwrap();
    let (low, high) = c.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
    assert_eq!((low, high), (0, n as i64), "{topic} on {bootstrap}");
}

fn cluster_id(rpc: &str) -> String {
    let (ok, out, err) = runnelctl(rpc, &["cluster", "status"]);
    assert!(ok, "cluster status on {rpc}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["cluster_id"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_dev_cluster_on_taken_ports_fails_as_a_whole_and_leaves_the_first_alone() {
    let dir = temp_dir();
    let (kafka, rpc) = (free_port(), free_port());
    let mut first = Node::serve(&dir.path().join("a"), kafka, rpc, &["--auto-create-topics".into(), "true".into()]);
    let id = cluster_id(&first.rpc);
    round_trip(&first.bootstrap, "before", 5).await;

    // The README's next step, on the same base ports: its node 1 cannot bind.
    let log = dir.path().join("b.log");
    let mut second = Command::new(runnel_bin())
        .args(["dev", "--nodes", "3", "--http-listener", "127.0.0.1:0"])
        .arg("--kafka-listener")
        .arg(format!("127.0.0.1:{kafka}"))
        .arg("--rpc-listener")
        .arg(format!("127.0.0.1:{rpc}"))
        .arg("--data-dir")
        .arg(dir.path().join("b"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("run runnel dev");
    let status = wait_for("the second cluster to exit", Duration::from_secs(20), || second.try_wait().unwrap());
    let _ = second.kill();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bind the Kafka listener") && stderr.contains(&kafka.to_string()), "{stderr}");
    assert!(!dir.path().join("b").join("node-2").join("raft").exists(), "no node of the second cluster may have started");

    round_trip(&first.bootstrap, "after", 5).await;
    assert_eq!(cluster_id(&first.rpc), id);
    first.restart();
    assert_eq!(cluster_id(&first.rpc), id);
    round_trip(&first.bootstrap, "after-restart", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_whose_quorum_names_a_running_node_is_refused_by_it_and_both_keep_working() {
    let dir = temp_dir();
    let (kafka, rpc) = (free_port(), free_port());
    let mut first = Node::serve(&dir.path().join("a"), kafka, rpc, &["--auto-create-topics".into(), "true".into()]);
    let id = cluster_id(&first.rpc);

    // A second cluster of nodes 2 and 3 whose quorum puts its node 1 at the
    // first cluster's gRPC address: they form a majority between them and
    // send votes, then AppendEntries, to the running node.
    let ports: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
    let quorum = format!("1@127.0.0.1:{rpc},2@127.0.0.1:{},3@127.0.0.1:{}", ports[0].1, ports[1].1);
    let handles: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, (k, r))| {
            let args =
                vec!["--node-id".to_string(), (i + 2).to_string(), "--controller-quorum".into(), quorum.clone(), "--auto-create-topics".into(), "true".into()];
            let data = dir.path().join(format!("b-{}", i + 2));
            let (k, r) = (*k, *r);
            std::thread::spawn(move || Node::serve(&data, k, r, &args))
        })
        .collect();
    let second: Vec<Node> = handles.into_iter().map(|h| h.join().expect("second cluster node")).collect();
    let other = cluster_id(&second[0].rpc);
    assert!(!other.is_empty() && other != id, "a cluster of its own: {other}");

    // The second cluster's leader reaches the first node and is refused.
    wait_for("the first node to refuse the other cluster", Duration::from_secs(30), || {
        first.log().contains("refused a request from another node").then_some(())
    });
    // And goes on trying for a few more of its heartbeats.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!first.log().contains("panicked"), "{}", first.log());
    assert_eq!(cluster_id(&first.rpc), id, "the first node's metadata is its own");
    let (ok, _, err) = runnelctl(&first.rpc, &["topic", "create", "mine", "--partitions", "2"]);
    assert!(ok, "the first cluster still commits changes: {err}");
    round_trip(&first.bootstrap, "first", 5).await;
    round_trip(&second[0].bootstrap, "second", 5).await;

    // And it comes back with its own data directory.
    first.restart();
    assert_eq!(cluster_id(&first.rpc), id);
    round_trip(&first.bootstrap, "first-again", 3).await;
    drop(second);
}

/// Issue 13: a node whose gRPC address is not its quorum entry printed
/// "registered and serving" while its peers could never reach it.
#[test]
fn a_node_whose_grpc_address_is_not_its_quorum_entry_is_refused_at_start() {
    let dir = temp_dir();
    let (entry, listener) = (free_port(), free_port());
    let out = Command::new(runnel_bin())
        .args(["serve", "--node-id", "2", "--kafka-listener", "127.0.0.1:0", "--http-listener", "127.0.0.1:0"])
        .arg("--controller-quorum")
        .arg(format!("1@127.0.0.1:{},2@127.0.0.1:{entry}", free_port()))
        .arg("--rpc-listener")
        .arg(format!("127.0.0.1:{listener}"))
        .arg("--data-dir")
        .arg(dir.path().join("n"))
        .output()
        .expect("run runnel");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("controller_quorum says node 2 is at 127.0.0.1:{entry}")) && stderr.contains(&listener.to_string()), "{stderr}");
}

/// Issue 13: a second broker started with a live broker's node id took over
/// its registration (and its partitions). The controllers refuse its
/// requests (a known node id at another address) and it says why; the
/// registration itself is refused too from feature level 2 (unit-tested in
/// the controller). The first keeps serving.
#[test]
fn a_second_broker_with_a_live_brokers_node_id_is_refused() {
    let cluster = runnel_tests::Cluster::start_with_roles(&["controller,broker", "controller,broker", "controller,broker", "broker"], 6000);
    let quorum: Vec<String> = cluster.nodes.iter().take(3).enumerate().map(|(i, n)| format!("{}@{}", i + 1, n.rpc)).collect();
    let dir = temp_dir();
    let log = dir.path().join("twin.log");
    let mut twin = Command::new(runnel_bin())
        .args(["serve", "--node-id", "4", "--roles", "broker", "--controller-quorum", &quorum.join(",")])
        .arg("--data-dir")
        .arg(dir.path().join("twin"))
        .args(["--kafka-listener", &format!("127.0.0.1:{}", free_port())])
        .args(["--rpc-listener", &format!("127.0.0.1:{}", free_port()), "--http-listener", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("the controller quorum refuses this node") && text.contains("is a node id used twice?") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "the twin's registration was not refused within 20 s; its log:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(refused.contains(&cluster.nodes[3].rpc), "{refused}");
    let (ok, out, err) = runnelctl(&cluster.nodes[0].rpc, &["broker", "list"]);
    assert!(ok, "{err}");
    let brokers: serde_json::Value = serde_json::from_str(&out).unwrap();
    let four = brokers.as_array().unwrap().iter().find(|b| b["node_id"] == 4).expect("broker 4").clone();
    assert_eq!(four["rpc_address"], cluster.nodes[3].rpc.as_str(), "{out}");
    assert_eq!(four["fenced"], false, "{out}");
    let _ = twin.kill();
    let _ = twin.wait();
}
