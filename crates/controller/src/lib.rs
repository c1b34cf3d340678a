//! Runnel's controller: cluster metadata owned by a Raft quorum, as Kafka's KRaft.
//!
//! # Layout
//! - [`metadata`]: the metadata model and its pure state machine (`apply`).
//! - [`types`]: openraft's type configuration and the wire encoding (bincode).
//! - [`store`]: the Raft log, vote and state machine on sled.

pub mod metadata;
pub mod store;
pub mod types;
