//! Prometheus metrics for `/metrics`, on the prometheus-client crate.
//!
//! Counters and histograms are updated where things happen (requests, bytes
//! per topic, ISR changes); gauges that describe state (partitions, leaders,
//! log sizes, Raft, groups and their lag) are refreshed from the broker's
//! state at each scrape, so they can never drift from it.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use runnel_controller::Metadata;
use runnel_controller::metadata::NodeId;
use runnel_coordinator::Coordinators;
use runnel_replica::ReplicaManager;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabels {
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<ApiLabels, Counter>,
    request_errors: Family<ApiLabels, Counter>,
    /// Operations the ACL authorizer refused (the `Access` of each request counts them).
    pub authorization_denied: Counter,
    request_seconds: Family<ApiLabels, Histogram>,
    bytes_in: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    partitions: Gauge,
    leaders: Gauge,
    under_replicated: Gauge,
    offline: Gauge,
    controller_reachable: Gauge,
    log_dir_failed: Gauge,
    log_size: Family<PartitionLabels, Gauge>,
    log_end: Family<PartitionLabels, Gauge>,
    high_watermark: Family<PartitionLabels, Gauge>,
    stable_lag: Family<PartitionLabels, Gauge>,
    dirty_ratio: Family<PartitionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    transactions_open: Gauge,
    /// Transactions the coordinator completed, by how they ended.
    transactions_ended: Family<EndLabels, Counter>,
    transactions_timed_out: Counter,
    raft_term: Gauge,
    raft_leader: Gauge,
    raft_commit: Gauge,
    raft_applied: Gauge,
    raft_is_leader: Gauge,
    groups: Gauge,
    group_lag: Family<GroupPartitionLabels, Gauge>,
    isr_size: Family<PartitionLabels, Gauge>,
    follower_lag: Family<PartitionLabels, Gauge>,
    connections: Gauge,
    request_bytes_queued: Gauge,
    fetch_sessions: Gauge,
    open_fds: Gauge,
    rpc_tls_failures: Counter,
    catch_up_limit: Gauge,
    leader_catch_up_limit: Gauge,
    max_fds: Gauge,
    resident_bytes: Gauge,
    cpu_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// High watermarks of partitions with committed group offsets, as
    /// their leaders last reported them (the coordinator samples them), so
    /// group lag covers partitions led elsewhere.
    sampled_high_watermarks: std::sync::Mutex<BTreeMap<(String, i32), i64>>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

impl Metrics {
    /// The node's metrics; the replica manager's counters are registered as they are.
    pub fn new(replicas: &ReplicaManager) -> Metrics {
        let mut registry = Registry::with_prefix("runnel");
        let m = Metrics {
            requests: Family::default(),
            request_errors: Family::default(),
            authorization_denied: Counter::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            partitions: Gauge::default(),
            leaders: Gauge::default(),
            under_replicated: Gauge::default(),
            offline: Gauge::default(),
            controller_reachable: Gauge::default(),
            log_dir_failed: Gauge::default(),
            log_size: Family::default(),
            log_end: Family::default(),
            high_watermark: Family::default(),
            stable_lag: Family::default(),
            dirty_ratio: Family::default(),
            transactions_open: Gauge::default(),
            transactions_ended: Family::default(),
            transactions_timed_out: Counter::default(),
            raft_term: Gauge::default(),
            raft_leader: Gauge::default(),
            raft_commit: Gauge::default(),
            raft_applied: Gauge::default(),
            raft_is_leader: Gauge::default(),
            groups: Gauge::default(),
            group_lag: Family::default(),
            isr_size: Family::default(),
            follower_lag: Family::default(),
            connections: Gauge::default(),
            request_bytes_queued: Gauge::default(),
            fetch_sessions: Gauge::default(),
            open_fds: Gauge::default(),
            rpc_tls_failures: Counter::default(),
            catch_up_limit: Gauge::default(),
            leader_catch_up_limit: Gauge::default(),
            max_fds: Gauge::default(),
            resident_bytes: Gauge::default(),
            cpu_seconds: Gauge::default(),
            sampled_high_watermarks: Default::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Kafka requests answered, per API", m.requests.clone());
        registry.register("request_errors", "Kafka requests that could not be answered (connection closed), per API", m.request_errors.clone());
        registry.register(
            "authorization_denied",
            "Operations on a topic, group, cluster or transactional id that the ACL authorizer refused",
            m.authorization_denied.clone(),
        );
        registry.register("request_duration_seconds", "Time from a request's arrival to its response being ready, per API", m.request_seconds.clone());
        registry.register("topic_bytes_in", "Record bytes appended by produce requests, per topic", m.bytes_in.clone());
        registry.register("topic_bytes_out", "Record bytes returned by fetch requests to consumers, per topic", m.bytes_out.clone());
        registry.register("isr_shrinks", "ISR shrinks committed for partitions led here", replicas.isr_shrinks.clone());
        registry.register("isr_expands", "ISR expansions committed for partitions led here", replicas.isr_expands.clone());
        let t = &replicas.timings;
        registry.register(
            "replication_leader_flush_seconds",
            "An acknowledgement's wait for the leader's fsync of its records (under the default flush policy)",
            t.leader_flush.clone(),
        );
        registry.register(
            "replication_isr_wait_seconds",
            "An acks=all acknowledgement's wait, after the leader's fsync, for the high watermark to pass its records",
            t.isr_wait.clone(),
        );
        registry.register(
            "replication_follower_round_seconds",
            "A follower fetch that brought records, from sending it to having appended and fsynced them",
            t.follower_round.clone(),
        );
        registry.register("replication_follower_flush_seconds", "A follower's fsync of the records one fetch brought", t.follower_flush.clone());
        registry.register("partitions", "Partition replicas assigned to this broker", m.partitions.clone());
        registry.register("leader_partitions", "Partitions this broker leads and serves", m.leaders.clone());
        registry.register(
            "controller_quorum_reachable",
            "0 while no controller leader answers this broker (it then leads only the partitions whose ISR is itself alone)",
            m.controller_reachable.clone(),
        );
        registry.register("under_replicated_partitions", "Partitions led here whose ISR is smaller than their replica set", m.under_replicated.clone());
        registry.register(
            "offline_partitions",
            "Partitions of the cluster without a serving leader as this node sees them: none elected, a fenced one, or this broker not serving",
            m.offline.clone(),
        );
        registry.register(
            "log_dir_failed",
            "1 while this broker's log directory fails writes (fenced until a probe write succeeds; after a failed fsync, until a restart)",
            m.log_dir_failed.clone(),
        );
        registry.register("log_size_bytes", "Bytes on disk of each local partition log", m.log_size.clone());
        registry.register("log_end_offset", "Log end offset of each local partition", m.log_end.clone());
        registry.register("high_watermark", "High watermark of each local partition", m.high_watermark.clone());
        registry.register(
            "last_stable_offset_lag",
            "High watermark minus last stable offset of each local partition: records held back from read_committed consumers by open transactions",
            m.stable_lag.clone(),
        );
        registry.register(
            "log_cleaner_dirty_ratio",
            "Share of the cleanable bytes of each local compacted partition log that no cleaner pass has compacted yet (the cleaner's backlog)",
            m.dirty_ratio.clone(),
        );
        let c = &replicas.cleaner;
        registry.register("log_cleaner_passes", "Log cleaner passes that compacted at least one segment", c.passes.clone());
        registry.register(
            "log_cleaner_io_bytes",
            "Bytes the log cleaner read and wrote (mapping keys and copying segments), counted as passes go",
            c.io_bytes.clone(),
        );
        registry.register("log_cleaner_reclaimed_bytes", "Bytes by which cleaned segments shrank", c.bytes_reclaimed.clone());
        registry.register(
            "log_cleaner_removed_records",
            "Records the log cleaner removed (superseded, tombstones past delete.retention.ms, aborted)",
            c.records_removed.clone(),
        );
        registry.register("log_cleaner_errors", "Log cleaner passes that failed (the log is left as it was)", c.errors.clone());
        registry.register(
            "log_cleaner_last_round_timestamp_seconds",
            "Unix time when the log cleaner last finished a round over the compacted logs",
            c.last_round_seconds.clone(),
        );
        registry.register("log_cleaner_map_keys", "Keys in the log cleaner's offset map in its last pass", c.map_keys.clone());
        registry.register("transactions_open", "Ongoing transactions, on the node coordinating them (0 elsewhere)", m.transactions_open.clone());
        registry.register(
            "transactions_ended",
            "Transactions this node's coordinator completed (all markers written), by result (commit, abort)",
            m.transactions_ended.clone(),
        );
        registry.register(
            "transactions_timed_out",
            "Transactions this node's coordinator aborted because they passed transaction.timeout.ms",
            m.transactions_timed_out.clone(),
        );
        registry.register("raft_term", "Current Raft term of this node's controller", m.raft_term.clone());
        registry.register("raft_leader_id", "Controller leader as this node sees it (-1 if none)", m.raft_leader.clone());
        registry.register(
            "raft_commit_index",
            "Raft commit index: a majority's match index on the leader; the applied index (a floor) elsewhere",
            m.raft_commit.clone(),
        );
        registry.register("raft_applied_index", "Last Raft log index applied to the metadata", m.raft_applied.clone());
        registry.register("raft_is_leader", "1 if this node leads the controller quorum", m.raft_is_leader.clone());
        registry.register("consumer_groups", "Consumer groups, on the node coordinating them (0 elsewhere)", m.groups.clone());
        registry.register("consumer_group_lag", "High watermark minus committed offset, for every partition with a committed offset (those led elsewhere as their leaders last reported, sampled every 5 s)", m.group_lag.clone());
        registry.register("partition_isr_size", "In-sync replicas of each partition led here", m.isr_size.clone());
        registry.register(
            "follower_lag_messages",
            "For each partition followed here: the leader's high watermark minus this replica's log end",
            m.follower_lag.clone(),
        );
        registry.register("connections", "Open Kafka client connections", m.connections.clone());
        registry.register(
            "request_bytes_queued",
            "Bytes of client requests being read or handled (bounded by queued_request_bytes_max)",
            m.request_bytes_queued.clone(),
        );
        registry.register("fetch_sessions", "Incremental fetch sessions (KIP-227) this node holds for its consumers", m.fetch_sessions.clone());
        registry.register("process_open_fds", "File descriptors the process holds", m.open_fds.clone());
        registry.register(
            "rpc_tls_handshake_failures",
            "Connections to the gRPC port that failed their TLS handshake (no certificate the cluster's CA signed, or too slow)",
            m.rpc_tls_failures.clone(),
        );
        registry.register(
            "replica_catch_up_max_bytes_per_sec",
            "The limit on this node's catch-up replication in bytes per second (follower.replication.throttled.rate, else the static setting); 0 for none",
            m.catch_up_limit.clone(),
        );
        registry.register(
            "replica_leader_catch_up_max_bytes_per_sec",
            "The limit on what this node, as a leader, sends to followers outside the ISR in bytes per second (leader.replication.throttled.rate); 0 for none",
            m.leader_catch_up_limit.clone(),
        );
        registry.register("process_max_fds", "The process's soft limit on file descriptors", m.max_fds.clone());
        registry.register("process_resident_memory_bytes", "Resident memory of the process", m.resident_bytes.clone());
        registry.register("process_cpu_seconds", "CPU time the process has used, user and system", m.cpu_seconds.clone());
        Metrics { registry, ..m }
    }

    /// Counts one answered request and its latency.
    pub fn request_done(&self, api: &'static str, elapsed: Duration, ok: bool) {
        let labels = ApiLabels { api };
        if ok {
            self.requests.get_or_create(&labels).inc();
            self.request_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
        } else {
            self.request_errors.get_or_create(&labels).inc();
        }
    }

    /// High watermarks the partitions' leaders reported, for group lag.
    pub fn set_sampled_high_watermarks(&self, sampled: BTreeMap<(String, i32), i64>) {
        *self.sampled_high_watermarks.lock().unwrap_or_else(|p| p.into_inner()) = sampled;
    }

    /// A request that closed its connection before it reached a handler
    /// (an oversized or negative frame, an unknown API or version, an
    /// undecodable body), by API when it could be told.
    pub fn request_refused(&self, api: &'static str) {
        self.request_errors.get_or_create(&ApiLabels { api }).inc();
    }

    /// A Kafka connection opened (`true`) or closed.
    pub fn connection(&self, opened: bool) {
        if opened {
            self.connections.inc();
        } else {
            self.connections.dec();
        }
    }

    pub fn bytes_in(&self, topic: &str, bytes: usize) {
        self.bytes_in.get_or_create(&TopicLabels { topic: topic.to_string() }).inc_by(bytes as u64);
    }

    pub fn bytes_out(&self, topic: &str, bytes: usize) {
        self.bytes_out.get_or_create(&TopicLabels { topic: topic.to_string() }).inc_by(bytes as u64);
    }

    pub fn fetch_sessions(&self, sessions: usize) {
        self.fetch_sessions.set(sessions as i64);
    }

    pub fn request_bytes_queued(&self, bytes: usize) {
        self.request_bytes_queued.set(bytes as i64);
    }

    /// Refreshes the state gauges from the node's parts and renders the text format.
    pub fn render(&self, replicas: &ReplicaManager, coordinators: &Coordinators, metadata: &Metadata) -> String {
        self.refresh(replicas, coordinators, metadata);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        out
    }

    /// The process's own figures, from /proc (Linux), and the gRPC port's
    /// handshake failures.
    fn refresh_process(&self) {
        let failures = runnel_controller::tls::HANDSHAKE_FAILURES.load(std::sync::atomic::Ordering::Relaxed);
        self.rpc_tls_failures.inc_by(failures.saturating_sub(self.rpc_tls_failures.get()));
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        if let Some(soft) =
            limits.lines().find(|l| l.starts_with("Max open files")).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse::<i64>().ok())
        {
            self.max_fds.set(soft);
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(kib) = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<i64>().ok()) {
            self.resident_bytes.set(kib * 1024);
        }
        // utime and stime, fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        if let (Some(u), Some(s)) = (fields.get(11).and_then(|v| v.parse::<f64>().ok()), fields.get(12).and_then(|v| v.parse::<f64>().ok())) {
            self.cpu_seconds.set((u + s) / 100.0);
        }
    }

    fn refresh(&self, replicas: &ReplicaManager, coordinators: &Coordinators, metadata: &Metadata) {
        self.catch_up_limit.set(replicas.catch_up_throttle().map_or(0, |t| t.bytes_per_sec() as i64));
        self.leader_catch_up_limit.set(replicas.leader_throttle().map_or(0, |t| t.bytes_per_sec() as i64));
        let state = metadata.state();
        let me = replicas.node_id();
        let (mut partitions, mut leaders, mut under, mut offline) = (0, 0, 0, 0);
        for t in state.image.topics.values() {
            for p in &t.partitions {
                let served_here = replicas.serves_as_leader(&state.image, t, p);
                let leader_fenced = p.leader.is_some_and(|l| state.image.brokers.get(&l).is_none_or(|b| b.fenced));
                if p.leader.is_none() || leader_fenced || (p.leader == Some(me) && !served_here) {
                    offline += 1;
                }
                if p.replicas.contains(&me) {
                    partitions += 1;
                }
                if served_here {
                    leaders += 1;
                    if p.isr.len() < p.replicas.len() {
                        under += 1;
                    }
                }
            }
        }
        self.controller_reachable.set(i64::from(!replicas.membership().controller_unreachable()));
        self.partitions.set(partitions);
        self.leaders.set(leaders);
        self.under_replicated.set(under);
        self.offline.set(offline);
        self.log_dir_failed.set(i64::from(replicas.membership().storage_failed()));

        self.log_size.clear();
        self.log_end.clear();
        self.high_watermark.clear();
        self.stable_lag.clear();
        self.dirty_ratio.clear();
        self.isr_size.clear();
        self.follower_lag.clear();
        for partition in replicas.partitions() {
            let tp = partition.tp();
            let labels = PartitionLabels { topic: tp.topic.clone(), partition: tp.partition.to_string() };
            if let Some(isr) = partition.isr_len() {
                self.isr_size.get_or_create(&labels).set(isr as i64);
            } else if let Some(leader_hw) = partition.leader_high_watermark() {
                self.follower_lag.get_or_create(&labels).set((leader_hw - partition.log().log_end_offset()).max(0));
            }
        }
        self.refresh_process();
        for (tp, log) in replicas.logs().all() {
            let labels = PartitionLabels { topic: tp.topic.clone(), partition: tp.partition.to_string() };
            self.log_size.get_or_create(&labels).set(log.size_bytes() as i64);
            self.log_end.get_or_create(&labels).set(log.log_end_offset());
            self.high_watermark.get_or_create(&labels).set(log.high_watermark());
            self.stable_lag.get_or_create(&labels).set(log.high_watermark() - log.last_stable_offset());
            if let Ok(Some(ratio)) = log.dirty_ratio(runnel_storage::log::now_ms()) {
                self.dirty_ratio.get_or_create(&labels).set(ratio);
            }
        }
        let txns = &coordinators.transactions;
        let open = txns.list().map_or(0, |t| t.iter().filter(|(_, r)| r.state == runnel_controller::records::TransactionState::Ongoing).count());
        self.transactions_open.set(open as i64);
        let catch_up = |counter: &Counter, total: &std::sync::atomic::AtomicU64| {
            let total = total.load(std::sync::atomic::Ordering::Relaxed);
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        catch_up(&self.transactions_ended.get_or_create(&EndLabels { result: "commit" }), &txns.counters.commits);
        catch_up(&self.transactions_ended.get_or_create(&EndLabels { result: "abort" }), &txns.counters.aborts);
        catch_up(&self.transactions_timed_out, &txns.counters.timed_out);

        if let Some(controller) = metadata.local() {
            let metrics = controller.raft.metrics().borrow().clone();
            let applied = metrics.last_applied.map_or(0, |l| l.index);
            self.raft_term.set(metrics.current_term as i64);
            self.raft_leader.set(metrics.current_leader.map_or(-1, |l| l.0 as i64));
            self.raft_applied.set(applied as i64);
            let leading = metrics.state == openraft::ServerState::Leader;
            self.raft_is_leader.set(i64::from(leading));
            let commit = match (&metrics.replication, leading) {
                (Some(replication), true) => {
                    // The highest index a majority of voters has: the commit index.
                    let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
                    let mut matched: Vec<u64> = voters
                        .iter()
                        .map(|v| if *v == me { metrics.last_log_index.unwrap_or(0) } else { replication.get(v).copied().flatten().map_or(0, |l| l.index) })
                        .collect();
                    matched.sort_unstable();
                    matched.get(matched.len().saturating_sub(1) / 2).copied().unwrap_or(applied).max(applied)
                }
                _ => applied,
            };
            self.raft_commit.set(commit as i64);
        } else {
            self.raft_leader.set(metadata.leader().0.map_or(-1, |l| l.0 as i64));
            self.raft_applied.set(state.last_applied.map_or(0, |l| l.index) as i64);
        }

        self.groups.set(coordinators.groups.list().map_or(0, |g| g.len() as i64));
        self.group_lag.clear();
        let sampled = self.sampled_high_watermarks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (group, record) in &state.image.groups {
            for ((topic, partition), offset) in &record.offsets {
                let high_watermark = match replicas.leader(topic, *partition) {
                    Ok(led) => Some(led.log().high_watermark()),
                    Err(_) => sampled.get(&(topic.clone(), *partition)).copied(),
                };
                let Some(high_watermark) = high_watermark else { continue };
                let labels = GroupPartitionLabels { group: group.clone(), topic: topic.clone(), partition: partition.to_string() };
                self.group_lag.get_or_create(&labels).set((high_watermark - offset.offset).max(0));
            }
        }
    }
}
