//! Idempotent-producer state of one partition: for each producer id, its
//! epoch and the sequence ranges and offsets of its last five batches (as
//! Kafka keeps them), so a retried batch gets its original offsets back and
//! a gap in sequences is refused.
//!
//! It also follows transactions: the first offset of each producer's open
//! transaction (the lowest of them bounds the last stable offset, LSO), and
//! the aborted transactions whose records a read_committed consumer must
//! drop (Kafka's aborted-transaction index).
//!
//! Pure code: the log calls [`ProducerState::check`] under its append lock and
//! [`ProducerState::record`] after writing; it rebuilds the state from batch
//! headers (and the markers of control batches) on open and after truncation.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::batch::{BatchHeader, Marker};

/// Batches remembered per producer, as Kafka's max.in.flight for idempotence.
pub const BATCHES_REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchRecord {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct Producer {
    epoch: i16,
    /// The coordinator epoch of the last marker written for this producer.
    coordinator_epoch: Option<i32>,
    batches: VecDeque<BatchRecord>,
    /// The largest timestamp of the producer's last batch.
    last_timestamp: i64,
}

/// A producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last sequence written at this epoch; -1 if none.
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// The first offset of its open transaction here; -1 if none.
    pub transaction_start: i64,
    /// The coordinator epoch of the last marker written for it; -1 if none.
    pub coordinator_epoch: i32,
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New and in sequence (or not idempotent): append it.
    Append,
    /// Already in the log at these offsets: acknowledge without appending.
    Duplicate { base_offset: i64, last_offset: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    FencedEpoch { producer_id: i64, epoch: i16, current: i16 },
    #[error("producer {producer_id} sent sequence {got}, expected {expected}")]
    OutOfOrder { producer_id: i64, expected: i32, got: i32 },
    #[error("a marker for producer {producer_id} comes from coordinator epoch {coordinator_epoch}, older than the {current} of one already written")]
    StaleCoordinator { producer_id: i64, coordinator_epoch: i32, current: i32 },
    #[error("producer {producer_id} sent a transactional batch at epoch {epoch} while its transaction at epoch {open} is not ended here yet")]
    PreviousTransactionOpen { producer_id: i64, epoch: i16, open: i16 },
}

fn last_sequence(h: &BatchHeader) -> i32 {
    // Sequences wrap from i32::MAX to 0, as in Kafka.
    ((i64::from(h.base_sequence) + i64::from(h.last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(s: i32) -> i32 {
    if s == i32::MAX { 0 } else { s + 1 }
}

/// A transaction that ended with an ABORT marker: its records, from
/// `first_offset` up to the marker at `last_offset`, are not for
/// read_committed consumers. Kafka's FetchResponse AbortedTransaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ProducerState {
    producers: HashMap<i64, Producer>,
    /// Producer id -> first offset of its open transaction.
    open: HashMap<i64, i64>,
    /// The same, ordered by first offset: the first one bounds the LSO.
    open_by_offset: BTreeSet<(i64, i64)>,
    /// Aborted transactions, by marker offset (the order they ended in).
    aborted: VecDeque<AbortedTxn>,
}

impl ProducerState {
    /// Whether `h` (with its producer fields as sent) should be appended.
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, ProducerError> {
        if h.producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(p) = self.producers.get(&h.producer_id) else {
            // A producer we have no record of (new, or its batches were
            // removed by retention): accept it and start tracking.
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < p.epoch {
            return Err(ProducerError::FencedEpoch { producer_id: h.producer_id, epoch: h.producer_epoch, current: p.epoch });
        }
        if h.producer_epoch > p.epoch {
            if h.is_transactional() && !h.is_control() && self.open.contains_key(&h.producer_id) {
                // The marker of its transaction at the older epoch is not
                // here yet: appended now, the batch would end with that
                // transaction instead of its own.
                return Err(ProducerError::PreviousTransactionOpen { producer_id: h.producer_id, epoch: h.producer_epoch, open: p.epoch });
            }
            return if h.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(ProducerError::OutOfOrder { producer_id: h.producer_id, expected: 0, got: h.base_sequence })
            };
        }
        let last = last_sequence(h);
        if let Some(b) = p.batches.iter().find(|b| b.first_sequence == h.base_sequence && b.last_sequence == last) {
            return Ok(SequenceCheck::Duplicate { base_offset: b.base_offset, last_offset: b.last_offset });
        }
        let expected = p.batches.back().map_or(h.base_sequence, |b| next_sequence(b.last_sequence));
        if h.base_sequence == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(ProducerError::OutOfOrder { producer_id: h.producer_id, expected, got: h.base_sequence })
        }
    }

    /// Whether the transaction coordinator may end `producer_id`'s
    /// transaction at `epoch`: not when the producer has moved to a newer
    /// epoch than the marker's.
    pub fn check_marker(&self, producer_id: i64, epoch: i16, coordinator_epoch: i32) -> Result<(), ProducerError> {
        match self.producers.get(&producer_id) {
            Some(p) if epoch < p.epoch => Err(ProducerError::FencedEpoch { producer_id, epoch, current: p.epoch }),
            Some(Producer { coordinator_epoch: Some(current), .. }) if coordinator_epoch < *current => {
                Err(ProducerError::StaleCoordinator { producer_id, coordinator_epoch, current: *current })
            }
            _ => Ok(()),
        }
    }

    /// Records an appended batch (`h` carries its assigned offsets;
    /// `control` is what a control batch says: its marker and coordinator
    /// epoch).
    pub fn record(&mut self, h: &BatchHeader, control: Option<(Marker, i32)>) {
        if h.producer_id < 0 {
            return;
        }
        if h.is_control() {
            self.end_transaction(h, control);
            return;
        }
        if h.is_transactional() && !self.open.contains_key(&h.producer_id) {
            self.open.insert(h.producer_id, h.base_offset);
            self.open_by_offset.insert((h.base_offset, h.producer_id));
        }
        let p = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.batches.clear();
        }
        p.batches.push_back(BatchRecord {
            first_sequence: h.base_sequence,
            last_sequence: last_sequence(h),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        p.last_timestamp = h.max_timestamp;
        while p.batches.len() > BATCHES_REMEMBERED {
            p.batches.pop_front();
        }
    }

    /// Every producer this partition knows, by id.
    pub fn summaries(&self) -> Vec<ProducerSummary> {
        let mut out: Vec<ProducerSummary> = self
            .producers
            .iter()
            .map(|(id, p)| ProducerSummary {
                producer_id: *id,
                epoch: p.epoch,
                last_sequence: p.batches.back().map_or(-1, |b| b.last_sequence),
                last_timestamp: p.last_timestamp,
                transaction_start: self.open.get(id).copied().unwrap_or(-1),
                coordinator_epoch: p.coordinator_epoch.unwrap_or(-1),
            })
            .collect();
        out.sort_by_key(|s| s.producer_id);
        out
    }

    /// A marker ends the producer's open transaction (if it has one: a
    /// marker may be written again after a coordinator failover) and moves
    /// the producer to the marker's epoch, which transaction version 2 bumps.
    fn end_transaction(&mut self, h: &BatchHeader, control: Option<(Marker, i32)>) {
        let marker = control.map(|(m, _)| m);
        if let Some(first_offset) = self.open.remove(&h.producer_id) {
            self.open_by_offset.remove(&(first_offset, h.producer_id));
            if marker == Some(Marker::Abort) {
                self.aborted.push_back(AbortedTxn { producer_id: h.producer_id, first_offset, last_offset: h.base_offset });
            }
        }
        let p = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch > p.epoch {
            p.epoch = h.producer_epoch;
            p.batches.clear();
        }
        if let Some((_, coordinator_epoch)) = control {
            p.coordinator_epoch = Some(p.coordinator_epoch.map_or(coordinator_epoch, |c| c.max(coordinator_epoch)));
        }
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// The first offset of the oldest open transaction, if any is open: the
    /// last stable offset is at most this.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open_by_offset.first().map(|(offset, _)| *offset)
    }

    /// Whether `producer_id` has a transaction open in this partition at
    /// `epoch`. An open transaction of an older epoch is another one: under
    /// transaction version 2 every end bumps the epoch, so a batch of the
    /// next transaction can arrive before the last one's marker.
    pub fn has_open_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.open.contains_key(&producer_id) && self.producers.get(&producer_id).is_some_and(|p| p.epoch == epoch)
    }

    /// How many transactions are open in this partition.
    pub fn open_transactions(&self) -> usize {
        self.open.len()
    }

    /// The aborted transactions whose records may lie in `[from, to)`: those
    /// whose marker is at or after `from` and whose first record is before `to`.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted.iter().skip(start).filter(|a| a.first_offset < to).copied().collect()
    }

    /// Forgets aborted transactions that ended below `log_start` (their
    /// records are gone).
    pub fn forget_below(&mut self, log_start: i64) {
        while self.aborted.front().is_some_and(|a| a.last_offset < log_start) {
            self.aborted.pop_front();
        }
    }
}

/// Big-endian writes for the snapshot body.
pub(crate) struct Writer<'a>(pub &'a mut Vec<u8>);

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
}

