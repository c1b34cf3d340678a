//! Configuration: command-line flags, then `RUNNEL_*` environment variables,
//! then the TOML file given with `--config`, then defaults. Every setting has
//! the same name in all three places (`--segment-bytes`, `RUNNEL_SEGMENT_BYTES`,
//! `segment_bytes = ...`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;

use runnel_broker::BrokerConfig;
use runnel_broker::config::ExternalListener;

use crate::node::{NodeConfig, Roles};
use runnel_storage::FlushPolicy;
use serde::Deserialize;

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
    #[arg(long, env = "RUNNEL_HTTP_LISTENER", default_value = "127.0.0.1:9644")]
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

/// Every node setting. Unset values fall through to the next source.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// This node's id [default: 1].
    #[arg(long, env = "RUNNEL_NODE_ID")]
    pub node_id: Option<i32>,
    /// Directory for topic metadata and partition logs [default: ./runnel-data].
    #[arg(long, env = "RUNNEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds, HOST:PORT; port 0 picks a free port [default: 127.0.0.1:9092].
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
    /// Address the gRPC listener (Raft, controller, admin) binds, HOST:PORT [default: 127.0.0.1:9093].
    #[arg(long, env = "RUNNEL_RPC_LISTENER")]
    pub rpc_listener: Option<String>,
    /// HOST:PORT peers and runnelctl use for this node's gRPC [default: the gRPC listener address].
    #[arg(long, env = "RUNNEL_ADVERTISED_RPC")]
    pub advertised_rpc: Option<String>,
    /// Peer gRPC addresses to dial through other addresses (a proxy or NAT):
    /// FROM=TO,... (the chaos harness routes links through its fault proxy).
    #[arg(long, env = "RUNNEL_RPC_ADDRESS_MAP")]
    pub rpc_address_map: Option<String>,
    /// Address the HTTP endpoint (/healthz, /readyz) binds, HOST:PORT [default: 127.0.0.1:9644].
    #[arg(long, env = "RUNNEL_HTTP_LISTENER")]
    pub http_listener: Option<String>,
    /// The controller voters, ID@HOST:PORT,... [default: this node alone].
    #[arg(long, env = "RUNNEL_CONTROLLER_QUORUM")]
    pub controller_quorum: Option<String>,
    /// What this node does: "controller,broker" (a Raft voter and a broker),
    /// "controller" or "broker" (follows the quorum's metadata) [default: controller,broker].
    #[arg(long, env = "RUNNEL_ROLES")]
    pub roles: Option<String>,
    /// A broker that misses heartbeats this long is fenced [default: 6000].
    #[arg(long, env = "RUNNEL_SESSION_TIMEOUT_MS")]
    pub session_timeout_ms: Option<u64>,
    /// Rack of this node, reported in metadata and used to spread replicas.
    #[arg(long, env = "RUNNEL_RACK")]
    pub rack: Option<String>,
    /// Running as a pod of a Kubernetes StatefulSet: derive the node id
    /// (ordinal + 1), the controller quorum and the advertised addresses
    /// from HOSTNAME, POD_NAMESPACE and the headless service, unless set.
    #[arg(long, env = "RUNNEL_KUBERNETES")]
    pub kubernetes: Option<bool>,
    /// The StatefulSet's headless service [default: runnel-headless].
    #[arg(long, env = "RUNNEL_KUBERNETES_SERVICE")]
    pub kubernetes_service: Option<String>,
    /// The StatefulSet's replicas, all controller voters [default: 3].
    #[arg(long, env = "RUNNEL_KUBERNETES_REPLICAS")]
    pub kubernetes_replicas: Option<u16>,
    /// Create unknown topics when a client asks for their metadata [default: true for dev, false for serve].
    #[arg(long, env = "RUNNEL_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long, env = "RUNNEL_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// When appends are fsynced: "always" (before acknowledging, with group commit) or "interval" [default: always].
    #[arg(long, env = "RUNNEL_FLUSH_POLICY")]
    pub flush_policy: Option<String>,
    /// With flush_policy = "interval": milliseconds between fsyncs [default: 1000].
    #[arg(long, env = "RUNNEL_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Default segment.bytes of topics [default: 1073741824].
    #[arg(long, env = "RUNNEL_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Default segment.ms of topics [default: 604800000].
    #[arg(long, env = "RUNNEL_SEGMENT_MS")]
    pub segment_ms: Option<i64>,
    /// Default retention.ms of topics; -1 keeps forever [default: 604800000].
    #[arg(long, env = "RUNNEL_RETENTION_MS")]
    pub retention_ms: Option<i64>,
    /// Default retention.bytes of topics; -1 for no limit [default: -1].
    #[arg(long, env = "RUNNEL_RETENTION_BYTES")]
    pub retention_bytes: Option<i64>,
    /// How often retention runs [default: 60000].
    #[arg(long, env = "RUNNEL_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// A follower that has not caught up for this long leaves the ISR [default: 10000].
    #[arg(long, env = "RUNNEL_REPLICA_LAG_TIME_MAX_MS")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// Largest record batch accepted [default: 1048588].
    #[arg(long, env = "RUNNEL_MESSAGE_MAX_BYTES")]
    pub message_max_bytes: Option<usize>,
    /// Largest request; larger ones close the connection [default: 104857600].
    #[arg(long, env = "RUNNEL_FRAME_BYTES_MAX")]
    pub frame_bytes_max: Option<usize>,
    /// Most client connections at once [default: 10000].
    #[arg(long, env = "RUNNEL_CONNECTIONS_MAX")]
    pub connections_max: Option<usize>,
    /// Requests read ahead of their responses per connection [default: 64].
    #[arg(long, env = "RUNNEL_INFLIGHT_REQUESTS_MAX")]
    pub inflight_requests_max: Option<usize>,
    /// How long a rebalance of an empty group waits for more members to join [default: 3000].
    #[arg(long, env = "RUNNEL_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Smallest consumer session timeout accepted [default: 6000].
    #[arg(long, env = "RUNNEL_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<u64>,
    /// Largest consumer session timeout accepted [default: 1800000].
    #[arg(long, env = "RUNNEL_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<u64>,
}

