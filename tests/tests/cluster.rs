//! A three-node cluster of `runnel serve` processes: the controller quorum
//! forms, survives the loss of its leader, keeps metadata across a full
//! restart, refuses changes clearly without a majority, and fences a broker
//! that stops heartbeating or whose process is gone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use runnel_tests::{Cluster, runnelctl, wait_for};
use serde_json::Value;

/// Partition -> leader, as one node's Kafka Metadata reports it.
fn leaders_seen_through(bootstrap: &str, topic: &str) -> BTreeMap<i32, i32> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("client");
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    md.topics()[0].partitions().iter().map(|p| (p.id(), p.leader())).collect()
}

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))).request_timeout(Some(Duration::from_secs(25)));
    let results = admin.create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &opts).await.map_err(|e| e.to_string())?;
    results.into_iter().next().expect("one result").map(|_| ()).map_err(|(_, e)| e.to_string())
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("runnelctl printed invalid JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_forms_serves_every_node_and_survives_its_leader() {
    let mut cluster = Cluster::start(3, 2000);
    let leader = wait_for("a controller leader", Duration::from_secs(10), || cluster.leader_seen_by(0));

    // runnelctl: status, brokers, topics (JSON). The first leader sets the
    // cluster id just after it is elected.
    let status = wait_for("the cluster id", Duration::from_secs(10), || {
        let (ok, out, _) = runnelctl(&cluster.nodes[1].rpc, &["cluster", "status"]);
        let status = json(&out);
        (ok && !status["cluster_id"].as_str().unwrap_or_default().is_empty()).then_some(status)
    });
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(status["nodes"].as_array().unwrap().iter().filter(|n| n["raft_role"] == "leader").count(), 1);
    let (ok, out, _) = runnelctl(&cluster.nodes[2].rpc, &["broker", "list"]);
    assert!(ok);
    assert_eq!(json(&out).as_array().unwrap().len(), 3);

    // A topic made through Kafka on node 1 is described identically by all three.
    create_topic(&cluster.nodes[0].bootstrap, "orders", 6).await.expect("create");
    let seen: Vec<_> = cluster.nodes.iter().map(|n| leaders_seen_through(&n.bootstrap, "orders")).collect();
    assert_eq!(seen[0].len(), 6);
    assert!(seen.iter().all(|s| *s == seen[0]), "nodes disagree: {seen:?}");
    let distinct: std::collections::BTreeSet<_> = seen[0].values().collect();
    assert_eq!(distinct.len(), 3, "leaders spread over the three brokers: {seen:?}");
    let (ok, out, _) = runnelctl(&cluster.nodes[2].rpc, &["topic", "describe", "orders"]);
    assert!(ok);
    assert_eq!(json(&out)["partitions"].as_array().unwrap().len(), 6);

    // rdkafka produces to partitions on all three nodes and reads them back.
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", cluster.bootstrap()).set("acks", "all").create().unwrap();
    for p in 0..6 {
        let v = format!("hello {p}");
        producer.send(FutureRecord::<(), _>::to("orders").partition(p).payload(&v), Duration::from_secs(10)).await.expect("delivered");
    }
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", cluster.bootstrap()).create().unwrap();
    for p in 0..6 {
        assert_eq!(consumer.fetch_watermarks("orders", p, Duration::from_secs(10)).unwrap(), (0, 1), "partition {p}");
    }

    // SIGKILL the controller leader: another is elected within seconds.
    let index = (leader - 1) as usize;
    let killed_at = Instant::now();
    cluster.nodes[index].kill();
    let survivor = (index + 1) % 3;
    let new_leader = wait_for("a new controller leader", Duration::from_secs(15), || cluster.leader_seen_by(survivor).filter(|l| *l != leader));
    println!("controller leader {leader} killed; node {new_leader} elected after {:?}", killed_at.elapsed());
    // Metadata is intact and changes still commit with two of three.
    let (ok, out, err) = runnelctl(&cluster.nodes[survivor].rpc, &["topic", "describe", "orders"]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["partitions"].as_array().unwrap().len(), 6);
    let (ok, _, err) = runnelctl(&cluster.nodes[survivor].rpc, &["topic", "create", "after-failover", "--partitions", "2"]);
    assert!(ok, "{err}");
    cluster.nodes[index].restart();
    let (ok, out, _) = runnelctl(&cluster.nodes[index].rpc, &["topic", "list"]);
    assert!(ok);
    let names: Vec<String> = json(&out).as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, vec!["after-failover", "orders"], "the restarted node caught up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_survives_a_full_restart_and_a_minority_cannot_change_it() {
    // Sessions long enough that a node slow to start on a busy machine is
    // rarely fenced meanwhile; when one is, its return rightly bumps its
    // partitions' epochs, so those are compared as never going back.
    let mut cluster = Cluster::start(3, 6000);
    wait_for("a controller leader", Duration::from_secs(10), || cluster.leader_seen_by(0));
    create_topic(&cluster.nodes[1].bootstrap, "kept", 3).await.expect("create");
    let (ok, _, err) = runnelctl(&cluster.nodes[0].rpc, &["topic", "alter-config", "kept", "--set", "retention.ms=3600000"]);
    assert!(ok, "{err}");
    let before = settled_describe(&cluster.nodes[0].rpc, "kept");
    let cluster_id = json(&runnelctl(&cluster.nodes[0].rpc, &["cluster", "status"]).1)["cluster_id"].clone();
    assert!(!cluster_id.as_str().unwrap_or_default().is_empty(), "set by the time a topic was created");

    cluster.restart_all();
    wait_for("a controller leader after restart", Duration::from_secs(15), || cluster.leader_seen_by(2));
    let after = settled_describe(&cluster.nodes[2].rpc, "kept");
    // Everything but the high watermark and the epochs is as it was.
    let epochs = |v: &str| -> Vec<(i64, i64)> {
        json(v)["partitions"].as_array().unwrap().iter().map(|p| (p["leader_epoch"].as_i64().unwrap(), p["partition_epoch"].as_i64().unwrap())).collect()
    };
    let strip = |v: &str| {
        let mut v = json(v);
        for p in v["partitions"].as_array_mut().unwrap() {
            for key in ["high_watermark", "leader_epoch", "partition_epoch"] {
                p.as_object_mut().unwrap().remove(key);
            }
        }
        v
    };
    assert_eq!(strip(&after), strip(&before));
    let (was, now) = (epochs(&before), epochs(&after));
    assert!(was.iter().zip(&now).all(|(b, a)| a.0 >= b.0 && a.1 >= b.1), "epochs never go back: {was:?} -> {now:?}");
    assert_eq!(json(&after)["configs"]["retention.ms"], "3600000");
    assert_eq!(json(&runnelctl(&cluster.nodes[2].rpc, &["cluster", "status"]).1)["cluster_id"], cluster_id, "the cluster id is kept");

    // Two of three controllers down: changes fail clearly instead of hanging.
    cluster.nodes[0].kill();
    cluster.nodes[1].kill();
    let started = Instant::now();
    let (ok, _, err) = runnelctl(&cluster.nodes[2].rpc, &["topic", "create", "no-quorum"]);
    assert!(!ok);
    assert!(err.contains("majority"), "runnelctl said: {err}");
    assert!(started.elapsed() < Duration::from_secs(14), "answered in {:?}", started.elapsed());
    let (ok, out, _) = runnelctl(&cluster.nodes[2].rpc, &["topic", "list"]);
    assert!(ok, "reads are still answered");
    assert_eq!(json(&out).as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_heartbeating_is_fenced_and_returns() {
    let mut cluster = Cluster::start(3, 1500);
    wait_for("a controller leader", Duration::from_secs(10), || cluster.leader_seen_by(0));
    create_topic(&cluster.nodes[0].bootstrap, "fencing", 3).await.expect("create");
    // Kill a node that is not the controller leader, so only its broker is lost.
    let leader = cluster.leader_seen_by(0).unwrap();
    let victim = (1..=3u64).find(|id| *id != leader).unwrap();
    let index = (victim - 1) as usize;
    let watcher = (1..=3u64).find(|id| *id != victim).unwrap() as usize - 1;
    cluster.nodes[index].kill();
    let fenced_after = Instant::now();
    wait_for("the broker to be fenced", Duration::from_secs(10), || {
        let (ok, out, _) = runnelctl(&cluster.nodes[watcher].rpc, &["broker", "list"]);
        (ok && json(&out).as_array().unwrap().iter().any(|b| b["node_id"] == victim && b["fenced"] == true)).then_some(())
    });
    println!("broker {victim} fenced {:?} after SIGKILL (session timeout 1.5 s)", fenced_after.elapsed());
    // Its single-replica partition has no leader now; Kafka metadata lists two brokers.
    let (_, out, _) = runnelctl(&cluster.nodes[watcher].rpc, &["topic", "describe", "fencing"]);
    let topic = json(&out);
    let orphaned: Vec<&Value> = topic["partitions"].as_array().unwrap().iter().filter(|p| p["replicas"] == serde_json::json!([victim])).collect();
    assert!(!orphaned.is_empty() && orphaned.iter().all(|p| p["leader"].is_null()));
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &cluster.nodes[watcher].bootstrap).create().unwrap();
    assert_eq!(c.fetch_metadata(None, Duration::from_secs(10)).unwrap().brokers().len(), 2);

    cluster.nodes[index].restart();
    wait_for("the broker to be unfenced and lead again", Duration::from_secs(15), || {
        let (_, out, _) = runnelctl(&cluster.nodes[watcher].rpc, &["topic", "describe", "fencing"]);
        let topic = json(&out);
        topic["partitions"].as_array().unwrap().iter().all(|p| !p["leader"].is_null()).then_some(())
    });
}

/// `topic describe` once the node has caught up with the metadata and every
/// partition's leader serves: both are run-time state that a restart resets
/// for a moment, not metadata that could be lost.
fn settled_describe(rpc: &str, topic: &str) -> String {
    wait_for("the node to catch up and every leader to serve", Duration::from_secs(15), || {
        let (ok, out, _) = runnelctl(rpc, &["topic", "describe", topic]);
        let t = if ok { json(&out) } else { return None };
        let serving = t["partitions"].as_array().unwrap().iter().all(|p| p["leader_serving"] == true);
        (t["metadata_stale"] == false && serving).then_some(out)
    })
}

/// Whether `node_id` is fenced, as the node at `rpc` sees the brokers.
fn fenced(rpc: &str, node_id: u64) -> Option<bool> {
    let (ok, out, _) = runnelctl(rpc, &["broker", "list"]);
    if !ok {
        return None;
    }
    json(&out).as_array()?.iter().find(|b| b["node_id"] == node_id).and_then(|b| b["fenced"].as_bool())
}

/// Issue 19, goal 3: a broker whose process is gone (nothing listens at its
/// gRPC address any more) is fenced at once, not after its session: with a
/// session of a minute, the killed partition leader, and then the killed
/// controller leader, are fenced and their partitions take acks=all writes
/// on the survivors well inside it. A broker back at its address is
/// unfenced again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_process_is_gone_is_fenced_before_its_session_ends() {
    let mut cluster = Cluster::start(3, 60_000);
    let leader = wait_for("a controller leader", Duration::from_secs(10), || cluster.leader_seen_by(0));
    let (ok, _, err) = runnelctl(&cluster.nodes[0].rpc, &["topic", "create", "gone", "--partitions", "3", "--replication-factor", "3"]);
    assert!(ok, "{err}");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let produce_everywhere = |round: &'static str| {
        let producer = producer.clone();
        async move {
            for p in 0..3 {
                let v = format!("{round} {p}");
                producer
                    .send(FutureRecord::<(), _>::to("gone").partition(p).payload(&v), Duration::from_secs(30))
                    .await
                    .unwrap_or_else(|e| panic!("{round}: partition {p}: {e:?}"));
            }
        }
    };
    produce_everywhere("before").await;

    // A broker that is not the controller leader.
    let victim = (1..=3u64).find(|id| *id != leader).unwrap();
    let watcher = &cluster.nodes[(leader - 1) as usize].rpc.clone();
    let killed_at = Instant::now();
    cluster.nodes[(victim - 1) as usize].kill();
    wait_for("the killed broker to be fenced (its session is 60 s)", Duration::from_secs(20), || fenced(watcher, victim).filter(|f| *f));
    println!("broker {victim} fenced {:?} after SIGKILL, with a 60 s session", killed_at.elapsed());
    produce_everywhere("without the killed broker").await;
    println!("every partition took an acks=all write {:?} after SIGKILL", killed_at.elapsed());
    let back_in_every_isr = |cluster: &mut Cluster| {
        cluster.nodes[(victim - 1) as usize].restart();
        wait_for("the restarted broker to be unfenced", Duration::from_secs(20), || fenced(watcher, victim).filter(|f| !*f));
        wait_for("the restarted broker back in every ISR", Duration::from_secs(20), || {
            let (ok, out, _) = runnelctl(watcher, &["topic", "describe", "gone"]);
            (ok && json(&out)["partitions"].as_array().unwrap().iter().all(|p| p["isr"].as_array().is_some_and(|i| i.len() == 3))).then_some(())
        });
    };
    back_in_every_isr(&mut cluster);

    // Killed again just after a heartbeat (the one that unfenced it): it
    // stays fenced while it is gone, whatever its last heartbeats said.
    cluster.nodes[(victim - 1) as usize].kill();
    wait_for("the killed broker to be fenced again", Duration::from_secs(20), || fenced(watcher, victim).filter(|f| *f));
    for _ in 0..10 {
        assert_eq!(fenced(watcher, victim), Some(true), "a broker that is gone was unfenced");
        std::thread::sleep(Duration::from_millis(100));
    }
    back_in_every_isr(&mut cluster);

    // The controller leader: a new one is elected and fences it at once
    // (a new leader otherwise gives every broker a full session).
    let survivor = (1..=3u64).find(|id| *id != leader).unwrap();
    let survivor_rpc = cluster.nodes[(survivor - 1) as usize].rpc.clone();
    let killed_at = Instant::now();
    cluster.nodes[(leader - 1) as usize].kill();
    wait_for("the killed controller leader to be fenced", Duration::from_secs(20), || fenced(&survivor_rpc, leader).filter(|f| *f));
    println!("controller leader {leader} fenced {:?} after SIGKILL, with a 60 s session", killed_at.elapsed());
    produce_everywhere("without the controller leader").await;
    println!("every partition took an acks=all write {:?} after SIGKILL", killed_at.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_only_and_broker_only_nodes() {
    // Nodes 1 and 2 do both, node 3 is only a controller, node 4 only a broker.
    let cluster = Cluster::start_with_roles(&["controller,broker", "controller,broker", "controller", "broker"], 2000);
    wait_for("a controller leader", Duration::from_secs(10), || cluster.leader_seen_by(0));
    // The broker-only node answers cluster status by asking a controller.
    let (ok, out, err) = runnelctl(&cluster.nodes[3].rpc, &["cluster", "status"]);
    assert!(ok, "{err}");
    let status = json(&out);
    let voters: Vec<u64> = status["nodes"].as_array().unwrap().iter().filter(|n| n["voter"] == true).map(|n| n["node_id"].as_u64().unwrap()).collect();
    assert_eq!(voters, vec![1, 2, 3]);
    let (_, out, _) = runnelctl(&cluster.nodes[0].rpc, &["broker", "list"]);
    let brokers: Vec<u64> = json(&out).as_array().unwrap().iter().map(|b| b["node_id"].as_u64().unwrap()).collect();
    assert_eq!(brokers, vec![1, 2, 4], "the controller-only node is no broker");

    // A topic created through the broker-only node spreads over the brokers,
    // and every node, including node 4, describes it the same way.
    create_topic(&cluster.nodes[3].bootstrap, "roles", 6).await.expect("create through the broker-only node");
    let brokers_only = [0usize, 1, 3];
    let seen: Vec<_> = brokers_only.iter().map(|i| leaders_seen_through(&cluster.nodes[*i].bootstrap, "roles")).collect();
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
    let leaders: std::collections::BTreeSet<i32> = seen[0].values().copied().collect();
    assert_eq!(leaders, [1, 2, 4].into_iter().collect());
    let bootstrap = brokers_only.iter().map(|i| cluster.nodes[*i].bootstrap.clone()).collect::<Vec<_>>().join(",");
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).set("acks", "all").create().unwrap();
    for p in 0..6 {
        producer.send(FutureRecord::<(), _>::to("roles").partition(p).payload("x"), Duration::from_secs(10)).await.expect("delivered");
    }
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    for p in 0..6 {
        assert_eq!(consumer.fetch_watermarks("roles", p, Duration::from_secs(10)).unwrap(), (0, 1));
    }
}

