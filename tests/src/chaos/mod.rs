//! The chaos harness: Jepsen-style workloads against a three-node cluster of
//! real `runnel` processes while a nemesis injects one fault, then a checker
//! over the history and the final read of every partition.
//!
//! One run is one scenario: steady state (`WARMUP`), the fault for
//! `fault_duration`, heal, recovery (every partition led, a full ISR, some
//! more traffic), then the final read. The nemesis picks its victims with
//! the seed, which the run prints (`--seed` replays the choices; timing is
//! the machine's).
//!
//! Workloads: two idempotent acks=all producers (rdkafka) sending unique
//! values at a bounded rate; a consumer group of two members, each its own
//! process (`runnel-chaos member`, so it can be SIGKILLed), committing after
//! each message; one assign-mode reader per partition; an observer of the
//! controller's view (leaders, epochs, ISRs, high watermarks) through the
//! admin API, which bypasses the fault proxy. On the local cluster also the
//! transactional workload of `txn`: a transactional producer and a
//! consume-transform-produce copier, with their own checks.

pub mod checker;
pub mod cluster;
pub mod docker;
pub mod history;
pub mod member;
pub mod proxy;
pub mod txn;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use checker::{FinalLog, Report, check};
use cluster::{AdminView, ChaosCluster, NODES};
use docker::DockerCluster;
use history::{Event, History, Kind, Op};

/// Steady state before the fault.
const WARMUP: Duration = Duration::from_secs(5);
/// Messages per second per producer.
const RATE: u64 = 100;
/// Liveness: after healing, every partition led and acks=all working within
/// this; the ISR full within `FULL_ISR_WITHIN`.
const LEADERS_WITHIN: Duration = Duration::from_secs(10);
const FULL_ISR_WITHIN: Duration = Duration::from_secs(20);
const SESSION_TIMEOUT_MS: u64 = 2000;

/// Every fault scenario, in the order `--scenario all` runs them.
pub const SCENARIOS: &[&str] = &[
    "kill-leader",
    "kill-controller",
    "pause-leader",
    "isolate-leader",
    "split-controller-minority",
    "asymmetric",
    "slow-network",
    "rolling-restart",
    "bounce-leader-3x",
    "kill-coordinator-and-consumer",
    "slow-disk",
    "full-disk",
    "rebalance-kill-controller",
];

/// The Docker tier (`--scenario docker`): the same workloads and checker
/// against the docker-compose cluster, with the faults Docker gives.
pub const DOCKER_SCENARIOS: &[&str] = &["docker-kill-leader", "docker-pause-leader", "docker-disconnect-leader", "docker-disconnect-controller"];

/// The checker's self-test: leaders acknowledge before replicating (a
/// failpoint), then the leader of partition 0 is cut off from its peers.
pub const SELF_TEST: &str = "self-test-ack-before-replication";

/// The CI subset.
pub const SMOKE: &[&str] = &["kill-leader", "pause-leader", "asymmetric"];

#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: String,
    pub seed: u64,
    pub fault_duration: Duration,
    /// Where histories and results go.
    pub out_dir: PathBuf,
    /// The group members join with KIP-848 (`group.protocol=consumer`).
    pub kip848: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub acknowledged: usize,
    pub failed: usize,
    pub indeterminate: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub reordered: usize,
    pub longest_ack_gap_ms: f64,
    pub longest_ack_gap_ms_by_partition: BTreeMap<i32, f64>,
    /// From the fault to the first observation of another leader for partition 0.
    pub fault_to_new_leader_ms: Option<f64>,
    /// From the fault to the first acks=all success on partition 0 invoked after it.
    pub fault_to_first_ack_ms: Option<f64>,
    /// From healing to every partition's ISR being full again.
    pub heal_to_full_isr_ms: Option<f64>,
    /// Sends made before the fault, once their producer was up.
    pub latency_before: Latency,
    /// Sends made before their producer's first acknowledgement: the
    /// client's start-up (librdkafka's idempotent producer retries getting
    /// a producer id on a 500 ms timer when no learned broker is connected
    /// yet, against any Kafka), kept out of `latency_before` so that column
    /// shows the steady state.
    pub latency_start_up: Latency,
    pub latency_during: Latency,
    pub latency_after: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub seed: u64,
    pub schedule: Vec<String>,
    pub figures: Figures,
    pub report: Report,
    /// Safety, liveness and progress failures; empty when the run passed.
    pub violations: Vec<String>,
    pub history: PathBuf,
    /// The transactional workload's check (local scenarios).
    pub txn: Option<txn::TxnReport>,
}

