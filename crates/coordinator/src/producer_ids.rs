//! Producer ids for idempotent producers: never handed out twice in the
//! cluster's life, reserved from the controller in blocks.

use std::ops::Range;

use runnel_controller::metadata::{Command, CommandOk};
use runnel_controller::{Metadata, ProposeError};

/// Ids reserved per controller round trip.
const BLOCK: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error(transparent)]
    Propose(#[from] ProposeError),
    #[error("the controller refused a producer id block: {0}")]
    Refused(String),
}

pub struct ProducerIdManager {
    metadata: Metadata,
    /// Ids reserved and not yet handed out.
    block: tokio::sync::Mutex<Range<i64>>,
}

impl ProducerIdManager {
    pub fn new(metadata: Metadata) -> ProducerIdManager {
        ProducerIdManager { metadata, block: tokio::sync::Mutex::new(0..0) }
    }

    /// A producer id never handed out before.
    pub async fn next(&self) -> Result<i64, ProducerIdError> {
        let mut block = self.block.lock().await;
        if block.is_empty() {
            match self.metadata.propose(Command::AllocateProducerIds { count: BLOCK }).await? {
                Ok(CommandOk::ProducerIds { first, count }) => *block = first..first + count,
                Ok(other) => return Err(ProducerIdError::Refused(format!("unexpected answer {other:?}"))),
                Err(e) => return Err(ProducerIdError::Refused(e.to_string())),
            }
        }
        Ok(block.next().expect("a fresh block is non-empty"))
    }
}