/// The group and transaction coordinators run on the controller leader. A
/// controller-only voter may win an election (here it is made to), and
/// serves no Kafka requests: it hands leadership to a voter that is also a
/// broker, or consumer groups and transactions wait until leadership
/// happens to move, which on a healthy cluster is never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_only_leader_hands_leadership_to_a_voter_that_is_a_broker() {
    use rdkafka::Offset;
    use rdkafka::TopicPartitionList;
    use rdkafka::consumer::CommitMode;
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let cluster = Cluster::start_with_roles(&["controller,broker", "controller,broker", "controller"], 2000);
    wait_for("a controller leader", Duration::from_secs(10), || cluster.leader_seen_by(0));
    create_topic(&cluster.nodes[0].bootstrap, "handed", 1).await.expect("create");

    // Node 3 campaigns until it wins (the leader's own vote refuses it
    // within the leader lease of its election).
    wait_for("node 3 to lead", Duration::from_secs(30), || {
        let (ok, out, _) = runnelctl(&cluster.nodes[2].rpc, &["controller", "transfer-leader", "--node-id", "3"]);
        let led = ok && json(&out)["leader_id"].as_u64() == Some(3);
        if !led {
            std::thread::sleep(Duration::from_millis(500));
        }
        led.then_some(())
    });
    // Then it hands leadership on to node 1 or 2, and it stays there.
    let leader = wait_for("a broker to lead the controllers again", Duration::from_secs(20), || cluster.leader_seen_by(0).filter(|l| *l != 3));
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(cluster.leader_seen_by(i), Some(leader), "node {} sees another leader", i + 1);
    }

    // Both coordinators answer: a group commits, a transaction commits.
    let bootstrap = format!("{},{}", cluster.nodes[0].bootstrap, cluster.nodes[1].bootstrap);
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", "handed-readers").create().unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("handed", 0, Offset::Offset(0)).unwrap();
    consumer.commit(&offsets, CommitMode::Sync).expect("a group commits its offsets");
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("transactional.id", "handed-tx").create().unwrap();
    producer.init_transactions(Duration::from_secs(20)).expect("the transaction coordinator answers");
    producer.begin_transaction().unwrap();
    producer.send(BaseRecord::<(), str>::to("handed").payload("x")).map_err(|(e, _)| e).unwrap();
    producer.commit_transaction(Duration::from_secs(20)).expect("a transaction commits");
}

