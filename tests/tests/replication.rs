//! Replicated partitions on a three-node cluster: acks=all writes survive
//! SIGKILLs of the partition leader, followers catch up and rejoin the ISR,
//! and min.insync.replicas is enforced.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use runnel_tests::{Cluster, runnelctl, wait_for};
use serde_json::Value;

async fn create_topic(bootstrap: &str, name: &str, partitions: i32, factor: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for r in admin.create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(factor))], &opts).await.expect("create") {
        r.expect("created");
    }
}

fn describe(cluster: &Cluster, via: usize, topic: &str) -> Value {
    let (ok, out, err) = runnelctl(&cluster.nodes[via].rpc, &["topic", "describe", topic]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).expect("json")
}

fn leader_of(cluster: &Cluster, via: usize, topic: &str, partition: usize) -> Option<u64> {
    describe(cluster, via, topic)["partitions"][partition]["leader"].as_u64()
}

fn full_isr(cluster: &Cluster, via: usize, topic: &str) -> bool {
    describe(cluster, via, topic)["partitions"].as_array().unwrap().iter().all(|p| p["isr"].as_array().unwrap().len() == 3)
}

/// Reads every partition from the beginning to its high watermark.
fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<(i64, String)>> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "check").set("enable.auto.commit", "false").create().unwrap();
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut got: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ends.iter().any(|(p, e)| got.get(p).map_or(0, |v| v.len() as i64) < *e) {
        assert!(Instant::now() < deadline, "read back timed out");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            got.entry(m.partition()).or_default().push((m.offset(), String::from_utf8_lossy(m.payload().unwrap()).into_owned()));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_leader_sigkills() {
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &["--replica-lag-time-max-ms", "3000"]);
    create_topic(&cluster.nodes[0].bootstrap, "replicated", 3, 3).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap();
    const MESSAGES: usize = 200_000;
    let mut acked: Vec<(String, i32, i64)> = Vec::new();
    let mut pending = Vec::new();
    let mut kills = 0;
    let started = Instant::now();
    for i in 0..MESSAGES {
        let value = format!("m{i}");
        let key = format!("k{}", i % 50);
        let delivery = producer.send_result(FutureRecord::to("replicated").key(&key).payload(&value)).map_err(|(e, _)| e).expect("queued");
        pending.push((value, delivery));
        // Three times during the run: SIGKILL the leader of partition 0, wait
        // for a new leader, restart the old one and wait for a full ISR.
        if i % (MESSAGES / 4) == MESSAGES / 8 && kills < 3 {
            for (value, d) in pending.drain(..) {
                let d = tokio::time::timeout(Duration::from_secs(120), d).await.expect("in time").expect("not cancelled").expect("acknowledged");
                acked.push((value, d.partition, d.offset));
            }
            let via = (0..3).find(|n| cluster.nodes[*n].is_running()).unwrap();
            let leader = leader_of(&cluster, via, "replicated", 0).expect("a leader");
            let index = (leader - 1) as usize;
            let killed = Instant::now();
            cluster.nodes[index].kill();
            let survivor = (index + 1) % 3;
            let new_leader = wait_for("a new leader", Duration::from_secs(20), || leader_of(&cluster, survivor, "replicated", 0).filter(|l| *l != leader));
            println!("kill {}: leader {leader} -> {new_leader} after {:?}", kills + 1, killed.elapsed());
            cluster.nodes[index].restart();
            let rejoin = Instant::now();
            wait_for("a full ISR again", Duration::from_secs(30), || full_isr(&cluster, survivor, "replicated").then_some(()));
            println!("node {leader} caught up and rejoined the ISR after {:?}", rejoin.elapsed());
            kills += 1;
        }
    }
    for (value, d) in pending {
        let d = tokio::time::timeout(Duration::from_secs(120), d).await.expect("in time").expect("not cancelled").expect("acknowledged");
        acked.push((value, d.partition, d.offset));
    }
    println!("{} messages acknowledged in {:?} through {kills} leader kills", acked.len(), started.elapsed());
    assert_eq!(kills, 3);

    // Every acknowledged message is there exactly once, at its offset, and
    // per partition the log is dense.
    let log = read_all(&cluster.bootstrap(), "replicated", 3);
    let total: usize = log.values().map(Vec::len).sum();
    assert_eq!(total, MESSAGES, "no loss, no duplicates");
    for (p, records) in &log {
        for (i, (offset, _)) in records.iter().enumerate() {
            assert_eq!(*offset, i as i64, "partition {p} is dense");
        }
    }
    for (value, partition, offset) in &acked {
        assert_eq!(&log[partition][*offset as usize].1, value, "{value} at {partition}/{offset}");
    }

    // Each replication stage was timed somewhere: leaders' fsyncs and ISR
    // waits behind acks=all, followers' fetch rounds and fsyncs.
    for stage in ["leader_flush", "isr_wait", "follower_round", "follower_flush"] {
        let name = format!("runnel_replication_{stage}_seconds_count");
        let mut observed = 0.0;
        for node in cluster.nodes.iter_mut() {
            if node.is_running() {
                observed += metric(node, &name).unwrap_or(0.0);
            }
        }
        assert!(observed > 0.0, "{name} counts nothing on any node");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_insync_replicas_refuses_acks_all_but_not_acks_1() {
    // Five nodes so the controller quorum survives two brokers going away.
    let mut cluster = Cluster::start_with(&["controller,broker"; 5], 1500, &["--replica-lag-time-max-ms", "2000"]);
    create_topic(&cluster.nodes[0].bootstrap, "strict", 1, 3).await;
    let t = describe(&cluster, 0, "strict");
    let replicas: Vec<u64> = t["partitions"][0]["replicas"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap()).collect();
    let leader = t["partitions"][0]["leader"].as_u64().unwrap();
    // Stop the two followers; the leader shrinks the ISR to itself.
    for r in replicas.iter().filter(|r| **r != leader) {
        cluster.nodes[(*r - 1) as usize].kill();
    }
    let via = (leader - 1) as usize;
    wait_for("the ISR to shrink to the leader", Duration::from_secs(20), || {
        (describe(&cluster, via, "strict")["partitions"][0]["isr"].as_array().unwrap().len() == 1).then_some(())
    });
    let bootstrap = cluster.nodes[via].bootstrap.clone();
    let all: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("acks", "all").set("message.timeout.ms", "3000").set("retries", "0").create().unwrap();
    let err = all.send(FutureRecord::<(), _>::to("strict").payload("x"), Duration::from_secs(10)).await.expect_err("acks=all must fail");
    assert!(format!("{:?}", err.0).contains("NotEnoughReplicas"), "{err:?}");
    let one: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).set("acks", "1").create().unwrap();
    one.send(FutureRecord::<(), _>::to("strict").payload("y"), Duration::from_secs(10)).await.expect("acks=1 works on the survivor");
    let _ = &mut cluster;
}

/// Produces one record to `partition` of `topic` straight to `node`'s Kafka
/// listener; returns the partition error code.
fn raw_produce(node: &runnel_tests::Node, topic: &str, partition: i32, value: &[u8], acks: i16, timeout_ms: i32) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestKind, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let batch = runnel_storage::batch::build_batch(runnel_tests::now_ms(), &[value]);
    let request = ProduceRequest::default().with_acks(acks).with_timeout_ms(timeout_ms).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(bytes::Bytes::from(batch)))]),
    ]);
    let mut s = node.connect();
    s.set_read_timeout(Some(Duration::from_millis(timeout_ms as u64 + 10_000))).unwrap();
    let ResponseKind::Produce(r) = runnel_tests::wire::call(&mut s, ApiKey::Produce, 9, &RequestKind::Produce(request)) else { panic!() };
    r.responses[0].partition_responses[0].error_code
}

