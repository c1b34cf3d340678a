//! The checker: what a run's history and the final read of every partition
//! say about safety. Liveness and progress depend on when faults started and
//! healed and are judged in `figures`.
//!
//! Safety:
//! - no acknowledged write is missing from the final log;
//! - each (partition, offset) holds one value: whatever a consumer read at an
//!   offset is what the final log holds there (so nothing was read past the
//!   high watermark and later truncated);
//! - no value appears twice in the final log (the producers are idempotent);
//! - per producer and partition, acknowledgement order is offset order;
//! - committed group offsets never go backwards;
//! - observed high watermarks and leader epochs never go backwards.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::history::{Event, Kind, Op};

/// Every partition read from its start to its end after the faults healed.
#[derive(Debug, Clone, Default)]
pub struct FinalLog {
    pub partitions: BTreeMap<i32, Vec<(i64, String)>>,
}

/// A read that disagrees with the final log: (process, partition, offset, read, final).
pub type InconsistentRead = (String, i32, i64, String, Option<String>);

/// An acknowledged write found elsewhere: (producer, partition, acknowledged offset, where the final log has it).
pub type MovedWrite = (String, i32, i64, Option<(i32, i64)>);

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub acknowledged: usize,
    pub failed: usize,
    pub indeterminate: usize,
    /// Acknowledged values missing from the final log.
    pub lost: Vec<String>,
    /// Values at more than one offset.
    pub duplicated: Vec<String>,
    /// (producer, partition, offset acknowledged earlier, offset acknowledged later).
    pub reordered: Vec<(String, i32, i64, i64)>,
    /// Reads that disagree with the final log: (process, partition, offset, read, final).
    pub inconsistent_reads: Vec<InconsistentRead>,
    /// Acknowledged writes whose offset in the final log is not the acknowledged one.
    pub moved: Vec<MovedWrite>,
    /// (partition, from, to) of committed group offsets.
    pub commits_backwards: Vec<(i32, i64, i64)>,
    /// (partition, what, from, to) for high watermarks and leader epochs.
    pub observed_backwards: Vec<(i32, &'static str, i64, i64)>,
}

impl Report {
    /// Safety violations, one line each; empty when the run is safe.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let few = |xs: &[String]| xs.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if !self.lost.is_empty() {
            v.push(format!("{} acknowledged writes lost: {}", self.lost.len(), few(&self.lost)));
        }
        if !self.duplicated.is_empty() {
            v.push(format!("{} values duplicated: {}", self.duplicated.len(), few(&self.duplicated)));
        }
        if !self.reordered.is_empty() {
            v.push(format!("{} acknowledgements out of offset order, first {:?}", self.reordered.len(), self.reordered[0]));
        }
        if !self.inconsistent_reads.is_empty() {
            v.push(format!("{} reads disagree with the final log, first {:?}", self.inconsistent_reads.len(), self.inconsistent_reads[0]));
        }
        if !self.moved.is_empty() {
            v.push(format!("{} acknowledged writes are not at their acknowledged offset, first {:?}", self.moved.len(), self.moved[0]));
        }
        if !self.commits_backwards.is_empty() {
            v.push(format!("committed offsets went backwards {} times, first {:?}", self.commits_backwards.len(), self.commits_backwards[0]));
        }
        if !self.observed_backwards.is_empty() {
            v.push(format!("observed values went backwards {} times, first {:?}", self.observed_backwards.len(), self.observed_backwards[0]));
        }
        v
    }
}

