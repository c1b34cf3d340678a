//! Runnel's broker: the Kafka listener and what it serves.
//!
//! # Layout
//! - [`server`]: listener, connection limits, per-connection reader and writer.
//! - `api/`: one module per Kafka API (`produce.rs`, `fetch.rs`, ...), each a
//!   function from a decoded request to its response.
//! - [`broker`]: [`Broker`], the node's topics and logs and the high-watermark
//!   rule of its flush policy.
//! - [`topics`]: the persisted topic registry and topic config validation.
//! - [`config`]: [`BrokerConfig`].

mod api;
pub mod broker;
pub mod config;
pub mod server;
pub mod topics;

pub use broker::Broker;
pub use config::BrokerConfig;
