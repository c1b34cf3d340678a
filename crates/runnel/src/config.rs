//! Configuration: command-line flags, then `RUNNEL_*` environment variables,
//! then the TOML file given with `--config`, then defaults. Every setting has
//! the same name in all three places (`--segment-bytes`, `RUNNEL_SEGMENT_BYTES`,
//! `segment_bytes = ...`).
//!
//! Settings are grouped by the component they configure ([`NodeSettings`],
//! [`ListenerSettings`], [`ControllerSettings`], [`BrokerSettings`],
//! [`LogSettings`], [`ReplicationSettings`], [`GroupSettings`]), each turned
//! into that component's own config struct, whose `Default` holds the
//! defaults: they are stated there once, and `--help` shows them from there.
//! The file is layered under the flags by key, so no setting is merged by hand.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use runnel_broker::BrokerConfig;
use runnel_broker::config::ExternalListener;
use runnel_controller::ControllerConfig;
use runnel_controller::auto_balance::AutoBalanceConfig;
use runnel_controller::metadata::NodeId;
use runnel_coordinator::GroupConfig;
use runnel_replica::ReplicaConfig;
use runnel_replica::cleaner::CleanerConfig;
use runnel_storage::{FlushPolicy, LogConfig};
use serde::{Deserialize, Serialize};

/// Where a node keeps its data unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./runnel-data";
pub const DEFAULT_KAFKA_LISTENER: &str = "127.0.0.1:9092";
pub const DEFAULT_RPC_LISTENER: &str = "127.0.0.1:9093";
pub const DEFAULT_HTTP_LISTENER: &str = "127.0.0.1:9644";
pub const DEFAULT_ROLES: &str = "controller,broker";
pub const DEFAULT_KUBERNETES_SERVICE: &str = "runnel-headless";
pub const DEFAULT_KUBERNETES_REPLICAS: u16 = 3;
/// The interval flush policy's period when none is given.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a broker stays fenced before the automatic balancer moves its
/// replicas off it.
pub const DEFAULT_AUTO_REBALANCE_GRACE: Duration = Duration::from_secs(600);
/// Kafka's leader.imbalance.check.interval.seconds default.
pub const DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL: Duration = Duration::from_secs(300);
/// Partitions the automatic balancer moves at once.
pub const AUTO_REBALANCE_MAX_MOVES: usize = 5;

#[derive(Debug, Parser)]
#[command(name = "runnel", version, about = "Runnel: a Kafka-compatible streaming log")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a node with every default for trying Runnel out: data in
    /// ./runnel-data, Kafka on 127.0.0.1:9092, gRPC on 127.0.0.1:9093, topics
    /// created on first use. `--nodes 3` starts a three-node cluster in one
    /// process (Kafka on 9092, 9192, 9292; gRPC on 9093, 9193, 9293).
    Dev(DevArgs),
    /// Start a node from a TOML file, flags and RUNNEL_* variables.
    Serve(ServeArgs),
    /// Ask a running node's HTTP endpoint whether it is ready (/readyz, or
    /// /healthz with --live); exit 0 if so, 1 if not. For container health checks.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The node's HTTP endpoint, HOST:PORT; a 0.0.0.0 address is asked on 127.0.0.1.
    #[arg(long, env = "RUNNEL_HTTP_LISTENER", default_value = DEFAULT_HTTP_LISTENER)]
    pub http_listener: String,
    /// Only check that the process answers (/healthz), not that it is ready.
    #[arg(long)]
    pub live: bool,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Nodes to start in this process, each a controller and a broker.
    #[arg(long, default_value_t = 1)]
    pub nodes: u16,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below, by their snake_case names.
    #[arg(long, env = "RUNNEL_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

/// Every node setting, by component. Unset values fall through to the next source.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
pub struct Settings {
    #[command(flatten)]
    #[serde(flatten)]
    pub node: NodeSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub listeners: ListenerSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub controller: ControllerSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub broker: BrokerSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub log: LogSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub replication: ReplicationSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub groups: GroupSettings,
}

/// The node itself: who it is, where its data lives, what it runs.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
pub struct NodeSettings {
    /// This node's id.
    #[arg(long, env = "RUNNEL_NODE_ID")]
    pub node_id: Option<NodeId>,
    /// Directory for the node's identity, the Raft store and partition logs.
    #[arg(long, env = "RUNNEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// What this node does: "controller,broker" (a Raft voter and a broker),
    /// "controller" or "broker" (follows the quorum's metadata).
    #[arg(long, env = "RUNNEL_ROLES")]
    pub roles: Option<String>,
    /// Running as a pod of a Kubernetes StatefulSet: derive the node id
    /// (ordinal + 1), the controller quorum and the advertised addresses
    /// from HOSTNAME, POD_NAMESPACE and the headless service, unless set.
    #[arg(long, env = "RUNNEL_KUBERNETES")]
    pub kubernetes: Option<bool>,
    /// The StatefulSet's headless service.
    #[arg(long, env = "RUNNEL_KUBERNETES_SERVICE")]
    pub kubernetes_service: Option<String>,
    /// The StatefulSet's replicas, all controller voters.
    #[arg(long, env = "RUNNEL_KUBERNETES_REPLICAS")]
    pub kubernetes_replicas: Option<u16>,
    /// How log lines are written to stderr: "text" (colours only on a
    /// terminal) or "json" (one object per line, for log collectors).
    #[arg(long, env = "RUNNEL_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// Where the node listens and what it tells others to dial.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
pub struct ListenerSettings {
    /// Address the Kafka listener binds, HOST:PORT; port 0 picks a free port.
    #[arg(long, env = "RUNNEL_KAFKA_LISTENER")]
    pub kafka_listener: Option<String>,
    /// HOST:PORT clients are told to connect to [default: the listener address].
    #[arg(long, env = "RUNNEL_ADVERTISED_KAFKA")]
    pub advertised_kafka: Option<String>,
    /// A second Kafka listener, HOST:PORT, for clients outside the nodes'
    /// network (a docker host, outside Kubernetes): clients connecting to it
    /// are told every broker's external endpoint [default: none].
    #[arg(long, env = "RUNNEL_EXTERNAL_LISTENER")]
    pub external_listener: Option<String>,
    /// HOST:PORT clients of the external listener are told to connect to [default: its address].
    #[arg(long, env = "RUNNEL_ADVERTISED_EXTERNAL")]
    pub advertised_external: Option<String>,
    /// Address the gRPC listener (Raft, controller, admin) binds, HOST:PORT.
    #[arg(long, env = "RUNNEL_RPC_LISTENER")]
    pub rpc_listener: Option<String>,
    /// HOST:PORT peers and runnelctl use for this node's gRPC [default: the gRPC listener address].
    #[arg(long, env = "RUNNEL_ADVERTISED_RPC")]
    pub advertised_rpc: Option<String>,
    /// Peer gRPC addresses to dial through other addresses (a proxy or NAT):
    /// FROM=TO,... (the chaos harness routes links through its fault proxy).
    #[arg(long, env = "RUNNEL_RPC_ADDRESS_MAP")]
    pub rpc_address_map: Option<String>,
    /// Address the HTTP endpoint (/healthz, /readyz, /metrics) binds, HOST:PORT.
    #[arg(long, env = "RUNNEL_HTTP_LISTENER")]
    pub http_listener: Option<String>,
    /// The Kafka listener's security protocol: PLAINTEXT, SSL (TLS),
    /// SASL_PLAINTEXT (clients authenticate with SASL first) or SASL_SSL
    /// (SASL inside TLS) [default: PLAINTEXT].
    #[arg(long, env = "RUNNEL_KAFKA_SECURITY_PROTOCOL")]
    pub kafka_security_protocol: Option<String>,
    /// The external listener's security protocol [default: PLAINTEXT].
    #[arg(long, env = "RUNNEL_EXTERNAL_SECURITY_PROTOCOL")]
    pub external_security_protocol: Option<String>,
    /// Users of SASL listeners: a TOML file with a [users] table of
    /// NAME = "PASSWORD" (SCRAM keys are derived from them at start).
    #[arg(long, env = "RUNNEL_SASL_USERS_FILE")]
    pub sasl_users_file: Option<PathBuf>,
    /// SASL mechanisms offered, comma-separated [default: PLAIN,SCRAM-SHA-256,SCRAM-SHA-512].
    #[arg(long, env = "RUNNEL_SASL_ENABLED_MECHANISMS")]
    pub sasl_enabled_mechanisms: Option<String>,
    /// A SASL authentication lasts this long: clients re-authenticate on
    /// their connection before it ends (KIP-368), and a connection that has
    /// not is closed at its next request (Kafka's connections.max.reauth.ms)
    /// [default: 0, sessions last as long as their connections].
    #[arg(long, env = "RUNNEL_CONNECTIONS_MAX_REAUTH_MS")]
    pub connections_max_reauth_ms: Option<u64>,
    /// The certificate chain of SSL and SASL_SSL listeners, leaf first (PEM);
    /// read again when it changes.
    #[arg(long, env = "RUNNEL_SSL_CERTIFICATE_FILE")]
    pub ssl_certificate_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "RUNNEL_SSL_KEY_FILE")]
    pub ssl_key_file: Option<PathBuf>,
    /// CA certificates that sign client certificates (PEM).
    #[arg(long, env = "RUNNEL_SSL_CLIENT_CA_FILE")]
    pub ssl_client_ca_file: Option<PathBuf>,
    /// Client certificates: none, requested or required (Kafka's
    /// ssl.client.auth) [default: none].
    #[arg(long, env = "RUNNEL_SSL_CLIENT_AUTH")]
    pub ssl_client_auth: Option<String>,
    /// Authorization of Kafka requests: none (everyone may do everything) or
    /// acl (Kafka's ACLs, kept in the cluster metadata; see runnelctl acl)
    /// [default: none].
    #[arg(long, env = "RUNNEL_AUTHORIZER")]
    pub authorizer: Option<String>,
    /// Mutual TLS on the gRPC port (Raft, replication, controller, admin):
    /// this node's certificate chain (PEM), which must name the host other
    /// nodes dial (its advertised gRPC address) [default: none, plaintext].
    #[arg(long, env = "RUNNEL_RPC_TLS_CERTIFICATE_FILE")]
    pub rpc_tls_certificate_file: Option<PathBuf>,
    /// The private key of rpc_tls_certificate_file (PEM).
    #[arg(long, env = "RUNNEL_RPC_TLS_KEY_FILE")]
    pub rpc_tls_key_file: Option<PathBuf>,
    /// The CA (PEM) that signs every node's and runnelctl's certificate: a
    /// peer without one it signed cannot connect to the gRPC port.
    #[arg(long, env = "RUNNEL_RPC_TLS_CA_FILE")]
    pub rpc_tls_ca_file: Option<PathBuf>,
    /// Principals the ACL authorizer allows everything, semicolon-separated
    /// (User:admin;User:CN=ops) [default: none].
    #[arg(long, env = "RUNNEL_SUPER_USERS")]
    pub super_users: Option<String>,
    /// Whether the ACL authorizer allows what a resource without any ACL is
    /// asked for (Kafka's allow.everyone.if.no.acl.found) [default: false].
    #[arg(long, env = "RUNNEL_ALLOW_EVERYONE_IF_NO_ACL_FOUND")]
    pub allow_everyone_if_no_acl_found: Option<bool>,
}

