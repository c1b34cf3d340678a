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

/// The version of the controller's encodings: Raft log entries, the vote,
/// snapshots, proposals and their results, and the metadata stream. A node
/// writes it into its Raft store and sends it with every message between
/// nodes; it reads what carries this version or an earlier one and refuses a
/// later one with a message that names both.
///
/// Version 1 is the bincode layout (standard configuration, through serde)
/// of the types as commit 2a9fcc0 wrote them; data from before versions were
/// recorded has that layout. Version 2 adds the FinalizeFeatures command
/// and the finalized level after the image in snapshots and the metadata
/// stream. The format a node writes is the cluster's finalized feature level
/// ([`crate::features`]); this is the highest it reads. `tests/compat/`
/// freezes one sample of every record kind, so a change to a layout fails CI
/// instead of old data. Enums are append-only: a new command is a new
/// variant at the end, which nodes write only once the cluster's feature
/// level allows it.
pub const FORMAT_VERSION: u32 = crate::features::LEVEL_MAX as u32;

/// A message or record of a later format than this binary reads.
pub fn check_format(version: u32, what: &str) -> Result<(), String> {
    if version > FORMAT_VERSION {
        return Err(format!(
            "{what} is in controller format {version}, and this binary reads formats up to {FORMAT_VERSION}: it was written by a newer Runnel; \
             run that version (or a later one) here"
        ));
    }
    Ok(())
}

/// bincode with its standard configuration, through serde (openraft's types
/// implement serde only).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
}

/// Most bytes one decoded value may claim. bincode allocates what a length
/// prefix says before reading it; without a limit, damaged bytes claiming
/// exabytes abort the process (found by `tests/decode_fuzz.rs`). The
/// limit changes nothing in the encoding.
const DECODE_BYTES_MAX: usize = 1 << 30;

/// The configuration every decode uses: the standard one, with the limit.
pub fn decode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_BYTES_MAX>()
}

/// Decodes a whole value: bytes left over mean the bytes are not a `T` (a
/// layout changed, or another record kind), and are an error.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, decode_config())?;
    if used != bytes.len() {
        return Err(bincode::error::DecodeError::OtherString(format!(
            "{} bytes left over after decoding {} of {}: not a {}",
            bytes.len() - used,
            used,
            bytes.len(),
            std::any::type_name::<T>()
        )));
    }
    Ok(value)
}
