//! Test-only fault injection, compiled only with the `failpoints` feature
//! (the chaos harness builds `runnel` with it; release builds do not have
//! this module at all). Set at run time through the node's HTTP endpoint
//! (`PUT /failpoints/NAME`, body = value) or `RUNNEL_FAILPOINTS=NAME=VALUE,...`.
//!
//! - `fsync-delay-ms`: every log fsync first sleeps this long (a slow disk);
//! - `disk-full`: appends fail with ENOSPC (`true`/`false`);
//! - `ack-before-replication`: the broker acknowledges acks=all produces
//!   without waiting for the ISR (a deliberate bug, for the checker's self-test);
//! - `cleaner-crash-at`: the process aborts when a log cleaner pass reaches
//!   this step (see `crate::cleaner::step`; empty for none).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A failpoint setting that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FailpointError(String);

pub static FSYNC_DELAY_MS: AtomicU64 = AtomicU64::new(0);
pub static DISK_FULL: AtomicBool = AtomicBool::new(false);
pub static ACK_BEFORE_REPLICATION: AtomicBool = AtomicBool::new(false);
static CLEANER_CRASH_AT: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Sets one failpoint from its name and value.
pub fn set(name: &str, value: &str) -> Result<(), FailpointError> {
    let flag = |v: &str| match v.trim() {
        "true" | "1" | "on" => Ok(true),
        "false" | "0" | "off" | "" => Ok(false),
        other => Err(FailpointError(format!("{name} takes true or false, got {other:?}"))),
    };
    match name {
        "fsync-delay-ms" => {
            FSYNC_DELAY_MS.store(value.trim().parse().map_err(|_| FailpointError(format!("{name} takes milliseconds, got {value:?}")))?, Ordering::SeqCst)
        }
        "disk-full" => DISK_FULL.store(flag(value)?, Ordering::SeqCst),
        "ack-before-replication" => ACK_BEFORE_REPLICATION.store(flag(value)?, Ordering::SeqCst),
        "cleaner-crash-at" => {
            let step = value.trim();
            if !step.is_empty() && !crate::cleaner::STEPS.contains(&step) {
                return Err(FailpointError(format!("{name} takes one of {:?}, got {value:?}", crate::cleaner::STEPS)));
            }
            *CLEANER_CRASH_AT.lock().unwrap_or_else(|p| p.into_inner()) = step.to_string();
        }
        other => return Err(FailpointError(format!("unknown failpoint {other:?} (fsync-delay-ms, disk-full, ack-before-replication, cleaner-crash-at)"))),
    }
    tracing::warn!(failpoint = name, value, "failpoint set");
    Ok(())
}

/// `NAME=VALUE,...`, as RUNNEL_FAILPOINTS gives them.
pub fn set_all(spec: &str) -> Result<(), FailpointError> {
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').ok_or_else(|| FailpointError(format!("failpoint {pair:?} is not NAME=VALUE")))?;
        set(name, value)?;
    }
    Ok(())
}

pub(crate) fn disk_full() -> crate::error::Result<()> {
    if DISK_FULL.load(Ordering::SeqCst) {
        return Err(crate::error::StorageError::Io { context: "append (failpoint disk-full)".into(), source: std::io::Error::from_raw_os_error(28) });
    }
    Ok(())
}

pub(crate) fn fsync_delay() {
    let ms = FSYNC_DELAY_MS.load(Ordering::SeqCst);
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Aborts the process when `cleaner-crash-at` names `step`.
pub(crate) fn cleaner_crash_at(step: &str) {
    if *CLEANER_CRASH_AT.lock().unwrap_or_else(|p| p.into_inner()) == step {
        tracing::error!(step, "failpoint cleaner-crash-at: aborting");
        std::process::abort();
    }
}
