//! Progress lines for long loops over many partitions (opening, creating or
//! removing logs), so an operator waiting on a node with 100,000 of them
//! sees that it works and how far it got.

use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(5);

/// Logs `what` with the count done so far, at most every five seconds.
pub struct Progress {
    what: &'static str,
    total: usize,
    started: Instant,
    last: Instant,
}

impl Progress {
    pub fn new(what: &'static str, total: usize) -> Progress {
        let now = Instant::now();
        Progress { what, total, started: now, last: now }
    }

    /// Records that `done` of the total (0: not known ahead) are done.
    pub fn step(&mut self, done: usize) {
        if self.last.elapsed() >= EVERY {
            self.last = Instant::now();
            if self.total > 0 {
                tracing::info!(done, total = self.total, "{}", self.what);
            } else {
                tracing::info!(done, "{}", self.what);
            }
        }
    }

    /// The time since the loop started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
