//! Runnel's broker: the Kafka listener and what it serves.
//!
//! # Layout
//! - [`server`]: listener, connection limits, per-connection reader and writer.
//! - `api/`: one module per Kafka API (`produce.rs`, `fetch.rs`, ...), each a
//!   function from a decoded request to its response.
//! - [`broker`]: [`Broker`], the logs of the replicas the controller assigns
//!   here, the metadata it serves, and the high-watermark rule of the flush policy.
//! - [`topics`]: controller errors as Kafka error codes; topic configs as log settings.
//! - [`replica`]: the leader side of replication: follower progress, high
//!   watermark, ISR changes.
//! - [`replication`]: the replication gRPC service and the follower fetchers.
//! - [`admin`]: the admin gRPC service behind `runnelctl`.
//! - [`groups`]: the consumer-group coordinator.
//! - [`metrics`]: what `/metrics` reports.
//! - [`config`]: the settings, [`BrokerConfig`].

pub mod admin;
mod admin_groups;
mod api;
pub mod broker;
pub mod config;
pub mod groups;
pub mod metrics;
pub mod replica;
pub mod replication;
pub mod server;
pub mod topics;

pub use broker::Broker;
pub use config::BrokerConfig;
