//! Whether this broker's log directory takes writes, as its heartbeats
//! report it to the controller. Pure bookkeeping, unit-tested event by event.
//!
//! # The rules
//! - A write error (a full disk) fails the directory until a probe write
//!   goes through; an fsync error fails it until the process restarts (the
//!   kernel may have dropped written pages, so later fsyncs prove nothing).
//! - A probe runs only once a heartbeat has told the controller of every
//!   error seen so far, so the controller fences the broker before it can be
//!   unfenced (a quick probe must not hide a failure the controller never
//!   heard of).
//! - A probe clears only the errors seen before it started: one that
//!   arrives while it runs keeps the directory failed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct StorageHealth {
    /// Errors noted so far.
    errors: AtomicU64,
    /// Errors a delivered heartbeat has reported.
    reported: AtomicU64,
    /// Errors a successful probe has cleared.
    cleared: AtomicU64,
    /// An fsync failed: nothing clears it in this process.
    fsync_failed: AtomicBool,
}

impl StorageHealth {
    /// Whether the log directory is failed now.
    pub fn failed(&self) -> bool {
        self.fsync_failed.load(Ordering::Acquire) || self.errors.load(Ordering::Acquire) > self.cleared.load(Ordering::Acquire)
    }

    /// Whether an fsync failed (only a restart recovers).
    pub fn fsync_failed(&self) -> bool {
        self.fsync_failed.load(Ordering::Acquire)
    }

    /// Notes an error; true when the directory was healthy until now.
    pub fn note_error(&self, fsync: bool) -> bool {
        let was_failed = self.failed();
        if fsync {
            self.fsync_failed.store(true, Ordering::Release);
        }
        self.errors.fetch_add(1, Ordering::AcqRel);
        !was_failed
    }

    /// The errors a heartbeat about to be sent reports, with whether it
    /// reports the directory failed.
    pub fn report(&self) -> (u64, bool) {
        let errors = self.errors.load(Ordering::Acquire);
        (errors, self.failed())
    }

    /// A heartbeat made by [`Self::report`] was delivered.
    pub fn reported(&self, errors: u64, failed: bool) {
        if failed {
            self.reported.fetch_max(errors, Ordering::AcqRel);
        }
    }

    /// Whether a probe may run now, and the errors it would clear.
    pub fn probe_start(&self) -> Option<u64> {
        if !self.failed() || self.fsync_failed() {
            return None;
        }
        let errors = self.errors.load(Ordering::Acquire);
        (self.reported.load(Ordering::Acquire) >= errors).then_some(errors)
    }

    /// A probe begun at `errors` went through; true when the directory is
    /// healthy again (no error arrived meanwhile).
    pub fn probe_succeeded(&self, errors: u64) -> bool {
        self.cleared.fetch_max(errors, Ordering::AcqRel);
        !self.failed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_directory_needs_no_probe() {
        let h = StorageHealth::default();
        assert!(!h.failed());
        assert_eq!(h.probe_start(), None);
        assert_eq!(h.report(), (0, false));
    }

    #[test]
    fn no_probe_before_a_heartbeat_has_reported_the_failure() {
        let h = StorageHealth::default();
        assert!(h.note_error(false));
        assert!(h.failed());
        assert_eq!(h.probe_start(), None, "probing before the controller heard of the failure");
        // A heartbeat that did not get through reports nothing.
        let (errors, failed) = h.report();
        assert!(failed);
        assert_eq!(h.probe_start(), None);
        h.reported(errors, failed);
        assert_eq!(h.probe_start(), Some(1));
        assert!(h.probe_succeeded(1));
        assert!(!h.failed());
    }

    #[test]
    fn an_error_during_a_probe_keeps_the_directory_failed() {
        let h = StorageHealth::default();
        h.note_error(false);
        let (errors, failed) = h.report();
        h.reported(errors, failed);
        let probe = h.probe_start().unwrap();
        assert!(!h.note_error(false), "already failed");
        assert!(!h.probe_succeeded(probe), "the error that came during the probe was wiped");
        assert!(h.failed());
        // The new error must be reported before the next probe.
        assert_eq!(h.probe_start(), None);
        let (errors, failed) = h.report();
        h.reported(errors, failed);
        let probe = h.probe_start().unwrap();
        assert!(h.probe_succeeded(probe));
    }

    #[test]
    fn a_failed_fsync_is_never_cleared() {
        let h = StorageHealth::default();
        h.note_error(true);
        let (errors, failed) = h.report();
        h.reported(errors, failed);
        assert_eq!(h.probe_start(), None, "no probe can prove the lost pages reached the disk");
        assert!(h.failed() && h.fsync_failed());
        assert!(!h.probe_succeeded(errors));
        assert!(h.failed());
    }

    #[test]
    fn a_healthy_heartbeat_reports_nothing() {
        let h = StorageHealth::default();
        let (errors, failed) = h.report();
        h.reported(errors, failed);
        h.note_error(false);
        assert_eq!(h.probe_start(), None);
    }
}