/// Every record value in a copy of a node's partition directory.
fn values_on_disk(node: &runnel_tests::Node, topic: &str, partition: i32) -> Vec<String> {
    let src = node.data_dir.join("logs").join(format!("{topic}-{partition}"));
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let (log, _) = runnel_storage::PartitionLog::open(copy.path(), runnel_storage::LogConfig::default()).unwrap();
    let mut values = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let mut bytes = log.read(next, 1 << 20, log.log_end_offset(), true).unwrap();
        for set in kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
            for r in set.records {
                values.push(String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned());
                next = r.offset + 1;
            }
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_fenced_and_cuts_its_divergent_tail() {
    let cluster = Cluster::start_with(&["controller,broker"; 3], 1500, &["--replica-lag-time-max-ms", "3000"]);
    create_topic(&cluster.nodes[0].bootstrap, "paused", 1, 3).await;
    let old = leader_of(&cluster, 0, "paused", 0).unwrap();
    let old_index = (old - 1) as usize;
    assert_eq!(raw_produce(&cluster.nodes[old_index], "paused", 0, b"before", -1, 10_000), 0);
    wait_for("a full ISR", Duration::from_secs(20), || full_isr(&cluster, 0, "paused").then_some(()));

    cluster.nodes[old_index].pause();
    let survivor = (old_index + 1) % 3;
    let new = wait_for("a new leader", Duration::from_secs(20), || leader_of(&cluster, survivor, "paused", 0).filter(|l| *l != old));
    let new_index = (new - 1) as usize;
    assert_eq!(raw_produce(&cluster.nodes[new_index], "paused", 0, b"after", -1, 10_000), 0, "the new leader takes writes");
    cluster.nodes[old_index].resume();
    // Straight after it wakes, the old leader may still believe it leads; it
    // may even append, but it can never acknowledge with acks=all: its
    // followers now fetch from the new leader at a newer epoch.
    let code = raw_produce(&cluster.nodes[old_index], "paused", 0, b"divergent", -1, 3000);
    assert_ne!(code, 0, "a fenced leader acknowledged a write");
    println!("the resumed old leader answered error code {code}");
    // It rejoins as a follower with the new leader's log, without the divergent tail.
    wait_for("the old leader back in the ISR", Duration::from_secs(30), || full_isr(&cluster, new_index, "paused").then_some(()));
    wait_for("the old leader's log to match", Duration::from_secs(10), || {
        (values_on_disk(&cluster.nodes[old_index], "paused", 0) == vec!["before", "after"]).then_some(())
    });
    let log = read_all(&cluster.nodes[new_index].bootstrap, "paused", 1);
    let values: Vec<&str> = log[&0].iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, vec!["before", "after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_leadership_over_and_preferred_election_brings_it_back() {
    // A long session timeout: leadership must move because of the controlled
    // shutdown, not because the broker went silent.
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 20_000, &["--replica-lag-time-max-ms", "3000"]);
    create_topic(&cluster.nodes[0].bootstrap, "rolling", 3, 3).await;
    wait_for("a full ISR", Duration::from_secs(20), || full_isr(&cluster, 0, "rolling").then_some(()));
    let preferred: Vec<u64> = describe(&cluster, 0, "rolling")["partitions"].as_array().unwrap().iter().map(|p| p["replicas"][0].as_u64().unwrap()).collect();
    let victim = preferred[0];
    let index = (victim - 1) as usize;
    let survivor = (index + 1) % 3;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..200 {
        pending.push(producer.send_result(FutureRecord::<(), _>::to("rolling").partition(0).payload(&format!("a{i}"))).map_err(|(e, _)| e).unwrap());
    }
    let stopped = Instant::now();
    let status = cluster.nodes[index].terminate();
    assert!(status.success(), "exit status {status}");
    let moved = wait_for("leadership to move", Duration::from_secs(10), || leader_of(&cluster, survivor, "rolling", 0).filter(|l| *l != victim));
    println!("controlled shutdown of {victim}: leadership moved to {moved}, process exited after {:?}", stopped.elapsed());
    assert!(stopped.elapsed() < Duration::from_secs(15), "well within the 20 s session timeout");
    for i in 200..400 {
        pending.push(producer.send_result(FutureRecord::<(), _>::to("rolling").partition(0).payload(&format!("a{i}"))).map_err(|(e, _)| e).unwrap());
    }
    for d in pending {
        tokio::time::timeout(Duration::from_secs(60), d).await.expect("in time").expect("not cancelled").expect("only retriable errors on the way");
    }

    cluster.nodes[index].restart();
    wait_for("a full ISR after restart", Duration::from_secs(30), || full_isr(&cluster, survivor, "rolling").then_some(()));
    assert_ne!(leader_of(&cluster, survivor, "rolling", 0), Some(victim), "leadership stays where it moved");
    // Kafka's ElectLeaders (issue 16) for partition 0: the preferred replica
    // leads again; then runnelctl for the rest, on the same path.
    {
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, RequestKind, ResponseKind, TopicName};
        use kafka_protocol::protocol::StrBytes;
        let request = ElectLeadersRequest::default()
            .with_election_type(0)
            .with_topic_partitions(Some(vec![TopicPartitions::default().with_topic(TopicName(StrBytes::from_static_str("rolling"))).with_partitions(vec![0])]))
            .with_timeout_ms(10_000);
        let mut conn = cluster.nodes[survivor].connect();
        let ResponseKind::ElectLeaders(r) = runnel_tests::wire::call(&mut conn, ApiKey::ElectLeaders, 2, &RequestKind::ElectLeaders(request)) else { panic!() };
        assert_eq!(r.replica_election_results[0].partition_result[0].error_code, 0, "{r:?}");
        wait_for("the preferred leader of partition 0", Duration::from_secs(10), || {
            (leader_of(&cluster, survivor, "rolling", 0) == Some(victim)).then_some(())
        });
    }
    let (ok, out, err) = runnelctl(&cluster.nodes[survivor].rpc, &["partition", "elect-leader", "--topic", "rolling"]);
    assert!(ok, "{err}");
    let leaders: Vec<u64> =
        serde_json::from_str::<Value>(&out).unwrap()["partitions"].as_array().unwrap().iter().map(|p| p["leader"].as_u64().unwrap()).collect();
    assert_eq!(leaders, preferred, "preferred leaders restored");
    let log = read_all(&cluster.bootstrap(), "rolling", 3);
    assert_eq!(log[&0].len(), 400, "every acknowledged message once");
}

