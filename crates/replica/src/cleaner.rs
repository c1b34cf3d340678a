//! The node's log cleaner: one thread that takes the compacted logs
//! (`cleanup.policy` with `compact`) in turn and runs a pass over each that
//! is due (see `runnel_storage::cleaner` for what a pass does), then waits
//! `backoff` before the next round. Its memory is bounded by the offset
//! map's size; its I/O by an optional byte rate.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use runnel_storage::LogManager;
use runnel_storage::cleaner::OffsetMap;
use tokio_util::sync::CancellationToken;

/// The cleaner's settings (Kafka's `log.cleaner.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// Memory for the offset map (`log.cleaner.dedupe.buffer.size`): a pass
    /// cleans as many dirty segments as have their keys fit.
    pub dedupe_buffer_bytes: usize,
    /// Bytes per second a pass reads and writes, at most
    /// (`log.cleaner.io.max.bytes.per.second`); `None`: no limit.
    pub io_bytes_per_sec: Option<u64>,
    /// Time between rounds over the logs (`log.cleaner.backoff.ms`).
    pub backoff: Duration,
}

impl CleanerConfig {
    pub const DEFAULT_DEDUPE_BUFFER_BYTES: usize = 128 << 20;
    pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(15);
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig { dedupe_buffer_bytes: Self::DEFAULT_DEDUPE_BUFFER_BYTES, io_bytes_per_sec: None, backoff: Self::DEFAULT_BACKOFF }
    }
}

/// What the cleaner has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct CleanerMetrics {
    /// Passes that replaced at least one segment.
    pub passes: Counter,
    /// Bytes passes read and wrote (mapping and copying), counted as they go.
    pub io_bytes: Counter,
    /// Bytes the cleaned segments shrank by.
    pub bytes_reclaimed: Counter,
    pub records_removed: Counter,
    /// Passes that failed (the log is left as it was).
    pub errors: Counter,
    /// Unix time in seconds when the last round over the logs ended.
    pub last_round_seconds: Gauge<f64, AtomicU64>,
    /// Keys the offset map held in the last pass.
    pub map_keys: Gauge,
}

/// Runs rounds until `shutdown`; blocking: run it on its own thread.
/// `dynamic_rate`, when not 0, overrides `config.io_bytes_per_sec` (the
/// dynamic broker config `log.cleaner.io.max.bytes.per.second`).
pub fn run(logs: Arc<LogManager>, config: CleanerConfig, dynamic_rate: &AtomicU64, metrics: Arc<CleanerMetrics>, shutdown: CancellationToken) {
    let mut map = OffsetMap::with_memory(config.dedupe_buffer_bytes);
    while !shutdown.is_cancelled() {
        for (tp, log) in logs.all() {
            if shutdown.is_cancelled() {
                return;
            }
            if !log.is_compacted() {
                continue;
            }
            let started = Instant::now();
            let mut done = 0u64;
            let mut throttle = |bytes: u64| {
                // Counted as the pass goes, so a long pass shows.
                metrics.io_bytes.inc_by(bytes);
                let dynamic = dynamic_rate.load(std::sync::atomic::Ordering::Relaxed);
                let Some(rate) = (dynamic > 0).then_some(dynamic).or(config.io_bytes_per_sec) else { return };
                done += bytes;
                let due = Duration::from_secs_f64(done as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            };
            match log.clean(&mut map, runnel_storage::log::now_ms(), &mut throttle) {
                Ok(Some(report)) => {
                    metrics.passes.inc();
                    metrics.bytes_reclaimed.inc_by(report.bytes_before.saturating_sub(report.bytes_after));
                    metrics.records_removed.inc_by(report.records_removed);
                    metrics.map_keys.set(report.keys as i64);
                    tracing::debug!(partition = %tp, seconds = started.elapsed().as_secs_f64(), "cleaner pass done");
                }
                Ok(None) => {}
                Err(e) => {
                    metrics.errors.inc();
                    tracing::warn!(partition = %tp, error = %e, "log cleaner pass failed; the log is as it was");
                }
            }
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        metrics.last_round_seconds.set(now);
        let until = Instant::now() + config.backoff;
        while !shutdown.is_cancelled() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100).min(config.backoff));
        }
    }
}