/// The controller quorum and broker liveness.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
pub struct ControllerSettings {
    /// The controller voters, ID@HOST:PORT,... [default: this node alone].
    #[arg(long, env = "RUNNEL_CONTROLLER_QUORUM")]
    pub controller_quorum: Option<String>,
    /// A broker that misses heartbeats this long is fenced.
    #[arg(long, env = "RUNNEL_SESSION_TIMEOUT_MS")]
    pub session_timeout_ms: Option<u64>,
    /// How often the controller leader checks that something listens at
    /// each broker's gRPC address; a broker whose address refuses the
    /// connection (its process is gone) is fenced at once, without waiting
    /// for the session timeout. 0: only the session timeout fences.
    #[arg(long, env = "RUNNEL_BROKER_PROBE_INTERVAL_MS")]
    pub broker_probe_interval_ms: Option<u64>,
    /// Rebalance by itself (on the controller leader): when a broker joins
    /// holding no replicas, and when a broker has been fenced longer than
    /// auto_rebalance_grace_ms (its replicas move to the others). Set it on
    /// every controller node.
    #[arg(long, env = "RUNNEL_AUTO_REBALANCE")]
    pub auto_rebalance: Option<bool>,
    /// How long a broker stays fenced before the automatic balancer moves
    /// its replicas elsewhere.
    #[arg(long, env = "RUNNEL_AUTO_REBALANCE_GRACE_MS")]
    pub auto_rebalance_grace_ms: Option<u64>,
    /// How often the controller leader moves leadership back to preferred
    /// replicas (the first of each partition's replicas) where they are
    /// live and in sync, as after a broker's restart (Kafka's
    /// auto.leader.rebalance.enable and
    /// leader.imbalance.check.interval.seconds). 0: never.
    #[arg(long, env = "RUNNEL_LEADER_IMBALANCE_CHECK_INTERVAL_MS")]
    pub leader_imbalance_check_interval_ms: Option<u64>,
}

/// What the Kafka listener serves and accepts.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
pub struct BrokerSettings {
    /// Rack of this node, reported in metadata and used to spread replicas.
    #[arg(long, env = "RUNNEL_RACK")]
    pub rack: Option<String>,
    /// Create unknown topics when a client asks for their metadata [default: true for dev, false for serve].
    #[arg(long, env = "RUNNEL_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics.
    #[arg(long, env = "RUNNEL_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// Largest record batch accepted.
    #[arg(long, env = "RUNNEL_MESSAGE_MAX_BYTES")]
    pub message_max_bytes: Option<usize>,
    /// Largest request; larger ones close the connection.
    #[arg(long, env = "RUNNEL_FRAME_BYTES_MAX")]
    pub frame_bytes_max: Option<usize>,
    /// Most client connections at once.
    #[arg(long, env = "RUNNEL_CONNECTIONS_MAX")]
    pub connections_max: Option<usize>,
    /// Requests read ahead of their responses per connection.
    #[arg(long, env = "RUNNEL_INFLIGHT_REQUESTS_MAX")]
    pub inflight_requests_max: Option<usize>,
    /// Topic creations and partition additions that would put more partition replicas than this on one broker are refused.
    #[arg(long, env = "RUNNEL_REPLICAS_PER_BROKER_MAX")]
    pub replicas_per_broker_max: Option<usize>,
    /// Bytes of requests read or handled at once, node-wide; connections whose next request does not fit wait unread.
    #[arg(long, env = "RUNNEL_QUEUED_REQUEST_BYTES_MAX")]
    pub queued_request_bytes_max: Option<usize>,
    /// Close a client connection that sends nothing for this long.
    #[arg(long, env = "RUNNEL_CONNECTIONS_MAX_IDLE_MS")]
    pub connections_max_idle_ms: Option<u64>,
    /// Forget a transactional id that has had no transaction for this long
    /// (Kafka's transactional.id.expiration.ms).
    #[arg(long, env = "RUNNEL_TRANSACTIONAL_ID_EXPIRATION_MS")]
    pub transactional_id_expiration_ms: Option<u64>,
    /// Incremental fetch sessions (KIP-227) kept for consumers; 0 turns them
    /// off (Kafka's max.incremental.fetch.session.cache.slots).
    #[arg(long, env = "RUNNEL_MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS")]
    pub max_incremental_fetch_session_cache_slots: Option<usize>,
}

/// Partition logs: durability, segments, retention (topic configs override these).
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
pub struct LogSettings {
    /// When appends are fsynced: "always" (before acknowledging, with group commit) or "interval".
    #[arg(long, env = "RUNNEL_FLUSH_POLICY")]
    pub flush_policy: Option<String>,
    /// With flush_policy = "interval": milliseconds between fsyncs.
    #[arg(long, env = "RUNNEL_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Default segment.bytes of topics.
    #[arg(long, env = "RUNNEL_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Default segment.ms of topics.
    #[arg(long, env = "RUNNEL_SEGMENT_MS")]
    pub segment_ms: Option<i64>,
    /// Default retention.ms of topics; -1 keeps forever.
    #[arg(long, env = "RUNNEL_RETENTION_MS")]
    pub retention_ms: Option<i64>,
    /// Default retention.bytes of topics; -1 for no limit.
    #[arg(long, env = "RUNNEL_RETENTION_BYTES")]
    pub retention_bytes: Option<i64>,
    /// How often retention runs.
    #[arg(long, env = "RUNNEL_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Bytes of memory for the log cleaner's offset map (Kafka's
    /// log.cleaner.dedupe.buffer.size): a pass over a compacted log cleans
    /// as many dirty segments as have their keys fit (40 bytes per key).
    #[arg(long, env = "RUNNEL_LOG_CLEANER_DEDUPE_BUFFER_SIZE")]
    pub log_cleaner_dedupe_buffer_size: Option<usize>,
    /// Bytes per second the log cleaner reads and writes, at most; 0 for no limit.
    #[arg(long, env = "RUNNEL_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND")]
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// Milliseconds between the log cleaner's rounds over the compacted logs.
    #[arg(long, env = "RUNNEL_LOG_CLEANER_BACKOFF_MS")]
    pub log_cleaner_backoff_ms: Option<u64>,
}

