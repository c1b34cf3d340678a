//! The Kafka wire dialect Runnel speaks.
//!
//! # Layout
//! - [`frame`]: the 4-byte length prefix, checked before anything is allocated.
//! - [`request`]: request header and body decoding on the `kafka-protocol` crate,
//!   with the KIP-511 ApiVersions fallback; response encoding.
//! - [`versions`]: the API version ranges Runnel advertises and accepts.
//! - [`alloc`]: a global allocator that keeps a hostile array length in a request
//!   from aborting the process.
//!
//! This crate does no I/O and knows nothing about logs or topics.

pub mod alloc;
pub mod frame;
pub mod request;
pub mod scram;
pub mod versions;

pub use kafka_protocol;
pub use request::{DecodeError, Decoded, EncodeError, Request, decode_request, encode_response};