/// Found by the chaos harness: a restarted node's metadata is its own stale
/// view until it catches up, and named it leader of a partition that had
/// moved while it was down; it must not serve that partition (an acks=1
/// write there would be acknowledged and then truncated) before its
/// registration in this life has gone through the quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_leads_nothing_until_it_has_registered() {
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 1500, &[]);
    create_topic(&cluster.nodes[0].bootstrap, "stale", 1, 3).await;
    let old = leader_of(&cluster, 0, "stale", 0).unwrap() as usize;
    assert_eq!(raw_produce(&cluster.nodes[old - 1], "stale", 0, b"before", -1, 10_000), 0);
    cluster.nodes[old - 1].kill();
    let other = (1..=3).find(|n| *n != old).unwrap();
    wait_for("a new leader", Duration::from_secs(20), || leader_of(&cluster, other - 1, "stale", 0).filter(|l| *l as usize != old));
    // The old leader comes back while the rest of the cluster is frozen: it
    // cannot reach the quorum, so it cannot register.
    let rest: Vec<usize> = (1..=3).filter(|n| *n != old).collect();
    for n in &rest {
        cluster.nodes[n - 1].pause();
    }
    cluster.nodes[old - 1].restart_unready();
    std::thread::sleep(Duration::from_secs(1));
    let code = raw_produce(&cluster.nodes[old - 1], "stale", 0, b"stale-ack", 1, 3_000);
    for n in &rest {
        cluster.nodes[n - 1].resume();
    }
    assert_eq!(code, kafka_protocol::error::ResponseError::NotLeaderOrFollower.code(), "an unregistered node served a partition from its stale metadata");
    // Once it has registered it follows the new leader; nothing it was sent is there.
    wait_for("a full ISR again", Duration::from_secs(30), || full_isr(&cluster, other - 1, "stale").then_some(()));
    let values = read_all(&cluster.bootstrap(), "stale", 1);
    let values: Vec<&str> = values[&0].iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, vec!["before"]);
}

