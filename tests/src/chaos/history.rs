//! The history of a chaos run: every operation the workloads invoke and how
//! it ended, every observation of the cluster, and the faults, one JSON
//! object per line with a nanosecond timestamp from the start of the run.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// How an operation ended, as Jepsen names it: `info` is indeterminate (a
/// timeout or an ambiguous error: it may or may not have happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A producer sends `value`; ok carries its partition and offset.
    Send,
    /// A consumer read `value` at `partition`/`offset`.
    Read,
    /// A group member committed `offset` (the next to read) for `partition`.
    Commit,
    /// The cluster as the observer saw it: leader, leader epoch, high watermark, ISR size.
    Observe,
    /// A transaction (`value` names it) of the transactional workload ended:
    /// ok committed, fail aborted, info either.
    Txn,
    /// The nemesis started a fault (`value` names it) or healed it.
    Fault,
    Heal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Nanoseconds since the start of the run.
    pub t: u64,
    pub process: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub f: Op,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub leader: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub leader_epoch: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub isr: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl Event {
    pub fn new(process: &str, kind: Kind, f: Op) -> Event {
        Event {
            t: 0,
            process: process.to_string(),
            kind,
            f,
            value: None,
            partition: None,
            offset: None,
            leader: None,
            leader_epoch: None,
            isr: None,
            error: None,
        }
    }

    pub fn value(mut self, v: impl Into<String>) -> Event {
        self.value = Some(v.into());
        self
    }

    pub fn at(mut self, partition: i32, offset: i64) -> Event {
        self.partition = Some(partition);
        self.offset = Some(offset);
        self
    }

    pub fn error(mut self, e: impl Into<String>) -> Event {
        self.error = Some(e.into());
        self
    }
}

/// The events so far, and the JSONL file they are also written to.
type Recorded = (Vec<Event>, Option<std::io::BufWriter<std::fs::File>>);

/// Records events in memory and, if given a file, as JSONL.
#[derive(Clone)]
pub struct History {
    start: Instant,
    inner: Arc<Mutex<Recorded>>,
}

impl History {
    pub fn new(file: Option<&std::path::Path>) -> std::io::Result<History> {
        let writer = match file {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
            None => None,
        };
        Ok(History { start: Instant::now(), inner: Arc::new(Mutex::new((Vec::new(), writer))) })
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn record(&self, mut e: Event) {
        e.t = self.now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = inner.1.as_mut() {
            let _ = serde_json::to_writer(&mut *w, &e);
            let _ = w.write_all(b"\n");
        }
        inner.0.push(e);
    }

    /// An event that carries its own timestamp (from a member process).
    pub fn record_raw(&self, e: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = inner.1.as_mut() {
            let _ = serde_json::to_writer(&mut *w, &e);
            let _ = w.write_all(b"\n");
        }
        inner.0.push(e);
    }

    /// Every event so far, in time order.
    pub fn events(&self) -> Vec<Event> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = inner.1.as_mut() {
            let _ = w.flush();
        }
        let mut events = inner.0.clone();
        events.sort_by_key(|e| e.t);
        events
    }
}
