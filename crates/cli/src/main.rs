//! runnelctl: the admin command line. It talks gRPC to any node's admin
//! service; reads are answered by that node, changes go to the controller
//! leader. Human tables by default, `--output json` for scripts. Any failure
//! prints one line and exits with status 1.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use runnel_rpc::admin::admin_client::AdminClient;
use runnel_rpc::admin::{
    AddPartitionsRequest, AlterTopicConfigRequest, BrokerRef, ClusterStatusReply, CreateTopicRequest, DeleteUserRequest, ElectLeaderRequest, Empty,
    FeaturesReply, ReassignPartitionRequest, TopicName, TopicReply, UpgradeFeaturesRequest, UpsertUserRequest, VoterRequest,
};
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint};

/// Prints a line to stdout; a closed pipe (`runnelctl ... | head -1`) ends
/// the program quietly, as it does for other command-line tools.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::emit(&format!($($arg)*))
    };
}

mod acl;
mod balance;
mod broker_config;
mod data;
mod groups;
mod kafka;
mod sasl;
mod throttle;
mod tls;
mod txn;

fn emit(line: &str) {
    emit_raw(&format!("{line}\n"));
}

/// Writes `text` to stdout as it is; a closed pipe ends runnelctl quietly.
fn emit_raw(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("runnelctl: write output: {e}");
        std::process::exit(1);
    }
}

