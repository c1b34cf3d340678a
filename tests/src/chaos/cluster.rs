//! A three-node cluster for chaos runs: every node a controller and a
//! broker, every link between two nodes (per direction of connection) and
//! every client connection going through a fault proxy of the harness.
//!
//! Node i reaches node j's gRPC listener through link (i, j): its
//! `--rpc-address-map` sends j's address to that link's proxy. Clients reach
//! node i through client link i, which node i advertises as its Kafka address.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use runnel_rpc::admin::TopicName;
use runnel_rpc::admin::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint};

use super::proxy::{Link, Mode};
use crate::{Node, free_port};

pub const NODES: usize = 3;

pub struct ChaosCluster {
    /// Index i is node i + 1.
    pub nodes: Vec<Node>,
    /// (from, to) node indexes: the connections `from` opens to `to`.
    pub peer_links: BTreeMap<(usize, usize), Link>,
    pub client_links: Vec<Link>,
    pub view: AdminView,
    /// Broker-only nodes joined during the run (`join_broker`), ids from 4.
    pub joined: Vec<Node>,
    quorum: String,
    session_timeout_ms: u64,
    dir: tempfile::TempDir,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// The harness's own view of a cluster and its chaos topic: each node's
/// admin API, reached directly (never through a fault).
#[derive(Debug, Clone)]
pub struct AdminView {
    /// Node index i's admin (gRPC) address.
    pub rpc: Vec<String>,
    pub topic: String,
    pub partitions: i32,
}

/// What the controller says about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub leader: Option<u64>,
    pub leader_epoch: i64,
    pub isr: usize,
    pub high_watermark: Option<i64>,
}

impl ChaosCluster {
    /// Starts the proxies and three nodes, and creates the topic (3
    /// partitions, RF 3, min.insync.replicas 2).
    // The turn is held for the cluster's whole life, awaits included: each
    // test owns its runtime and thread, so no task of the same runtime
    // waits for the lock (a waiter blocks only its own test's thread).
    #[allow(clippy::await_holding_lock)]
    pub async fn start(session_timeout_ms: u64, env: &[(String, String)]) -> ChaosCluster {
        // One cluster at a time, as for `Cluster`: elections and sessions
        // here are timed, and two clusters on two cores skew them.
        let _turn = crate::cluster_turn();
        let dir = crate::temp_dir();
        let ports: Vec<(u16, u16)> = (0..NODES).map(|_| (free_port(), free_port())).collect();
        let rpc_addr = |i: usize| -> SocketAddr { format!("127.0.0.1:{}", ports[i].1).parse().unwrap() };
        let kafka_addr = |i: usize| -> SocketAddr { format!("127.0.0.1:{}", ports[i].0).parse().unwrap() };
        let mut peer_links = BTreeMap::new();
        for i in 0..NODES {
            for j in 0..NODES {
                if i != j {
                    peer_links.insert((i, j), Link::start("127.0.0.1", rpc_addr(j)).await.expect("peer proxy"));
                }
            }
        }
        let mut client_links = Vec::new();
        for i in 0..NODES {
            client_links.push(Link::start("127.0.0.1", kafka_addr(i)).await.expect("client proxy"));
        }
        let quorum = (0..NODES).map(|i| format!("{}@{}", i + 1, rpc_addr(i))).collect::<Vec<_>>().join(",");
        let mut handles = Vec::new();
        for i in 0..NODES {
            let map = (0..NODES).filter(|j| *j != i).map(|j| format!("{}={}", rpc_addr(j), peer_links[&(i, j)].listen)).collect::<Vec<_>>().join(",");
            let args = vec![
                "--node-id".to_string(),
                (i + 1).to_string(),
                "--controller-quorum".into(),
                quorum.clone(),
                "--session-timeout-ms".into(),
                session_timeout_ms.to_string(),
                "--advertised-kafka".into(),
                client_links[i].listen.to_string(),
                "--rpc-address-map".into(),
                map,
                "--group-initial-rebalance-delay-ms".into(),
                "0".into(),
                // KIP-848 members get what the classic ones ask for.
                "--group-consumer-session-timeout-ms".into(),
                "6000".into(),
                "--group-consumer-heartbeat-interval-ms".into(),
                "1000".into(),
                "--replica-lag-time-max-ms".into(),
                "4000".into(),
            ];
            let data = dir.path().join(format!("node-{}", i + 1));
            let (kafka, rpc) = ports[i];
            let env = env.to_vec();
            handles.push(std::thread::spawn(move || Node::serve_with_env(&data, kafka, rpc, &args, &env)));
        }
        let nodes: Vec<Node> = handles.into_iter().map(|h| h.join().expect("node start")).collect();
        let view = AdminView { rpc: nodes.iter().map(|n| n.rpc.clone()).collect(), topic: "chaos".into(), partitions: 3 };
        view.create_topic(0);
        ChaosCluster { nodes, peer_links, client_links, view, joined: Vec::new(), quorum, session_timeout_ms, dir, _turn }
    }