/// Replication between brokers.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
pub struct ReplicationSettings {
    /// A follower that has not caught up for this long leaves the ISR.
    #[arg(long, env = "RUNNEL_REPLICA_LAG_TIME_MAX_MS")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// Bytes per second this node's followers copy for partitions that are
    /// catching up (a backlog), over all leaders, so the catch-up does not
    /// crowd in-sync partitions off the disk (as Kafka's
    /// follower.replication.throttled.rate) [default: 0, no limit].
    #[arg(long, env = "RUNNEL_REPLICA_CATCH_UP_MAX_BYTES_PER_SEC")]
    pub replica_catch_up_max_bytes_per_sec: Option<u64>,
}

/// The consumer-group coordinator.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
pub struct GroupSettings {
    /// How long a rebalance of an empty group waits for more members to join.
    #[arg(long, env = "RUNNEL_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Smallest consumer session timeout accepted.
    #[arg(long, env = "RUNNEL_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<u64>,
    /// Largest consumer session timeout accepted.
    #[arg(long, env = "RUNNEL_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<u64>,
    /// KIP-848 consumer groups: a member silent this long is removed
    /// (group.consumer.session.timeout.ms).
    #[arg(long, env = "RUNNEL_GROUP_CONSUMER_SESSION_TIMEOUT_MS")]
    pub group_consumer_session_timeout_ms: Option<u64>,
    /// KIP-848 consumer groups: how often members heartbeat
    /// (group.consumer.heartbeat.interval.ms).
    #[arg(long, env = "RUNNEL_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS")]
    pub group_consumer_heartbeat_interval_ms: Option<u64>,
    /// How long the committed offsets of a group without members are kept
    /// (Kafka's offsets.retention.minutes, in ms) [default: 7 days].
    #[arg(long, env = "RUNNEL_OFFSETS_RETENTION_MS")]
    pub offsets_retention_ms: Option<u64>,
    /// How often offsets are checked for expiry
    /// (offsets.retention.check.interval.ms) [default: 600000].
    #[arg(long, env = "RUNNEL_OFFSETS_RETENTION_CHECK_INTERVAL_MS")]
    pub offsets_retention_check_interval_ms: Option<u64>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// What a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// A voter in the Raft quorum that owns the metadata.
    pub controller: bool,
    /// Serves Kafka clients and hosts partition replicas.
    pub broker: bool,
}

/// Everything a node needs to start, one config per component.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub log_format: LogFormat,
    pub data_dir: PathBuf,
    pub roles: Roles,
    pub broker: BrokerConfig,
    pub replica: ReplicaConfig,
    pub group: GroupConfig,
    pub rpc_listener: SocketAddr,
    /// The advertised gRPC host; the port is the listener's when 0 was asked.
    pub advertised_rpc_host: String,
    pub advertised_rpc_port: u16,
    /// Voters and their gRPC addresses; empty for a single node that is its own quorum.
    pub quorum: BTreeMap<NodeId, String>,
    pub session_timeout: Duration,
    /// How often the controller leader probes the brokers' gRPC addresses;
    /// `None`: never.
    pub broker_probe_interval: Option<Duration>,
    /// The automatic balancer, when switched on.
    pub auto_balance: Option<AutoBalanceConfig>,
    /// How often leadership goes back to preferred replicas; `None`: never.
    pub leader_balance: Option<Duration>,
    /// Where /healthz, /readyz and /metrics are served.
    pub http_listener: SocketAddr,
    /// Peer gRPC addresses dialled through other addresses (proxy, NAT).
    pub rpc_address_map: HashMap<String, String>,
    /// Mutual TLS on the gRPC port and the links to other nodes.
    pub rpc_tls: Option<RpcTls>,
}

/// Mutual TLS between nodes (`rpc_tls_*`): what the gRPC server presents
/// and requires of clients, and what this node presents to others, read
/// again when the files change.
pub type RpcTls = std::sync::Arc<runnel_controller::tls::RpcTls>;

/// Loads `rpc_tls_*`: all three or none. The files are checked here, so a
/// file that is not what it should be stops the start with its name rather
/// than at the first connection.
fn rpc_tls(listeners: &ListenerSettings) -> Result<Option<RpcTls>> {
    use runnel_controller::tls::RpcTlsFiles;
    let files = match (&listeners.rpc_tls_certificate_file, &listeners.rpc_tls_key_file, &listeners.rpc_tls_ca_file) {
        (None, None, None) => return Ok(None),
        (Some(c), Some(k), Some(a)) => RpcTlsFiles { certificate: c.clone(), key: k.clone(), ca: a.clone() },
        _ => bail!("rpc_tls_certificate_file, rpc_tls_key_file and rpc_tls_ca_file go together: set all three or none"),
    };
    let tls = runnel_controller::tls::RpcTls::load(files).map_err(anyhow::Error::msg)?;
    Ok(Some(std::sync::Arc::new(tls)))
}

/// The default of each setting that has one, as `--help` shows it: taken
/// from the components' own defaults, so each is stated once.
pub fn defaults() -> Vec<(&'static str, String)> {
    let broker = BrokerConfig::default();
    let log = LogConfig::default();
    let group = GroupConfig::default();
    let ms = |d: Duration| d.as_millis().to_string();
    vec![
        ("node_id", broker.node_id.to_string()),
        ("data_dir", DEFAULT_DATA_DIR.into()),
        ("roles", DEFAULT_ROLES.into()),
        ("log_format", "text".into()),
        ("kubernetes", "false".into()),
        ("kubernetes_service", DEFAULT_KUBERNETES_SERVICE.into()),
        ("kubernetes_replicas", DEFAULT_KUBERNETES_REPLICAS.to_string()),
        ("kafka_listener", DEFAULT_KAFKA_LISTENER.into()),
        ("rpc_listener", DEFAULT_RPC_LISTENER.into()),
        ("http_listener", DEFAULT_HTTP_LISTENER.into()),
        ("session_timeout_ms", ms(ControllerConfig::DEFAULT_SESSION_TIMEOUT)),
        ("broker_probe_interval_ms", ms(ControllerConfig::DEFAULT_PROBE_INTERVAL)),
        ("auto_rebalance", "false".into()),
        ("auto_rebalance_grace_ms", ms(DEFAULT_AUTO_REBALANCE_GRACE)),
        ("leader_imbalance_check_interval_ms", ms(DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL)),
        ("default_partitions", broker.default_partitions.to_string()),
        ("message_max_bytes", broker.message_max_bytes.to_string()),
        ("frame_bytes_max", broker.frame_bytes_max.to_string()),
        ("connections_max", broker.connections_max.to_string()),
        ("inflight_requests_max", broker.inflight_requests_max.to_string()),
        ("replicas_per_broker_max", broker.replicas_per_broker_max.to_string()),
        ("queued_request_bytes_max", broker.queued_request_bytes_max.to_string()),
        ("connections_max_idle_ms", ms(broker.connections_max_idle)),
        ("transactional_id_expiration_ms", ms(broker.transactional_id_expiration)),
        ("max_incremental_fetch_session_cache_slots", broker.fetch_session_cache_slots.to_string()),
        ("flush_policy", "always".into()),
        ("flush_interval_ms", ms(DEFAULT_FLUSH_INTERVAL)),
        ("segment_bytes", log.segment_bytes.to_string()),
        ("segment_ms", log.segment_ms.to_string()),
        ("retention_ms", log.retention_ms.to_string()),
        ("retention_bytes", log.retention_bytes.to_string()),
        ("retention_check_interval_ms", ms(ReplicaConfig::DEFAULT_RETENTION_CHECK_INTERVAL)),
        ("log_cleaner_dedupe_buffer_size", CleanerConfig::DEFAULT_DEDUPE_BUFFER_BYTES.to_string()),
        ("log_cleaner_io_max_bytes_per_second", "0".into()),
        ("log_cleaner_backoff_ms", ms(CleanerConfig::DEFAULT_BACKOFF)),
        ("replica_lag_time_max_ms", ms(ReplicaConfig::DEFAULT_REPLICA_LAG_TIME_MAX)),
        ("group_initial_rebalance_delay_ms", ms(group.initial_rebalance_delay)),
        ("group_min_session_timeout_ms", ms(group.min_session_timeout)),
        ("group_max_session_timeout_ms", ms(group.max_session_timeout)),
        ("group_consumer_session_timeout_ms", ms(group.consumer_session_timeout)),
        ("group_consumer_heartbeat_interval_ms", ms(group.consumer_heartbeat_interval)),
        ("offsets_retention_ms", ms(group.offsets_retention)),
        ("offsets_retention_check_interval_ms", ms(group.offsets_retention_check_interval)),
    ]
}

