//! [`Broker`]: what the Kafka listener and the admin API serve from, as
//! handles to the parts that do the work: the replica manager (partitions,
//! logs, replication), the coordinators (groups, producer ids) and the
//! metadata. It holds no state of its own beyond its settings.

use std::sync::Arc;

use runnel_controller::Metadata;
use runnel_coordinator::{Coordinators, GroupConfig, MarkerRequest, MarkerWriter, MarkersWritten, TxnConfig};
use runnel_replica::markers::MarkerSender;
use runnel_replica::{Registration, ReplicaConfig, ReplicaManager};
use runnel_rpc::replication::TxnMarker;
use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid broker settings: {0}")]
    Config(#[from] crate::config::InvalidConfig),
    #[error("invalid group settings: the minimum session timeout must not exceed the maximum")]
    GroupSessionTimeouts,
    #[error(transparent)]
    Replicas(#[from] runnel_replica::manager::OpenError),
}

pub struct Broker {
    pub config: BrokerConfig,
    /// The controller in this process, or a remote one for broker-only nodes.
    pub metadata: Metadata,
    pub replicas: Arc<ReplicaManager>,
    pub coordinators: Arc<Coordinators>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the node begins to shut down.
    pub shutdown: CancellationToken,
    /// Bytes of client requests being read or handled, node-wide.
    pub request_memory: crate::server::RequestMemory,
    /// Consumers' incremental fetch sessions (KIP-227).
    pub(crate) fetch_sessions: Arc<crate::fetch_sessions::FetchSessions>,
    /// Topic names by id, for Fetch and Produce v13 (KIP-516).
    pub(crate) topic_ids: Arc<crate::topic_ids::TopicIds>,
    /// Adds partitions to transactions as their leader (transaction version 2).
    pub(crate) txn_adds: Arc<crate::txn_adds::TxnPartitionAdder>,
}

impl Broker {
    /// Opens the node's partition logs and sets up its coordinators. Logs
    /// are matched to the metadata by the replica manager's tasks.
    pub fn open(config: BrokerConfig, replica: ReplicaConfig, group: GroupConfig, metadata: Metadata) -> Result<Arc<Broker>, OpenError> {
        config.validate()?;
        if group.min_session_timeout > group.max_session_timeout {
            return Err(OpenError::GroupSessionTimeouts);
        }
        let shutdown = CancellationToken::new();
        let replicas = ReplicaManager::open(replica, metadata.clone(), shutdown.clone())?;
        let markers = Arc::new(Markers(MarkerSender::new(replicas.clone())));
        let txn = TxnConfig { id_expiration: config.transactional_id_expiration, ..TxnConfig::default() };
        let coordinators = Arc::new(Coordinators::new(metadata.clone(), group, txn, markers));
        let metrics = Arc::new(Metrics::new(&replicas));
        let request_memory = crate::server::RequestMemory::new(config.queued_request_bytes_max);
        let fetch_sessions = Arc::new(crate::fetch_sessions::FetchSessions::new(config.fetch_session_cache_slots));
        let txn_adds = Arc::new(crate::txn_adds::TxnPartitionAdder::new(metadata.clone(), coordinators.transactions.clone()));
        let topic_ids = Arc::default();
        Ok(Arc::new(Broker { config, metadata, replicas, coordinators, metrics, shutdown, request_memory, fetch_sessions, topic_ids, txn_adds }))
    }

    /// What this broker registers with the controller.
    pub fn registration(&self) -> Registration {
        Registration {
            kafka_host: self.config.advertised_host.clone(),
            kafka_port: self.config.advertised_port,
            external: self.config.external.as_ref().map(|e| (e.advertised_host.clone(), e.advertised_port)),
            rpc_address: self.config.rpc_address.clone(),
            rack: self.config.rack.clone(),
        }
    }

    /// Asks the listener, every connection and every task to stop.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

/// The transaction coordinator's markers, written through the partitions'
/// leaders by the replica manager.
struct Markers(MarkerSender);

impl MarkerWriter for Markers {
    fn write<'a>(&'a self, markers: &'a [MarkerRequest]) -> MarkersWritten<'a> {
        Box::pin(async move {
            let wire: Vec<TxnMarker> = markers
                .iter()
                .map(|m| TxnMarker {
                    topic: m.topic.clone(),
                    partition: m.partition,
                    producer_id: m.producer_id,
                    producer_epoch: i32::from(m.producer_epoch),
                    commit: m.commit,
                    coordinator_epoch: m.coordinator_epoch,
                })
                .collect();
            self.0.write(&wire).await
        })
    }
}
