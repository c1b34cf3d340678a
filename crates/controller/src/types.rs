//! openraft's type configuration for the metadata quorum.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::metadata::{Command, CommandResult};

/// What is proposed through Raft: one metadata command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request(pub Command);

/// What applying an entry returned. Blank and membership entries have no
/// command, so no result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response(pub Option<CommandResult>);

openraft::declare_raft_types!(
    /// Runnel's controller quorum.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub use crate::records::NodeId;

/// bincode with its standard configuration, through serde (openraft's types
/// implement serde only).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map(|(v, _)| v)
}