/// A small tmpfs mounted over a node's `logs` directory, unmounted on drop:
/// a disk that really fills up.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` when this process may not mount (not root).
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        let uid = std::process::Command::new("id").arg("-u").output().expect("id -u");
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        let status = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status().expect("run mount");
        assert!(status.success(), "mount a {size} tmpfs on {}", dir.display());
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem holding `path` with a file of zeros until a write
/// fails with ENOSPC.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("ballast");
    for chunk in [1 << 20, 4096] {
        let zeros = vec![0u8; chunk];
        loop {
            match f.write(&zeros) {
                Ok(n) if n == chunk => {}
                Ok(_) => break,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "filling {}: {e}", path.display());
                    break;
                }
            }
        }
    }
}

fn metric(node: &runnel_tests::Node, name: &str) -> Option<f64> {
    let (_, body) = node.http_get("/metrics");
    body.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// The full-disk chaos scenario's finding: a broker whose disk is full kept
/// leading its partitions (every produce there failed with
/// KAFKA_STORAGE_ERROR) and stayed in the ISRs. Now its heartbeats report the
/// failed log directory, the controller fences it until a probe write goes
/// through, and it then catches up and rejoins, its log intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_moves_leadership_away_and_the_node_rejoins_when_space_returns() {
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 1500, &["--replica-lag-time-max-ms", "3000"]);
    let victim = 1;
    let status = cluster.nodes[victim].terminate();
    assert!(status.success(), "exit status {status}");
    let logs = cluster.nodes[victim].data_dir.join("logs");
    // A test that cannot run fails and says why (CI runs as root).
    let _disk = Tmpfs::mount(&logs, "16m").expect("this test mounts a small tmpfs, which needs root: run it as root (CI does)");
    cluster.nodes[victim].restart();
    create_topic(&cluster.nodes[0].bootstrap, "disk", 3, 3).await;
    wait_for("a full ISR", Duration::from_secs(20), || full_isr(&cluster, 0, "disk").then_some(()));
    let (ok, _, err) = runnelctl(&cluster.nodes[0].rpc, &["partition", "elect-leader", "--topic", "disk"]);
    assert!(ok, "{err}");
    let victim_id = victim as u64 + 1;
    let led = (0..3).find(|p| leader_of(&cluster, 0, "disk", *p) == Some(victim_id)).expect("each node leads one partition");

    fill(&logs.join("ballast"));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let payload = "x".repeat(1000);
    let mut pending = Vec::new();
    for i in 0..300 {
        let value = format!("{i}:{payload}");
        let partition = i % 3;
        pending
            .push((value.clone(), producer.send_result(FutureRecord::<(), _>::to("disk").partition(partition).payload(&value)).map_err(|(e, _)| e).unwrap()));
    }
    let filled = Instant::now();
    let mut acked = Vec::new();
    for (value, d) in pending {
        let d = tokio::time::timeout(Duration::from_secs(40), d)
            .await
            .expect("in time")
            .expect("not cancelled")
            .expect("every partition keeps taking acks=all writes");
        acked.push((value, d.partition, d.offset));
    }
    println!("{} writes acknowledged {:?} after the disk of node {victim_id} (leader of partition {led}) filled", acked.len(), filled.elapsed());
    assert!(cluster.nodes[victim].is_running(), "a full disk must not crash the node");
    let partitions = describe(&cluster, 0, "disk")["partitions"].as_array().unwrap().clone();
    for p in &partitions {
        assert_ne!(p["leader"].as_u64(), Some(victim_id), "the node with the full disk still leads: {p}");
        assert!(!p["isr"].as_array().unwrap().iter().any(|r| r.as_u64() == Some(victim_id)), "the node with the full disk is still in an ISR: {p}");
    }
    assert_eq!(metric(&cluster.nodes[victim], "runnel_log_dir_failed"), Some(1.0));

    // Space returns: the node is unfenced, catches up and rejoins every ISR.
    std::fs::remove_file(logs.join("ballast")).unwrap();
    let freed = Instant::now();
    wait_for("a full ISR once space returned", Duration::from_secs(30), || full_isr(&cluster, 0, "disk").then_some(()));
    println!("node {victim_id} back in every ISR {:?} after space returned", freed.elapsed());
    assert_eq!(metric(&cluster.nodes[victim], "runnel_log_dir_failed"), Some(0.0));
    // Its log holds every acknowledged write: read them from it as leader.
    let (ok, _, err) = runnelctl(&cluster.nodes[0].rpc, &["partition", "elect-leader", "--topic", "disk"]);
    assert!(ok, "{err}");
    assert_eq!(leader_of(&cluster, 0, "disk", led), Some(victim_id), "preferred leadership back on the recovered node");
    // Every node knows, and the new leader serves, before a new client asks
    // any of them (librdkafka's watermark query does not retry a stale answer).
    wait_for("every node to see the new leader serving", Duration::from_secs(15), || {
        let seen = (0..3).all(|via| leader_of(&cluster, via, "disk", led) == Some(victim_id));
        (seen && describe(&cluster, victim, "disk")["partitions"][led]["leader_serving"] == true).then_some(())
    });
    let log = read_all(&cluster.bootstrap(), "disk", 3);
    assert_eq!(log.values().map(Vec::len).sum::<usize>(), acked.len(), "no loss, no duplicates");
    for (value, partition, offset) in &acked {
        assert_eq!(&log[partition][*offset as usize].1, value, "{partition}/{offset}");
    }
}