/// The nemesis' record of what it did, with times in ms from the start.
struct Schedule {
    history: History,
    lines: Vec<String>,
}

impl Schedule {
    fn note(&mut self, what: impl Into<String>) {
        let what = what.into();
        self.lines.push(format!("{:>7.0} ms  {what}", self.history.now() as f64 / 1e6));
        println!("chaos: {:>7.0} ms  {what}", self.history.now() as f64 / 1e6);
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The cluster a run faults.
enum Target {
    /// Local processes behind the harness's fault proxies.
    Local(ChaosCluster),
    /// The docker-compose cluster.
    Docker(DockerCluster),
}

impl Target {
    fn view(&self) -> &AdminView {
        match self {
            Target::Local(c) => &c.view,
            Target::Docker(d) => &d.view,
        }
    }

    fn bootstrap(&self) -> String {
        match self {
            Target::Local(c) => c.bootstrap(),
            Target::Docker(d) => d.bootstrap(),
        }
    }

    fn is_running(&mut self, i: usize) -> bool {
        match self {
            Target::Local(c) => c.nodes[i].is_running(),
            Target::Docker(d) => d.is_running(i),
        }
    }

    fn log(&self, i: usize) -> String {
        match self {
            Target::Local(c) => c.nodes[i].log(),
            Target::Docker(d) => d.log(i),
        }
    }
}

/// Runs one scenario end to end.
pub async fn run(opts: &Options) -> Outcome {
    let scenario = opts.scenario.as_str();
    let docker = DOCKER_SCENARIOS.contains(&scenario);
    assert!(
        SCENARIOS.contains(&scenario) || scenario == SELF_TEST || docker,
        "unknown scenario {scenario:?}; known: {SCENARIOS:?}, {SELF_TEST} and {DOCKER_SCENARIOS:?}"
    );
    let mut rng = StdRng::seed_from_u64(opts.seed);
    std::fs::create_dir_all(&opts.out_dir).expect("create the output directory");
    let history_path = opts.out_dir.join(format!("{scenario}-{}.jsonl", opts.seed));
    let history = History::new(Some(&history_path)).expect("history file");
    println!("chaos: scenario {scenario}, seed {}, fault {:?}", opts.seed, opts.fault_duration);

    let env = if scenario == SELF_TEST { vec![("RUNNEL_FAILPOINTS".to_string(), "ack-before-replication=true".to_string())] } else { Vec::new() };
    let mut target = if docker {
        Target::Docker(tokio::task::block_in_place(DockerCluster::start))
    } else {
        Target::Local(ChaosCluster::start(SESSION_TIMEOUT_MS, &env).await)
    };
    let mut schedule = Schedule { history: history.clone(), lines: Vec::new() };
    schedule.note(format!("{} cluster up, topic chaos: 3 partitions, RF 3, min.insync.replicas 2", if docker { "docker-compose" } else { "local" }));
    let view = target.view().clone();
    let transactional = matches!(target, Target::Local(_));
    if transactional {
        txn::create_topics(&view.rpc[0]);
        schedule.note(format!("topics {} and {}: 3 partitions, RF 3, min.insync.replicas 2", txn::TOPIC, txn::OUT));
    }
    wait_until_settled(&view, Duration::from_secs(20)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let bootstrap = target.bootstrap();
    let mut workers = Vec::new();
    for id in 1..=2 {
        workers.push(tokio::spawn(producer(id, bootstrap.clone(), history.clone(), stop.clone())));
    }
    let readers: Vec<_> = (0..view.partitions)
        .map(|p| {
            let (b, h, s) = (bootstrap.clone(), history.clone(), stop.clone());
            std::thread::spawn(move || reader(p, &b, &h, &s))
        })
        .collect();
    let start_unix_ns = crate::now_ms() as u128 * 1_000_000 - u128::from(history.now());
    let mut members: Vec<member::MemberProcess> = (1..=2)
        .map(|i| member::MemberProcess::spawn(&format!("consumer-{i}"), &bootstrap, "chaos", "chaos-group", start_unix_ns, &opts.out_dir, opts.kip848))
        .collect();
    schedule.note(format!("group chaos-group: 2 members, {} protocol", if opts.kip848 { "KIP-848 consumer" } else { "classic" }));
    let observer = tokio::spawn(observe(Arc::new(view.clone()), history.clone(), stop.clone()));
    let transactional_workload = transactional.then(|| txn::Workload::start(&bootstrap, &history, &stop));

    tokio::time::sleep(WARMUP).await;
    let fault_at = history.now();
    let old_leader = view.leader_of(0).await;
    history.record(Event::new("nemesis", Kind::Info, Op::Fault).value(scenario));
    let progress_expected = match &mut target {
        Target::Local(cluster) => inject(scenario, cluster, &mut members, &mut rng, &mut schedule, opts.fault_duration).await,
        Target::Docker(cluster) => inject_docker(scenario, cluster, &mut schedule, opts.fault_duration).await,
    };
    let heal_at = history.now();
    history.record(Event::new("nemesis", Kind::Info, Op::Heal).value(scenario));
    schedule.note("healed");

    // Recovery: every partition led with a full ISR, then some more traffic.
    let full_isr = wait_until_settled(&view, FULL_ISR_WITHIN + Duration::from_secs(10)).await.then(|| history.now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.await;
    }
    for r in readers {
        let _ = r.join();
    }
    let _ = observer.await;
    for m in &mut members {
        m.stop();
    }
    let drained = transactional_workload.map(|w| tokio::task::block_in_place(|| w.finish()));
    schedule.note("workloads stopped; reading every partition back");
    let final_log = final_read(bootstrap.clone(), view.partitions).await;
    let txn_final = match drained {
        Some(drained) => {
            let b = bootstrap.clone();
            tokio::task::spawn_blocking(move || (txn::final_read(&b), drained)).await.ok()
        }
        None => None,
    };
    for m in &members {
        for e in m.events() {
            history.record_raw(e);
        }
    }
    let events = history.events();
    let report = check(&events, &final_log);
    let mut violations = report.violations();
    let txn = txn_final.map(|(read, drained)| txn::check(&events, &read.input, &read.output, read.complete, drained));
    if let Some(t) = &txn {
        schedule.note(format!(
            "transactions: {} committed, {} aborted, {} indeterminate; {} values copied; {} client calls stuck past their timeout",
            t.committed, t.aborted, t.indeterminate, t.copied, t.stuck_calls
        ));
        violations.extend(t.violations());
    }
    if let Target::Local(cluster) = &mut target
        && !cluster.joined.is_empty()
    {
        violations.extend(rebalanced(cluster));
    }
    let figures = figures(&events, &report, fault_at, heal_at, full_isr, old_leader.map(|l| l as i64 + 1));
    judge(&events, heal_at, full_isr, fault_at, progress_expected, &mut violations);
    for i in 0..NODES {
        if !target.is_running(i) {
            violations.push(format!("node {} is not running at the end of the run", i + 1));
        }
    }
    if !violations.is_empty() {
        for i in 0..NODES {
            let _ = std::fs::write(opts.out_dir.join(format!("{scenario}-{}-node-{}.log", opts.seed, i + 1)), target.log(i));
        }
    }
    Outcome { scenario: scenario.to_string(), seed: opts.seed, schedule: schedule.lines, figures, report, violations, history: history_path, txn }
}

/// After a scenario that added brokers and rebalanced: every joined broker
/// runs and holds replicas, no move is left open, and the balancer finds
/// nothing more to move.
fn rebalanced(cluster: &mut ChaosCluster) -> Vec<String> {
    let mut violations = Vec::new();
    let rpc = cluster.view.rpc[0].clone();
    let json = |args: &[&str]| -> Option<serde_json::Value> {
        let (ok, out, _) = crate::runnelctl(&rpc, args);
        ok.then(|| serde_json::from_str(&out).ok()).flatten()
    };
    for (k, node) in cluster.joined.iter_mut().enumerate() {
        if !node.is_running() {
            violations.push(format!("joined broker {} is not running at the end of the run", NODES + k + 1));
        }
    }
    match json(&["broker", "list"]) {
        Some(brokers) => {
            for k in 0..cluster.joined.len() {
                let id = (NODES + k + 1) as u64;
                let held = brokers.as_array().into_iter().flatten().find(|b| b["node_id"] == id).and_then(|b| b["replicas"].as_u64()).unwrap_or(0);
                if held == 0 {
                    violations.push(format!("joined broker {id} holds no replica after the rebalance"));
                }
            }
        }
        None => violations.push("broker list failed at the end of the run".into()),
    }
    match json(&["partition", "reassignments"]) {
        Some(open) if open.as_array().is_some_and(|a| a.is_empty()) => {}
        other => violations.push(format!("partition moves still open at the end of the run: {other:?}")),
    }
    match json(&["cluster", "rebalance", "--dry-run"]) {
        Some(plan) if plan["moves"].as_array().is_some_and(|m| m.is_empty()) => {}
        other => violations.push(format!("the balancer still plans moves at the end of the run: {other:?}")),
    }
    violations
}

/// Waits until the topic's every partition has a leader and a full ISR.
async fn wait_until_settled(cluster: &AdminView, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Some(view) = cluster.describe_any().await
            && view.iter().all(|p| p.leader.is_some() && p.isr == NODES)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Runs the fault; returns whether a majority stays connected (so writes
/// must keep being acknowledged during it).
async fn inject(
    scenario: &str,
    cluster: &mut ChaosCluster,
    members: &mut [member::MemberProcess],
    rng: &mut StdRng,
    schedule: &mut Schedule,
    hold: Duration,
) -> bool {
    let leader = cluster.view.leader_of(0).await.unwrap_or(0);
    let controller = cluster.view.controller_leader().unwrap_or(0);
    let follower = (0..NODES).filter(|i| *i != leader).nth(rng.random_range(0..NODES - 1)).unwrap_or(0);
    match scenario {
        "kill-leader" => {
            schedule.note(format!("SIGKILL node {} (leader of partition 0)", leader + 1));
            cluster.nodes[leader].kill();
            tokio::time::sleep(hold).await;
            schedule.note(format!("restart node {}", leader + 1));
            restart(cluster, leader).await;
            true
        }
        "kill-controller" => {
            schedule.note(format!("SIGKILL node {} (controller leader)", controller + 1));
            cluster.nodes[controller].kill();
            tokio::time::sleep(hold).await;
            restart(cluster, controller).await;
            true
        }
        "pause-leader" => {
            schedule.note(format!("SIGSTOP node {} (leader of partition 0)", leader + 1));
            cluster.nodes[leader].pause();
            tokio::time::sleep(hold).await;
            schedule.note(format!("SIGCONT node {}", leader + 1));
            cluster.nodes[leader].resume();
            true
        }
        "isolate-leader" => {
            schedule.note(format!("cut node {} (leader of partition 0) off from its peers; clients still reach it", leader + 1));
            cluster.isolate(leader);
            tokio::time::sleep(hold).await;
            cluster.heal_network();
            true
        }
        "split-controller-minority" => {
            schedule.note(format!("partition: node {} (controller leader) alone, the other two together", controller + 1));
            cluster.isolate(controller);
            tokio::time::sleep(hold).await;
            cluster.heal_network();
            true
        }
        "asymmetric" => {
            schedule.note(format!("drop what node {} (leader of partition 0) sends to its peers; the other direction stays open", leader + 1));
            cluster.silence_outbound(leader);
            tokio::time::sleep(hold).await;
            cluster.heal_network();
            true
        }
        "slow-network" => {
            schedule.note(format!("every link between node {} (leader of partition 0) and its peers delays each chunk by 100 ms, both ways", leader + 1));
            cluster.slow_links(leader, Duration::from_millis(100));
            tokio::time::sleep(hold).await;
            cluster.heal_network();
            true
        }
        "rolling-restart" => {
            let first = rng.random_range(0..NODES);
            let per_node = hold / NODES as u32;
            for k in 0..NODES {
                let i = (first + k) % NODES;
                schedule.note(format!("SIGTERM node {} (rolling restart)", i + 1));
                let status = cluster.nodes[i].terminate();
                assert!(status.success(), "node {} exited with {status} after SIGTERM", i + 1);
                restart(cluster, i).await;
                tokio::time::sleep(per_node.saturating_sub(Duration::from_secs(1))).await;
            }
            true
        }
        "bounce-leader-3x" => {
            let gap = hold / 3;
            for round in 1..=3 {
                let current = cluster.view.leader_of(0).await.unwrap_or(leader);
                schedule.note(format!("bounce {round}: SIGKILL and restart node {} (leader of partition 0)", current + 1));
                cluster.nodes[current].kill();
                restart(cluster, current).await;
                tokio::time::sleep(gap.saturating_sub(Duration::from_secs(1))).await;
            }
            true
        }
        "kill-coordinator-and-consumer" => {
            schedule.note(format!("SIGKILL node {} (controller leader, group coordinator) and consumer-1", controller + 1));
            cluster.nodes[controller].kill();
            if let Some(m) = members.first_mut() {
                m.kill();
            }
            tokio::time::sleep(hold).await;
            restart(cluster, controller).await;
            true
        }
        "slow-disk" => {
            schedule.note(format!("fsyncs on node {} (leader of partition 0) take 300 ms more", leader + 1));
            cluster.failpoint(leader, "fsync-delay-ms", "300").expect("a failpoints build of runnel (just chaos builds one)");
            tokio::time::sleep(hold).await;
            let _ = cluster.failpoint(leader, "fsync-delay-ms", "0");
            true
        }
        "full-disk" => {
            schedule.note(format!("node {} (a follower of partition 0) has a full disk: appends fail with ENOSPC", follower + 1));
            cluster.failpoint(follower, "disk-full", "true").expect("a failpoints build of runnel (just chaos builds one)");
            tokio::time::sleep(hold).await;
            let _ = cluster.failpoint(follower, "disk-full", "false");
            true
        }
        "rebalance-kill-controller" => {
            let id = tokio::task::block_in_place(|| cluster.join_broker());
            schedule.note(format!("broker {id} joins (broker only)"));
            // Through a node that is not killed; the command waits for every
            // move (two at a time) and elects each moved partition's leader.
            let via = (0..NODES).find(|i| *i != controller).unwrap_or(0);
            let rpc = cluster.view.rpc[via].clone();
            let rebalance = move |rpc: String| {
                tokio::task::spawn_blocking(move || {
                    crate::runnelctl(&rpc, &["cluster", "rebalance", "--wait", "--max-moves", "2", "--batch-timeout-secs", "60"])
                })
            };
            schedule.note(format!("runnelctl cluster rebalance --wait --max-moves 2, through node {}", via + 1));
            let first = rebalance(rpc.clone());
            tokio::time::sleep(Duration::from_secs(2)).await;
            schedule.note(format!("SIGKILL node {} (controller leader, carrying out the moves)", controller + 1));
            cluster.nodes[controller].kill();
            tokio::time::sleep(hold).await;
            schedule.note(format!("restart node {}", controller + 1));
            restart(cluster, controller).await;
            let (ok, _, err) = first.await.unwrap_or((false, String::new(), "the rebalance thread panicked".into()));
            schedule.note(if ok { "the rebalance finished".to_string() } else { format!("the rebalance stopped: {}", err.trim()) });
            // What an operator does after a failed command: run it again; it
            // plans from where the moves got to.
            let (ok, _, err) = rebalance(rpc).await.unwrap_or((false, String::new(), "the rebalance thread panicked".into()));
            schedule.note(if ok { "rebalance run again: finished".to_string() } else { format!("rebalance run again: failed: {}", err.trim()) });
            true
        }
        SELF_TEST => {
            schedule.note(format!("leaders acknowledge before replicating; cut node {} (leader of partition 0) off from its peers", leader + 1));
            cluster.isolate(leader);
            tokio::time::sleep(hold).await;
            cluster.heal_network();
            false
        }
        other => unreachable!("scenario {other}"),
    }
}

/// The Docker tier's faults; returns whether a majority stays connected.
async fn inject_docker(scenario: &str, cluster: &mut DockerCluster, schedule: &mut Schedule, hold: Duration) -> bool {
    let leader = cluster.view.leader_of(0).await.unwrap_or(0);
    let controller = tokio::task::block_in_place(|| cluster.view.controller_leader()).unwrap_or(0);
    let docker = |f: &dyn Fn()| tokio::task::block_in_place(f);
    match scenario {
        "docker-kill-leader" => {
            schedule.note(format!("kill -9 of runnel-{}'s process from the host (leader of partition 0)", leader + 1));
            docker(&|| cluster.kill(leader));
            tokio::time::sleep(hold).await;
            schedule.note(format!("docker start runnel-{}", leader + 1));
            docker(&|| cluster.start_node(leader));
        }
        "docker-pause-leader" => {
            schedule.note(format!("docker pause runnel-{} (leader of partition 0)", leader + 1));
            docker(&|| cluster.pause(leader));
            tokio::time::sleep(hold).await;
            schedule.note(format!("docker unpause runnel-{}", leader + 1));
            docker(&|| cluster.unpause(leader));
        }
        "docker-disconnect-leader" | "docker-disconnect-controller" => {
            let (victim, role) = if scenario == "docker-disconnect-leader" { (leader, "leader of partition 0") } else { (controller, "controller leader") };
            schedule.note(format!("docker network disconnect runnel-{} ({role})", victim + 1));
            docker(&|| cluster.disconnect(victim));
            tokio::time::sleep(hold).await;
            schedule.note(format!("docker network connect runnel-{}", victim + 1));
            docker(&|| cluster.connect(victim));
        }
        other => unreachable!("scenario {other}"),
    }
    true
}

async fn restart(cluster: &mut ChaosCluster, i: usize) {
    tokio::task::block_in_place(|| cluster.nodes[i].restart());
}

/// Records acknowledgements in the order librdkafka reports them (its
/// delivery callback), which for one partition is offset order.
struct Acks {
    name: String,
    history: History,
}

impl rdkafka::ClientContext for Acks {}

impl rdkafka::producer::ProducerContext for Acks {
    type DeliveryOpaque = Box<String>;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, value: Box<String>) {
        let e = match result {
            Ok(m) => Event::new(&self.name, Kind::Ok, Op::Send).value(*value).at(m.partition(), m.offset()),
            // Timeouts and errors after the send: it may or may not be in the log.
            Err((e, _)) => Event::new(&self.name, Kind::Info, Op::Send).value(*value).error(e.to_string()),
        };
        self.history.record(e);
    }
}

async fn producer(id: usize, bootstrap: String, history: History, stop: Arc<AtomicBool>) {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let name = format!("producer-{id}");
    let producer: ThreadedProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "10000")
        .set("request.timeout.ms", "3000")
        // A frozen (SIGSTOPped) leader keeps its TCP connections open: only a
        // socket timeout makes the client give up on it and look again.
        .set("socket.timeout.ms", "3000")
        .set("linger.ms", "2")
        .create_with_context(Acks { name: name.clone(), history: history.clone() })
        .expect("producer");
    let mut n = 0u64;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let value = format!("p{id}-{n}");
        n += 1;
        history.record(Event::new(&name, Kind::Invoke, Op::Send).value(&value));
        let record = BaseRecord::<(), String, Box<String>>::with_opaque_to("chaos", Box::new(value.clone())).payload(&value);
        if let Err((e, _)) = producer.send(record) {
            // Never handed to the client library: definitely not written.
            history.record(Event::new(&name, Kind::Fail, Op::Send).value(value).error(e.to_string()));
        }
    }
    // Every outstanding send resolves within message.timeout.ms. Only the
    // producer's own thread may run the callbacks (a flush() here would run
    // them on a second thread, and two threads' acknowledgements interleave).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while producer.in_flight_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An assign-mode reader of one partition from its start.
fn reader(partition: i32, bootstrap: &str, history: &History, stop: &AtomicBool) {
    let name = format!("reader-{partition}");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "chaos-readers")
        .set("enable.auto.commit", "false")
        .set("socket.timeout.ms", "3000")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("chaos", partition, Offset::Beginning).expect("assign");
    consumer.assign(&tpl).expect("assign");
    while !stop.load(Ordering::SeqCst) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            history.record(Event::new(&name, Kind::Ok, Op::Read).value(value).at(m.partition(), m.offset()));
        }
    }
}

