//! Runnel's replica manager: the partitions this node hosts, the leader-side
//! rule of replication, and the replication traffic between brokers.
//!
//! # Layout
//! - [`engine`]: [`LeaderEngine`], the leader-side rule as pure code:
//!   follower fetches, flushes, ticks and metadata in; high-watermark moves,
//!   wake-ups and ISR proposals out. Tested event by event.
//! - [`partition`]: [`Partition`], one hosted replica: its log, its metadata
//!   record, the engine while it leads, and its own wake-ups.
//! - [`manager`]: [`ReplicaManager`], every hosted partition kept in step
//!   with the metadata, and the node's ISR, retention and flush tasks.
//! - [`membership`]: this broker's registration, lease and log-directory
//!   health, which decide whether it may lead at all.
//! - [`service`]: the Replication gRPC service that followers fetch from.
//! - [`fetcher`]: the followers' fetchers, one per leader broker.
//! - [`markers`]: transaction markers, written by partition leaders for the
//!   transaction coordinator.
//! - [`cleaner`]: the node's log cleaner thread for compacted topics.
//! - [`config`]: [`ReplicaConfig`], and topic configs as log settings.
//! - [`timings`]: histograms of each replication stage, for `/metrics`.
//! - [`throttle`]: the byte-rate limit on followers' catch-up fetches.
//!
//! The replica manager knows partitions, offsets, epochs and the controller's
//! records; it knows nothing of the Kafka wire format (the broker maps its
//! errors to Kafka codes) or of consumer groups.

pub mod cleaner;
pub mod config;
pub mod engine;
pub mod fetcher;
pub mod health;
pub mod manager;
pub mod markers;
pub mod membership;
pub mod partition;
pub mod service;
pub mod throttle;
pub mod timings;

pub use config::ReplicaConfig;
pub use engine::LeaderEngine;
pub use manager::{LeaderError, ReplicaManager};
pub use membership::{Membership, Registration};
pub use partition::{AppendError, Appended, CommitError, Partition};
