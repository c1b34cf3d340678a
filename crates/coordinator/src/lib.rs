//! Runnel's coordinators: state machines without I/O whose state is
//! persisted through the controller's Raft log, active on the node that
//! leads the controller quorum.
//!
//! # Layout
//! - [`term`]: when a coordinator may act (leading, with its term's state applied).
//! - [`group`]: the consumer-group coordinator; [`group::state`] is the
//!   classic rebalance protocol of one group, as pure code.
//! - [`txn`]: the transaction coordinator; [`txn::state`] is the
//!   transaction protocol of one transactional id, as pure code.
//! - [`producer_ids`]: producer ids for idempotent and transactional
//!   producers, in blocks reserved from the controller.
//! - [`Coordinators`]: all of them, and FindCoordinator's answer.
//!
//! The coordinators speak Kafka's error codes (their protocols are Kafka's),
//! but know nothing of the wire format, sockets or logs.

pub mod group;
pub mod producer_ids;
pub mod term;
pub mod txn;

use std::sync::Arc;

use runnel_controller::Metadata;
use runnel_controller::metadata::BrokerRecord;
use runnel_protocol::kafka_protocol::error::ResponseError;

pub use group::{GroupConfig, GroupCoordinator};
pub use producer_ids::ProducerIdManager;
pub use txn::{MarkerRequest, MarkerWriter, MarkersWritten, TransactionCoordinator, TxnConfig};

/// What FindCoordinator asks for (its `key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorKind {
    Group,
    Transaction,
}

impl CoordinatorKind {
    /// Kafka's key type codes: 0 for groups, 1 for transactions.
    pub fn from_key_type(key_type: i8) -> Option<CoordinatorKind> {
        match key_type {
            0 => Some(CoordinatorKind::Group),
            1 => Some(CoordinatorKind::Transaction),
            _ => None,
        }
    }
}

/// Why FindCoordinator has no node to name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FindError {
    pub code: ResponseError,
    pub message: String,
}

/// Every coordinator of this node.
pub struct Coordinators {
    metadata: Metadata,
    pub groups: Arc<GroupCoordinator>,
    pub transactions: Arc<TransactionCoordinator>,
    pub producer_ids: Arc<ProducerIdManager>,
}

impl Coordinators {
    pub fn new(metadata: Metadata, group_config: GroupConfig, txn_config: TxnConfig, markers: Arc<dyn MarkerWriter>) -> Coordinators {
        let producer_ids = Arc::new(ProducerIdManager::new(metadata.clone()));
        Coordinators {
            groups: GroupCoordinator::new(metadata.clone(), group_config),
            transactions: TransactionCoordinator::new(metadata.clone(), producer_ids.clone(), markers, txn_config),
            producer_ids,
            metadata,
        }
    }

    /// The broker that coordinates every group and every transaction: the
    /// controller leader's node, when it is a live broker.
    pub fn coordinator_node(&self) -> Option<BrokerRecord> {
        coordinator_node(&self.metadata)
    }

    /// FindCoordinator: the node for `key` of `kind`.
    pub fn find(&self, kind: Option<CoordinatorKind>, key: &str) -> Result<BrokerRecord, FindError> {
        let refuse = |code, message: &str| Err(FindError { code, message: message.to_string() });
        match kind {
            Some(CoordinatorKind::Group | CoordinatorKind::Transaction) => {}
            None => return refuse(ResponseError::InvalidRequest, "unknown coordinator key type"),
        }
        if key.is_empty() {
            return refuse(ResponseError::InvalidRequest, "the group or transactional id must not be empty");
        }
        match self.coordinator_node() {
            Some(node) => Ok(node),
            None => refuse(ResponseError::CoordinatorNotAvailable, "no live broker leads the controller quorum right now"),
        }
    }
}

/// The controller leader's node, when it is a live broker.
pub fn coordinator_node(metadata: &Metadata) -> Option<BrokerRecord> {
    let (leader, _) = metadata.leader();
    let state = metadata.state();
    leader.and_then(|id| state.image.brokers.get(&id)).filter(|b| !b.fenced).cloned()
}
