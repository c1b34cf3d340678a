//! How long each stage of replication takes, as histograms for `/metrics`,
//! so the cause of a slow acks=all acknowledgement shows in production: the
//! leader's fsync, the wait for the ISR after it (followers fetching,
//! writing and fsyncing, and the high watermark moving), and, on
//! followers, each fetch round that brought records and its fsync.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

fn stage_histogram() -> Histogram {
    // 50 µs to about 13 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 19))
}

pub struct ReplicationTimings {
    /// An acknowledgement's wait for the leader's own fsync of its records
    /// (shared fsyncs included: the wait is what the producer sees).
    pub leader_flush: Histogram,
    /// An acks=all acknowledgement's wait after the leader's fsync until
    /// the high watermark passes its records.
    pub isr_wait: Histogram,
    /// A follower's fetch round that brought records: from sending the
    /// fetch to having appended and fsynced what came back.
    pub follower_round: Histogram,
    /// A follower's fsync of the records one fetch brought.
    pub follower_flush: Histogram,
}

impl Default for ReplicationTimings {
    fn default() -> Self {
        ReplicationTimings {
            leader_flush: stage_histogram(),
            isr_wait: stage_histogram(),
            follower_round: stage_histogram(),
            follower_flush: stage_histogram(),
        }
    }
}