impl Settings {
    /// Fills every unset value from `fallback`.
    fn or(self, fallback: Settings) -> Settings {
        Settings {
            node_id: self.node_id.or(fallback.node_id),
            data_dir: self.data_dir.or(fallback.data_dir),
            kafka_listener: self.kafka_listener.or(fallback.kafka_listener),
            advertised_kafka: self.advertised_kafka.or(fallback.advertised_kafka),
            external_listener: self.external_listener.or(fallback.external_listener),
            advertised_external: self.advertised_external.or(fallback.advertised_external),
            rpc_listener: self.rpc_listener.or(fallback.rpc_listener),
            advertised_rpc: self.advertised_rpc.or(fallback.advertised_rpc),
            controller_quorum: self.controller_quorum.or(fallback.controller_quorum),
            http_listener: self.http_listener.or(fallback.http_listener),
            rpc_address_map: self.rpc_address_map.or(fallback.rpc_address_map),
            session_timeout_ms: self.session_timeout_ms.or(fallback.session_timeout_ms),
            roles: self.roles.or(fallback.roles),
            rack: self.rack.or(fallback.rack),
            kubernetes: self.kubernetes.or(fallback.kubernetes),
            kubernetes_service: self.kubernetes_service.or(fallback.kubernetes_service),
            kubernetes_replicas: self.kubernetes_replicas.or(fallback.kubernetes_replicas),
            auto_create_topics: self.auto_create_topics.or(fallback.auto_create_topics),
            default_partitions: self.default_partitions.or(fallback.default_partitions),
            flush_policy: self.flush_policy.or(fallback.flush_policy),
            flush_interval_ms: self.flush_interval_ms.or(fallback.flush_interval_ms),
            segment_bytes: self.segment_bytes.or(fallback.segment_bytes),
            segment_ms: self.segment_ms.or(fallback.segment_ms),
            retention_ms: self.retention_ms.or(fallback.retention_ms),
            retention_bytes: self.retention_bytes.or(fallback.retention_bytes),
            retention_check_interval_ms: self.retention_check_interval_ms.or(fallback.retention_check_interval_ms),
            message_max_bytes: self.message_max_bytes.or(fallback.message_max_bytes),
            replica_lag_time_max_ms: self.replica_lag_time_max_ms.or(fallback.replica_lag_time_max_ms),
            frame_bytes_max: self.frame_bytes_max.or(fallback.frame_bytes_max),
            connections_max: self.connections_max.or(fallback.connections_max),
            inflight_requests_max: self.inflight_requests_max.or(fallback.inflight_requests_max),
            group_initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms.or(fallback.group_initial_rebalance_delay_ms),
            group_min_session_timeout_ms: self.group_min_session_timeout_ms.or(fallback.group_min_session_timeout_ms),
            group_max_session_timeout_ms: self.group_max_session_timeout_ms.or(fallback.group_max_session_timeout_ms),
        }
    }