/// The command line, with every setting's default in its help.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for sub in ["dev", "serve"] {
        cmd = cmd.mut_subcommand(sub, |mut c| {
            for (id, default) in defaults() {
                c = c.mut_arg(id, |a| {
                    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                    a.help(format!("{help} [default: {default}]"))
                });
            }
            c
        });
    }
    cmd
}

/// Parses the command line (exits with clap's message on bad flags).
pub fn parse() -> Cli {
    let matches: ArgMatches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

impl Settings {
    /// The names of every setting, as the TOML file and `--help` spell them.
    pub fn names() -> Vec<String> {
        Settings::augment_args(clap::Command::new("settings")).get_arguments().map(|a| a.get_id().to_string()).collect()
    }

    /// These settings over `file`'s: each setting given here wins, the rest
    /// come from the file.
    fn over(&self, file: serde_json::Map<String, serde_json::Value>) -> Result<Settings> {
        let mut merged = file;
        let serde_json::Value::Object(given) = serde_json::to_value(self).context("settings")? else { bail!("settings are not a table") };
        merged.extend(given.into_iter().filter(|(_, v)| !v.is_null()));
        serde_json::from_value(serde_json::Value::Object(merged)).context("settings")
    }

    /// Turns settings into a validated node configuration.
    pub fn into_node_config(self, auto_create_default: bool) -> Result<NodeConfig> {
        let this = if self.node.kubernetes == Some(true) {
            let hostname = std::env::var("HOSTNAME").context("kubernetes: HOSTNAME is not set")?;
            let namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
            self.with_kubernetes_identity(&hostname, &namespace)?
        } else {
            self
        };
        this.into_node_config_checked(auto_create_default)
    }

    /// Fills node id, quorum and advertised addresses from a StatefulSet
    /// pod's name (`<set>-<ordinal>`) and namespace; explicit settings win.
    pub fn with_kubernetes_identity(mut self, hostname: &str, namespace: &str) -> Result<Settings> {
        let (set, ordinal) = hostname
            .rsplit_once('-')
            .and_then(|(set, o)| o.parse::<u16>().ok().map(|o| (set.to_string(), o)))
            .with_context(|| format!("kubernetes: HOSTNAME {hostname:?} is not a StatefulSet pod name (<name>-<ordinal>)"))?;
        let service = self.node.kubernetes_service.clone().unwrap_or_else(|| DEFAULT_KUBERNETES_SERVICE.into());
        let replicas = self.node.kubernetes_replicas.unwrap_or(DEFAULT_KUBERNETES_REPLICAS);
        if ordinal >= replicas {
            bail!("kubernetes: pod ordinal {ordinal} is outside the {replicas} replicas of the quorum (kubernetes_replicas)");
        }
        let port = |addr: &Option<String>, default: &str| {
            addr.as_deref().unwrap_or(default).rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).unwrap_or_default()
        };
        let l = &mut self.listeners;
        let (kafka_port, rpc_port) = (port(&l.kafka_listener, DEFAULT_KAFKA_LISTENER), port(&l.rpc_listener, DEFAULT_RPC_LISTENER));
        let dns = |i: u16| format!("{set}-{i}.{service}.{namespace}.svc.cluster.local");
        self.node.node_id.get_or_insert(NodeId(u64::from(ordinal) + 1));
        self.controller
            .controller_quorum
            .get_or_insert_with(|| (0..replicas).map(|i| format!("{}@{}:{rpc_port}", i + 1, dns(i))).collect::<Vec<_>>().join(","));
        l.advertised_kafka.get_or_insert_with(|| format!("{}:{kafka_port}", dns(ordinal)));
        l.advertised_rpc.get_or_insert_with(|| format!("{}:{rpc_port}", dns(ordinal)));
        Ok(self)
    }

    fn into_node_config_checked(self, auto_create_default: bool) -> Result<NodeConfig> {
        let Settings { node, listeners, controller, broker, log, replication, groups } = self;
        let node_id = node.node_id.unwrap_or(BrokerConfig::default().node_id);
        let data_dir = node.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let rpc = listeners.rpc_listener.clone().unwrap_or_else(|| DEFAULT_RPC_LISTENER.into());
        let rpc_listener = resolve(&rpc).context("rpc_listener")?;
        let (advertised_rpc_host, advertised_rpc_port) = match &listeners.advertised_rpc {
            Some(a) => split_host_port(a).context("advertised_rpc")?,
            None => {
                if rpc_listener.ip().is_unspecified() {
                    bail!("rpc_listener {rpc} binds every interface, so peers need an address to connect to: set advertised_rpc");
                }
                (rpc_listener.ip().to_string(), rpc_listener.port())
            }
        };
        let quorum = match &controller.controller_quorum {
            Some(q) => parse_quorum(q).context("controller_quorum")?,
            None => BTreeMap::new(),
        };
        let session_timeout = controller.session_timeout_ms.map_or(ControllerConfig::DEFAULT_SESSION_TIMEOUT, Duration::from_millis);
        if !(Duration::from_millis(500)..=Duration::from_secs(600)).contains(&session_timeout) {
            bail!("session_timeout_ms must be between 500 and 600000, got {}", session_timeout.as_millis());
        }
        let broker_probe_interval = match controller.broker_probe_interval_ms {
            None => Some(ControllerConfig::DEFAULT_PROBE_INTERVAL),
            Some(0) => None,
            Some(v @ 50..=60_000) => Some(Duration::from_millis(v)),
            Some(v) => bail!("broker_probe_interval_ms must be 0 (off) or between 50 and 60000, got {v}"),
        };
        let grace = controller.auto_rebalance_grace_ms.map_or(DEFAULT_AUTO_REBALANCE_GRACE, Duration::from_millis);
        if grace > Duration::from_secs(7 * 24 * 3600) {
            bail!("auto_rebalance_grace_ms must be at most 604800000 (a week), got {}", grace.as_millis());
        }
        let auto_balance = controller.auto_rebalance.unwrap_or(false).then(|| AutoBalanceConfig {
            grace,
            max_moves: AUTO_REBALANCE_MAX_MOVES,
            batch_timeout: Duration::from_secs(600),
        });
        let leader_balance = match controller.leader_imbalance_check_interval_ms {
            None => Some(DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL),
            Some(0) => None,
            Some(v @ 1_000..=86_400_000) => Some(Duration::from_millis(v)),
            Some(v) => bail!("leader_imbalance_check_interval_ms must be 0 (off) or between 1000 and 86400000 (a day), got {v}"),
        };
        let roles = parse_roles(node.roles.as_deref().unwrap_or(DEFAULT_ROLES)).context("roles")?;
        let log_format = match node.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("log_format must be \"text\" or \"json\", got {other:?}"),
        };
        let http_listener = resolve(listeners.http_listener.as_deref().unwrap_or(DEFAULT_HTTP_LISTENER)).context("http_listener")?;
        let rpc_tls = rpc_tls(&listeners)?;
        let mut rpc_address_map = HashMap::new();
        for pair in listeners.rpc_address_map.as_deref().unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((from, to)) = pair.split_once('=') else { bail!("rpc_address_map entry {pair:?} is not FROM=TO") };
            split_host_port(from).context("rpc_address_map")?;
            split_host_port(to).context("rpc_address_map")?;
            rpc_address_map.insert(from.to_string(), to.to_string());
        }
        if roles.controller && !quorum.is_empty() && !quorum.contains_key(&node_id) {
            bail!("controller_quorum does not name this node (id {node_id}), which has the controller role; add it or use --roles broker");
        }
        if !roles.controller && quorum.is_empty() {
            bail!("a broker-only node needs controller_quorum to find the controllers");
        }
        if !roles.controller && quorum.contains_key(&node_id) {
            bail!("controller_quorum names this node (id {node_id}), but its roles do not include controller");
        }
        let retention_check_interval_ms = log.retention_check_interval_ms;
        let mut cleaner = CleanerConfig::default();
        if let Some(v) = log.log_cleaner_dedupe_buffer_size {
            cleaner.dedupe_buffer_bytes = v;
        }
        cleaner.io_bytes_per_sec = log.log_cleaner_io_max_bytes_per_second.filter(|rate| *rate > 0);
        if let Some(v) = log.log_cleaner_backoff_ms {
            cleaner.backoff = Duration::from_millis(v);
        }
        let log = log.into_config()?;
        let broker = broker.into_config(node_id, &listeners, auto_create_default)?;
        let mut replica = ReplicaConfig::new(node_id, data_dir.join("logs"));
        replica.log = log;
        replica.cleaner = cleaner;
        if let Some(v) = replication.replica_lag_time_max_ms {
            replica.replica_lag_time_max = Duration::from_millis(v);
        }
        replica.catch_up_bytes_per_sec = replication.replica_catch_up_max_bytes_per_sec.filter(|rate| *rate > 0);
        if let Some(v) = retention_check_interval_ms {
            replica.retention_check_interval = Duration::from_millis(v);
        }
        replica.validate()?;
        let group = groups.into_config()?;
        Ok(NodeConfig {
            node_id,
            log_format,
            data_dir,
            roles,
            broker,
            replica,
            group,
            rpc_listener,
            advertised_rpc_host,
            advertised_rpc_port,
            quorum,
            session_timeout,
            broker_probe_interval,
            auto_balance,
            leader_balance,
            http_listener,
            rpc_address_map,
            rpc_tls,
        })
    }
}