/// Issue 13: `topic describe` showed the high watermark only of the
/// partitions led by the node asked, and group lag was exported only for
/// partitions led by the group's coordinator. Both are cluster-wide now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_group_lag_cover_partitions_led_anywhere() {
    use rdkafka::consumer::CommitMode;
    use rdkafka::{Offset, TopicPartitionList};
    let cluster = Cluster::start(3, 2000);
    create_topic(&cluster.nodes[0].bootstrap, "spread", 3).await.expect("create");
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", cluster.bootstrap()).set("acks", "all").create().unwrap();
    for p in 0..3 {
        for i in 0..(p + 2) {
            producer.send(FutureRecord::<(), _>::to("spread").partition(p).payload(&format!("{i}")), Duration::from_secs(10)).await.expect("delivered");
        }
    }
    // Partition p holds p + 2 records; the group commits offset 1 on each.
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", cluster.bootstrap()).set("group.id", "spread-readers").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("spread", p, Offset::Offset(1)).unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");

    for node in &cluster.nodes {
        let (ok, out, err) = runnelctl(&node.rpc, &["topic", "describe", "spread"]);
        assert!(ok, "{err}");
        let hws: Vec<i64> = json(&out)["partitions"].as_array().unwrap().iter().map(|p| p["high_watermark"].as_i64().unwrap_or(-1)).collect();
        assert_eq!(hws, vec![2, 3, 4], "node {} describes every partition's high watermark", node.rpc);
    }
    let leader = wait_for("a controller leader", Duration::from_secs(10), || cluster.leader_seen_by(0)) as usize;
    let coordinator = &cluster.nodes[leader - 1];
    wait_for("group lag of every partition on the coordinator", Duration::from_secs(20), || {
        let body = coordinator.http_get("/metrics").1;
        let lags: Vec<bool> = (0..3)
            .map(|p| body.contains(&format!(r#"runnel_consumer_group_lag{{group="spread-readers",topic="spread",partition="{p}"}} {}"#, p + 1)))
            .collect();
        lags.iter().all(|l| *l).then_some(())
    });
}

/// Issue 13: with two of three nodes SIGKILLed, the survivor answered
/// Metadata with leader -1 and acks=1 produce timed out, while describe and
/// the metrics still showed it leading. Now it keeps leading the partitions
/// whose ISR is itself alone (no other broker can be elected to lead them),
/// refuses the rest, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_controller_majority_a_broker_keeps_leading_what_only_it_can_lead() {
    let mut cluster = Cluster::start(3, 2000);
    create_topic(&cluster.nodes[0].bootstrap, "solo", 3).await.expect("create solo");
    let (ok, _, err) = runnelctl(&cluster.nodes[0].rpc, &["topic", "create", "triple", "-p", "3", "-r", "3"]);
    assert!(ok, "{err}");
    let survivor = &cluster.nodes[0];
    let led_by_1 = |topic: &str| -> i32 {
        wait_for("a partition led by node 1", Duration::from_secs(10), || {
            leaders_seen_through(&survivor.bootstrap, topic).into_iter().find(|(_, l)| *l == 1).map(|(p, _)| p)
        })
    };
    let (solo, triple) = (led_by_1("solo"), led_by_1("triple"));

    cluster.nodes[1].kill();
    cluster.nodes[2].kill();
    let survivor = &cluster.nodes[0];
    wait_for("the survivor to notice the quorum is gone", Duration::from_secs(20), || {
        survivor.http_get("/metrics").1.contains("\nrunnel_controller_quorum_reachable 0\n").then_some(())
    });

    // acks=1 to the partition only it can lead: written and readable.
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &survivor.bootstrap).set("acks", "1").set("message.timeout.ms", "5000").create().unwrap();
    let delivered =
        producer.send(FutureRecord::<(), _>::to("solo").partition(solo).payload("still here"), Duration::from_secs(10)).await.expect("acks=1 write");
    let (partition, offset) = (delivered.partition, delivered.offset);
    assert_eq!(partition, solo);
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &survivor.bootstrap).set("group.id", "quorumless").create().unwrap();
    let (_, high) = consumer.fetch_watermarks("solo", solo, Duration::from_secs(10)).expect("watermarks");
    assert_eq!(high, offset + 1, "the write is readable");
    // A partition with other ISR members is not served: one of them may lead it by now.
    let refused = producer.send(FutureRecord::<(), _>::to("triple").partition(triple).payload("x"), Duration::from_secs(10)).await;
    assert!(refused.is_err(), "a write to a partition with other ISR members must not be taken");
    let leaders = leaders_seen_through(&survivor.bootstrap, "triple");
    assert_eq!(leaders[&triple], -1, "Metadata does not name the survivor leader of what it does not serve");
    assert_eq!(leaders_seen_through(&survivor.bootstrap, "solo")[&solo], 1);

    // The metrics, describe and the log tell the same.
    let metrics = survivor.http_get("/metrics").1;
    assert!(metrics.contains("runnel_leader_partitions 1\n"), "{metrics}");
    let (ok, out, _) = runnelctl(&survivor.rpc, &["topic", "describe", "triple"]);
    assert!(ok);
    let t = json(&out);
    assert_eq!(t["metadata_stale"], true);
    assert_eq!(t["partitions"][triple as usize]["leader_serving"], false);
    wait_for("the state change in the log", Duration::from_secs(10), || survivor.log().contains("the controller quorum is unreachable").then_some(()));

    // The majority comes back: everything is served again.
    cluster.nodes[1].restart_unready();
    cluster.nodes[2].restart_unready();
    let survivor = &cluster.nodes[0];
    wait_for("the quorum to be reachable again", Duration::from_secs(30), || {
        survivor.http_get("/metrics").1.contains("\nrunnel_controller_quorum_reachable 1\n").then_some(())
    });
    let all: FutureProducer = ClientConfig::new().set("bootstrap.servers", cluster.bootstrap()).set("acks", "all").create().unwrap();
    all.send(FutureRecord::<(), _>::to("triple").partition(triple).payload("back"), Duration::from_secs(30)).await.expect("acks=all once the majority is back");
}