pub fn check(events: &[Event], final_log: &FinalLog) -> Report {
    let mut r = Report::default();
    // Where each value is in the final log, and what each offset holds.
    let mut located: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    let mut at: HashMap<(i32, i64), &str> = HashMap::new();
    for (p, records) in &final_log.partitions {
        for (o, v) in records {
            located.entry(v.as_str()).or_default().push((*p, *o));
            at.insert((*p, *o), v.as_str());
        }
    }
    let mut duplicated: Vec<String> = located.iter().filter(|(_, places)| places.len() > 1).map(|(v, _)| v.to_string()).collect();
    duplicated.sort();
    r.duplicated = duplicated;

    let mut last_ack: HashMap<(&str, i32), i64> = HashMap::new();
    let mut committed: HashMap<i32, i64> = HashMap::new();
    // High watermarks come only from (self-declared) leaders, so across every
    // observer: no leader may show less than an earlier leader showed. Leader
    // epochs per observer (one per node): nodes' metadata may lag one another.
    let mut observed_hw: HashMap<i32, i64> = HashMap::new();
    let mut observed_epoch: HashMap<(&str, i32), i64> = HashMap::new();
    for e in events {
        match (e.f, e.kind) {
            (Op::Send, Kind::Ok) => {
                r.acknowledged += 1;
                let Some(v) = e.value.as_deref() else { continue };
                match located.get(v) {
                    None => r.lost.push(v.to_string()),
                    Some(places) => {
                        if let (Some(p), Some(o)) = (e.partition, e.offset)
                            && !places.contains(&(p, o))
                        {
                            r.moved.push((v.to_string(), p, o, places.first().copied()));
                        }
                    }
                }
                if let (Some(p), Some(o)) = (e.partition, e.offset) {
                    let key = (e.process.as_str(), p);
                    if let Some(prev) = last_ack.get(&key)
                        && o <= *prev
                    {
                        r.reordered.push((e.process.clone(), p, *prev, o));
                    }
                    last_ack.insert(key, o);
                }
            }
            (Op::Send, Kind::Fail) => r.failed += 1,
            (Op::Send, Kind::Info) => r.indeterminate += 1,
            (Op::Read, Kind::Ok) => {
                let (Some(p), Some(o), Some(v)) = (e.partition, e.offset, e.value.as_deref()) else { continue };
                let held = at.get(&(p, o)).copied();
                if held != Some(v) {
                    r.inconsistent_reads.push((e.process.clone(), p, o, v.to_string(), held.map(str::to_string)));
                }
            }
            (Op::Commit, Kind::Ok) => {
                let (Some(p), Some(o)) = (e.partition, e.offset) else { continue };
                if let Some(prev) = committed.get(&p)
                    && o < *prev
                {
                    r.commits_backwards.push((p, *prev, o));
                }
                let entry = committed.entry(p).or_insert(o);
                *entry = (*entry).max(o);
            }
            (Op::Observe, Kind::Ok) => {
                let Some(p) = e.partition else { continue };
                let key = (e.process.as_str(), p);
                if let Some(hw) = e.offset {
                    let prev = observed_hw.entry(p).or_insert(hw);
                    if hw < *prev {
                        r.observed_backwards.push((p, "high watermark", *prev, hw));
                    }
                    *prev = (*prev).max(hw);
                }
                if let Some(epoch) = e.leader_epoch {
                    let prev = observed_epoch.entry(key).or_insert(epoch);
                    if epoch < *prev {
                        r.observed_backwards.push((p, "leader epoch", *prev, epoch));
                    }
                    *prev = (*prev).max(epoch);
                }
            }
            _ => {}
        }
    }
    r.lost.sort();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(process: &str, v: &str, p: i32, o: i64) -> Event {
        Event::new(process, Kind::Ok, Op::Send).value(v).at(p, o)
    }

    fn read(v: &str, p: i32, o: i64) -> Event {
        Event::new("reader-0", Kind::Ok, Op::Read).value(v).at(p, o)
    }

    fn log(records: &[(i32, i64, &str)]) -> FinalLog {
        let mut f = FinalLog::default();
        for (p, o, v) in records {
            f.partitions.entry(*p).or_default().push((*o, v.to_string()));
        }
        f
    }

    #[test]
    fn a_clean_history_has_no_violations() {
        let events = vec![ack("p1", "a", 0, 0), ack("p1", "b", 0, 1), read("a", 0, 0), Event::new("p1", Kind::Info, Op::Send).value("c")];
        let r = check(&events, &log(&[(0, 0, "a"), (0, 1, "b"), (0, 2, "c")]));
        assert!(r.violations().is_empty(), "{:?}", r.violations());
        assert_eq!((r.acknowledged, r.indeterminate), (2, 1));
    }

    #[test]
    fn a_lost_write_is_reported() {
        let r = check(&[ack("p1", "a", 0, 0), ack("p1", "b", 0, 1)], &log(&[(0, 0, "a")]));
        assert_eq!(r.lost, vec!["b".to_string()]);
        assert!(r.violations()[0].contains("lost"));
    }

    #[test]
    fn a_duplicate_is_reported() {
        let r = check(&[ack("p1", "a", 0, 0)], &log(&[(0, 0, "a"), (0, 1, "a")]));
        assert_eq!(r.duplicated, vec!["a".to_string()]);
    }

    #[test]
    fn acknowledgements_out_of_offset_order_are_reported() {
        let r = check(&[ack("p1", "a", 0, 1), ack("p1", "b", 0, 0)], &log(&[(0, 0, "b"), (0, 1, "a")]));
        assert_eq!(r.reordered, vec![("p1".to_string(), 0, 1, 0)]);
        // Other producers and partitions have their own order.
        let r = check(&[ack("p1", "a", 0, 1), ack("p2", "b", 0, 0), ack("p1", "c", 1, 0)], &log(&[(0, 0, "b"), (0, 1, "a"), (1, 0, "c")]));
        assert!(r.reordered.is_empty());
    }

    #[test]
    fn a_read_past_the_high_watermark_is_reported() {
        // A consumer saw "x" at offset 1, which a new leader then truncated.
        let r = check(&[ack("p1", "a", 0, 0), read("x", 0, 1)], &log(&[(0, 0, "a"), (0, 1, "b")]));
        assert_eq!(r.inconsistent_reads.len(), 1);
        assert_eq!(r.inconsistent_reads[0].4.as_deref(), Some("b"));
    }

    #[test]
    fn committed_offsets_and_observations_going_backwards_are_reported() {
        let commit = |o| Event::new("c1", Kind::Ok, Op::Commit).at(0, o);
        let observe = |hw, epoch| Event { leader_epoch: Some(epoch), ..Event::new("observer", Kind::Ok, Op::Observe).at(0, hw) };
        let r = check(&[commit(5), commit(7), commit(6), observe(10, 1), observe(9, 2), observe(12, 1)], &FinalLog::default());
        assert_eq!(r.commits_backwards, vec![(0, 7, 6)]);
        assert_eq!(r.observed_backwards, vec![(0, "high watermark", 10, 9), (0, "leader epoch", 2, 1)]);
        // Another node's metadata may lag: epochs are ordered per observer,
        // high watermarks (reported by leaders only) across all.
        let elsewhere = Event { leader_epoch: Some(1), ..Event::new("observer-2", Kind::Ok, Op::Observe).at(0, 3) };
        assert_eq!(check(&[observe(10, 2), elsewhere], &FinalLog::default()).observed_backwards, vec![(0, "high watermark", 10, 3)]);
    }
}
