//! Data written by earlier versions (issue 14): the data directories of a
//! three-node cluster that the binaries of commit 2a9fcc0 made
//! (`tests/compat/make-cluster-fixture.sh`), started with today's binaries.
//! Cluster id, topics with their configs, every acknowledged message and the
//! group's committed offsets must be there, and the cluster must take new
//! writes. After `cluster upgrade` a KIP-848 group joined before it is in
//! the metadata too: its member goes on at its epoch through a restart.
//!
//! The fixture's nodes listen on 127.0.14.{1,2,3}: the Raft membership in
//! the fixture records those addresses.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use runnel_tests::{runnel_bin, runnelctl, temp_dir};
use serde_json::Value;

const COMMIT: &str = "2a9fcc0";
const QUORUM: &str = "1@127.0.14.1:9093,2@127.0.14.2:9093,3@127.0.14.3:9093";
const BOOTSTRAP: &str = "127.0.14.1:9092,127.0.14.2:9092,127.0.14.3:9092";

/// Offset, key, value.
type Record = (i64, String, String);

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the three nodes on `root/node-N` and waits until each has registered.
fn start(root: &Path) -> Nodes {
    let mut nodes = Nodes(Vec::new());
    let (tx, rx) = std::sync::mpsc::channel();
    for n in 1..=3 {
        let log = std::fs::File::create(root.join(format!("node-{n}.log"))).unwrap();
        let mut child = Command::new(runnel_bin())
            .args(["serve", "--node-id", &n.to_string()])
            .arg("--data-dir")
            .arg(root.join(format!("node-{n}")))
            .args(["--kafka-listener", &format!("127.0.14.{n}:9092")])
            .args(["--rpc-listener", &format!("127.0.14.{n}:9093")])
            .args(["--http-listener", &format!("127.0.14.{n}:9644")])
            .args(["--controller-quorum", QUORUM, "--group-initial-rebalance-delay-ms", "0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start runnel");
        let stdout = child.stdout.take().unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("runnel: node ") && line.ends_with("registered and serving") {
                    let _ = tx.send(n);
                }
            }
        });
        nodes.0.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = 0;
    while ready < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        if rx.recv_timeout(left).is_err() {
            let logs: String = (1..=3).map(|n| std::fs::read_to_string(root.join(format!("node-{n}.log"))).unwrap_or_default()).collect();
            panic!("the nodes did not all start on the {COMMIT} data within 60 s; their logs:\n{logs}");
        }
        ready += 1;
    }
    nodes
}

fn consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap()
}

/// Every message of `topic`/`partition` from offset 0 up to `count` of them.
fn read_all(topic: &str, partition: i32, count: usize) -> Vec<Record> {
    let c = consumer("compat-reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < count && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            out.push((m.offset(), text(m.key()), text(m.payload())));
        }
    }
    out
}