/// Kafka's auto.leader.rebalance.enable: a broker that restarts comes back
/// leading nothing, and the controller gives it back the partitions it is
/// the preferred (first) replica of, with no command.
#[test]
fn a_restarted_broker_gets_its_preferred_leaderships_back_by_itself() {
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &["--leader-imbalance-check-interval-ms", "1000"]);
    let (ok, _, err) = runnelctl(&cluster.nodes[1].rpc, &["topic", "create", "preferred", "-p", "6", "-r", "3"]);
    assert!(ok, "{err}");
    // (preferred replica, leader) of each partition.
    let leaders = |rpc: &str| -> Vec<(u64, Option<u64>)> {
        let (ok, out, _) = runnelctl(rpc, &["topic", "describe", "preferred"]);
        if !ok {
            return Vec::new();
        }
        json(&out)["partitions"].as_array().map_or(Vec::new(), |ps| ps.iter().map(|p| (p["replicas"][0].as_u64().unwrap_or(0), p["leader"].as_u64())).collect())
    };
    let all_preferred = |rpc: &str| {
        let l = leaders(rpc);
        (l.len() == 6 && l.iter().all(|(preferred, leader)| *leader == Some(*preferred))).then_some(())
    };
    wait_for("every partition led by its preferred replica", Duration::from_secs(30), || all_preferred(&cluster.nodes[1].rpc));
    assert!(leaders(&cluster.nodes[1].rpc).iter().any(|(preferred, _)| *preferred == 1), "broker 1 is preferred for some partitions");

    cluster.nodes[0].kill();
    wait_for("broker 1's partitions led by the others", Duration::from_secs(30), || {
        let l = leaders(&cluster.nodes[1].rpc);
        (l.len() == 6 && l.iter().all(|(_, leader)| leader.is_some_and(|id| id != 1))).then_some(())
    });
    cluster.nodes[0].restart();
    wait_for("broker 1 leading its preferred partitions again", Duration::from_secs(60), || all_preferred(&cluster.nodes[1].rpc));
}
