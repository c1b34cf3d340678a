//! Broker settings, validated once at start-up.

use std::net::SocketAddr;

use runnel_controller::metadata::NodeId;

/// A second listener: clients that connect to it are told the brokers'
/// external endpoints in Metadata and FindCoordinator.
#[derive(Debug, Clone)]
pub struct ExternalListener {
    pub bind: SocketAddr,
    pub advertised_host: String,
    /// 0 until bound when `bind` asks for a free port.
    pub advertised_port: u16,
    pub security_protocol: crate::sasl::SecurityProtocol,
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: NodeId,
    /// Where the Kafka listener binds.
    pub kafka_listener: SocketAddr,
    /// The host and port clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// The main Kafka listener's security protocol.
    pub security_protocol: crate::sasl::SecurityProtocol,
    /// A second Kafka listener for clients outside the nodes' network.
    pub external: Option<ExternalListener>,
    /// Users and mechanisms for listeners whose protocol is SASL_PLAINTEXT or SASL_SSL.
    pub sasl: Option<std::sync::Arc<crate::sasl::SaslConfig>>,
    /// Certificate and key for listeners whose protocol is SSL or SASL_SSL.
    pub tls: Option<std::sync::Arc<crate::tls::TlsServer>>,
    /// Kafka's ACL authorizer; `None` allows every request.
    pub authorizer: Option<std::sync::Arc<crate::acl::AuthorizerConfig>>,
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
    /// Topic creations and partition additions that would give one broker
    /// more partition replicas than this are refused (POLICY_VIOLATION).
    pub replicas_per_broker_max: usize,
    /// Bytes of requests being read or handled at once, node-wide (as
    /// Kafka's `queued.max.request.bytes`): a connection whose next request
    /// does not fit waits, unread, until others finish. A quarter more is
    /// kept for requests up to 1 MiB, so large stalled ones cannot starve them.
    pub queued_request_bytes_max: usize,
    /// A connection that sends nothing for this long is closed, mid-request
    /// or not (Kafka's `connections.max.idle.ms`).
    pub connections_max_idle: std::time::Duration,
    /// A transactional id with no transaction for this long is forgotten
    /// (Kafka's `transactional.id.expiration.ms`).
    pub transactional_id_expiration: std::time::Duration,
    /// Incremental fetch sessions (KIP-227) kept for consumers; 0 turns
    /// them off (Kafka's `max.incremental.fetch.session.cache.slots`).
    pub fetch_session_cache_slots: usize,
}

impl BrokerConfig {
    /// The security protocol of the main listener, or of the external one.
    pub fn security_protocol(&self, external: bool) -> crate::sasl::SecurityProtocol {
        match (&self.external, external) {
            (Some(e), true) => e.security_protocol,
            _ => self.security_protocol,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: NodeId(1),
            kafka_listener: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            security_protocol: crate::sasl::SecurityProtocol::Plaintext,
            external: None,
            sasl: None,
            tls: None,
            authorizer: None,
            rack: None,
            rpc_address: "127.0.0.1:9093".into(),
            auto_create_topics: false,
            default_partitions: 1,
            message_max_bytes: 1024 * 1024 + 12,
            frame_bytes_max: runnel_protocol::frame::FRAME_BYTES_MAX_DEFAULT,
            connections_max: 10_000,
            inflight_requests_max: 64,
            replicas_per_broker_max: 200_000,
            queued_request_bytes_max: 256 * 1024 * 1024,
            connections_max_idle: std::time::Duration::from_secs(600),
            transactional_id_expiration: runnel_coordinator::TxnConfig::default().id_expiration,
            fetch_session_cache_slots: crate::fetch_sessions::DEFAULT_SLOTS,
        }
    }
}

/// A setting out of its range; the message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

impl BrokerConfig {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.node_id.0 > i32::MAX as u64 {
            return Err(InvalidConfig(format!("node id must be at most {} (Kafka's broker ids are 32-bit), got {}", i32::MAX, self.node_id)));
        }
        if self.default_partitions < 1 {
            return Err(InvalidConfig(format!("default partitions must be at least 1, got {}", self.default_partitions)));
        }
        let protocols = || std::iter::once(self.security_protocol).chain(self.external.as_ref().map(|e| e.security_protocol));
        if protocols().any(|p| p.uses_sasl()) && self.sasl.is_none() {
            return Err(InvalidConfig("a SASL_PLAINTEXT or SASL_SSL listener needs users: set sasl_users_file".into()));
        }
        if protocols().any(|p| p.uses_tls()) && self.tls.is_none() {
            return Err(InvalidConfig("an SSL or SASL_SSL listener needs a certificate: set ssl_certificate_file and ssl_key_file".into()));
        }
        if self.message_max_bytes < 64 || self.message_max_bytes > self.frame_bytes_max {
            return Err(InvalidConfig(format!(
                "message max bytes must be between 64 and the frame maximum ({}), got {}",
                self.frame_bytes_max, self.message_max_bytes
            )));
        }
        if self.connections_max == 0 || self.inflight_requests_max == 0 || self.replicas_per_broker_max == 0 {
            return Err(InvalidConfig("connection, in-flight request and replicas-per-broker limits must be at least 1".into()));
        }
        if self.queued_request_bytes_max < 1024 * 1024 {
            return Err(InvalidConfig(format!("queued request bytes max must be at least 1 MiB, got {}", self.queued_request_bytes_max)));
        }
        if self.connections_max_idle.is_zero() {
            return Err(InvalidConfig("connections max idle must be more than 0 ms".into()));
        }
        if self.advertised_host.is_empty() {
            return Err(InvalidConfig("advertised host must not be empty".into()));
        }
        Ok(())
    }
}