/// Records the controller's view of the topic from every node's admin API.
async fn observe(target: Arc<AdminView>, history: History, stop: Arc<AtomicBool>) {
    use runnel_rpc::admin::TopicName;
    use runnel_rpc::admin::admin_client::AdminClient;
    while !stop.load(Ordering::SeqCst) {
        for (i, rpc) in target.rpc.iter().enumerate() {
            let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{rpc}")) else { continue };
            let endpoint = endpoint.connect_timeout(Duration::from_millis(300)).timeout(Duration::from_millis(700));
            let Ok(Ok(channel)) = tokio::time::timeout(Duration::from_secs(1), endpoint.connect()).await else { continue };
            let mut admin = AdminClient::new(channel);
            let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_secs(1), admin.describe_topic(TopicName { name: target.topic.clone() })).await else {
                continue;
            };
            for p in reply.into_inner().partitions {
                let mut e = Event::new(&format!("observer-{}", i + 1), Kind::Ok, Op::Observe);
                e.partition = Some(p.index);
                e.offset = (p.high_watermark >= 0).then_some(p.high_watermark);
                e.leader = Some(p.leader);
                e.leader_epoch = Some(i64::from(p.leader_epoch));
                e.isr = Some(p.isr.len());
                history.record(e);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every partition from its start to its high watermark.
async fn final_read(bootstrap: String, partitions: i32) -> FinalLog {
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "chaos-final")
            .set("enable.auto.commit", "false")
            .create()
            .expect("final reader");
        let mut log = FinalLog::default();
        let mut ends = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            // Leadership may still be moving right after a heal (a preferred
            // leader taking its partitions back): librdkafka does not retry
            // NOT_LEADER here, so ask again as a client would.
            let asked = std::time::Instant::now();
            let high = loop {
                match consumer.fetch_watermarks("chaos", p, Duration::from_secs(20)) {
                    Ok((_, high)) => break high,
                    Err(e) if asked.elapsed() < Duration::from_secs(30) => {
                        eprintln!("chaos: watermarks of partition {p} for the final read: {e}; asking again");
                        std::thread::sleep(Duration::from_millis(250));
                    }
                    Err(e) => panic!("watermarks for the final read: {e}"),
                }
            };
            ends.insert(p, high);
            log.partitions.insert(p, Vec::new());
            tpl.add_partition_offset("chaos", p, Offset::Beginning).expect("assign");
        }
        consumer.assign(&tpl).expect("assign");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while ends.iter().any(|(p, end)| log.partitions[p].last().map_or(0, |(o, _)| o + 1) < *end) {
            assert!(std::time::Instant::now() < deadline, "the final read did not reach the high watermarks {ends:?}");
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200))
                && m.offset() < ends[&m.partition()]
            {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                log.partitions.get_mut(&m.partition()).expect("assigned").push((m.offset(), value));
            }
        }
        log
    })
    .await
    .expect("final read")
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