impl LogSettings {
    fn into_config(self) -> Result<LogConfig> {
        let flush = match self.flush_policy.as_deref().unwrap_or("always") {
            "always" => FlushPolicy::Always,
            "interval" => {
                let interval = self.flush_interval_ms.map_or(DEFAULT_FLUSH_INTERVAL, Duration::from_millis);
                if interval.is_zero() {
                    bail!("flush_interval_ms must be at least 1");
                }
                FlushPolicy::Interval(interval)
            }
            other => bail!("flush_policy must be \"always\" or \"interval\", got {other:?}"),
        };
        let mut c = LogConfig { flush, ..LogConfig::default() };
        if let Some(v) = self.segment_bytes {
            c.segment_bytes = v;
        }
        if let Some(v) = self.segment_ms {
            c.segment_ms = v;
        }
        if let Some(v) = self.retention_ms {
            c.retention_ms = v;
        }
        if let Some(v) = self.retention_bytes {
            c.retention_bytes = v;
        }
        c.validate()?;
        Ok(c)
    }
}

/// The users and mechanisms of SASL listeners, when a listener is
/// SASL_PLAINTEXT or a users file is set.
fn sasl_config(listeners: &ListenerSettings) -> Result<Option<std::sync::Arc<runnel_broker::sasl::SaslConfig>>> {
    use runnel_broker::sasl::{Mechanism, SaslConfig};
    let sasl_listener = listener_protocols(listeners).any(|p| p.uses_sasl());
    if listeners.sasl_users_file.is_none() && !sasl_listener {
        if listeners.sasl_enabled_mechanisms.is_some() || listeners.connections_max_reauth_ms.is_some_and(|ms| ms > 0) {
            bail!("sasl_enabled_mechanisms or connections_max_reauth_ms is set but no listener is SASL_PLAINTEXT or SASL_SSL");
        }
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct UsersFile {
        users: BTreeMap<String, String>,
    }
    // Without a file, the users are the SCRAM users kept in the cluster
    // metadata (runnelctl user create, AlterUserScramCredentials).
    let users = match &listeners.sasl_users_file {
        None => BTreeMap::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("read sasl_users_file {}", path.display()))?;
            let file: UsersFile =
                toml::from_str(&text).with_context(|| format!("sasl_users_file {}: expected a [users] table of NAME = \"PASSWORD\"", path.display()))?;
            file.users
        }
    };
    // PLAIN checks passwords against the users file alone: without one it
    // could never succeed, so it is not offered (clients asking for it are
    // told which mechanisms are).
    let mechanisms = match &listeners.sasl_enabled_mechanisms {
        None if listeners.sasl_users_file.is_none() => Mechanism::ALL.iter().copied().filter(|m| *m != Mechanism::Plain).collect(),
        None => Mechanism::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .filter(|m| !m.trim().is_empty())
            .map(|m| Mechanism::parse(m).with_context(|| format!("sasl_enabled_mechanisms: unknown mechanism {m:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")))
            .collect::<Result<Vec<_>>>()?,
    };
    if listeners.sasl_users_file.is_none() && mechanisms.contains(&Mechanism::Plain) {
        bail!(
            "sasl_enabled_mechanisms: PLAIN checks passwords against sasl_users_file, and none is set (SCRAM users are kept in the cluster metadata: runnelctl user create)"
        );
    }
    let reauthentication = listeners.connections_max_reauth_ms.filter(|ms| *ms > 0).map(std::time::Duration::from_millis);
    if reauthentication.is_some_and(|d| d < std::time::Duration::from_secs(1)) {
        bail!("connections_max_reauth_ms must be 0 (off) or at least 1000");
    }
    let config = SaslConfig::new(mechanisms, users, std::time::Duration::from_millis(100))
        .map_err(anyhow::Error::msg)
        .context("sasl_users_file")?
        .with_reauthentication(reauthentication);
    Ok(Some(std::sync::Arc::new(config)))
}

/// The security protocols of the configured listeners that parse (the
/// ones that do not are reported where they are read).
/// The ACL authorizer, if one is configured.
fn authorizer_config(listeners: &ListenerSettings) -> Result<Option<std::sync::Arc<runnel_broker::acl::AuthorizerConfig>>> {
    match listeners.authorizer.as_deref().unwrap_or("none") {
        "none" => {
            if listeners.super_users.is_some() || listeners.allow_everyone_if_no_acl_found.is_some() {
                bail!("super_users or allow_everyone_if_no_acl_found is set but authorizer is not acl");
            }
            Ok(None)
        }
        "acl" => {
            let mut super_users = std::collections::HashSet::new();
            for user in listeners.super_users.as_deref().unwrap_or_default().split(';').map(str::trim).filter(|u| !u.is_empty()) {
                match user.split_once(':') {
                    Some((kind, name)) if !kind.is_empty() && !name.is_empty() => super_users.insert(user.to_string()),
                    _ => bail!("super_users: {user:?} is not a principal of the form User:name"),
                };
            }
            let allow_if_no_acl = listeners.allow_everyone_if_no_acl_found.unwrap_or(false);
            Ok(Some(std::sync::Arc::new(runnel_broker::acl::AuthorizerConfig { super_users, allow_if_no_acl })))
        }
        other => bail!("authorizer: {other:?} is not none or acl"),
    }
}

fn listener_protocols(listeners: &ListenerSettings) -> impl Iterator<Item = runnel_broker::sasl::SecurityProtocol> + '_ {
    [&listeners.kafka_security_protocol, &listeners.external_security_protocol].into_iter().flatten().filter_map(|p| p.parse().ok())
}

/// The certificate and key of TLS listeners, when a listener is SSL or
/// SASL_SSL; loaded now, so a node does not start with one it cannot serve.
fn tls_config(listeners: &ListenerSettings) -> Result<Option<std::sync::Arc<runnel_broker::tls::TlsServer>>> {
    use runnel_broker::tls::{TlsFiles, TlsServer};
    let tls_listener = listener_protocols(listeners).any(|p| p.uses_tls());
    let any_set = listeners.ssl_certificate_file.is_some()
        || listeners.ssl_key_file.is_some()
        || listeners.ssl_client_ca_file.is_some()
        || listeners.ssl_client_auth.is_some();
    if !tls_listener {
        if any_set {
            bail!("ssl_* settings are set but no listener is SSL or SASL_SSL: set kafka_security_protocol or external_security_protocol");
        }
        return Ok(None);
    }
    let (Some(certificate), Some(key)) = (&listeners.ssl_certificate_file, &listeners.ssl_key_file) else {
        bail!("an SSL or SASL_SSL listener needs a certificate: set ssl_certificate_file and ssl_key_file");
    };
    let client_auth = match &listeners.ssl_client_auth {
        Some(a) => a.parse().map_err(anyhow::Error::msg).context("ssl_client_auth")?,
        None => Default::default(),
    };
    let files = TlsFiles { certificate: certificate.clone(), key: key.clone(), client_ca: listeners.ssl_client_ca_file.clone(), client_auth };
    Ok(Some(std::sync::Arc::new(TlsServer::load(files)?)))
}

