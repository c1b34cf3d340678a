//! gRPC services and messages generated from `proto/` at build time.
//!
//! # Layout
//! - [`raft`]: Raft RPCs between controllers (opaque openraft payloads).
//! - [`controller`]: proposals forwarded to the Raft leader, broker heartbeats.
//! - [`replication`]: followers fetching partition data from leaders.
//! - [`admin`]: the admin API behind `runnelctl`.
//! - [`coordinator`]: partition leaders' requests to the transaction coordinator.

#![allow(clippy::all, missing_docs)]

pub mod raft {
    tonic::include_proto!("runnel.raft");
}

pub mod controller {
    tonic::include_proto!("runnel.controller");
}

pub mod replication {
    tonic::include_proto!("runnel.replication");
}

pub mod admin {
    tonic::include_proto!("runnel.admin");
}

pub mod coordinator {
    tonic::include_proto!("runnel.coordinator");
}
