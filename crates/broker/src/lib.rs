//! Runnel's broker: the Kafka listener and what it serves.
//!
//! # Layout
//! - [`server`]: listener, connection limits, per-connection reader and writer.
//! - [`tls`] and [`sasl`]: the listeners' security protocols (TLS, SASL);
//!   [`acl`]: who may do what (Kafka's ACLs).
//! - `api/`: one module per Kafka API (`produce.rs`, `fetch.rs`,
//!   `join_group.rs`, ...), each a function from a decoded request to its
//!   response, given only the handles it needs.
//! - [`broker`]: [`Broker`], the handles the listener and the admin API
//!   serve from: the replica manager, the coordinators, the metadata.
//! - [`topics`]: topic changes through the controller, with Kafka's error codes.
//! - [`admin`]: the admin gRPC service behind `runnelctl`.
//! - [`metrics`]: what `/metrics` reports.
//! - [`config`]: the settings, [`BrokerConfig`].
//!
//! Partitions, replication and leases live in `runnel-replica`; consumer
//! groups and producer ids in `runnel-coordinator`.

pub mod acl;
pub mod admin;
mod api;
pub mod broker;
pub mod config;
mod fetch_sessions;
pub mod metrics;
pub mod sasl;
pub mod server;
pub mod tls;
mod topic_ids;
pub mod topics;
pub mod txn_adds;

pub use api::Client;
pub use broker::Broker;
pub use config::BrokerConfig;
