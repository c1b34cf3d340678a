//! Broker settings, validated once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use runnel_storage::LogConfig;

use crate::groups::GroupConfig;

/// A second listener: clients that connect to it are told the brokers'
/// external endpoints in Metadata and FindCoordinator.
#[derive(Debug, Clone)]
pub struct ExternalListener {
    pub bind: SocketAddr,
    pub advertised_host: String,
    /// 0 until bound when `bind` asks for a free port.
    pub advertised_port: u16,
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    /// Where the Kafka listener binds.
    pub kafka_listener: SocketAddr,
    /// The host and port clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// A second Kafka listener for clients outside the nodes' network.
    pub external: Option<ExternalListener>,
    pub rack: Option<String>,
    /// The gRPC address peers and runnelctl use for this node (HOST:PORT).
    pub rpc_address: String,
    /// Create a topic when a client asks for metadata of one that does not exist.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, or of CreateTopics with -1.
    pub default_partitions: i32,
    /// Largest record batch accepted, as Kafka's `message.max.bytes`.
    pub message_max_bytes: usize,
    /// Largest request frame; larger frames close the connection.
    pub frame_bytes_max: usize,
    pub connections_max: usize,
    /// Requests read ahead of their responses on one connection.
    pub inflight_requests_max: usize,
    /// A follower that has not caught up for this long leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// How often retention runs over every log.
    pub retention_check_interval: Duration,
    /// Defaults for every topic's log; topic configs override them.
    pub log: LogConfig,
    /// Consumer-group coordinator settings.
    pub group: GroupConfig,
}

impl BrokerConfig {
    /// Defaults for a node whose data lives in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        BrokerConfig {
            node_id: 1,
            data_dir,
            kafka_listener: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            external: None,
            rack: None,
            rpc_address: "127.0.0.1:9093".into(),
            auto_create_topics: false,
            default_partitions: 1,
            message_max_bytes: 1024 * 1024 + 12,
            frame_bytes_max: runnel_protocol::frame::FRAME_BYTES_MAX_DEFAULT,
            connections_max: 10_000,
            inflight_requests_max: 64,
            replica_lag_time_max: Duration::from_secs(10),
            retention_check_interval: Duration::from_secs(60),
            log: LogConfig::default(),
            group: GroupConfig::default(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.node_id < 0 {
            return Err(format!("node id must be 0 or more, got {}", self.node_id));
        }
        if self.default_partitions < 1 {
            return Err(format!("default partitions must be at least 1, got {}", self.default_partitions));
        }
        if self.message_max_bytes < 64 || self.message_max_bytes > self.frame_bytes_max {
            return Err(format!("message max bytes must be between 64 and the frame maximum ({}), got {}", self.frame_bytes_max, self.message_max_bytes));
        }
        if self.connections_max == 0 || self.inflight_requests_max == 0 {
            return Err("connection and in-flight request limits must be at least 1".into());
        }
        if self.group.min_session_timeout > self.group.max_session_timeout {
            return Err("the group minimum session timeout must not exceed the maximum".into());
        }
        if self.advertised_host.is_empty() {
            return Err("advertised host must not be empty".into());
        }
        self.log.validate()
    }
}