#[test]
fn a_three_node_cluster_made_by_2a9fcc0_starts_with_everything_intact() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat");
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join(format!("{COMMIT}-expected.json"))).unwrap()).unwrap();
    let dir = temp_dir();
    let status = Command::new("tar").arg("-xzf").arg(fixtures.join(format!("{COMMIT}-three-nodes.tar.gz"))).arg("-C").arg(dir.path()).status().unwrap();
    assert!(status.success(), "unpack the fixture");
    let nodes = start(dir.path());
    let rpc = "127.0.14.1:9093";

    // The cluster id.
    let (ok, out, err) = runnelctl(rpc, &["cluster", "status"]);
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["cluster_id"], expected["cluster_id"], "{out}");

    // Topics, partitions, replication and configs.
    let (ok, out, err) = runnelctl(rpc, &["topic", "describe", "orders"]);
    assert!(ok, "{err}");
    let orders: Value = serde_json::from_str(&out).unwrap();
    let partitions = orders["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3, "{out}");
    assert!(partitions.iter().all(|p| p["replicas"].as_array().map(Vec::len) == Some(3)), "{out}");
    let (ok, out, err) = runnelctl(rpc, &["topic", "describe", "audit"]);
    assert!(ok, "{err}");
    let audit: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(audit["configs"]["min.insync.replicas"], "2", "{out}");
    assert_eq!(audit["configs"]["retention.ms"], "604800000", "{out}");
    assert_eq!(audit["partitions"][0]["replicas"].as_array().map(Vec::len), Some(2), "{out}");

    // Every acknowledged message, at its offset.
    let mut wanted: BTreeMap<(String, i64), Vec<Record>> = BTreeMap::new();
    for m in expected["messages"].as_array().unwrap() {
        let m = m.as_array().unwrap();
        let key = (m[0].as_str().unwrap().to_string(), m[1].as_i64().unwrap());
        wanted.entry(key).or_default().push((m[2].as_i64().unwrap(), m[3].as_str().unwrap().to_string(), m[4].as_str().unwrap().to_string()));
    }
    assert_eq!(wanted.values().map(Vec::len).sum::<usize>(), 350);
    for ((topic, partition), messages) in &wanted {
        let got = read_all(topic, *partition as i32, messages.len());
        assert_eq!(&got, messages, "{topic}-{partition}");
    }

    // The group's committed offsets.
    let billing = consumer(expected["group"].as_str().unwrap());
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition("orders", p);
    }
    let committed = billing.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    for (p, offset) in expected["committed"].as_object().unwrap() {
        let got = committed.find_partition("orders", p.parse().unwrap()).unwrap().offset();
        assert_eq!(got, Offset::Offset(offset.as_i64().unwrap()), "committed offset of orders-{p}");
    }

    // A cluster made by 2a9fcc0 stays at feature level 1 (what 2a9fcc0
    // reads) until every node runs a newer version and the upgrade is
    // finalized; the newest level then allows what the levels after 1 add,
    // on every node, for good.
    let level = |rpc: &str| {
        let (ok, out, err) = runnelctl(rpc, &["cluster", "features"]);
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()["finalized_level"].as_u64()
    };
    assert_eq!(level(rpc), Some(1));
    let (ok, _, err) = runnelctl(rpc, &["topic", "create", "zstd", "--config", "compression.type=zstd"]);
    assert!(!ok && err.contains("accepted from feature level 2"), "{err}");
    // Kafka 4 producers are told to use transaction version 2 only once every
    // node serves it (feature level 13).
    let transaction_version = || {
        use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, ResponseKind};
        let mut stream = std::net::TcpStream::connect(BOOTSTRAP.split(',').next().unwrap()).unwrap();
        let request = RequestKind::ApiVersions(ApiVersionsRequest::default());
        let ResponseKind::ApiVersions(v) = runnel_tests::wire::call(&mut stream, ApiKey::ApiVersions, 4, &request) else { panic!() };
        v.finalized_features.iter().find(|f| f.name.as_str() == "transaction.version").map(|f| f.max_version_level)
    };
    assert_eq!(transaction_version(), None, "not at level 1");
    // A KIP-848 member joins while the level keeps groups in memory only.
    let (member, epoch) = wait_for_coordinator(|conn| heartbeat(conn, 0, Some(vec![])));
    let (member, epoch) = (member.expect("a member id").to_string(), epoch);
    let (ok, _, err) = runnelctl(rpc, &["cluster", "upgrade"]);
    assert!(ok, "{err}");
    // The newest level these binaries know, as they describe their levels.
    let (ok, out, err) = runnelctl(rpc, &["cluster", "features"]);
    assert!(ok, "{err}");
    let newest = serde_json::from_str::<Value>(&out).unwrap()["levels"].as_array().unwrap().iter().filter_map(|l| l["level"].as_u64()).max();
    assert!(newest >= Some(15), "{out}");
    for n in 1..=3 {
        let other = format!("127.0.14.{n}:9093");
        runnel_tests::wait_for("the newest level everywhere", Duration::from_secs(10), || (level(&other) == newest).then_some(()));
    }
    let (ok, _, err) = runnelctl(rpc, &["topic", "create", "zstd", "--config", "compression.type=zstd"]);
    assert!(ok, "{err}");
    assert_eq!(transaction_version(), Some(2), "finalized with level 13");

    // And it takes new acks=all writes on top of the old ones.
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", BOOTSTRAP).set("acks", "all").create().unwrap();
    producer.send(BaseRecord::to("audit").key("new").payload("after the upgrade")).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let old = wanted[&("audit".to_string(), 0)].len();
    let got = read_all("audit", 0, old + 1);
    assert_eq!(got.len(), old + 1);
    assert_eq!(got[old], (old as i64, "new".into(), "after the upgrade".into()));

    // The upgrade wrote the group made before it: after a restart of every
    // node, the member goes on at its epoch.
    drop(nodes);
    let _nodes = start(dir.path());
    let owned = |conn: &mut std::net::TcpStream| {
        let topics = fetch_topic_id(conn, "orders");
        heartbeat_as(
            conn,
            &member,
            epoch,
            Some(vec![consumer_group_heartbeat_request::TopicPartitions::default().with_topic_id(topics).with_partitions(vec![0, 1, 2])]),
        )
    };
    let (_, again) = wait_for_coordinator(owned);
    assert_eq!(again, epoch, "the member keeps its epoch");
}

