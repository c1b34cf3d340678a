//! Idempotent-producer state of one partition: for each producer id, its
//! epoch and the sequence ranges and offsets of its last five batches (as
//! Kafka keeps them), so a retried batch gets its original offsets back and
//! a gap in sequences is refused.
//!
//! Pure code: the log calls [`ProducerState::check`] under its append lock and
//! [`ProducerState::record`] after writing; it rebuilds the state from batch
//! headers on open and after truncation.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;

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
    batches: VecDeque<BatchRecord>,
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
}

fn last_sequence(h: &BatchHeader) -> i32 {
    // Sequences wrap from i32::MAX to 0, as in Kafka.
    ((i64::from(h.base_sequence) + i64::from(h.last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(s: i32) -> i32 {
    if s == i32::MAX { 0 } else { s + 1 }
}

#[derive(Debug, Clone, Default)]
pub struct ProducerState {
    producers: HashMap<i64, Producer>,
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

    /// Records an appended batch (`h` carries its assigned offsets).
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
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
        while p.batches.len() > BATCHES_REMEMBERED {
            p.batches.pop_front();
        }
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
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
            s.record(&b);
        }
        assert_eq!(s.check(&batch(7, 0, 3, 3, -1)), Ok(SequenceCheck::Duplicate { base_offset: 3, last_offset: 5 }));
        assert_eq!(s.check(&batch(7, 0, 9, 1, -1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn gaps_and_old_epochs_are_refused() {
        let mut s = ProducerState::default();
        s.record(&batch(7, 1, 0, 2, 0));
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
            s.record(&batch(1, 0, i, 1, i64::from(i)));
        }
        assert_eq!(s.check(&batch(1, 0, 3, 1, -1)), Ok(SequenceCheck::Duplicate { base_offset: 3, last_offset: 3 }));
        assert!(matches!(s.check(&batch(1, 0, 2, 1, -1)), Err(ProducerError::OutOfOrder { .. })));
        let mut w = ProducerState::default();
        w.record(&batch(2, 0, i32::MAX - 1, 2, 0));
        assert_eq!(s.check(&batch(1, 0, 8, 1, -1)), Ok(SequenceCheck::Append));
        assert_eq!(w.check(&batch(2, 0, 0, 1, -1)), Ok(SequenceCheck::Append));
    }
}
