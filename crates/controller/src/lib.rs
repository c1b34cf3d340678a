//! Runnel's controller: cluster metadata owned by a Raft quorum, as Kafka's KRaft.
//!
//! # Layout
//! - [`metadata`]: the metadata model and its pure state machine (`apply`).
//! - [`types`]: openraft's type configuration and the wire encoding (bincode).
//! - [`store`]: the Raft log, vote and state machine on sled.
//! - [`network`]: the Raft network over tonic.
//! - [`tls`]: mutual TLS between nodes, reloaded when its files change.
//! - [`service`]: the gRPC services a controller serves (Raft, proposals, heartbeats).
//! - [`controller`]: [`Controller`], a running node: propose, forward, liveness.
//! - [`client`]: [`Metadata`], a broker's way to the metadata: the local
//!   controller, or a remote one over gRPC for broker-only nodes.

pub mod auto_balance;
pub mod balance;
pub mod client;
pub mod command;
pub mod configs;
pub mod controller;
pub mod features;
pub mod groups;
pub mod identity;
pub mod leader_balance;
pub mod metadata;
pub mod network;
pub mod pre_vote;
pub mod records;
pub mod service;
pub mod shared;
pub mod store;
pub mod tls;
pub mod types;

pub use client::{Metadata, PeerCheck, RemoteController};
pub use controller::{Controller, ControllerConfig, ProposeError};
pub use identity::LocalIdentity;