    /// Turns settings into a validated node configuration.
    pub fn into_node_config(self, auto_create_default: bool) -> Result<NodeConfig> {
        let this = if self.kubernetes == Some(true) {
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
        let service = self.kubernetes_service.clone().unwrap_or_else(|| "runnel-headless".into());
        let replicas = self.kubernetes_replicas.unwrap_or(3);
        if ordinal >= replicas {
            bail!("kubernetes: pod ordinal {ordinal} is outside the {replicas} replicas of the quorum (kubernetes_replicas)");
        }
        let port = |addr: &Option<String>, default: u16| addr.as_deref().and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| p.parse().ok()).unwrap_or(default);
        let (kafka_port, rpc_port) = (port(&self.kafka_listener, 9092), port(&self.rpc_listener, 9093));
        let dns = |i: u16| format!("{set}-{i}.{service}.{namespace}.svc.cluster.local");
        self.node_id.get_or_insert(i32::from(ordinal) + 1);
        self.controller_quorum.get_or_insert_with(|| (0..replicas).map(|i| format!("{}@{}:{rpc_port}", i + 1, dns(i))).collect::<Vec<_>>().join(","));
        self.advertised_kafka.get_or_insert_with(|| format!("{}:{kafka_port}", dns(ordinal)));
        self.advertised_rpc.get_or_insert_with(|| format!("{}:{rpc_port}", dns(ordinal)));
        Ok(self)
    }