/// DeleteRecords (issue 16, KIP-107): the leader moves the log start;
/// followers take it with their next fetch, so after the leader is killed
/// the new leader serves the same earliest offset and none of the deleted
/// records.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_records_stay_deleted_on_a_new_leader() {
    let mut cluster = Cluster::start(3, 3000);
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, "trimmed", 1, 3).await;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).set("acks", "all").create().unwrap();
    let send = |i: i32| {
        let producer = producer.clone();
        async move {
            let value = format!("v{i}");
            producer.send(FutureRecord::to("trimmed").key("k").payload(&value), Duration::from_secs(20)).await.map_err(|(e, _)| e).expect("acknowledged");
        }
    };
    for i in 0..100 {
        send(i).await;
    }
    wait_for("a full ISR", Duration::from_secs(20), || full_isr(&cluster, 0, "trimmed").then_some(()));

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let mut below = TopicPartitionList::new();
    below.add_partition_offset("trimmed", 0, Offset::Offset(60)).unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let moved = admin.delete_records(&below, &opts).await.expect("delete records");
    assert_eq!(moved.find_partition("trimmed", 0).unwrap().offset(), Offset::Offset(60), "the new low watermark");
    // An acks=all write after it: both followers have fetched since, and
    // every fetch reply carries the leader's log start.
    send(100).await;

    let leader = leader_of(&cluster, 0, "trimmed", 0).expect("a leader");
    cluster.nodes[(leader - 1) as usize].kill();
    let survivor = if leader == 1 { 1 } else { 0 };
    let new_leader = wait_for("a new leader", Duration::from_secs(20), || leader_of(&cluster, survivor, "trimmed", 0).filter(|l| *l != leader));
    println!("leader {leader} killed; {new_leader} leads");
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", cluster.nodes[survivor].bootstrap.as_str()).set("group.id", "trimmed-check").create().unwrap();
    let marks = wait_for("watermarks from the new leader", Duration::from_secs(20), || consumer.fetch_watermarks("trimmed", 0, Duration::from_secs(5)).ok());
    assert_eq!(marks, (60, 101), "the new leader's earliest offset is where the records were deleted");
    let mut from_start = TopicPartitionList::new();
    from_start.add_partition_offset("trimmed", 0, Offset::Beginning).unwrap();
    consumer.assign(&from_start).unwrap();
    let first =
        wait_for("a record from the beginning", Duration::from_secs(20), || consumer.poll(Duration::from_millis(200)).map(|m| m.expect("consume").detach()));
    assert_eq!((first.offset(), first.payload()), (60, Some(b"v60".as_slice())), "reading from the beginning starts at the log start");
}