impl BrokerSettings {
    fn into_config(self, node_id: NodeId, listeners: &ListenerSettings, auto_create_default: bool) -> Result<BrokerConfig> {
        let mut c = BrokerConfig { node_id, ..BrokerConfig::default() };
        let listener = listeners.kafka_listener.clone().unwrap_or_else(|| DEFAULT_KAFKA_LISTENER.into());
        c.kafka_listener = resolve(&listener).context("kafka_listener")?;
        match &listeners.advertised_kafka {
            Some(a) => {
                let (host, port) = split_host_port(a).context("advertised_kafka")?;
                c.advertised_host = host;
                c.advertised_port = port;
            }
            None => {
                if c.kafka_listener.ip().is_unspecified() {
                    bail!("kafka_listener {listener} binds every interface, so clients need an address to connect to: set advertised_kafka");
                }
                c.advertised_host = c.kafka_listener.ip().to_string();
                c.advertised_port = c.kafka_listener.port();
            }
        }
        if let Some(external) = &listeners.external_listener {
            let bind = resolve(external).context("external_listener")?;
            let (advertised_host, advertised_port) = match &listeners.advertised_external {
                Some(a) => split_host_port(a).context("advertised_external")?,
                None if bind.ip().is_unspecified() => {
                    bail!("external_listener {external} binds every interface, so clients need an address to connect to: set advertised_external")
                }
                None => (bind.ip().to_string(), bind.port()),
            };
            let security_protocol = match &listeners.external_security_protocol {
                Some(p) => p.parse().map_err(anyhow::Error::msg).context("external_security_protocol")?,
                None => Default::default(),
            };
            c.external = Some(ExternalListener { bind, advertised_host, advertised_port, security_protocol });
        } else if listeners.advertised_external.is_some() {
            bail!("advertised_external is set but external_listener is not");
        } else if listeners.external_security_protocol.is_some() {
            bail!("external_security_protocol is set but external_listener is not");
        }
        if let Some(p) = &listeners.kafka_security_protocol {
            c.security_protocol = p.parse().map_err(anyhow::Error::msg).context("kafka_security_protocol")?;
        }
        c.sasl = sasl_config(listeners)?;
        c.tls = tls_config(listeners)?;
        c.authorizer = authorizer_config(listeners)?;
        c.rack = self.rack;
        c.auto_create_topics = self.auto_create_topics.unwrap_or(auto_create_default);
        if let Some(v) = self.default_partitions {
            c.default_partitions = v;
        }
        if let Some(v) = self.message_max_bytes {
            c.message_max_bytes = v;
        }
        if let Some(v) = self.frame_bytes_max {
            if v > i32::MAX as usize {
                bail!("frame_bytes_max must be at most {}", i32::MAX);
            }
            c.frame_bytes_max = v;
        }
        if let Some(v) = self.connections_max {
            c.connections_max = v;
        }
        if let Some(v) = self.replicas_per_broker_max {
            c.replicas_per_broker_max = v;
        }
        if let Some(v) = self.queued_request_bytes_max {
            c.queued_request_bytes_max = v;
        }
        if let Some(v) = self.connections_max_idle_ms {
            c.connections_max_idle = std::time::Duration::from_millis(v);
        }
        if let Some(v) = self.transactional_id_expiration_ms {
            c.transactional_id_expiration = std::time::Duration::from_millis(v);
        }
        if let Some(v) = self.max_incremental_fetch_session_cache_slots {
            c.fetch_session_cache_slots = v;
        }
        if let Some(v) = self.inflight_requests_max {
            c.inflight_requests_max = v;
        }
        c.validate()?;
        Ok(c)
    }
}