#[derive(Parser)]
#[command(name = "runnelctl", version, about = "Administer a Runnel cluster over its gRPC admin API")]
struct Cli {
    /// gRPC address (HOST:PORT) of any node.
    #[arg(long, short = 'b', env = "RUNNEL_BOOTSTRAP", default_value = "127.0.0.1:9093", global = true)]
    bootstrap: String,
    /// How to print results.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 15, global = true)]
    timeout_secs: u64,
    /// For nodes whose gRPC port requires TLS (rpc_tls_*): the cluster's CA
    /// (PEM), with a certificate it signed and its key.
    #[arg(long, env = "RUNNEL_RPC_TLS_CA_FILE", global = true, requires_all = ["rpc_tls_certificate_file", "rpc_tls_key_file"])]
    rpc_tls_ca_file: Option<std::path::PathBuf>,
    #[arg(long, env = "RUNNEL_RPC_TLS_CERTIFICATE_FILE", global = true, requires = "rpc_tls_ca_file")]
    rpc_tls_certificate_file: Option<std::path::PathBuf>,
    #[arg(long, env = "RUNNEL_RPC_TLS_KEY_FILE", global = true, requires = "rpc_tls_ca_file")]
    rpc_tls_key_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

impl Cli {
    /// The gRPC endpoint of `--bootstrap`, over TLS when the rpc_tls options are given.
    fn endpoint(&self) -> Result<Endpoint> {
        let bootstrap = &self.bootstrap;
        let (Some(ca), Some(cert), Some(key)) = (&self.rpc_tls_ca_file, &self.rpc_tls_certificate_file, &self.rpc_tls_key_file) else {
            return Endpoint::from_shared(format!("http://{bootstrap}")).with_context(|| format!("invalid address {bootstrap:?}"));
        };
        let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("read {}", p.display()));
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?))
            .identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
        Endpoint::from_shared(format!("https://{bootstrap}"))
            .with_context(|| format!("invalid address {bootstrap:?}"))?
            .tls_config(tls)
            .context("--rpc-tls-* (the CA, certificate or key cannot be used)")
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// The controller quorum and the brokers.
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
    },
    /// Registered brokers.
    Broker {
        #[command(subcommand)]
        command: BrokerCmd,
    },
    /// Topics and their partitions.
    Topic {
        #[command(subcommand)]
        command: TopicCmd,
    },
    /// Partition leadership.
    Partition {
        #[command(subcommand)]
        command: PartitionCmd,
    },
    /// Controller quorum membership and leadership.
    Controller {
        #[command(subcommand)]
        command: ControllerCmd,
    },
    /// SCRAM users kept in the cluster metadata, for SASL_PLAINTEXT listeners.
    User {
        #[command(subcommand)]
        command: UserCmd,
    },
    /// ACL bindings (for nodes run with --authorizer acl), through the
    /// Kafka listener: authenticate with the SASL or TLS options.
    Acl {
        #[command(subcommand)]
        command: acl::AclCmd,
    },
    /// Transactions as their coordinator keeps them, through the Kafka
    /// listener: authenticate with the SASL or TLS options.
    Txn {
        #[command(subcommand)]
        command: txn::TxnCmd,
    },
    /// Consumer groups: members, committed offsets, lag; reset and delete.
    Group {
        #[command(subcommand)]
        command: groups::GroupCmd,
    },
    /// Write records to a topic: the given values, or one per line of
    /// standard input (keys, headers, partition, JSON lines).
    Produce {
        #[command(flatten)]
        args: data::ProduceArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Read records from a topic: from the start, the end, an offset, the
    /// last N or a time; to the current end, a count, or on with --follow.
    Consume {
        #[command(flatten)]
        args: data::ConsumeArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Prints a shell completion script: `source <(runnelctl completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How `produce` and `consume` reach the Kafka listeners.
#[derive(clap::Args)]
pub(crate) struct KafkaArgs {
    /// Kafka listeners to use, HOST:PORT[,...]; by default those the
    /// admin API lists for the cluster's brokers.
    #[arg(long, env = "RUNNEL_KAFKA")]
    kafka: Option<String>,
    /// SASL mechanism for a SASL_PLAINTEXT or SASL_SSL listener: PLAIN,
    /// SCRAM-SHA-256 or SCRAM-SHA-512 (with --sasl-username and --sasl-password).
    #[arg(long, env = "RUNNEL_SASL_MECHANISM", requires_all = ["sasl_username", "sasl_password"])]
    sasl_mechanism: Option<String>,
    #[arg(long, env = "RUNNEL_SASL_USERNAME")]
    sasl_username: Option<String>,
    /// Better given as RUNNEL_SASL_PASSWORD than on the command line.
    #[arg(long, env = "RUNNEL_SASL_PASSWORD", hide_env_values = true)]
    sasl_password: Option<String>,
    /// Connect with TLS (an SSL or SASL_SSL listener), trusting the CA
    /// certificates in this PEM file.
    #[arg(long, env = "RUNNEL_TLS_CA_FILE")]
    tls_ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM) for listeners that ask for one.
    #[arg(long, env = "RUNNEL_TLS_CERTIFICATE_FILE", requires_all = ["tls_ca_file", "tls_key_file"])]
    tls_certificate_file: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "RUNNEL_TLS_KEY_FILE", requires = "tls_certificate_file")]
    tls_key_file: Option<std::path::PathBuf>,
}

impl KafkaArgs {
    fn security(&self) -> Result<kafka::Security> {
        let sasl = self
            .sasl_mechanism
            .clone()
            .and_then(|mechanism| Some(sasl::Credentials { mechanism, username: self.sasl_username.clone()?, password: self.sasl_password.clone()? }));
        let tls = match &self.tls_ca_file {
            None => None,
            Some(ca) => Some(tls::client_config(ca, self.tls_certificate_file.as_deref().zip(self.tls_key_file.as_deref()))?),
        };
        Ok(kafka::Security { tls, sasl })
    }
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Cluster id, controller leader, term, commit index, and every node with
    /// its Raft role, broker state (fenced or not) and replication lag.
    Status,
    /// The finalized feature level (what record kinds the cluster writes),
    /// the levels this version knows, and the levels every node supports.
    Features,
    /// Even out replicas and preferred leaders over the live brokers (after
    /// adding one, say) by moving partitions, a batch at a time.
    Rebalance {
        #[command(flatten)]
        how: balance::Execution,
    },
    /// Finalizes a higher feature level once every node runs a version that
    /// supports it (the last step of a rolling upgrade; there is no going back).
    Upgrade {
        /// The level to finalize; by default the highest every node supports.
        #[arg(long)]
        level: Option<u32>,
        /// Check that every node supports it; finalize nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user, or set a new password (the node stores only salted
    /// SCRAM keys).
    Create {
        name: String,
        /// Better given as RUNNEL_USER_PASSWORD than on the command line.
        #[arg(long, env = "RUNNEL_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512; repeatable [default: both].
        #[arg(long = "mechanism")]
        mechanisms: Vec<String>,
        /// PBKDF2 iterations, 4096 to 16384.
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
    },
    /// Delete a user's credentials (one mechanism, or all of them).
    Delete {
        name: String,
        #[arg(long)]
        mechanism: Option<String>,
    },
    /// Every user, with its mechanisms and iterations.
    List,
}

#[derive(Subcommand)]
enum BrokerCmd {
    /// Every registered broker: id, Kafka and gRPC addresses, rack, epoch,
    /// fenced, and how many replicas it holds and partitions it leads.
    List,
    /// Move every replica off a broker (to the others, evenly, racks
    /// apart), a batch at a time; afterwards the broker can be stopped and
    /// unregistered.
    Decommission {
        node_id: u64,
        #[command(flatten)]
        how: balance::Execution,
    },
    /// Remove a stopped broker that holds no replica from the cluster
    /// (after a decommission); started again, it registers again.
    Unregister { node_id: u64 },
    /// Limit, at run time, how fast a broker's followers copy partitions
    /// that are catching up (Kafka's follower.replication.throttled.rate),
    /// or with --leader how fast it sends them as a leader
    /// (leader.replication.throttled.rate), through the Kafka listener.
    Throttle(throttle::ThrottleArgs),
    /// A broker's configs (or, without --broker, those every broker
    /// shares) with their values and sources, after setting or removing
    /// the dynamic ones given (log.retention.ms, min.insync.replicas,
    /// compression.type, ...), through the Kafka listener.
    Config(broker_config::ConfigArgs),
}

#[derive(Subcommand)]
enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        /// Partitions [default: the node's default_partitions].
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replicas of each partition [default: 1].
        #[arg(long, short = 'r')]
        replication_factor: Option<i32>,
        /// Topic config KEY=VALUE, repeatable (e.g. retention.ms=3600000).
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
    },
    /// Every topic with its partition count.
    List,
    /// A topic's partitions: leader, replicas, ISR, leader epoch, high watermark.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Raise a topic's partition count to TOTAL (existing partitions keep
    /// their data; keys may map to other partitions afterwards).
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        total: i32,
    },
    /// Every config of a topic, with its value and where it comes from
    /// (default, topic, broker), as Kafka's DescribeConfigs answers.
    DescribeConfig { name: String },
    /// Set or remove topic configs.
    AlterConfig {
        name: String,
        /// KEY=VALUE to set, repeatable.
        #[arg(long = "set")]
        set: Vec<String>,
        /// KEY to remove (back to the default), repeatable.
        #[arg(long = "delete")]
        delete: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PartitionCmd {
    /// Preferred leader election: move leadership back to each partition's
    /// first replica (where it is a live ISR member).
    ElectLeader {
        #[arg(long)]
        topic: String,
        /// One partition; all partitions of the topic when omitted.
        #[arg(long)]
        partition: Option<i32>,
    },
    /// Move a partition to other brokers, or change its replication factor:
    /// the new replicas are added and catch up, then the old ones are
    /// dropped (the leader moves if it is leaving). Returns at once; see
    /// `partition reassignments` for moves in progress.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["replicas", "cancel"])))]
    Reassign {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The target replicas, comma-separated broker ids; the first is
        /// the preferred leader.
        #[arg(long, value_delimiter = ',')]
        replicas: Vec<u64>,
        /// Cancel the move in progress: back to the replicas it started from.
        #[arg(long)]
        cancel: bool,
    },
    /// Reassignments in progress: replicas, those being added and removed.
    Reassignments,
}

#[derive(Subcommand)]
enum ControllerCmd {
    /// Add a controller voter (it joins as a learner, catches up, then votes).
    AddVoter {
        #[arg(long)]
        node_id: u64,
        /// The new node's gRPC address, HOST:PORT.
        #[arg(long)]
        address: String,
    },
    /// Remove a controller voter.
    RemoveVoter {
        #[arg(long)]
        node_id: u64,
    },
    /// Make a node the controller leader; send it to that node's own address.
    TransferLeader {
        #[arg(long)]
        node_id: u64,
    },
}

fn key_values(pairs: &[String]) -> Result<HashMap<String, String>> {
    pairs.iter().map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).with_context(|| format!("{p:?} is not KEY=VALUE"))).collect()
}

fn describe_status(e: tonic::Status, bootstrap: &str) -> anyhow::Error {
    if kafka_listener_at(bootstrap) {
        return not_admin(bootstrap);
    }
    match e.code() {
        tonic::Code::Unavailable if e.message().contains("transport") || e.message().contains("connect") => {
            anyhow::anyhow!("cannot reach {bootstrap}: {}", e.message())
        }
        // The node did not answer within --timeout-secs; a change it was
        // making may still be made (a creation of many partitions takes time).
        tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => anyhow::anyhow!(
            "no answer from {bootstrap} within the timeout ({}); a change it was making may still be made: \
             check with runnelctl topic describe (or list), or raise --timeout-secs",
            e.message()
        ),
        _ => anyhow::anyhow!("{}", e.message()),
    }
}

fn not_admin(bootstrap: &str) -> anyhow::Error {
    let host = bootstrap.rsplit_once(':').map_or(bootstrap, |(h, _)| h);
    anyhow::anyhow!(
        "{bootstrap} is a Kafka listener; runnelctl talks gRPC to a node's admin port (its rpc_listener, 9093 by default): try --bootstrap {host}:9093"
    )
}

/// Whether a Kafka broker answers at `addr`: an ApiVersions v0 request
/// gets a response with its correlation id.
fn kafka_listener_at(addr: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    const CORRELATION_ID: i32 = 0x5255_4e4e;
    let Some(target) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else { return false };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut request = Vec::new();
    request.extend_from_slice(&10i32.to_be_bytes()); // length
    request.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    request.extend_from_slice(&0i16.to_be_bytes()); // version 0
    request.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    request.extend_from_slice(&(-1i16).to_be_bytes()); // no client id
    let mut head = [0u8; 8];
    s.write_all(&request).is_ok() && s.read_exact(&mut head).is_ok() && i32::from_be_bytes([head[4], head[5], head[6], head[7]]) == CORRELATION_ID
}

async fn connect(endpoint: Endpoint, bootstrap: &str, timeout: Duration) -> Result<AdminClient<Channel>> {
    let channel = tokio::time::timeout(timeout, endpoint.connect_timeout(Duration::from_secs(3)).timeout(timeout).connect())
        .await
        .map_err(|_| anyhow::anyhow!("cannot reach {bootstrap}: timed out"))?
        .map_err(|e| if kafka_listener_at(bootstrap) { not_admin(bootstrap) } else { anyhow::anyhow!("cannot reach {bootstrap}: {e}") })?;
    Ok(AdminClient::new(channel))
}

fn topic_json(t: &TopicReply) -> Value {
    let under_replicated = t.partitions.iter().filter(|p| p.isr.len() < p.replicas.len()).count();
    json!({
        "name": t.name,
        "id": t.id,
        "configs": t.configs,
        "under_replicated_partitions": under_replicated,
        "partitions": t.partitions.iter().map(|p| json!({
            "partition": p.index,
            "leader": if p.leader < 0 { Value::Null } else { json!(p.leader) },
            "replicas": p.replicas,
            "isr": p.isr,
            "leader_epoch": p.leader_epoch,
            "partition_epoch": p.partition_epoch,
            "high_watermark": if p.high_watermark < 0 { Value::Null } else { json!(p.high_watermark) },
            "leader_serving": p.leader_serving,
        })).collect::<Vec<_>>(),
        "metadata_stale": t.metadata_stale,
    })
}

fn status_json(s: &ClusterStatusReply) -> Value {
    json!({
        "cluster_id": s.cluster_id,
        "leader_id": s.leader_id,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "nodes": s.nodes.iter().map(|n| json!({
            "node_id": n.node_id,
            "rpc_address": n.rpc_address,
            "kafka_address": n.kafka_address,
            "raft_role": n.raft_role,
            "voter": n.voter,
            "lag": n.lag,
            "broker_registered": n.broker_registered,
            "fenced": n.fenced,
        })).collect::<Vec<_>>(),
    })
}

/// Prints rows as a left-aligned table.
fn print_features(f: &FeaturesReply, output: Output) {
    if output == Output::Json {
        let nodes: Vec<Value> = f
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "node_id": n.node_id,
                    "rpc_address": n.rpc_address,
                    "supported_min": if n.error.is_empty() { json!(n.supported_min) } else { Value::Null },
                    "supported_max": if n.error.is_empty() { json!(n.supported_max) } else { Value::Null },
                    "version": n.version,
                    "error": if n.error.is_empty() { Value::Null } else { json!(n.error) },
                })
            })
            .collect();
        let levels: Vec<Value> = f.levels.iter().map(|l| json!({"level": l.level, "description": l.description})).collect();
        outln!("{}", json!({"finalized_level": f.finalized_level, "nodes": nodes, "levels": levels}));
        return;
    }
    outln!("finalized feature level: {}", f.finalized_level);
    for l in &f.levels {
        outln!("  level {}: {}", l.level, l.description);
    }
    let rows = f
        .nodes
        .iter()
        .map(|n| {
            let supported = if n.error.is_empty() { format!("{}-{}", n.supported_min, n.supported_max) } else { format!("unknown: {}", n.error) };
            vec![n.node_id.to_string(), n.rpc_address.clone(), supported, n.version.clone()]
        })
        .collect();
    table(&["NODE", "GRPC", "SUPPORTED", "VERSION"], rows);
}

fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line =
        |cells: Vec<String>| cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect::<Vec<_>>().join("  ").trim_end().to_string();
    outln!("{}", line(header.iter().map(|h| h.to_string()).collect()));
    for r in rows {
        outln!("{}", line(r));
    }
}

fn list_ids(ids: &[u64]) -> String {
    if ids.is_empty() { "-".into() } else { list(ids) }
}

fn list(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn print_topic(t: &TopicReply, output: Output) {
    if output == Output::Json {
        outln!("{}", topic_json(t));
        return;
    }
    let mut configs: Vec<_> = t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    configs.sort();
    if t.metadata_stale {
        outln!("warning: the node asked reaches no controller leader; leaders and ISRs below are its last metadata and may be out of date");
    }
    outln!(
        "topic {}  id {}  partitions {}  configs {}",
        t.name,
        t.id,
        t.partitions.len(),
        if configs.is_empty() { "(defaults)".into() } else { configs.join(" ") }
    );
    let rows = t
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.index.to_string(),
                if p.leader < 0 { "none".into() } else { p.leader.to_string() },
                list(&p.replicas),
                list(&p.isr),
                p.leader_epoch.to_string(),
                if p.high_watermark < 0 { "-".into() } else { p.high_watermark.to_string() },
                if p.leader < 0 {
                    "offline".into()
                } else if !p.leader_serving {
                    "offline (leader not serving)".into()
                } else if p.isr.len() < p.replicas.len() {
                    "under-replicated".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    table(&["PARTITION", "LEADER", "REPLICAS", "ISR", "EPOCH", "HIGH-WATERMARK", "STATE"], rows);
}

fn print_status(s: &ClusterStatusReply, output: Output) {
    if output == Output::Json {
        outln!("{}", status_json(s));
        return;
    }
    outln!(
        "cluster {}  leader {}  term {}  commit index {}",
        if s.cluster_id.is_empty() { "(not set yet)" } else { &s.cluster_id },
        s.leader_id.map_or("none".to_string(), |l| l.to_string()),
        s.term,
        s.commit_index
    );
    let rows = s
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node_id.to_string(),
                n.raft_role.clone(),
                n.rpc_address.clone(),
                if n.kafka_address.is_empty() { "-".into() } else { n.kafka_address.clone() },
                if !n.broker_registered {
                    "unregistered".into()
                } else if n.fenced {
                    "fenced".into()
                } else {
                    "live".into()
                },
                n.lag.map_or("-".into(), |l| l.to_string()),
            ]
        })
        .collect();
    table(&["NODE", "ROLE", "GRPC", "KAFKA", "BROKER", "LAG"], rows);
}

async fn produce_or_consume(command: Cmd, bootstrap: Vec<String>, timeout: Duration, output: Output) -> Result<()> {
    let security = match &command {
        Cmd::Produce { kafka, .. } | Cmd::Consume { kafka, .. } => kafka.security()?,
        Cmd::Acl { command } => command.kafka().security()?,
        Cmd::Txn { command } => command.kafka().security()?,
        Cmd::Broker { command: BrokerCmd::Throttle(args) } => args.kafka.security()?,
        Cmd::Broker { command: BrokerCmd::Config(args) } => args.kafka.security()?,
        _ => kafka::Security::default(),
    };
    let client = kafka::KafkaClient::new(bootstrap, timeout, security);
    match command {
        Cmd::Produce { args, .. } => data::produce(client, args, output).await,
        Cmd::Consume { args, .. } => data::consume(client, args, output).await,
        Cmd::Acl { command } => acl::run(client, command, output).await,
        Cmd::Txn { command } => txn::run(client, command, output).await,
        Cmd::Broker { command: BrokerCmd::Throttle(args) } => throttle::run(client, args, output).await,
        Cmd::Broker { command: BrokerCmd::Config(args) } => broker_config::run(client, args, output).await,
        _ => unreachable!("called for produce, consume, acl, txn, broker throttle and broker config only"),
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Cmd::Completion { shell } = cli.command {
        // Needs no cluster. Written through `emit`, so a closed pipe ends it quietly.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "runnelctl", &mut script);
        emit(String::from_utf8_lossy(&script).trim_end());
        return Ok(());
    }
    let timeout = Duration::from_secs(cli.timeout_secs);
    // Produce and consume need the admin port only to find the Kafka listeners.
    let kafka_bootstrap = match &cli.command {
        Cmd::Produce { kafka: KafkaArgs { kafka: Some(k), .. }, .. } | Cmd::Consume { kafka: KafkaArgs { kafka: Some(k), .. }, .. } => {
            Some(data::bootstrap_from(Some(k), &[])?)
        }
        Cmd::Acl { command } if command.kafka().kafka.is_some() => Some(data::bootstrap_from(command.kafka().kafka.as_deref(), &[])?),
        Cmd::Txn { command } if command.kafka().kafka.is_some() => Some(data::bootstrap_from(command.kafka().kafka.as_deref(), &[])?),
        Cmd::Broker { command: BrokerCmd::Throttle(args) } if args.kafka.kafka.is_some() => Some(data::bootstrap_from(args.kafka.kafka.as_deref(), &[])?),
        Cmd::Broker { command: BrokerCmd::Config(args) } if args.kafka.kafka.is_some() => Some(data::bootstrap_from(args.kafka.kafka.as_deref(), &[])?),
        _ => None,
    };
    if let Some(bootstrap) = kafka_bootstrap {
        return produce_or_consume(cli.command, bootstrap, timeout, cli.output).await;
    }
    let mut client = connect(cli.endpoint()?, &cli.bootstrap, timeout).await?;
    let b = cli.bootstrap.clone();
    let err = move |e: tonic::Status| describe_status(e, &b);
    match cli.command {
        command @ (Cmd::Produce { .. }
        | Cmd::Consume { .. }
        | Cmd::Acl { .. }
        | Cmd::Txn { .. }
        | Cmd::Broker { command: BrokerCmd::Throttle(_) | BrokerCmd::Config(_) }) => {
            let brokers = client.list_brokers(Empty {}).await.map_err(&err)?.into_inner().brokers;
            produce_or_consume(command, data::bootstrap_from(None, &brokers)?, timeout, cli.output).await?;
        }
        Cmd::Group { command } => groups::run(&mut client, command, cli.output, &err).await?,
        Cmd::Completion { .. } => {} // printed above
        Cmd::Cluster { command: ClusterCmd::Status } => {
            let s = client.cluster_status(Empty {}).await.map_err(&err)?.into_inner();
            print_status(&s, cli.output);
        }
        Cmd::Cluster { command: ClusterCmd::Features } => {
            let f = client.features(Empty {}).await.map_err(&err)?.into_inner();
            print_features(&f, cli.output);
        }
        Cmd::Cluster { command: ClusterCmd::Upgrade { level, dry_run } } => {
            let request = UpgradeFeaturesRequest { level: level.unwrap_or(0), dry_run };
            let f = client.upgrade_features(request).await.map_err(&err)?.into_inner();
            if dry_run && cli.output == Output::Table {
                outln!("every node supports feature level {}; run without --dry-run to finalize it", f.finalized_level);
            }
            print_features(&f, cli.output);
        }
        Cmd::User { command } => {
            let users = match command {
                UserCmd::Create { name, password, mechanisms, iterations } => {
                    let mechanisms = if mechanisms.is_empty() { vec!["SCRAM-SHA-256".to_string(), "SCRAM-SHA-512".to_string()] } else { mechanisms };
                    let mut last = None;
                    for mechanism in mechanisms {
                        let request = UpsertUserRequest { user: name.clone(), mechanism, password: password.clone(), iterations };
                        last = Some(client.upsert_user(request).await.map_err(&err)?.into_inner());
                    }
                    last.expect("at least one mechanism")
                }
                UserCmd::Delete { name, mechanism } => {
                    client.delete_user(DeleteUserRequest { user: name, mechanism: mechanism.unwrap_or_default() }).await.map_err(&err)?.into_inner()
                }
                UserCmd::List => client.list_users(Empty {}).await.map_err(&err)?.into_inner(),
            };
            if cli.output == Output::Json {
                let v: Vec<Value> = users.users.iter().map(|u| json!({"user": u.user, "mechanism": u.mechanism, "iterations": u.iterations})).collect();
                outln!("{}", Value::Array(v));
            } else {
                table(
                    &["USER", "MECHANISM", "ITERATIONS"],
                    users.users.iter().map(|u| vec![u.user.clone(), u.mechanism.clone(), u.iterations.to_string()]).collect(),
                );
            }
        }
        Cmd::Cluster { command: ClusterCmd::Rebalance { how } } => balance::run(&mut client, Vec::new(), how, cli.output, &err).await?,
        Cmd::Broker { command: BrokerCmd::Decommission { node_id, how } } => {
            let waited = how.waits();
            balance::run(&mut client, vec![node_id], how, cli.output, &err).await?;
            if waited && cli.output == Output::Table {
                outln!("broker {node_id} holds no replica now: stop it, then `runnelctl broker unregister {node_id}` removes it from the cluster");
            }
        }
        Cmd::Broker { command: BrokerCmd::Unregister { node_id } } => {
            let brokers = client.unregister_broker(BrokerRef { node_id }).await.map_err(&err)?.into_inner().brokers;
            if cli.output == Output::Json {
                outln!("{}", json!({"unregistered": node_id, "brokers": brokers.iter().map(|b| b.node_id).collect::<Vec<_>>()}));
            } else {
                outln!("broker {node_id} unregistered; brokers now: {}", list(&brokers.iter().map(|b| b.node_id).collect::<Vec<_>>()));
            }
        }
        Cmd::Broker { command: BrokerCmd::List } => {
            let brokers = client.list_brokers(Empty {}).await.map_err(&err)?.into_inner().brokers;
            if cli.output == Output::Json {
                let v: Vec<Value> = brokers
                    .iter()
                    .map(|b| json!({"node_id": b.node_id, "kafka_address": b.kafka_address, "rpc_address": b.rpc_address, "rack": if b.rack.is_empty() { Value::Null } else { json!(b.rack) }, "epoch": b.epoch, "fenced": b.fenced, "replicas": b.replicas, "leaders": b.leaders, "bytes": b.bytes}))
                    .collect();
                outln!("{}", Value::Array(v));
            } else {
                let rows = brokers
                    .iter()
                    .map(|b| {
                        vec![
                            b.node_id.to_string(),
                            b.kafka_address.clone(),
                            b.rpc_address.clone(),
                            if b.rack.is_empty() { "-".into() } else { b.rack.clone() },
                            b.epoch.to_string(),
                            if b.fenced { "fenced".into() } else { "live".into() },
                            b.replicas.to_string(),
                            b.leaders.to_string(),
                            balance::human_bytes(b.bytes),
                        ]
                    })
                    .collect();
                table(&["NODE", "KAFKA", "GRPC", "RACK", "EPOCH", "STATE", "REPLICAS", "LEADERS", "BYTES"], rows);
            }
        }
        Cmd::Topic { command } => match command {
            TopicCmd::Create { name, partitions, replication_factor, configs } => {
                let configs = key_values(&configs)?;
                let t = client.create_topic(CreateTopicRequest { name, partitions, replication_factor, configs }).await.map_err(&err)?.into_inner();
                print_topic(&t, cli.output);
            }
            TopicCmd::List => {
                let topics = client.list_topics(Empty {}).await.map_err(&err)?.into_inner().topics;
                if cli.output == Output::Json {
                    outln!("{}", Value::Array(topics.iter().map(topic_json).collect()));
                } else {
                    let rows = topics
                        .iter()
                        .map(|t| {
                            let factor = t.partitions.first().map_or(0, |p| p.replicas.len());
                            let under = t.partitions.iter().filter(|p| p.isr.len() < p.replicas.len()).count();
                            vec![t.name.clone(), t.partitions.len().to_string(), factor.to_string(), under.to_string()]
                        })
                        .collect();
                    table(&["TOPIC", "PARTITIONS", "REPLICATION", "UNDER-REPLICATED"], rows);
                }
            }
            TopicCmd::Describe { name } => {
                let t = client.describe_topic(TopicName { name }).await.map_err(&err)?.into_inner();
                print_topic(&t, cli.output);
            }
            TopicCmd::Delete { name } => {
                client.delete_topic(TopicName { name: name.clone() }).await.map_err(&err)?;
                if cli.output == Output::Json {
                    outln!("{}", json!({"deleted": name}));
                } else {
                    outln!("deleted topic {name}");
                }
            }
            TopicCmd::AddPartitions { name, total } => {
                let t = client.add_partitions(AddPartitionsRequest { name, count: total }).await.map_err(&err)?.into_inner();
                print_topic(&t, cli.output);
            }
            TopicCmd::DescribeConfig { name } => {
                let r = client.describe_topic_config(TopicName { name }).await.map_err(&err)?.into_inner();
                if cli.output == Output::Json {
                    let configs: Vec<Value> =
                        r.configs.iter().map(|c| json!({"name": c.name, "value": c.value, "source": c.source, "documentation": c.documentation})).collect();
                    outln!("{}", json!({"name": r.name, "configs": configs}));
                } else {
                    table(&["CONFIG", "VALUE", "SOURCE"], r.configs.iter().map(|c| vec![c.name.clone(), c.value.clone(), c.source.clone()]).collect());
                }
            }
            TopicCmd::AlterConfig { name, set, delete } => {
                if set.is_empty() && delete.is_empty() {
                    bail!("give at least one --set KEY=VALUE or --delete KEY");
                }
                let mut configs = key_values(&set)?;
                for k in delete {
                    configs.insert(k, String::new());
                }
                let t = client.alter_topic_config(AlterTopicConfigRequest { name, configs }).await.map_err(&err)?.into_inner();
                print_topic(&t, cli.output);
            }
        },
        Cmd::Partition { command: PartitionCmd::ElectLeader { topic, partition } } => {
            let t = client.elect_leader(ElectLeaderRequest { topic, partition: partition.unwrap_or(-1) }).await.map_err(&err)?.into_inner();
            print_topic(&t, cli.output);
        }
        Cmd::Partition { command: PartitionCmd::Reassign { topic, partition, replicas, cancel } } => {
            let t = client.reassign_partition(ReassignPartitionRequest { topic, partition, replicas, cancel }).await.map_err(&err)?.into_inner();
            print_topic(&t, cli.output);
        }
        Cmd::Partition { command: PartitionCmd::Reassignments } => {
            let list = client.list_reassignments(Empty {}).await.map_err(&err)?.into_inner().reassignments;
            if cli.output == Output::Json {
                let v: Vec<Value> = list
                    .iter()
                    .map(|r| json!({"topic": r.topic, "partition": r.partition, "replicas": r.replicas, "adding": r.adding, "removing": r.removing}))
                    .collect();
                outln!("{}", Value::Array(v));
            } else {
                table(
                    &["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"],
                    list.iter()
                        .map(|r| vec![r.topic.clone(), r.partition.to_string(), list_ids(&r.replicas), list_ids(&r.adding), list_ids(&r.removing)])
                        .collect(),
                );
            }
        }
        Cmd::Controller { command } => {
            let s = match command {
                ControllerCmd::AddVoter { node_id, address } => client.add_voter(VoterRequest { node_id, rpc_address: address }).await,
                ControllerCmd::RemoveVoter { node_id } => client.remove_voter(VoterRequest { node_id, rpc_address: String::new() }).await,
                ControllerCmd::TransferLeader { node_id } => client.transfer_leader(VoterRequest { node_id, rpc_address: String::new() }).await,
            }
            .map_err(&err)?
            .into_inner();
            print_status(&s, cli.output);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runnelctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runnelctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_line_is_well_formed() {
        // clap checks names and short flags of every subcommand only when
        // that subcommand is used; this checks them all at once.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
