//! Partition logs for Runnel.
//!
//! # Layout
//! - [`batch`]: the RecordBatch v2 header view: parse, validate CRC, stamp.
//! - `segment`: one `.log` file with its `.index` and `.timeindex`.
//! - [`log`]: [`PartitionLog`], a partition's segments: append, read, flush
//!   (group commit), truncate, retention, recovery.
//! - [`cleaner`]: log compaction, one pass over a log with
//!   `cleanup.policy=compact` ([`cleaner::OffsetMap`], `PartitionLog::clean`).
//! - `merge`: the crash-safe switch when the cleaner makes one segment of
//!   several.
//! - [`compression`]: Kafka's codecs; decompression within a bound, and
//!   record sets decoded safely ([`compression::decode_record_sets`]).
//! - [`producer_state`]: idempotent-producer sequences per partition.
//! - [`snapshot`]: producer-state snapshots and transaction indexes, so a
//!   log opens without reading every batch header.
//! - [`manager`]: [`LogManager`], a data directory of partition logs.
//! - [`files`]: [`files::FileCache`], the bounded set of open segment files a node's logs share.
//! - [`progress`]: [`progress::Progress`], periodic log lines for loops over many logs.
//! - [`config`]: [`LogConfig`] and the [`FlushPolicy`].
//! - [`types`]: [`Offset`] and [`LeaderEpoch`].
//!
//! Storage knows offsets, batches and bytes; it knows nothing of Kafka API
//! versions, topics' metadata, or the network.

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod compression;
pub mod config;
pub mod error;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod files;
pub mod log;
pub mod manager;
mod merge;
pub mod producer_state;
pub mod progress;
mod segment;
pub mod snapshot;
pub mod types;

pub use config::{FlushPolicy, InvalidConfig, LogConfig};
pub use error::{Result, StorageError};
pub use log::{AppendInfo, OpenReport, PartitionLog};
pub use manager::{LogManager, TopicPartition};
pub use types::{LeaderEpoch, Offset};