    /// Starts a broker-only node that joins the cluster, and returns its
    /// id. It talks to the others directly, not through fault proxies: the
    /// scenarios that add brokers fault processes, not links.
    pub fn join_broker(&mut self) -> u64 {
        let id = (NODES + self.joined.len() + 1) as u64;
        let args = vec![
            "--node-id".to_string(),
            id.to_string(),
            "--controller-quorum".into(),
            self.quorum.clone(),
            "--roles".into(),
            "broker".into(),
            "--session-timeout-ms".into(),
            self.session_timeout_ms.to_string(),
            "--replica-lag-time-max-ms".into(),
            "4000".into(),
        ];
        let node = Node::serve(&self.dir.path().join(format!("node-{id}")), free_port(), free_port(), &args);
        self.joined.push(node);
        id
    }

    /// The bootstrap list clients use (the client proxies).
    pub fn bootstrap(&self) -> String {
        self.client_links.iter().map(|l| l.listen.to_string()).collect::<Vec<_>>().join(",")
    }

    /// Cuts every link between node index `i` and the others, both ways.
    pub fn isolate(&self, i: usize) {
        for ((from, to), link) in &self.peer_links {
            if *from == i || *to == i {
                link.refuse();
            }
        }
    }

    /// Drops what node index `i` sends to its peers, keeping the other
    /// direction: its connections to them are refused, and on their
    /// connections to it their requests arrive but its answers are held.
    pub fn silence_outbound(&self, i: usize) {
        for ((from, to), link) in &self.peer_links {
            if *from == i {
                link.refuse();
            } else if *to == i {
                link.set(Mode::Pass, Mode::Hold);
            }
        }
    }

    /// Delays every chunk either way on every link between node index `i`
    /// and its peers by `d` (a slow network around one node).
    pub fn slow_links(&self, i: usize, d: Duration) {
        for ((from, to), link) in &self.peer_links {
            if *from == i || *to == i {
                link.set(Mode::Delay(d), Mode::Delay(d));
            }
        }
    }

    pub fn heal_network(&self) {
        for link in self.peer_links.values().chain(self.client_links.iter()) {
            link.heal();
        }
    }

    /// Sets a failpoint on node index `i` (failpoints builds only).
    pub fn failpoint(&self, i: usize, name: &str, value: &str) -> Result<(), String> {
        match self.nodes[i].http_request("PUT", &format!("/failpoints/{name}"), value) {
            (200, _) => Ok(()),
            (code, body) => Err(format!("failpoint {name} on node {}: {code} {body}", i + 1)),
        }
    }
}

impl AdminView {
    /// Creates the chaos topic through node index `i`: 3 partitions, RF 3,
    /// min.insync.replicas 2.
    pub fn create_topic(&self, i: usize) {
        let partitions = self.partitions.to_string();
        let (ok, _, err) = crate::runnelctl(&self.rpc[i], &["topic", "create", &self.topic, "-p", &partitions, "-r", "3", "-c", "min.insync.replicas=2"]);
        assert!(ok, "create the chaos topic: {err}");
    }

    /// Direct admin client of node index `i` (not through a proxy: the
    /// harness's own view of the cluster is never faulted).
    pub async fn admin(&self, i: usize) -> Option<AdminClient<Channel>> {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.rpc[i])).ok()?;
        let channel = endpoint.connect_timeout(Duration::from_millis(500)).timeout(Duration::from_secs(1)).connect().await.ok()?;
        Some(AdminClient::new(channel))
    }

    /// The topic as node index `i` describes it (high watermarks only for
    /// the partitions it leads).
    pub async fn describe(&self, i: usize) -> Option<Vec<PartitionView>> {
        let mut admin = self.admin(i).await?;
        let reply = admin.describe_topic(TopicName { name: self.topic.clone() }).await.ok()?.into_inner();
        Some(
            reply
                .partitions
                .iter()
                .map(|p| PartitionView {
                    leader: (p.leader >= 0).then_some(p.leader as u64),
                    leader_epoch: i64::from(p.leader_epoch),
                    isr: p.isr.len(),
                    high_watermark: (p.high_watermark >= 0).then_some(p.high_watermark),
                })
                .collect(),
        )
    }

    /// The first answer among the live nodes.
    pub async fn describe_any(&self) -> Option<Vec<PartitionView>> {
        for i in 0..self.rpc.len() {
            if let Some(v) = self.describe(i).await {
                return Some(v);
            }
        }
        None
    }

    /// Node index leading `partition`, as the first node to answer sees it.
    pub async fn leader_of(&self, partition: usize) -> Option<usize> {
        self.describe_any().await?.get(partition)?.leader.map(|l| l as usize - 1)
    }

    /// The controller (Raft) leader's node index.
    pub fn controller_leader(&self) -> Option<usize> {
        for i in 0..self.rpc.len() {
            if let Some(id) = self.leader_seen_by(i) {
                return Some(id as usize - 1);
            }
        }
        None
    }

    fn leader_seen_by(&self, i: usize) -> Option<u64> {
        self.raft_seen_by(i)?.0
    }

    /// The controller leader's id (if it knows one) and the Raft term, as
    /// node index `i` sees them.
    pub fn raft_seen_by(&self, i: usize) -> Option<(Option<u64>, u64)> {
        let (ok, out, _) = crate::runnelctl(&self.rpc[i], &["--timeout-secs", "2", "cluster", "status"]);
        if !ok {
            return None;
        }
        let status = serde_json::from_str::<serde_json::Value>(&out).ok()?;
        Some((status["leader_id"].as_u64(), status["term"].as_u64()?))
    }
}