/// KIP-951: a node asked to produce or fetch a partition it does not lead
/// says which broker does, at which epoch, and (Produce v10+) where to reach
/// it, so a client moves there without a Metadata round trip; the leader
/// itself, asked with a stale epoch, names itself at the current one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_produce_or_fetch_names_the_current_leader() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, FetchRequest, ProduceRequest, RequestKind, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut cluster = Cluster::start(3, 6000);
    create_topic(&cluster.nodes[0].bootstrap, "hinted", 1, 3).await;
    wait_for("a full ISR", Duration::from_secs(20), || full_isr(&cluster, 0, "hinted").then_some(()));
    // Move the leadership once (a controlled shutdown of the first leader),
    // so the leader epoch has a stale value to be fenced with.
    let first = leader_of(&cluster, 0, "hinted", 0).unwrap() as usize;
    let status = cluster.nodes[first - 1].terminate();
    assert!(status.success(), "exit status {status}");
    let via = first % 3;
    wait_for("leadership to move", Duration::from_secs(20), || leader_of(&cluster, via, "hinted", 0).filter(|l| *l as usize != first));
    let p = &describe(&cluster, via, "hinted")["partitions"][0];
    let (leader, epoch) = (p["leader"].as_u64().unwrap() as i32, p["leader_epoch"].as_i64().unwrap() as i32);
    assert!(epoch > 0, "{p}");
    let leader_node = &cluster.nodes[(leader - 1) as usize];
    let follower = &cluster.nodes[(1..=3).find(|n| *n != first && *n != leader as usize).unwrap() - 1];
    let name = || TopicName(StrBytes::from_static_str("hinted"));
    let produce = |version: i16| {
        let batch = runnel_storage::batch::build_batch(runnel_tests::now_ms(), &[b"x".as_slice()]);
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name())
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(bytes::Bytes::from(batch)))]),
        ]);
        let ResponseKind::Produce(r) = runnel_tests::wire::call(&mut follower.connect(), ApiKey::Produce, version, &RequestKind::Produce(request)) else {
            panic!()
        };
        r
    };
    let r = produce(10);
    let part = &r.responses[0].partition_responses[0];
    assert_eq!(part.error_code, kafka_protocol::error::ResponseError::NotLeaderOrFollower.code(), "{r:?}");
    assert_eq!((part.current_leader.leader_id.0, part.current_leader.leader_epoch), (leader, epoch), "{r:?}");
    assert_eq!(r.node_endpoints.len(), 1, "{r:?}");
    let endpoint = &r.node_endpoints[0];
    assert_eq!((endpoint.node_id.0, format!("{}:{}", endpoint.host, endpoint.port)), (leader, leader_node.bootstrap.clone()), "{r:?}");
    // Before v10 the response has no room for a hint, and the request still gets its answer.
    let r = produce(9);
    assert_eq!(r.responses[0].partition_responses[0].error_code, kafka_protocol::error::ResponseError::NotLeaderOrFollower.code());

    let fetch = |node: &runnel_tests::Node, current_leader_epoch: i32| {
        let request =
            FetchRequest::default().with_replica_id(kafka_protocol::messages::BrokerId(-1)).with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
                FetchTopic::default().with_topic(name()).with_partitions(vec![
                    FetchPartition::default().with_partition(0).with_current_leader_epoch(current_leader_epoch).with_partition_max_bytes(1 << 20),
                ]),
            ]);
        let ResponseKind::Fetch(r) = runnel_tests::wire::call(&mut node.connect(), ApiKey::Fetch, 12, &RequestKind::Fetch(request)) else { panic!() };
        r.responses[0].partitions[0].clone()
    };
    let part = fetch(follower, -1);
    assert_eq!(part.error_code, kafka_protocol::error::ResponseError::NotLeaderOrFollower.code(), "{part:?}");
    assert_eq!((part.current_leader.leader_id.0, part.current_leader.leader_epoch), (leader, epoch), "{part:?}");
    let part = fetch(leader_node, epoch - 1);
    assert_eq!(part.error_code, kafka_protocol::error::ResponseError::FencedLeaderEpoch.code(), "{part:?}");
    assert_eq!((part.current_leader.leader_id.0, part.current_leader.leader_epoch), (leader, epoch), "{part:?}");
    // The leader answers a fetch at its epoch with no hint to go elsewhere.
    let part = fetch(leader_node, epoch);
    assert_eq!(part.error_code, 0, "{part:?}");
    assert_eq!(part.current_leader.leader_id.0, -1, "{part:?}");
    // Fetch v16 names the topic by id and lists where the leader is.
    let id = uuid::Uuid::parse_str(describe(&cluster, via, "hinted")["id"].as_str().unwrap()).unwrap();
    let request = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
        FetchTopic::default().with_topic_id(id).with_partitions(vec![FetchPartition::default().with_partition(0).with_partition_max_bytes(1 << 20)]),
    ]);
    let ResponseKind::Fetch(r) = runnel_tests::wire::call(&mut follower.connect(), ApiKey::Fetch, 16, &RequestKind::Fetch(request)) else { panic!() };
    assert_eq!(r.responses[0].topic_id, id, "{r:?}");
    let part = &r.responses[0].partitions[0];
    assert_eq!(part.error_code, kafka_protocol::error::ResponseError::NotLeaderOrFollower.code(), "{r:?}");
    assert_eq!((part.current_leader.leader_id.0, part.current_leader.leader_epoch), (leader, epoch), "{r:?}");
    let endpoints: Vec<(i32, String)> = r.node_endpoints.iter().map(|e| (e.node_id.0, format!("{}:{}", e.host, e.port))).collect();
    assert_eq!(endpoints, vec![(leader, leader_node.bootstrap.clone())], "{r:?}");
}