    fn into_node_config_checked(self, auto_create_default: bool) -> Result<NodeConfig> {
        let rpc = self.rpc_listener.clone().unwrap_or_else(|| "127.0.0.1:9093".into());
        let rpc_listener = resolve(&rpc).context("rpc_listener")?;
        let (advertised_rpc_host, advertised_rpc_port) = match &self.advertised_rpc {
            Some(a) => split_host_port(a).context("advertised_rpc")?,
            None => {
                if rpc_listener.ip().is_unspecified() {
                    bail!("rpc_listener {rpc} binds every interface, so peers need an address to connect to: set advertised_rpc");
                }
                (rpc_listener.ip().to_string(), rpc_listener.port())
            }
        };
        let quorum = match &self.controller_quorum {
            Some(q) => parse_quorum(q).context("controller_quorum")?,
            None => BTreeMap::new(),
        };
        let session_timeout_ms = self.session_timeout_ms.unwrap_or(6000);
        if !(500..=600_000).contains(&session_timeout_ms) {
            bail!("session_timeout_ms must be between 500 and 600000, got {session_timeout_ms}");
        }
        let roles = parse_roles(self.roles.as_deref().unwrap_or("controller,broker")).context("roles")?;
        let http_listener = resolve(self.http_listener.as_deref().unwrap_or("127.0.0.1:9644")).context("http_listener")?;
        let mut rpc_address_map = std::collections::HashMap::new();
        for pair in self.rpc_address_map.as_deref().unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((from, to)) = pair.split_once('=') else { bail!("rpc_address_map entry {pair:?} is not FROM=TO") };
            split_host_port(from).context("rpc_address_map")?;
            split_host_port(to).context("rpc_address_map")?;
            rpc_address_map.insert(from.to_string(), to.to_string());
        }
        let broker = self.into_broker_config(auto_create_default)?;
        let me = broker.node_id as u64;
        if roles.controller && !quorum.is_empty() && !quorum.contains_key(&me) {
            bail!("controller_quorum does not name this node (id {me}), which has the controller role; add it or use --roles broker");
        }
        if !roles.controller && quorum.is_empty() {
            bail!("a broker-only node needs controller_quorum to find the controllers");
        }
        if !roles.controller && quorum.contains_key(&me) {
            bail!("controller_quorum names this node (id {me}), but its roles do not include controller");
        }
        Ok(NodeConfig {
            broker,
            rpc_listener,
            advertised_rpc_host,
            advertised_rpc_port,
            quorum,
            session_timeout: Duration::from_millis(session_timeout_ms),
            roles,
            http_listener,
            rpc_address_map,
        })
    }

    /// Turns settings into a validated broker configuration.
    pub fn into_broker_config(self, auto_create_default: bool) -> Result<BrokerConfig> {
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("./runnel-data"));
        let mut c = BrokerConfig::new(data_dir);
        if let Some(v) = self.node_id {
            c.node_id = v;
        }
        let listener = self.kafka_listener.unwrap_or_else(|| "127.0.0.1:9092".into());
        c.kafka_listener = resolve(&listener).context("kafka_listener")?;
        match self.advertised_kafka {
            Some(a) => {
                let (host, port) = split_host_port(&a).context("advertised_kafka")?;
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
        if let Some(external) = &self.external_listener {
            let bind = resolve(external).context("external_listener")?;
            let (advertised_host, advertised_port) = match &self.advertised_external {
                Some(a) => split_host_port(a).context("advertised_external")?,
                None if bind.ip().is_unspecified() => {
                    bail!("external_listener {external} binds every interface, so clients need an address to connect to: set advertised_external")
                }
                None => (bind.ip().to_string(), bind.port()),
            };
            c.external = Some(ExternalListener { bind, advertised_host, advertised_port });
        } else if self.advertised_external.is_some() {
            bail!("advertised_external is set but external_listener is not");
        }
        c.rack = self.rack;
        c.auto_create_topics = self.auto_create_topics.unwrap_or(auto_create_default);
        if let Some(v) = self.default_partitions {
            c.default_partitions = v;
        }
        c.log.flush = match self.flush_policy.as_deref().unwrap_or("always") {
            "always" => FlushPolicy::Always,
            "interval" => {
                let ms = self.flush_interval_ms.unwrap_or(1000);
                if ms == 0 {
                    bail!("flush_interval_ms must be at least 1");
                }
                FlushPolicy::Interval(Duration::from_millis(ms))
            }
            other => bail!("flush_policy must be \"always\" or \"interval\", got {other:?}"),
        };
        if let Some(v) = self.segment_bytes {
            c.log.segment_bytes = v;
        }
        if let Some(v) = self.segment_ms {
            c.log.segment_ms = v;
        }
        if let Some(v) = self.retention_ms {
            c.log.retention_ms = v;
        }
        if let Some(v) = self.retention_bytes {
            c.log.retention_bytes = v;
        }
        if let Some(v) = self.retention_check_interval_ms {
            if v == 0 {
                bail!("retention_check_interval_ms must be at least 1");
            }
            c.retention_check_interval = Duration::from_millis(v);
        }
        if let Some(v) = self.message_max_bytes {
            c.message_max_bytes = v;
        }
        if let Some(v) = self.replica_lag_time_max_ms {
            if v < 100 {
                bail!("replica_lag_time_max_ms must be at least 100, got {v}");
            }
            c.replica_lag_time_max = Duration::from_millis(v);
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
        if let Some(v) = self.inflight_requests_max {
            c.inflight_requests_max = v;
        }
        if let Some(v) = self.group_initial_rebalance_delay_ms {
            c.group.initial_rebalance_delay = Duration::from_millis(v);
        }
        if let Some(v) = self.group_min_session_timeout_ms {
            c.group.min_session_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.group_max_session_timeout_ms {
            c.group.max_session_timeout = Duration::from_millis(v);
        }
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

fn split_host_port(s: &str) -> Result<(String, u16)> {
    let (host, port) = s.rsplit_once(':').with_context(|| format!("{s:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().with_context(|| format!("{s:?} has an invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("{s:?} has no host");
    }
    Ok((host.to_string(), port))
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
pub fn parse_quorum(s: &str) -> Result<BTreeMap<u64, String>> {
    let mut quorum = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('@').with_context(|| format!("{part:?} is not ID@HOST:PORT"))?;
        let id: u64 = id.parse().with_context(|| format!("{part:?} has an invalid node id"))?;
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

fn read_file(path: &Path) -> Result<Settings> {
    let raw = std::fs::read_to_string(path).with_context(|| format!("read config file {}", path.display()))?;
    toml::from_str(&raw).with_context(|| format!("parse config file {}", path.display()))
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
    if args.settings.controller_quorum.is_some() || args.settings.node_id.is_some() {
        bail!("--nodes sets node ids and the quorum itself; drop --node-id and --controller-quorum");
    }
    if args.settings.external_listener.is_some() {
        bail!("--external-listener cannot be combined with --nodes: each node needs its own; use `runnel serve` per node");
    }
    let base_data = args.settings.data_dir.clone().unwrap_or_else(|| "./runnel-data".into());
    let kafka = resolve(args.settings.kafka_listener.as_deref().unwrap_or("127.0.0.1:9092"))?;
    let rpc = resolve(args.settings.rpc_listener.as_deref().unwrap_or("127.0.0.1:9093"))?;
    let http = resolve(args.settings.http_listener.as_deref().unwrap_or("127.0.0.1:9644"))?;
    if kafka.port() == 0 || rpc.port() == 0 {
        bail!("--nodes needs fixed base ports for the quorum list; port 0 is not allowed here");
    }
    let shifted = |addr: SocketAddr, i: u16| SocketAddr::new(addr.ip(), addr.port() + 100 * i);
    let quorum: Vec<String> = (0..args.nodes).map(|i| format!("{}@{}", i + 1, shifted(rpc, i))).collect();
    (0..args.nodes)
        .map(|i| {
            let mut s = args.settings.clone();
            s.node_id = Some(i32::from(i) + 1);
            s.data_dir = Some(base_data.join(format!("node-{}", i + 1)));
            s.kafka_listener = Some(shifted(kafka, i).to_string());
            s.rpc_listener = Some(shifted(rpc, i).to_string());
            s.http_listener = Some(if http.port() == 0 { http } else { shifted(http, i) }.to_string());
            s.advertised_kafka = None;
            s.advertised_rpc = None;
            s.controller_quorum = Some(quorum.join(","));
            s.into_node_config(true)
        })
        .collect()
}

pub fn serve_config(args: &ServeArgs) -> Result<NodeConfig> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => Settings::default(),
    };
    args.settings.clone().or(file).into_node_config(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runnel.toml");
        std::fs::write(&file, "node_id = 7\nsegment_bytes = 65536\nkafka_listener = \"127.0.0.1:19092\"\n").unwrap();
        let args = ServeArgs { config: Some(file), settings: Settings { node_id: Some(9), ..Settings::default() } };
        let node = serve_config(&args).unwrap();
        let c = node.broker;
        assert_eq!(c.node_id, 9);
        assert_eq!(c.log.segment_bytes, 65536);
        assert_eq!(c.kafka_listener.port(), 19092);
        assert_eq!((c.advertised_host.as_str(), c.advertised_port), ("127.0.0.1", 19092));
        assert!(!c.auto_create_topics);
        assert_eq!(c.log.flush, FlushPolicy::Always);
    }

    #[test]
    fn bad_settings_get_clear_errors() {
        let err = |s: Settings| format!("{:#}", s.into_broker_config(false).unwrap_err());
        assert!(err(Settings { kafka_listener: Some("nope".into()), ..Default::default() }).contains("not HOST:PORT"));
        assert!(err(Settings { kafka_listener: Some("0.0.0.0:9092".into()), ..Default::default() }).contains("advertised_kafka"));
        assert!(err(Settings { external_listener: Some("0.0.0.0:19092".into()), ..Default::default() }).contains("advertised_external"));
        assert!(err(Settings { advertised_external: Some("h:1".into()), ..Default::default() }).contains("external_listener is not"));
        assert!(err(Settings { flush_policy: Some("sometimes".into()), ..Default::default() }).contains("flush_policy"));
        assert!(err(Settings { segment_bytes: Some(10), ..Default::default() }).contains("segment.bytes"));
        assert!(err(Settings { default_partitions: Some(0), ..Default::default() }).contains("partitions"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "segmnet_bytes = 1\n").unwrap();
        let e = serve_config(&ServeArgs { config: Some(file), settings: Settings::default() }).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
        let node = |s: Settings| format!("{:#}", s.into_node_config(false).unwrap_err());
        assert!(node(Settings { controller_quorum: Some("1@x".into()), ..Default::default() }).contains("not HOST:PORT"));
        assert!(node(Settings { controller_quorum: Some("2@127.0.0.1:1".into()), ..Default::default() }).contains("does not name this node"));
        assert!(node(Settings { session_timeout_ms: Some(1), ..Default::default() }).contains("session_timeout_ms"));
        assert!(node(Settings { roles: Some("broker".into()), ..Default::default() }).contains("needs controller_quorum"));
        assert!(node(Settings { roles: Some("gateway".into()), ..Default::default() }).contains("unknown role"));
        assert!(
            node(Settings { roles: Some("broker".into()), controller_quorum: Some("1@127.0.0.1:1".into()), ..Default::default() })
                .contains("do not include controller")
        );
        let broker_only = Settings { node_id: Some(4), roles: Some("broker".into()), controller_quorum: Some("1@127.0.0.1:1".into()), ..Default::default() };
        let n = broker_only.into_node_config(false).unwrap();
        assert_eq!(n.roles, Roles { controller: false, broker: true });
    }

    #[test]
    fn quorum_lists_parse_and_dev_clusters_get_their_own_ports() {
        let q = parse_quorum("1@a:1, 2@b:2,3@c:3").unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q[&2], "b:2");
        assert!(parse_quorum("1@a:1,1@b:2").is_err());
        assert!(parse_quorum("").is_err());
        let nodes = dev_configs(&DevArgs { nodes: 3, settings: Settings::default() }).unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[2].broker.kafka_listener.port(), 9292);
        assert_eq!(nodes[2].rpc_listener.port(), 9293);
        assert_eq!(nodes[2].quorum.len(), 3);
        assert!(nodes[1].broker.data_dir.ends_with("node-2"));
    }

    #[test]
    fn a_statefulset_pod_derives_its_identity_from_its_name_and_namespace() {
        let settings = Settings {
            kafka_listener: Some("0.0.0.0:9092".into()),
            rpc_listener: Some("0.0.0.0:9093".into()),
            http_listener: Some("0.0.0.0:9644".into()),
            data_dir: Some("/var/lib/runnel".into()),
            ..Default::default()
        };
        let s = settings.clone().with_kubernetes_identity("runnel-2", "streaming").unwrap();
        assert_eq!(s.node_id, Some(3));
        assert_eq!(
            s.controller_quorum.as_deref(),
            Some(
                "1@runnel-0.runnel-headless.streaming.svc.cluster.local:9093,\
                 2@runnel-1.runnel-headless.streaming.svc.cluster.local:9093,\
                 3@runnel-2.runnel-headless.streaming.svc.cluster.local:9093"
            )
        );
        assert_eq!(s.advertised_kafka.as_deref(), Some("runnel-2.runnel-headless.streaming.svc.cluster.local:9092"));
        let node = s.into_node_config_checked(false).expect("a valid node config");
        assert_eq!(node.broker.node_id, 3);
        assert_eq!(node.broker.advertised_host, "runnel-2.runnel-headless.streaming.svc.cluster.local");

        // Explicit settings win; names that are not pod names are refused.
        let pinned = Settings { node_id: Some(7), ..settings.clone() }.with_kubernetes_identity("runnel-0", "default").unwrap();
        assert_eq!(pinned.node_id, Some(7));
        assert!(settings.clone().with_kubernetes_identity("runnel", "default").is_err());
        assert!(settings.with_kubernetes_identity("runnel-3", "default").unwrap_err().to_string().contains("outside the 3 replicas"));
    }
}
