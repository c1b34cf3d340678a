//! A node-wide byte-rate limit on followers' catch-up traffic (the
//! catching-up fetch lane, see [`crate::fetcher`]), in the spirit of
//! Kafka's `follower.replication.throttled.rate`: a follower copying a
//! backlog (a moved partition, a node back from a restart, a burst of acks=1
//! writes) writes and fsyncs at most this fast, leaving the disk to the
//! partitions that are in sync and the producers that wait on them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The longest one wait lasts, so a huge reply never stalls its lane for long.
const WAIT_MAX: Duration = Duration::from_secs(5);

pub struct Throttle {
    /// 0: no limit. Changed at run time (the dynamic broker config
    /// `follower.replication.throttled.rate`).
    bytes_per_sec: AtomicU64,
    /// When the bytes taken so far are paid for, at the rate.
    paid_until: Mutex<Option<Instant>>,
}

impl Throttle {
    /// A limit of `bytes_per_sec`; 0 for none.
    pub fn new(bytes_per_sec: u64) -> Throttle {
        Throttle { bytes_per_sec: AtomicU64::new(bytes_per_sec), paid_until: Mutex::new(None) }
    }

    /// The limit; 0 for none.
    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec.load(Ordering::Relaxed)
    }

    /// Sets the limit (0: none); returns whether it changed.
    pub fn set_bytes_per_sec(&self, rate: u64) -> bool {
        self.bytes_per_sec.swap(rate, Ordering::Relaxed) != rate
    }

    /// How long a lane that just took `bytes` waits before fetching again:
    /// the rate spread over every lane of the node, never banked while idle.
    pub fn charge(&self, bytes: usize, now: Instant) -> Duration {
        let rate = self.bytes_per_sec();
        if rate == 0 {
            return Duration::ZERO;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let mut paid = self.paid_until.lock().unwrap_or_else(|p| p.into_inner());
        let from = paid.map_or(now, |p| p.max(now));
        let until = from + cost;
        *paid = Some(until);
        (until - now).min(WAIT_MAX)
    }

    /// Takes `bytes` and waits as the rate says.
    pub async fn take(&self, bytes: usize) {
        let wait = self.charge(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_paid_for_at_the_rate_across_lanes_and_idle_time_is_not_banked() {
        let t = Throttle::new(1_000_000);
        let start = Instant::now();
        assert_eq!(t.charge(500_000, start), Duration::from_millis(500));
        // Another lane taking as much right away waits behind the first.
        assert_eq!(t.charge(500_000, start), Duration::from_secs(1));
        // After a long idle spell the allowance does not pile up.
        let later = start + Duration::from_secs(60);
        assert_eq!(t.charge(250_000, later), Duration::from_millis(250));
        // One huge reply waits at most WAIT_MAX.
        assert_eq!(t.charge(100_000_000, later + Duration::from_secs(1)), WAIT_MAX);
    }

    #[tokio::test]
    async fn taking_waits_at_least_what_the_rate_says() {
        let t = Throttle::new(10_000_000);
        let start = Instant::now();
        t.take(1_000_000).await;
        t.take(1_000_000).await;
        // Two 1 MB takes at 10 MB/s: the second is paid for 200 ms in.
        assert!(start.elapsed() >= Duration::from_millis(200), "{:?}", start.elapsed());
    }
}