fn figures(events: &[Event], report: &Report, fault_at: u64, heal_at: u64, full_isr: Option<u64>, old_leader: Option<i64>) -> Figures {
    let mut f = Figures {
        acknowledged: report.acknowledged,
        failed: report.failed,
        indeterminate: report.indeterminate,
        lost: report.lost.len(),
        duplicated: report.duplicated.len(),
        reordered: report.reordered.len(),
        heal_to_full_isr_ms: full_isr.map(|t| ms(t.saturating_sub(heal_at))),
        ..Default::default()
    };
    let mut invoked: BTreeMap<&str, u64> = BTreeMap::new();
    let mut first_ack: BTreeMap<&str, u64> = BTreeMap::new();
    for e in events.iter().filter(|e| e.f == Op::Send && e.kind == Kind::Ok) {
        first_ack.entry(e.process.as_str()).or_insert(e.t);
    }
    let (mut start_up, mut before, mut during, mut after) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut last_ack: Option<u64> = None;
    let mut last_ack_p: BTreeMap<i32, u64> = BTreeMap::new();
    for e in events {
        match (e.f, e.kind) {
            (Op::Send, Kind::Invoke) => {
                if let Some(v) = e.value.as_deref() {
                    invoked.insert(v, e.t);
                }
            }
            (Op::Send, Kind::Ok) => {
                let sent = e.value.as_deref().and_then(|v| invoked.get(v)).copied().unwrap_or(e.t);
                let latency = ms(e.t - sent.min(e.t));
                let up = first_ack.get(e.process.as_str()).copied().unwrap_or(0);
                match sent {
                    t if t < up && t < fault_at => start_up.push(latency),
                    t if t < fault_at => before.push(latency),
                    t if t < heal_at => during.push(latency),
                    _ => after.push(latency),
                }
                if let Some(prev) = last_ack {
                    f.longest_ack_gap_ms = f.longest_ack_gap_ms.max(ms(e.t - prev));
                }
                last_ack = Some(e.t);
                if let Some(p) = e.partition {
                    if let Some(prev) = last_ack_p.insert(p, e.t) {
                        let gap = f.longest_ack_gap_ms_by_partition.entry(p).or_insert(0.0);
                        *gap = gap.max(ms(e.t - prev));
                    }
                    if p == 0 && sent >= fault_at && f.fault_to_first_ack_ms.is_none() {
                        f.fault_to_first_ack_ms = Some(ms(e.t - fault_at));
                    }
                }
            }
            (Op::Observe, Kind::Ok) if e.t > fault_at && e.partition == Some(0) && f.fault_to_new_leader_ms.is_none() => {
                if let (Some(l), Some(old)) = (e.leader, old_leader)
                    && l >= 0
                    && l != old
                {
                    f.fault_to_new_leader_ms = Some(ms(e.t - fault_at));
                }
            }
            _ => {}
        }
    }
    for (v, out) in [
        (&mut start_up, &mut f.latency_start_up),
        (&mut before, &mut f.latency_before),
        (&mut during, &mut f.latency_during),
        (&mut after, &mut f.latency_after),
    ] {
        v.sort_by(f64::total_cmp);
        *out = Latency { p50_ms: percentile(v, 0.5), p99_ms: percentile(v, 0.99), p999_ms: percentile(v, 0.999) };
    }
    f
}