/// Big-endian reads of a snapshot body; every read names what ran short.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err(format!("ends after {} bytes where {N} more were due", self.0.len()));
        };
        self.0 = rest;
        Ok(*head)
    }
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    pub fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_be_bytes)
    }
    pub fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_be_bytes)
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_be_bytes)
    }
    pub fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_be_bytes)
    }
    /// A count of entries that must each take at least `entry_bytes`: a
    /// count larger than the bytes left is refused before anything is
    /// allocated for it.
    pub fn count(&mut self, entry_bytes: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(entry_bytes) > self.0.len() {
            return Err(format!("claims {n} entries but holds {} bytes", self.0.len()));
        }
        Ok(n)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ProducerState {
    /// Writes the producers and open transactions (not the aborted
    /// transactions: those are in each segment's transaction index) in the
    /// layout of snapshot format 1 (see `crate::snapshot`).
    pub(crate) fn encode_snapshot(&self, w: &mut Writer<'_>) {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        w.u32(ids.len() as u32);
        for id in ids {
            let p = &self.producers[id];
            w.i64(*id);
            w.i16(p.epoch);
            match p.coordinator_epoch {
                Some(e) => {
                    w.u8(1);
                    w.i32(e);
                }
                None => {
                    w.u8(0);
                    w.i32(-1);
                }
            }
            w.i64(p.last_timestamp);
            w.u8(p.batches.len() as u8);
            for b in &p.batches {
                w.i32(b.first_sequence);
                w.i32(b.last_sequence);
                w.i64(b.base_offset);
                w.i64(b.last_offset);
            }
        }
        w.u32(self.open_by_offset.len() as u32);
        for (first_offset, id) in &self.open_by_offset {
            w.i64(*id);
            w.i64(*first_offset);
        }
    }

    /// Reads what [`ProducerState::encode_snapshot`] wrote.
    pub(crate) fn decode_snapshot(r: &mut Reader<'_>) -> Result<ProducerState, String> {
        let mut s = ProducerState::default();
        for _ in 0..r.count(8 + 2 + 5 + 8 + 1)? {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let coordinator_epoch = match (r.u8()?, r.i32()?) {
                (0, _) => None,
                (1, e) => Some(e),
                (flag, _) => return Err(format!("coordinator epoch flag {flag} of producer {id} is neither 0 nor 1")),
            };
            let last_timestamp = r.i64()?;
            let n = usize::from(r.u8()?);
            if n > BATCHES_REMEMBERED {
                return Err(format!("producer {id} has {n} batches, more than the {BATCHES_REMEMBERED} remembered"));
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchRecord { first_sequence: r.i32()?, last_sequence: r.i32()?, base_offset: r.i64()?, last_offset: r.i64()? });
            }
            if s.producers.insert(id, Producer { epoch, coordinator_epoch, batches, last_timestamp }).is_some() {
                return Err(format!("producer {id} appears twice"));
            }
        }
        for _ in 0..r.count(16)? {
            let id = r.i64()?;
            let first_offset = r.i64()?;
            if s.open.insert(id, first_offset).is_some() {
                return Err(format!("producer {id} has two open transactions"));
            }
            s.open_by_offset.insert((first_offset, id));
        }
        Ok(s)
    }

    /// Adds an aborted transaction read from a transaction index; they
    /// come in the order their markers were written.
    pub(crate) fn push_aborted(&mut self, a: AbortedTxn) {
        self.aborted.push_back(a);
    }

    /// Forgets the aborted transaction whose marker, at `marker_offset`, the
    /// cleaner removed: with the marker gone, a read_committed consumer
    /// told of it would skip the producer's later batches as aborted, with
    /// no marker to end that.
    pub(crate) fn forget_aborted(&mut self, producer_id: i64, marker_offset: i64) {
        self.aborted.retain(|a| !(a.producer_id == producer_id && a.last_offset == marker_offset));
    }

    /// The aborted transactions whose marker lies in `[from, to)`: what a
    /// segment of that range keeps in its transaction index.
    pub(crate) fn aborted_ending_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted.iter().skip(start).take_while(|a| a.last_offset < to).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: records,
        }
    }

    #[test]
    fn in_sequence_batches_append_and_retries_are_duplicates() {
        let mut s = ProducerState::default();
        for (i, seq) in [0, 3, 6].iter().enumerate() {
            let b = batch(7, 0, *seq, 3, i as i64 * 3);
            assert_eq!(s.check(&b), Ok(SequenceCheck::Append));
            s.record(&b, None);
        }
        assert_eq!(s.check(&batch(7, 0, 3, 3, -1)), Ok(SequenceCheck::Duplicate { base_offset: 3, last_offset: 5 }));
        assert_eq!(s.check(&batch(7, 0, 9, 1, -1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn gaps_and_old_epochs_are_refused() {
        let mut s = ProducerState::default();
        s.record(&batch(7, 1, 0, 2, 0), None);
        assert_eq!(s.check(&batch(7, 1, 5, 1, -1)), Err(ProducerError::OutOfOrder { producer_id: 7, expected: 2, got: 5 }));
        assert_eq!(s.check(&batch(7, 0, 2, 1, -1)), Err(ProducerError::FencedEpoch { producer_id: 7, epoch: 0, current: 1 }));
        // A new epoch starts at sequence 0.
        assert_eq!(s.check(&batch(7, 2, 0, 1, -1)), Ok(SequenceCheck::Append));
        assert!(s.check(&batch(7, 2, 4, 1, -1)).is_err());
        // Non-idempotent batches are never checked.
        assert_eq!(s.check(&batch(-1, -1, -1, 1, -1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerState::default();
        for i in 0..8 {
            s.record(&batch(1, 0, i, 1, i64::from(i)), None);
        }
        assert_eq!(s.check(&batch(1, 0, 3, 1, -1)), Ok(SequenceCheck::Duplicate { base_offset: 3, last_offset: 3 }));
        assert!(matches!(s.check(&batch(1, 0, 2, 1, -1)), Err(ProducerError::OutOfOrder { .. })));
        let mut w = ProducerState::default();
        w.record(&batch(2, 0, i32::MAX - 1, 2, 0), None);
        assert_eq!(s.check(&batch(1, 0, 8, 1, -1)), Ok(SequenceCheck::Append));
        assert_eq!(w.check(&batch(2, 0, 0, 1, -1)), Ok(SequenceCheck::Append));
    }

    fn txn(producer_id: i64, epoch: i16, base_sequence: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader { attributes: crate::batch::TRANSACTIONAL, ..batch(producer_id, epoch, base_sequence, records, base_offset) }
    }

    fn marker(producer_id: i64, epoch: i16, offset: i64) -> BatchHeader {
        BatchHeader { attributes: crate::batch::TRANSACTIONAL | crate::batch::CONTROL, ..batch(producer_id, epoch, -1, 1, offset) }
    }

    #[test]
    fn open_transactions_bound_the_stable_offset_until_their_marker() {
        let mut s = ProducerState::default();
        s.record(&batch(1, 0, 0, 2, 0), None); // idempotent, not transactional
        assert_eq!(s.first_unstable_offset(), None);
        s.record(&txn(7, 0, 0, 2, 2), None);
        s.record(&txn(8, 0, 0, 1, 4), None);
        s.record(&txn(7, 0, 2, 1, 5), None);
        assert_eq!(s.first_unstable_offset(), Some(2));
        assert_eq!(s.open_transactions(), 2);
        s.record(&marker(7, 0, 6), Some((Marker::Commit, 0)));
        assert_eq!(s.first_unstable_offset(), Some(4));
        s.record(&marker(8, 0, 7), Some((Marker::Abort, 0)));
        assert_eq!(s.first_unstable_offset(), None);
        assert_eq!(s.aborted_between(0, 100), vec![AbortedTxn { producer_id: 8, first_offset: 4, last_offset: 7 }]);
        // A second marker for an ended transaction changes nothing.
        s.record(&marker(8, 0, 8), Some((Marker::Abort, 0)));
        assert_eq!(s.aborted_between(0, 100).len(), 1);
    }

    #[test]
    fn aborted_transactions_are_found_by_the_range_they_cover() {
        let mut s = ProducerState::default();
        for (pid, first, end) in [(1, 0, 3), (2, 5, 9), (3, 10, 12)] {
            s.record(&txn(pid, 0, 0, 1, first), None);
            s.record(&marker(pid, 0, end), Some((Marker::Abort, 0)));
        }
        let pids = |v: Vec<AbortedTxn>| v.iter().map(|a| a.producer_id).collect::<Vec<_>>();
        assert_eq!(pids(s.aborted_between(4, 10)), vec![2]);
        assert_eq!(pids(s.aborted_between(3, 11)), vec![1, 2, 3]);
        assert_eq!(pids(s.aborted_between(13, 20)), Vec::<i64>::new());
        s.forget_below(6);
        assert_eq!(pids(s.aborted_between(0, 100)), vec![2, 3]);
    }

    #[test]
    fn markers_bump_the_epoch_and_fence_older_ones() {
        let mut s = ProducerState::default();
        s.record(&txn(7, 0, 0, 3, 0), None);
        assert_eq!(s.check_marker(7, 0, 0), Ok(()));
        // Transaction version 2: the marker carries the bumped epoch, and the
        // next transaction starts at sequence 0 of that epoch.
        s.record(&marker(7, 1, 3), Some((Marker::Commit, 0)));
        assert!(s.check_marker(7, 0, 0).is_err());
        assert!(s.check(&txn(7, 0, 3, 1, -1)).is_err());
        assert_eq!(s.check(&txn(7, 1, 0, 1, -1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn a_snapshot_brings_back_sequences_epochs_and_open_transactions() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record(&batch(1, 2, i * 2, 2, i64::from(i) * 2), None);
        }
        s.record(&txn(7, 0, 0, 3, 14), None);
        s.record(&marker(7, 1, 17), Some((Marker::Commit, 4)));
        s.record(&txn(9, 3, 0, 1, 18), None);
        let mut bytes = Vec::new();
        s.encode_snapshot(&mut Writer(&mut bytes));
        let mut r = Reader(&bytes);
        let back = ProducerState::decode_snapshot(&mut r).unwrap();
        assert!(r.is_empty());
        assert_eq!(back.summaries(), s.summaries());
        assert_eq!(back.first_unstable_offset(), Some(18));
        assert_eq!(back.check(&batch(1, 2, 6, 2, -1)), Ok(SequenceCheck::Duplicate { base_offset: 6, last_offset: 7 }));
        assert!(back.check(&batch(1, 2, 2, 2, -1)).is_err(), "only the last five batches come back");
        assert_eq!(back.check_marker(7, 1, 3), Err(ProducerError::StaleCoordinator { producer_id: 7, coordinator_epoch: 3, current: 4 }));
        // Every cut of the bytes is refused, never misread.
        for cut in 0..bytes.len() {
            assert!(ProducerState::decode_snapshot(&mut Reader(&bytes[..cut])).is_err(), "cut at {cut}");
        }
    }
}