impl GroupSettings {
    fn into_config(self) -> Result<GroupConfig> {
        let mut c = GroupConfig::default();
        if let Some(v) = self.group_initial_rebalance_delay_ms {
            c.initial_rebalance_delay = Duration::from_millis(v);
        }
        if let Some(v) = self.group_min_session_timeout_ms {
            c.min_session_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.group_max_session_timeout_ms {
            c.max_session_timeout = Duration::from_millis(v);
        }
        if c.min_session_timeout > c.max_session_timeout {
            bail!("group_min_session_timeout_ms must not exceed group_max_session_timeout_ms");
        }
        if let Some(v) = self.group_consumer_session_timeout_ms {
            c.consumer_session_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.group_consumer_heartbeat_interval_ms {
            c.consumer_heartbeat_interval = Duration::from_millis(v);
        }
        if c.consumer_heartbeat_interval.is_zero() || c.consumer_heartbeat_interval >= c.consumer_session_timeout {
            bail!("group_consumer_heartbeat_interval_ms must be above 0 and below group_consumer_session_timeout_ms");
        }
        if let Some(v) = self.offsets_retention_ms {
            if v == 0 {
                bail!("offsets_retention_ms must be above 0");
            }
            c.offsets_retention = Duration::from_millis(v);
        }
        if let Some(v) = self.offsets_retention_check_interval_ms {
            if v == 0 {
                bail!("offsets_retention_check_interval_ms must be above 0");
            }
            c.offsets_retention_check_interval = Duration::from_millis(v);
        }
        Ok(c)
    }
}

fn split_host_port(s: &str) -> Result<(String, u16)> {
    let (host, port) = s.rsplit_once(':').with_context(|| format!("{s:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().with_context(|| format!("{s:?} has an invalid port"))?;
    let bracketed = host.starts_with('[') && host.ends_with(']');
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("{s:?} has no host");
    }
    let ip = host.parse::<std::net::IpAddr>();
    if bracketed && !matches!(ip, Ok(std::net::IpAddr::V6(_))) {
        bail!("{s:?}: only an IPv6 address goes in brackets");
    }
    if ip.is_err() && !is_hostname(host) {
        bail!("{s:?}: {host:?} is not a hostname or an IP address (a list of addresses is separated by commas)");
    }
    Ok((host.to_string(), port))
}

/// A DNS name: dot-separated labels of letters, digits, '-' and '_' (the
/// last for container names), at most 253 characters.
fn is_hostname(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && !label.starts_with('-') && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Parses `controller,broker`, `controller` or `broker`.
pub fn parse_roles(s: &str) -> Result<Roles> {
    let mut roles = Roles { controller: false, broker: false };
    for r in s.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        match r {
            "controller" => roles.controller = true,
            "broker" => roles.broker = true,
            other => bail!("unknown role {other:?}; roles are \"controller\" and \"broker\""),
        }
    }
    if !roles.controller && !roles.broker {
        bail!("give at least one role");
    }
    Ok(roles)
}

/// Parses `1@host:port,2@host:port,...`.
pub fn parse_quorum(s: &str) -> Result<BTreeMap<NodeId, String>> {
    let mut quorum = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('@').with_context(|| format!("{part:?} is not ID@HOST:PORT"))?;
        let id: NodeId = id.parse().with_context(|| format!("{part:?} has an invalid node id"))?;
        split_host_port(addr).with_context(|| format!("{part:?}"))?;
        if quorum.insert(id, addr.to_string()).is_some() {
            bail!("node {id} appears twice");
        }
    }
    if quorum.is_empty() {
        bail!("names no voter");
    }
    Ok(quorum)
}

fn resolve(s: &str) -> Result<SocketAddr> {
    split_host_port(s)?;
    s.to_socket_addrs().with_context(|| format!("cannot resolve {s:?}"))?.next().with_context(|| format!("{s:?} resolves to no address"))
}

/// The TOML file's settings, checked for names Runnel does not know.
fn read_file(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let raw = std::fs::read_to_string(path).with_context(|| format!("read config file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&raw).with_context(|| format!("parse config file {}", path.display()))?;
    let names = Settings::names();
    if let Some(unknown) = table.keys().find(|k| !names.contains(k)) {
        bail!("parse config file {}: unknown field `{unknown}`; the settings are {}", path.display(), names.join(", "));
    }
    match serde_json::to_value(&table).with_context(|| format!("read config file {}", path.display()))? {
        serde_json::Value::Object(map) => Ok(map),
        _ => bail!("config file {} is not a table", path.display()),
    }
}

/// The nodes `runnel dev` starts: one, or `--nodes N` on consecutive port
/// pairs (+100 per node) with data in `<data_dir>/node-<id>`.
pub fn dev_configs(args: &DevArgs) -> Result<Vec<NodeConfig>> {
    if args.nodes <= 1 {
        return Ok(vec![args.settings.clone().into_node_config(true)?]);
    }
    if args.nodes > 9 {
        bail!("--nodes must be between 1 and 9, got {}", args.nodes);
    }
    let s = &args.settings;
    if s.controller.controller_quorum.is_some() || s.node.node_id.is_some() {
        bail!("--nodes sets node ids and the quorum itself; drop --node-id and --controller-quorum");
    }
    if s.listeners.external_listener.is_some() {
        bail!("--external-listener cannot be combined with --nodes: each node needs its own; use `runnel serve` per node");
    }
    let base_data = s.node.data_dir.clone().unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    let kafka = resolve(s.listeners.kafka_listener.as_deref().unwrap_or(DEFAULT_KAFKA_LISTENER))?;
    let rpc = resolve(s.listeners.rpc_listener.as_deref().unwrap_or(DEFAULT_RPC_LISTENER))?;
    let http = resolve(s.listeners.http_listener.as_deref().unwrap_or(DEFAULT_HTTP_LISTENER))?;
    if kafka.port() == 0 || rpc.port() == 0 {
        bail!("--nodes needs fixed base ports for the quorum list; port 0 is not allowed here");
    }
    let shifted = |addr: SocketAddr, i: u16| SocketAddr::new(addr.ip(), addr.port() + 100 * i);
    let quorum: Vec<String> = (0..args.nodes).map(|i| format!("{}@{}", i + 1, shifted(rpc, i))).collect();
    (0..args.nodes)
        .map(|i| {
            let mut s = args.settings.clone();
            s.node.node_id = Some(NodeId(u64::from(i) + 1));
            s.node.data_dir = Some(base_data.join(format!("node-{}", i + 1)));
            s.listeners.kafka_listener = Some(shifted(kafka, i).to_string());
            s.listeners.rpc_listener = Some(shifted(rpc, i).to_string());
            s.listeners.http_listener = Some(if http.port() == 0 { http } else { shifted(http, i) }.to_string());
            s.listeners.advertised_kafka = None;
            s.listeners.advertised_rpc = None;
            s.controller.controller_quorum = Some(quorum.join(","));
            s.into_node_config(true)
        })
        .collect()
}

pub fn serve_config(args: &ServeArgs) -> Result<NodeConfig> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => serde_json::Map::new(),
    };
    args.settings.over(file)?.into_node_config(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId) -> NodeSettings {
        NodeSettings { node_id: Some(id), ..Default::default() }
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runnel.toml");
        std::fs::write(&file, "node_id = 7\nsegment_bytes = 65536\nkafka_listener = \"127.0.0.1:19092\"\n").unwrap();
        let args = ServeArgs { config: Some(file), settings: Settings { node: node(NodeId(9)), ..Settings::default() } };
        let n = serve_config(&args).unwrap();
        let c = n.broker;
        assert_eq!((n.node_id, c.node_id), (NodeId(9), NodeId(9)));
        assert_eq!(n.replica.log.segment_bytes, 65536);
        assert_eq!(c.kafka_listener.port(), 19092);
        assert_eq!((c.advertised_host.as_str(), c.advertised_port), ("127.0.0.1", 19092));
        assert!(!c.auto_create_topics);
        assert_eq!(n.replica.log.flush, FlushPolicy::Always);
    }

    #[test]
    fn bad_settings_get_clear_errors() {
        let err = |s: Settings| format!("{:#}", s.into_node_config(false).unwrap_err());
        let listeners = |l: ListenerSettings| Settings { listeners: l, ..Default::default() };
        assert!(err(listeners(ListenerSettings { kafka_listener: Some("nope".into()), ..Default::default() })).contains("not HOST:PORT"));
        assert!(err(listeners(ListenerSettings { kafka_listener: Some("0.0.0.0:9092".into()), ..Default::default() })).contains("advertised_kafka"));
        assert!(err(listeners(ListenerSettings { external_listener: Some("0.0.0.0:19092".into()), ..Default::default() })).contains("advertised_external"));
        assert!(err(listeners(ListenerSettings { advertised_external: Some("h:1".into()), ..Default::default() })).contains("external_listener is not"));
        let log = |l: LogSettings| Settings { log: l, ..Default::default() };
        assert!(err(log(LogSettings { flush_policy: Some("sometimes".into()), ..Default::default() })).contains("flush_policy"));
        assert!(err(log(LogSettings { segment_bytes: Some(10), ..Default::default() })).contains("segment.bytes"));
        assert!(err(Settings { broker: BrokerSettings { default_partitions: Some(0), ..Default::default() }, ..Default::default() }).contains("partitions"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "segmnet_bytes = 1\n").unwrap();
        let e = serve_config(&ServeArgs { config: Some(file), settings: Settings::default() }).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
        let quorum = |q: &str| ControllerSettings { controller_quorum: Some(q.into()), ..Default::default() };
        assert!(err(Settings { controller: quorum("1@x"), ..Default::default() }).contains("not HOST:PORT"));
        assert!(err(Settings { controller: quorum("2@127.0.0.1:1"), ..Default::default() }).contains("does not name this node"));
        assert!(
            err(Settings { controller: ControllerSettings { session_timeout_ms: Some(1), ..Default::default() }, ..Default::default() })
                .contains("session_timeout_ms")
        );
        assert!(
            err(Settings { controller: ControllerSettings { broker_probe_interval_ms: Some(10), ..Default::default() }, ..Default::default() })
                .contains("broker_probe_interval_ms")
        );
        let roles = |r: &str| NodeSettings { roles: Some(r.into()), ..Default::default() };
        assert!(err(Settings { node: roles("broker"), ..Default::default() }).contains("needs controller_quorum"));
        assert!(err(Settings { node: roles("gateway"), ..Default::default() }).contains("unknown role"));
        assert!(err(Settings { node: roles("broker"), controller: quorum("1@127.0.0.1:1"), ..Default::default() }).contains("do not include controller"));
        let broker_only = Settings {
            node: NodeSettings { node_id: Some(NodeId(4)), roles: Some("broker".into()), ..Default::default() },
            controller: quorum("1@127.0.0.1:1"),
            ..Default::default()
        };
        let n = broker_only.into_node_config(false).unwrap();
        assert_eq!(n.roles, Roles { controller: false, broker: true });
    }

    /// Issue 13: "5@127.0.0.1:19501;6@127.0.0.1:19601" became one voter at
    /// the address "127.0.0.1:19501;6@127.0.0.1:19601".
    #[test]
    fn malformed_quorum_lists_and_addresses_are_refused() {
        for bad in ["5@127.0.0.1:19501;6@127.0.0.1:19601", "5@127.0.0.1:19501 6@127.0.0.1:19601", "1@a b:1", "1@[localhost]:1", "1@-a:1", "1@a..b:1"] {
            let e = parse_quorum(bad).unwrap_err();
            assert!(format!("{e:#}").contains("not a hostname or an IP address") || format!("{e:#}").contains("brackets"), "{bad}: {e:#}");
        }
        let q = parse_quorum("1@runnel-0.runnel-headless.ns.svc.cluster.local:9093,2@[::1]:9093,3@10.0.0.3:9093,4@my_app_runnel_1:9093").unwrap();
        assert_eq!(q.len(), 4);
        let listener = |l: &str| Settings { listeners: ListenerSettings { kafka_listener: Some(l.into()), ..Default::default() }, ..Default::default() };
        assert!(format!("{:#}", listener("127.0.0.1;9092").into_node_config(false).unwrap_err()).contains("HOST:PORT"));
    }

    #[test]
    fn quorum_lists_parse_and_dev_clusters_get_their_own_ports() {
        let q = parse_quorum("1@a:1, 2@b:2,3@c:3").unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q[&NodeId(2)], "b:2");
        assert!(parse_quorum("1@a:1,1@b:2").is_err());
        assert!(parse_quorum("").is_err());
        let nodes = dev_configs(&DevArgs { nodes: 3, settings: Settings::default() }).unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[2].broker.kafka_listener.port(), 9292);
        assert_eq!(nodes[2].rpc_listener.port(), 9293);
        assert_eq!(nodes[2].quorum.len(), 3);
        assert!(nodes[1].data_dir.ends_with("node-2"));
    }

    #[test]
    fn a_statefulset_pod_derives_its_identity_from_its_name_and_namespace() {
        let settings = Settings {
            listeners: ListenerSettings {
                kafka_listener: Some("0.0.0.0:9092".into()),
                rpc_listener: Some("0.0.0.0:9093".into()),
                http_listener: Some("0.0.0.0:9644".into()),
                ..Default::default()
            },
            node: NodeSettings { data_dir: Some("/var/lib/runnel".into()), ..Default::default() },
            ..Default::default()
        };
        let s = settings.clone().with_kubernetes_identity("runnel-2", "streaming").unwrap();
        assert_eq!(s.node.node_id, Some(NodeId(3)));
        assert_eq!(
            s.controller.controller_quorum.as_deref(),
            Some(
                "1@runnel-0.runnel-headless.streaming.svc.cluster.local:9093,\
                 2@runnel-1.runnel-headless.streaming.svc.cluster.local:9093,\
                 3@runnel-2.runnel-headless.streaming.svc.cluster.local:9093"
            )
        );
        assert_eq!(s.listeners.advertised_kafka.as_deref(), Some("runnel-2.runnel-headless.streaming.svc.cluster.local:9092"));
        let node = s.into_node_config_checked(false).expect("a valid node config");
        assert_eq!(node.broker.node_id, NodeId(3));
        assert_eq!(node.broker.advertised_host, "runnel-2.runnel-headless.streaming.svc.cluster.local");

        // Explicit settings win; names that are not pod names are refused.
        let pinned = Settings { node: NodeSettings { node_id: Some(NodeId(7)), ..settings.node.clone() }, ..settings.clone() }
            .with_kubernetes_identity("runnel-0", "default")
            .unwrap();
        assert_eq!(pinned.node.node_id, Some(NodeId(7)));
        assert!(settings.clone().with_kubernetes_identity("runnel", "default").is_err());
        assert!(settings.with_kubernetes_identity("runnel-3", "default").unwrap_err().to_string().contains("outside the 3 replicas"));
    }

    #[test]
    fn every_setting_is_a_file_key_and_every_default_names_a_setting() {
        let names = Settings::names();
        assert_eq!(names.len(), 67, "{names:?}");
        for (id, _) in defaults() {
            assert!(names.iter().any(|n| n == id), "the default of {id:?} names no setting");
        }
        // --help shows them.
        let mut serve = command().find_subcommand("serve").expect("serve").clone();
        let help = serve.render_long_help().to_string();
        assert!(help.contains(&format!("[default: {}]", LogConfig::default().segment_bytes)), "{help}");
    }

    #[test]
    fn consumer_group_heartbeats_must_fit_in_the_session() {
        let group = |session: u64, interval: u64| {
            GroupSettings { group_consumer_session_timeout_ms: Some(session), group_consumer_heartbeat_interval_ms: Some(interval), ..Default::default() }
                .into_config()
        };
        let ok = group(10_000, 1_000).unwrap();
        assert_eq!((ok.consumer_session_timeout, ok.consumer_heartbeat_interval), (Duration::from_secs(10), Duration::from_secs(1)));
        assert!(format!("{:#}", group(5_000, 5_000).unwrap_err()).contains("group_consumer_heartbeat_interval_ms"));
        assert!(group(5_000, 0).is_err());
    }

    #[test]
    fn sasl_listeners_need_users_and_name_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let err = |l: ListenerSettings| format!("{:#}", Settings { listeners: l, ..Default::default() }.into_node_config(false).unwrap_err());
        let sasl = || ListenerSettings { kafka_security_protocol: Some("SASL_PLAINTEXT".into()), ..Default::default() };
        // No file: the users are those the cluster metadata keeps.
        let metadata_users = Settings { listeners: sasl(), ..Default::default() }.into_node_config(false).unwrap();
        let offered = &metadata_users.broker.sasl.as_ref().expect("SASL on").mechanisms;
        assert!(offered.len() == 2 && !offered.contains(&runnel_broker::sasl::Mechanism::Plain), "PLAIN needs the users file: {offered:?}");
        let plain = ListenerSettings { sasl_enabled_mechanisms: Some("PLAIN,SCRAM-SHA-512".into()), ..sasl() };
        assert!(err(plain.clone()).contains("PLAIN checks passwords against sasl_users_file"), "{}", err(plain));
        let tls = ListenerSettings { kafka_security_protocol: Some("SASL_SSL".into()), ..Default::default() };
        assert!(err(tls.clone()).contains("needs a certificate"), "{}", err(tls));
        let users = dir.path().join("users.toml");
        std::fs::write(&users, "alice = 'x'\n").unwrap();
        let no_table = ListenerSettings { sasl_users_file: Some(users.clone()), ..sasl() };
        assert!(err(no_table.clone()).contains("[users] table"), "{}", err(no_table));
        std::fs::write(&users, "[users]\nalice = 'x'\n").unwrap();
        let bad_mechanism = ListenerSettings { sasl_users_file: Some(users.clone()), sasl_enabled_mechanisms: Some("PLAIN,GSSAPI".into()), ..sasl() };
        assert!(err(bad_mechanism.clone()).contains("GSSAPI"), "{}", err(bad_mechanism));
        let ok = Settings { listeners: ListenerSettings { sasl_users_file: Some(users), ..sasl() }, ..Default::default() }.into_node_config(false).unwrap();
        let sasl = ok.broker.sasl.expect("users loaded");
        assert_eq!(sasl.mechanisms.len(), 3);
        assert!(!format!("{sasl:?}").contains("\"x\"") && format!("{sasl:?}").contains("alice"), "the password never shows: {sasl:?}");
    }