/// Liveness after healing, and progress during the fault.
fn judge(events: &[Event], heal_at: u64, full_isr: Option<u64>, fault_at: u64, progress_expected: bool, violations: &mut Vec<String>) {
    let within = |limit: Duration| heal_at + limit.as_nanos() as u64;
    let first_ack_after_heal = events.iter().find(|e| e.f == Op::Send && e.kind == Kind::Ok && e.t > heal_at).map(|e| e.t);
    if first_ack_after_heal.is_none_or(|t| t > within(LEADERS_WITHIN)) {
        violations.push(format!("liveness: no acks=all success within {LEADERS_WITHIN:?} of healing"));
    }
    let led = events.iter().filter(|e| e.f == Op::Observe && e.t > heal_at && e.t <= within(LEADERS_WITHIN)).fold(BTreeMap::new(), |mut m, e| {
        if let Some(p) = e.partition {
            let entry = m.entry(p).or_insert(false);
            *entry |= e.leader.is_some_and(|l| l >= 0);
        }
        m
    });
    if led.len() < 3 || led.values().any(|l| !l) {
        violations.push(format!("liveness: not every partition had a leader within {LEADERS_WITHIN:?} of healing ({led:?})"));
    }
    if full_isr.is_none_or(|t| t > within(FULL_ISR_WITHIN)) {
        violations.push(format!("liveness: the ISR was not full again within {FULL_ISR_WITHIN:?} of healing"));
    }
    if progress_expected {
        // A majority stays connected: after failover (half the fault), every
        // partition keeps acknowledging writes.
        let from = fault_at + (heal_at - fault_at) / 2;
        let mut acked: BTreeMap<i32, usize> = BTreeMap::new();
        for e in events.iter().filter(|e| e.f == Op::Send && e.kind == Kind::Ok && e.t > from && e.t < heal_at) {
            *acked.entry(e.partition.unwrap_or(-1)).or_default() += 1;
        }
        if acked.len() < 3 {
            violations
                .push(format!("progress: during the second half of the fault only partitions {:?} acknowledged writes", acked.keys().collect::<Vec<_>>()));
        }
    }
}