use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, GroupId, MetadataRequest, RequestKind, ResponseKind, TopicName, consumer_group_heartbeat_request,
    metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::StrBytes;

const KIP848_GROUP: &str = "kip848-through-the-upgrade";

/// Sends `send` to each node until one answers as the group's coordinator;
/// the member id and epoch it answered.
fn wait_for_coordinator(mut send: impl FnMut(&mut std::net::TcpStream) -> (i16, Option<StrBytes>, i32)) -> (Option<StrBytes>, i32) {
    use kafka_protocol::error::ResponseError;
    let retriable = [ResponseError::NotCoordinator.code(), ResponseError::CoordinatorLoadInProgress.code(), ResponseError::CoordinatorNotAvailable.code()];
    runnel_tests::wait_for("the group's coordinator to answer", Duration::from_secs(30), || {
        for n in 1..=3 {
            let Ok(mut conn) = std::net::TcpStream::connect(format!("127.0.14.{n}:9092")) else { continue };
            let (code, member, epoch) = send(&mut conn);
            if !retriable.contains(&code) {
                assert_eq!(code, 0, "the heartbeat to node {n} was refused");
                return Some((member, epoch));
            }
        }
        None
    })
}

/// A member joining (epoch 0) the group, subscribed to "orders".
fn heartbeat(
    conn: &mut std::net::TcpStream,
    epoch: i32,
    owned: Option<Vec<consumer_group_heartbeat_request::TopicPartitions>>,
) -> (i16, Option<StrBytes>, i32) {
    heartbeat_as(conn, "", epoch, owned)
}

fn heartbeat_as(
    conn: &mut std::net::TcpStream,
    member: &str,
    epoch: i32,
    owned: Option<Vec<consumer_group_heartbeat_request::TopicPartitions>>,
) -> (i16, Option<StrBytes>, i32) {
    let mut request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(KIP848_GROUP)))
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_member_epoch(epoch)
        .with_topic_partitions(owned);
    if epoch == 0 {
        request = request.with_rebalance_timeout_ms(30_000).with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str("orders"))]));
    }
    let ResponseKind::ConsumerGroupHeartbeat(r) =
        runnel_tests::wire::call(conn, ApiKey::ConsumerGroupHeartbeat, 0, &RequestKind::ConsumerGroupHeartbeat(request))
    else {
        panic!("not a ConsumerGroupHeartbeat response")
    };
    (r.error_code, r.member_id, r.member_epoch)
}

fn fetch_topic_id(conn: &mut std::net::TcpStream, topic: &str) -> uuid::Uuid {
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.into()))))]));
    let ResponseKind::Metadata(r) = runnel_tests::wire::call(conn, ApiKey::Metadata, 12, &RequestKind::Metadata(request)) else {
        panic!("not a Metadata response")
    };
    r.topics[0].topic_id
}