    #[test]
    fn tls_listeners_need_a_certificate_and_name_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let err = |l: ListenerSettings| format!("{:#}", Settings { listeners: l, ..Default::default() }.into_node_config(false).unwrap_err());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        let (cert_file, key_file) = (dir.path().join("broker.pem"), dir.path().join("broker.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let ssl = || ListenerSettings {
            kafka_security_protocol: Some("SSL".into()),
            ssl_certificate_file: Some(cert_file.clone()),
            ssl_key_file: Some(key_file.clone()),
            ..Default::default()
        };
        let ok = Settings { listeners: ssl(), ..Default::default() }.into_node_config(false).unwrap();
        assert!(ok.broker.tls.is_some() && ok.broker.sasl.is_none());

        let no_key = ListenerSettings { ssl_key_file: None, ..ssl() };
        assert!(err(no_key.clone()).contains("set ssl_certificate_file and ssl_key_file"), "{}", err(no_key));
        let unused = ListenerSettings { kafka_security_protocol: None, ..ssl() };
        assert!(err(unused.clone()).contains("no listener is SSL or SASL_SSL"), "{}", err(unused));
        let bad_auth = ListenerSettings { ssl_client_auth: Some("always".into()), ..ssl() };
        assert!(err(bad_auth.clone()).contains("ssl_client_auth"), "{}", err(bad_auth));
        let no_ca = ListenerSettings { ssl_client_auth: Some("required".into()), ..ssl() };
        assert!(err(no_ca.clone()).contains("ssl_client_ca_file"), "{}", err(no_ca));
        let wrong_file = ListenerSettings { ssl_certificate_file: Some(dir.path().join("missing.pem")), ..ssl() };
        assert!(err(wrong_file.clone()).contains("missing.pem"), "{}", err(wrong_file));
        let unknown = ListenerSettings { kafka_security_protocol: Some("TLS".into()), ..ssl() };
        assert!(err(unknown.clone()).contains("PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"), "{}", err(unknown));
    }

    #[test]
    fn rpc_tls_needs_all_three_files_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let err = |l: ListenerSettings| format!("{:#}", Settings { listeners: l, ..Default::default() }.into_node_config(false).unwrap_err());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        let (cert_file, key_file) = (dir.path().join("node.pem"), dir.path().join("node.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let all = || ListenerSettings {
            rpc_tls_certificate_file: Some(cert_file.clone()),
            rpc_tls_key_file: Some(key_file.clone()),
            rpc_tls_ca_file: Some(cert_file.clone()),
            ..Default::default()
        };
        let ok = Settings { listeners: all(), ..Default::default() }.into_node_config(false).unwrap();
        assert!(ok.rpc_tls.is_some());
        let two = ListenerSettings { rpc_tls_ca_file: None, ..all() };
        assert!(err(two.clone()).contains("set all three or none"), "{}", err(two));
        let missing = ListenerSettings { rpc_tls_key_file: Some(dir.path().join("missing.key")), ..all() };
        assert!(err(missing.clone()).contains("missing.key"), "{}", err(missing));
        std::fs::write(dir.path().join("junk.pem"), "not a certificate").unwrap();
        let junk = ListenerSettings { rpc_tls_certificate_file: Some(dir.path().join("junk.pem")), ..all() };
        assert!(err(junk.clone()).contains("rpc_tls"), "{}", err(junk));
    }
}