/// Prints the results table.
pub fn print_table(outcomes: &[Outcome]) {
    println!();
    println!(
        "{:<30} {:>6} {:>5} {:>5} {:>5} {:>4} {:>4} {:>4} {:>8} {:>8} {:>8} {:>8} {:>13} {:>13}  result",
        "scenario", "acked", "fail", "info", "lost", "dup", "reor", "gap", "leader", "1st ack", "full ISR", "", "p50/p99 pre", "p50/p99 fault"
    );
    for o in outcomes {
        let f = &o.figures;
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        let lat = |l: &Latency| format!("{}/{}", opt(l.p50_ms), opt(l.p99_ms));
        println!(
            "{:<30} {:>6} {:>5} {:>5} {:>5} {:>4} {:>4} {:>4.0} {:>8} {:>8} {:>8} {:>8} {:>13} {:>13}  {}",
            o.scenario,
            f.acknowledged,
            f.failed,
            f.indeterminate,
            f.lost,
            f.duplicated,
            f.reordered,
            f.longest_ack_gap_ms,
            opt(f.fault_to_new_leader_ms),
            opt(f.fault_to_first_ack_ms),
            opt(f.heal_to_full_isr_ms),
            "",
            lat(&f.latency_before),
            lat(&f.latency_during),
            if o.violations.is_empty() { "PASS".to_string() } else { format!("FAIL: {}", o.violations.join("; ")) }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(t_ms: u64, process: &str, kind: Kind, value: &str) -> Event {
        let mut e = Event::new(process, kind, Op::Send).value(value);
        e.t = t_ms * 1_000_000;
        if kind == Kind::Ok {
            e.partition = Some(1);
        }
        e
    }

    #[test]
    fn sends_before_a_producer_s_first_ack_are_its_start_up_not_the_steady_state() {
        let events = vec![
            event(0, "producer-1", Kind::Invoke, "a"),
            event(10, "producer-1", Kind::Invoke, "b"),
            event(500, "producer-1", Kind::Ok, "a"),
            event(500, "producer-1", Kind::Ok, "b"),
            // producer-2 comes up later: its first sends are its own start-up.
            event(20, "producer-2", Kind::Invoke, "c"),
            event(600, "producer-2", Kind::Ok, "c"),
            event(700, "producer-1", Kind::Invoke, "d"),
            event(703, "producer-1", Kind::Ok, "d"),
            event(800, "producer-2", Kind::Invoke, "e"),
            event(804, "producer-2", Kind::Ok, "e"),
            // After the fault.
            event(1100, "producer-1", Kind::Invoke, "f"),
            event(1150, "producer-1", Kind::Ok, "f"),
        ];
        let f = figures(&events, &Report::default(), 1_000_000_000, 2_000_000_000, None, None);
        assert_eq!(f.latency_start_up.p50_ms, Some(500.0));
        assert_eq!(f.latency_start_up.p99_ms, Some(580.0));
        assert_eq!((f.latency_before.p50_ms, f.latency_before.p99_ms), (Some(3.0), Some(4.0)));
        assert_eq!(f.latency_during.p99_ms, Some(50.0));
    }
}
