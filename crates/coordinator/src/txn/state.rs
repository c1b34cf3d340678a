//! The transaction protocol of one transactional id, as pure code: each
//! request (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn) and the timeout take the stored record and
//! answer with the record to store next, or Kafka's error. No I/O: the
//! coordinator stores what comes out through Raft and writes the markers.
//!
//! Transaction version 1: the producer epoch stays the same from one
//! transaction to the next; it is bumped by InitProducerId (fencing the
//! previous instance) and by the coordinator when it aborts a transaction
//! that timed out (fencing the producer that let it time out).
//!
//! Transaction version 2 (KIP-890 part 2, EndTxn v5 and later): every end
//! also bumps the epoch (the markers carry the new one, which fences any
//! batch of the ended transaction still in flight), and EndTxn answers
//! with it; an end at the last epoch moves the producer to epoch 0 of a
//! fresh producer id. The record looks the same under both versions: the
//! version is the request's, so nothing new is stored; only the move to a
//! fresh id keeps the id it replaces beside the record (`renewed_from`), so
//! an EndTxn retried under the old id can be told from a stranger's.

use runnel_controller::records::{OffsetCommit, TransactionRecord, TransactionState};
use runnel_protocol::kafka_protocol::error::ResponseError;

use TransactionState::{CompleteAbort, CompleteCommit, Empty, Ongoing, PrepareAbort, PrepareCommit};

/// What InitProducerId does with a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// Store this record and answer with its producer id and epoch.
    Ready(TransactionRecord),
    /// A previous instance left a transaction open: store this record
    /// (PrepareAbort, at a bumped epoch that fences it), write its abort
    /// markers, complete the abort, then initialise again.
    AbortFirst(TransactionRecord),
}

/// Whether a producer's (id, epoch) is the transactional id's current one.
fn check_producer(record: &TransactionRecord, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
    if producer_id != record.producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if epoch != record.producer_epoch {
        // Older: a fenced instance (a newer epoch than stored cannot be
        // genuine, and is refused the same way).
        return Err(ResponseError::InvalidProducerEpoch);
    }
    Ok(())
}

/// InitProducerId with a transactional id. `current` is the stored record,
/// `fresh_id` a producer id never handed out (used for a new transactional
/// id, or when the epoch would overflow); `producer` the (id, epoch) a
/// producer that already has one sends (KIP-360), else (-1, -1).
pub fn init(current: Option<&TransactionRecord>, timeout_ms: i32, producer: (i64, i16), fresh_id: i64, now_ms: i64) -> Result<Init, ResponseError> {
    let Some(current) = current else {
        return Ok(Init::Ready(TransactionRecord {
            producer_id: fresh_id,
            producer_epoch: 0,
            timeout_ms,
            state: Empty,
            partitions: vec![],
            offsets: vec![],
            started_ms: now_ms,
        }));
    };
    if producer.0 >= 0 && (producer.0 != current.producer_id || producer.1 != current.producer_epoch) {
        return Err(ResponseError::InvalidProducerEpoch);
    }
    match current.state {
        PrepareCommit | PrepareAbort => Err(ResponseError::ConcurrentTransactions),
        Ongoing => Ok(Init::AbortFirst(TransactionRecord { state: PrepareAbort, ..fencing(current) })),
        Empty | CompleteCommit | CompleteAbort => Ok(Init::Ready(TransactionRecord {
            state: Empty,
            timeout_ms,
            partitions: vec![],
            offsets: vec![],
            started_ms: now_ms,
            ..bumped(current, fresh_id)
        })),
    }
}

/// Whether an InitProducerId naming `producer` repeats the one that bumped
/// `current` from `bumped_from` (its answer was lost; KIP-360): it is
/// answered with the current producer id and epoch, and nothing changes.
/// Any other change of the record since forgets `bumped_from`.
pub fn is_retried_init(current: &TransactionRecord, bumped_from: Option<(i64, i16)>, producer: (i64, i16)) -> bool {
    producer.0 >= 0 && bumped_from == Some(producer) && current.state == Empty
}

/// The record of a version-2 end the producer asked for: the next epoch of
/// the same producer id, or the same epoch when it has no room left (the
/// markers must end the transaction of the id that wrote it; the producer
/// then moves to a fresh id, [`End::Renew`]).
fn bumped_end(current: &TransactionRecord) -> TransactionRecord {
    match current.producer_epoch.checked_add(1).filter(|e| *e < i16::MAX) {
        Some(epoch) => TransactionRecord { producer_epoch: epoch, ..current.clone() },
        None => current.clone(),
    }
}

/// The record of an abort the coordinator makes to fence the producer (a
/// timeout, a new instance's InitProducerId): the next epoch, up to
/// `i16::MAX`, which no producer is ever given (as Kafka fences at the
/// last epoch). Unlike [`bumped_end`], the producer at [`LAST_EPOCH`] is
/// fenced too: with its epoch left as it was, it could reopen the aborted
/// transaction's id and epoch and commit what it sends after the abort.
fn fencing(current: &TransactionRecord) -> TransactionRecord {
    TransactionRecord { producer_epoch: current.producer_epoch.saturating_add(1), ..current.clone() }
}

/// The record at the next epoch, or at epoch 0 of `fresh_id` when the
/// epoch has no room left.
fn bumped(current: &TransactionRecord, fresh_id: i64) -> TransactionRecord {
    match current.producer_epoch.checked_add(1).filter(|e| *e < i16::MAX) {
        Some(epoch) => TransactionRecord { producer_epoch: epoch, ..current.clone() },
        None => TransactionRecord { producer_id: fresh_id, producer_epoch: 0, ..current.clone() },
    }
}

/// The record to store when a request adds to the transaction: starts one
/// if none is open. `None` when nothing changes.
fn open(current: &TransactionRecord, producer_id: i64, epoch: i16, now_ms: i64) -> Result<TransactionRecord, ResponseError> {
    check_producer(current, producer_id, epoch)?;
    match current.state {
        PrepareCommit | PrepareAbort => Err(ResponseError::ConcurrentTransactions),
        Ongoing => Ok(current.clone()),
        Empty | CompleteCommit | CompleteAbort => {
            Ok(TransactionRecord { state: Ongoing, partitions: vec![], offsets: vec![], started_ms: now_ms, ..current.clone() })
        }
    }
}

/// AddPartitionsToTxn: the partitions join the transaction (starting it).
pub fn add_partitions(
    current: &TransactionRecord,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<Option<TransactionRecord>, ResponseError> {
    let mut next = open(current, producer_id, epoch, now_ms)?;
    for tp in partitions {
        if !next.partitions.contains(tp) {
            next.partitions.push(tp.clone());
        }
    }
    Ok((next != *current).then_some(next))
}

/// AddOffsetsToTxn: the group's offsets will be sent in this transaction
/// (starting it). The offsets themselves come with TxnOffsetCommit.
pub fn add_offsets(current: &TransactionRecord, producer_id: i64, epoch: i16, now_ms: i64) -> Result<Option<TransactionRecord>, ResponseError> {
    let next = open(current, producer_id, epoch, now_ms)?;
    Ok((next != *current).then_some(next))
}

/// TxnOffsetCommit: offsets that take effect if the transaction commits. A
/// later offset for the same partition replaces an earlier one. `version2`:
/// the request is of transaction version 2 (TxnOffsetCommit v5 and later),
/// whose producer sends no AddOffsetsToTxn: the commit opens the
/// transaction itself.
pub fn commit_offsets(
    current: &TransactionRecord,
    producer_id: i64,
    epoch: i16,
    group: &str,
    offsets: &[OffsetCommit],
    version2: bool,
    now_ms: i64,
) -> Result<TransactionRecord, ResponseError> {
    check_producer(current, producer_id, epoch)?;
    let mut next = if version2 { open(current, producer_id, epoch, now_ms)? } else { current.clone() };
    if next.state != Ongoing {
        // AddOffsetsToTxn comes first and opens the transaction.
        return Err(ResponseError::InvalidTxnState);
    }
    let index = match next.offsets.iter().position(|(g, _)| g == group) {
        Some(i) => i,
        None => {
            next.offsets.push((group.to_string(), vec![]));
            next.offsets.len() - 1
        }
    };
    let pending = &mut next.offsets[index].1;
    for o in offsets {
        pending.retain(|p| (p.topic.as_str(), p.partition) != (o.topic.as_str(), o.partition));
        pending.push(o.clone());
    }
    Ok(next)
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Store this record (PrepareCommit or PrepareAbort), write the markers,
    /// then store [`complete`] of it.
    Prepare(TransactionRecord),
    /// A retry of an end already completed: answer success, with the
    /// record's producer id and epoch.
    AlreadyDone,
    /// Transaction version 2: the end is done, at the last epoch the
    /// producer id has. Store [`renew`] of the record and answer with it.
    Renew,
}

/// The highest epoch a producer id is used at (the epoch is an i16, and
/// Kafka keeps `i16::MAX` out of use).
pub const LAST_EPOCH: i16 = i16::MAX - 1;

/// EndTxn: commit or abort the open transaction. `version2`: the request
/// is of transaction version 2 (EndTxn v5 and later), whose ends bump the
/// epoch. `renewed_from`: the producer id the record had before its last
/// renewal, while it is remembered.
pub fn end(current: &TransactionRecord, renewed_from: Option<i64>, producer_id: i64, epoch: i16, commit: bool, version2: bool) -> Result<End, ResponseError> {
    let completed = matches!((current.state, commit), (CompleteCommit, true) | (CompleteAbort, false));
    if version2 && completed && epoch == LAST_EPOCH && current.producer_epoch == 0 && renewed_from.is_some_and(|id| id == producer_id) {
        // A retry of the end that moved the producer to its fresh id (the
        // answer naming it was lost): nothing has changed since, so the
        // producer learns its fresh id now.
        return Ok(End::AlreadyDone);
    }
    if version2 && completed && producer_id == current.producer_id {
        // The coordinator aborted at the fencing epoch, which no producer
        // is given: the producer goes on with a fresh id.
        if epoch == LAST_EPOCH && current.producer_epoch == i16::MAX {
            return Ok(End::Renew);
        }
        // A retry: the end it asks for bumped the epoch past the request's
        // (or the coordinator aborted at a bumped epoch on a timeout, and
        // the producer now aborts too: it carries on at the new epoch).
        if epoch.checked_add(1) == Some(current.producer_epoch) {
            return Ok(End::AlreadyDone);
        }
        if epoch == current.producer_epoch && epoch == LAST_EPOCH {
            return Ok(End::Renew);
        }
    }
    if version2
        && matches!((current.state, commit), (PrepareCommit, true) | (PrepareAbort, false))
        && producer_id == current.producer_id
        && epoch.checked_add(1) == Some(current.producer_epoch)
    {
        // A retry of the end being written (its answer was lost, or the
        // coordinator moved): the producer asks again until it completes,
        // and is then answered with the bumped epoch (as Kafka's
        // retryOnEpochBump).
        return Err(ResponseError::ConcurrentTransactions);
    }
    check_producer(current, producer_id, epoch)?;
    // Version 2's ends happen at the next epoch (or at the same one when
    // none is left, and then the producer moves to a fresh id).
    let at = if version2 { bumped_end(current) } else { current.clone() };
    match (current.state, commit) {
        (Ongoing, true) => Ok(End::Prepare(TransactionRecord { state: PrepareCommit, ..at })),
        (Ongoing, false) => Ok(End::Prepare(TransactionRecord { state: PrepareAbort, ..at })),
        // A version-2 producer cannot tell whether a failed produce added
        // its partition, so it may abort a transaction that never began:
        // no markers to write, but the epoch moves on all the same.
        (Empty | CompleteCommit | CompleteAbort, false) if version2 => {
            Ok(End::Prepare(TransactionRecord { state: PrepareAbort, partitions: vec![], offsets: vec![], ..at }))
        }
        (CompleteCommit, true) | (CompleteAbort, false) if !version2 => Ok(End::AlreadyDone),
        (PrepareCommit, true) | (PrepareAbort, false) => Err(ResponseError::ConcurrentTransactions),
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// Whether a version-2 end prepared as `prepared` for a producer at
/// `epoch` left the epoch where it was (it had no room to grow): once it
/// is complete, the producer moves to a fresh id ([`End::Renew`]).
pub fn needs_renewal(prepared: &TransactionRecord, epoch: i16) -> bool {
    prepared.producer_epoch == epoch
}

/// A completed record moved to epoch 0 of `fresh_id`.
pub fn renew(current: &TransactionRecord, fresh_id: i64, now_ms: i64) -> TransactionRecord {
    TransactionRecord { producer_id: fresh_id, producer_epoch: 0, started_ms: now_ms, ..current.clone() }
}

/// The record once every marker of a prepared end is written.
pub fn complete(prepared: &TransactionRecord, now_ms: i64) -> TransactionRecord {
    let state = if prepared.state == PrepareCommit { CompleteCommit } else { CompleteAbort };
    TransactionRecord { state, partitions: vec![], offsets: vec![], started_ms: now_ms, ..prepared.clone() }
}

/// The abort of a transaction open longer than its timeout, at a bumped
/// epoch that fences the producer that let it time out; `None` if it has
/// not timed out.
pub fn expire(current: &TransactionRecord, now_ms: i64) -> Option<TransactionRecord> {
    let timed_out = current.state == Ongoing && now_ms.saturating_sub(current.started_ms) > i64::from(current.timeout_ms);
    timed_out.then(|| TransactionRecord { state: PrepareAbort, ..fencing(current) })
}

/// Whether the record is a decided end whose markers may not all be
/// written yet (after a failover, the new coordinator finishes it).
pub fn is_prepared(record: &TransactionRecord) -> bool {
    matches!(record.state, PrepareCommit | PrepareAbort)
}

/// No transaction in progress or being ended: the id may expire once
/// idle long enough (`started_ms` is when its state last changed).
pub fn is_idle(record: &TransactionRecord) -> bool {
    matches!(record.state, Empty | CompleteCommit | CompleteAbort)
}

#[cfg(test)]
mod tests {
    use runnel_controller::records::OffsetRecord;

    use super::*;

    fn ready(init: Result<Init, ResponseError>) -> TransactionRecord {
        match init {
            Ok(Init::Ready(r)) => r,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    fn tp(topic: &str, partition: i32) -> (String, i32) {
        (topic.to_string(), partition)
    }

    fn offset(partition: i32, offset: i64) -> OffsetCommit {
        OffsetCommit { topic: "in".into(), partition, record: OffsetRecord { offset, leader_epoch: -1, metadata: None, commit_time_ms: 0 } }
    }

    #[test]
    fn a_new_transactional_id_gets_a_fresh_producer_at_epoch_0() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        assert_eq!((r.producer_id, r.producer_epoch, r.state, r.timeout_ms), (77, 0, Empty, 60_000));
    }

    #[test]
    fn init_again_bumps_the_epoch_and_fences_the_previous_instance() {
        let first = ready(init(None, 60_000, (-1, -1), 77, 5));
        let second = ready(init(Some(&first), 30_000, (-1, -1), 99, 6));
        assert_eq!((second.producer_id, second.producer_epoch, second.timeout_ms), (77, 1, 30_000));
        // The first instance's requests are refused from now on.
        assert_eq!(add_partitions(&second, 77, 0, &[tp("out", 0)], 7), Err(ResponseError::InvalidProducerEpoch));
        assert_eq!(end(&second, None, 77, 0, true, false), Err(ResponseError::InvalidProducerEpoch));
        assert_eq!(add_partitions(&second, 78, 1, &[tp("out", 0)], 7), Err(ResponseError::InvalidProducerIdMapping));
    }

    #[test]
    fn init_with_an_open_transaction_aborts_it_at_a_bumped_epoch_first() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        let open = add_partitions(&r, 77, 0, &[tp("out", 0)], 6).unwrap().unwrap();
        match init(Some(&open), 60_000, (-1, -1), 99, 7) {
            Ok(Init::AbortFirst(abort)) => {
                assert_eq!((abort.state, abort.producer_epoch, abort.partitions.clone()), (PrepareAbort, 1, vec![tp("out", 0)]));
                let done = complete(&abort, 8);
                assert_eq!(done.state, CompleteAbort);
                // Initialising again now bumps once more.
                assert_eq!(ready(init(Some(&done), 60_000, (-1, -1), 99, 9)).producer_epoch, 2);
            }
            other => panic!("expected AbortFirst, got {other:?}"),
        }
    }

    #[test]
    fn init_while_an_end_is_being_written_is_asked_again() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        let open = add_partitions(&r, 77, 0, &[tp("out", 0)], 6).unwrap().unwrap();
        let End::Prepare(prepared) = end(&open, None, 77, 0, true, false).unwrap() else { panic!("expected Prepare") };
        assert_eq!(init(Some(&prepared), 60_000, (-1, -1), 99, 7), Err(ResponseError::ConcurrentTransactions));
        assert_eq!(add_partitions(&prepared, 77, 0, &[tp("out", 1)], 7), Err(ResponseError::ConcurrentTransactions));
    }

    #[test]
    fn init_with_a_producer_id_must_name_the_current_one() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        assert_eq!(ready(init(Some(&r), 60_000, (77, 0), 99, 6)).producer_epoch, 1);
        assert_eq!(init(Some(&r), 60_000, (77, 3), 99, 6), Err(ResponseError::InvalidProducerEpoch));
        assert_eq!(init(Some(&r), 60_000, (12, 0), 99, 6), Err(ResponseError::InvalidProducerEpoch));
    }

    #[test]
    fn a_retried_init_is_told_the_epoch_it_was_bumped_to() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        let bumped = ready(init(Some(&r), 60_000, (77, 0), 99, 6));
        assert!(is_retried_init(&bumped, Some((77, 0)), (77, 0)));
        // Not a retry: another epoch, no bump on record, a new instance's
        // init (it names no producer), or a transaction begun since.
        assert!(!is_retried_init(&bumped, Some((77, 0)), (77, 1)));
        assert!(!is_retried_init(&bumped, None, (77, 0)));
        assert!(!is_retried_init(&bumped, Some((77, 0)), (-1, -1)));
        let open = add_partitions(&bumped, 77, 1, &[tp("out", 0)], 7).unwrap().unwrap();
        assert!(!is_retried_init(&open, Some((77, 0)), (77, 0)));
        // A bump that moved to a fresh producer id is recognised by the old one.
        let top = TransactionRecord { producer_epoch: i16::MAX - 1, ..r };
        let fresh = ready(init(Some(&top), 60_000, (77, i16::MAX - 1), 99, 8));
        assert_eq!((fresh.producer_id, fresh.producer_epoch), (99, 0));
        assert!(is_retried_init(&fresh, Some((77, i16::MAX - 1)), (77, i16::MAX - 1)));
    }

    #[test]
    fn an_exhausted_epoch_moves_to_a_fresh_producer_id() {
        let r = TransactionRecord { producer_epoch: i16::MAX - 1, ..ready(init(None, 60_000, (-1, -1), 77, 5)) };
        let next = ready(init(Some(&r), 60_000, (-1, -1), 99, 6));
        assert_eq!((next.producer_id, next.producer_epoch), (99, 0));
    }

    /// An abort that fences the producer (a timeout, a new instance) at
    /// the last epoch moves the epoch to `i16::MAX`, as Kafka does: left at
    /// the last epoch, the producer that let its transaction time out could
    /// open it again under the same id and epoch and commit what it sent
    /// after the abort, while what it sent before was aborted.
    #[test]
    fn an_abort_at_the_last_epoch_fences_the_producer() {
        let top = TransactionRecord { producer_epoch: LAST_EPOCH, ..ready(init(None, 1_000, (-1, -1), 77, 5)) };
        let open = add_partitions(&top, 77, LAST_EPOCH, &[tp("out", 0)], 6).unwrap().unwrap();
        // The markers carry the producer id that wrote the records, at an
        // epoch above the producer's.
        let Ok(Init::AbortFirst(abort)) = init(Some(&open), 60_000, (-1, -1), 99, 7) else { panic!("expected AbortFirst") };
        assert_eq!((abort.producer_id, abort.producer_epoch), (77, i16::MAX));
        let expired = expire(&open, 10_000).expect("timed out");
        assert_eq!((expired.producer_id, expired.producer_epoch), (77, i16::MAX));
        let done = complete(&expired, 10_001);
        // The producer that let it time out opens nothing and ends nothing.
        for version2 in [false, true] {
            assert_eq!(add_partitions(&done, 77, LAST_EPOCH, &[tp("out", 1)], 10_002), Err(ResponseError::InvalidProducerEpoch));
            assert_eq!(add_offsets(&done, 77, LAST_EPOCH, 10_002), Err(ResponseError::InvalidProducerEpoch));
            assert_eq!(end(&done, None, 77, LAST_EPOCH, true, version2), Err(ResponseError::InvalidProducerEpoch), "version 2: {version2}");
        }
        // Under version 2 its abort goes on with a fresh producer id, never
        // at the fencing epoch.
        assert_eq!(end(&done, None, 77, LAST_EPOCH, false, true), Ok(End::Renew));
        // The next instance moves to the fresh id.
        let next = ready(init(Some(&complete(&abort, 8)), 60_000, (-1, -1), 99, 9));
        assert_eq!((next.producer_id, next.producer_epoch), (99, 0));
    }

    #[test]
    fn partitions_start_a_transaction_and_are_kept_once() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        let open = add_partitions(&r, 77, 0, &[tp("out", 0), tp("out", 1)], 10).unwrap().unwrap();
        assert_eq!((open.state, open.started_ms), (Ongoing, 10));
        assert_eq!(add_partitions(&open, 77, 0, &[tp("out", 1)], 11), Ok(None), "nothing new: nothing to store");
        let more = add_partitions(&open, 77, 0, &[tp("out", 1), tp("log", 0)], 12).unwrap().unwrap();
        assert_eq!(more.partitions, vec![tp("out", 0), tp("out", 1), tp("log", 0)]);
        assert_eq!(more.started_ms, 10, "the timeout counts from the first partition");
    }

    #[test]
    fn offsets_need_an_open_transaction_and_the_latest_per_partition_wins() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        assert_eq!(commit_offsets(&r, 77, 0, "g", &[offset(0, 5)], false, 0), Err(ResponseError::InvalidTxnState));
        let open = add_offsets(&r, 77, 0, 10).unwrap().unwrap();
        assert_eq!(open.state, Ongoing);
        let once = commit_offsets(&open, 77, 0, "g", &[offset(0, 5), offset(1, 9)], false, 0).unwrap();
        let twice = commit_offsets(&once, 77, 0, "g", &[offset(0, 8)], false, 0).unwrap();
        let pending: Vec<(i32, i64)> = twice.offsets[0].1.iter().map(|o| (o.partition, o.record.offset)).collect();
        assert_eq!(pending, vec![(1, 9), (0, 8)]);
        assert_eq!(commit_offsets(&twice, 77, 1, "g", &[offset(0, 9)], false, 0), Err(ResponseError::InvalidProducerEpoch));
    }

    #[test]
    fn commit_and_abort_prepare_then_complete_and_retries_succeed() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        for commit in [true, false] {
            let open = add_partitions(&r, 77, 0, &[tp("out", 0)], 6).unwrap().unwrap();
            let End::Prepare(prepared) = end(&open, None, 77, 0, commit, false).unwrap() else { panic!("expected Prepare") };
            assert_eq!(prepared.state, if commit { PrepareCommit } else { PrepareAbort });
            assert!(is_prepared(&prepared));
            assert_eq!(end(&prepared, None, 77, 0, commit, false), Err(ResponseError::ConcurrentTransactions), "a retry while markers are written");
            let done = complete(&prepared, 9);
            assert!(!is_prepared(&done));
            assert!(done.partitions.is_empty() && done.offsets.is_empty());
            assert_eq!(end(&done, None, 77, 0, commit, false), Ok(End::AlreadyDone), "a retry after the end");
            assert_eq!(end(&done, None, 77, 0, !commit, false), Err(ResponseError::InvalidTxnState), "the other end after this one");
            // The same epoch starts the next transaction (version 1).
            assert_eq!(add_partitions(&done, 77, 0, &[tp("out", 0)], 10).unwrap().unwrap().state, Ongoing);
        }
    }

    #[test]
    fn ending_with_nothing_open_is_an_invalid_state() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        assert_eq!(end(&r, None, 77, 0, true, false), Err(ResponseError::InvalidTxnState));
        assert_eq!(end(&r, None, 77, 0, false, false), Err(ResponseError::InvalidTxnState));
    }

    #[test]
    fn a_transaction_past_its_timeout_is_aborted_at_a_bumped_epoch() {
        let r = ready(init(None, 1_000, (-1, -1), 77, 0));
        let open = add_partitions(&r, 77, 0, &[tp("out", 0)], 100).unwrap().unwrap();
        assert_eq!(expire(&open, 1_100), None, "exactly at the timeout: not yet");
        let aborted = expire(&open, 1_101).expect("timed out");
        assert_eq!((aborted.state, aborted.producer_epoch), (PrepareAbort, 1));
        // The producer that let it time out is fenced.
        let done = complete(&aborted, 1_200);
        assert_eq!(end(&done, None, 77, 0, true, false), Err(ResponseError::InvalidProducerEpoch));
        assert_eq!(expire(&r, 1_000_000), None, "nothing open, nothing to expire");
    }

    fn prepared(end: Result<End, ResponseError>) -> TransactionRecord {
        match end {
            Ok(End::Prepare(r)) => r,
            other => panic!("expected Prepare, got {other:?}"),
        }
    }

    #[test]
    fn a_version_2_end_bumps_the_epoch_and_the_next_transaction_uses_it() {
        let mut current = ready(init(None, 60_000, (-1, -1), 77, 5));
        for (round, commit) in [(0i16, true), (1, false), (2, true)] {
            let open = add_partitions(&current, 77, round, &[tp("out", 0)], 6).unwrap().unwrap();
            let p = prepared(end(&open, None, 77, round, commit, true));
            // The markers carry the new epoch, which fences the old one's batches.
            assert_eq!((p.producer_id, p.producer_epoch, p.partitions.clone()), (77, round + 1, vec![tp("out", 0)]));
            let done = complete(&p, 9);
            assert_eq!(done.producer_epoch, round + 1);
            // The old epoch can add nothing more; the new one starts the next transaction.
            assert_eq!(add_partitions(&done, 77, round, &[tp("out", 0)], 10), Err(ResponseError::InvalidProducerEpoch));
            assert_eq!(add_partitions(&done, 77, round + 1, &[tp("out", 0)], 10).unwrap().unwrap().state, Ongoing);
            current = done;
        }
    }

    #[test]
    fn a_version_2_retry_is_answered_with_the_bumped_epoch() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        let open = add_partitions(&r, 77, 0, &[tp("out", 0)], 6).unwrap().unwrap();
        let p = prepared(end(&open, None, 77, 0, true, true));
        assert_eq!(end(&p, None, 77, 0, true, true), Err(ResponseError::ConcurrentTransactions), "while the markers are written, a retry asks again");
        assert_eq!(end(&p, None, 77, 0, false, true), Err(ResponseError::InvalidProducerEpoch), "not the other end");
        assert_eq!(end(&p, None, 77, 1, true, true), Err(ResponseError::ConcurrentTransactions));
        let done = complete(&p, 9);
        assert_eq!(end(&done, None, 77, 0, true, true), Ok(End::AlreadyDone), "the retry of the commit");
        assert_eq!(end(&done, None, 77, 0, false, true), Err(ResponseError::InvalidProducerEpoch), "not the other end");
        assert_eq!(end(&done, None, 77, 1, true, true), Err(ResponseError::InvalidTxnState), "a commit with nothing open");
        assert_eq!(end(&done, None, 78, 0, true, true), Err(ResponseError::InvalidProducerIdMapping));
    }

    #[test]
    fn a_version_2_abort_with_nothing_open_still_moves_the_epoch_on() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        let p = prepared(end(&r, None, 77, 0, false, true));
        assert_eq!((p.state, p.producer_epoch), (PrepareAbort, 1));
        assert!(p.partitions.is_empty() && p.offsets.is_empty(), "no markers to write");
        let done = complete(&p, 9);
        assert_eq!(end(&done, None, 77, 0, false, true), Ok(End::AlreadyDone));
        // Version 1 keeps refusing it.
        assert_eq!(end(&r, None, 77, 0, false, false), Err(ResponseError::InvalidTxnState));
    }

    #[test]
    fn a_version_2_producer_aborting_after_its_timeout_carries_on_at_the_new_epoch() {
        let r = ready(init(None, 1_000, (-1, -1), 77, 0));
        let open = add_partitions(&r, 77, 0, &[tp("out", 0)], 100).unwrap().unwrap();
        let done = complete(&expire(&open, 5_000).expect("timed out"), 5_001);
        assert_eq!(done.producer_epoch, 1);
        assert_eq!(end(&done, None, 77, 0, false, true), Ok(End::AlreadyDone), "answered with epoch 1");
        assert_eq!(end(&done, None, 77, 0, true, true), Err(ResponseError::InvalidProducerEpoch), "its commit is refused: the transaction was aborted");
        assert_eq!(end(&done, None, 77, 0, false, false), Err(ResponseError::InvalidProducerEpoch), "version 1 stays fenced");
    }

    #[test]
    fn a_version_2_end_at_the_last_epoch_moves_to_a_fresh_producer_id() {
        let top = TransactionRecord { producer_epoch: LAST_EPOCH, ..ready(init(None, 60_000, (-1, -1), 77, 5)) };
        let open = add_partitions(&top, 77, LAST_EPOCH, &[tp("out", 0)], 6).unwrap().unwrap();
        let p = prepared(end(&open, None, 77, LAST_EPOCH, true, true));
        // The markers end the transaction of the id and epoch that wrote it.
        assert_eq!((p.producer_id, p.producer_epoch), (77, LAST_EPOCH));
        assert!(needs_renewal(&p, LAST_EPOCH));
        let done = complete(&p, 9);
        assert_eq!(end(&done, None, 77, LAST_EPOCH, true, true), Ok(End::Renew));
        let renewed = renew(&done, 99, 10);
        assert_eq!((renewed.producer_id, renewed.producer_epoch, renewed.state), (99, 0, CompleteCommit));
        assert_eq!(add_partitions(&renewed, 99, 0, &[tp("out", 0)], 11).unwrap().unwrap().state, Ongoing);
        assert_eq!(add_partitions(&renewed, 77, LAST_EPOCH, &[tp("out", 0)], 11), Err(ResponseError::InvalidProducerIdMapping));
        // Below the last epoch, an end bumps and needs no renewal.
        let below =
            add_partitions(&TransactionRecord { producer_epoch: LAST_EPOCH - 1, ..top.clone() }, 77, LAST_EPOCH - 1, &[tp("out", 0)], 6).unwrap().unwrap();
        let p = prepared(end(&below, None, 77, LAST_EPOCH - 1, false, true));
        assert_eq!(p.producer_epoch, LAST_EPOCH);
        assert!(!needs_renewal(&p, LAST_EPOCH - 1));
    }

    #[test]
    fn an_end_retried_under_the_renewed_producer_id_learns_the_fresh_one() {
        let top = TransactionRecord { producer_epoch: LAST_EPOCH, ..ready(init(None, 60_000, (-1, -1), 77, 5)) };
        let open = add_partitions(&top, 77, LAST_EPOCH, &[tp("out", 0)], 6).unwrap().unwrap();
        let renewed = renew(&complete(&prepared(end(&open, None, 77, LAST_EPOCH, true, true)), 9), 99, 10);
        // The answer naming producer id 99 was lost; the producer retries.
        assert_eq!(end(&renewed, Some(77), 77, LAST_EPOCH, true, true), Ok(End::AlreadyDone));
        // Without the previous id on record, it cannot be told from a stranger.
        assert_eq!(end(&renewed, None, 77, LAST_EPOCH, true, true), Err(ResponseError::InvalidProducerIdMapping));
        // Only the end it made, by the id it had, at the epoch it ended at.
        assert_eq!(end(&renewed, Some(77), 77, LAST_EPOCH, false, true), Err(ResponseError::InvalidProducerIdMapping), "not the other end");
        assert_eq!(end(&renewed, Some(77), 76, LAST_EPOCH, true, true), Err(ResponseError::InvalidProducerIdMapping), "not another id");
        assert_eq!(end(&renewed, Some(77), 77, LAST_EPOCH - 1, true, true), Err(ResponseError::InvalidProducerIdMapping), "not an older epoch");
        assert_eq!(end(&renewed, Some(77), 77, LAST_EPOCH, true, false), Err(ResponseError::InvalidProducerIdMapping), "version 1 never renews");
        // Once the producer goes on under its fresh id, the retry is stale.
        let next = add_partitions(&renewed, 99, 0, &[tp("out", 0)], 11).unwrap().unwrap();
        assert_eq!(end(&next, Some(77), 77, LAST_EPOCH, true, true), Err(ResponseError::InvalidProducerIdMapping));
    }

    #[test]
    fn a_version_2_offset_commit_opens_the_transaction_itself() {
        let r = ready(init(None, 60_000, (-1, -1), 77, 5));
        let next = commit_offsets(&r, 77, 0, "g", &[offset(0, 5)], true, 42).unwrap();
        assert_eq!((next.state, next.started_ms, next.offsets.len()), (Ongoing, 42, 1));
        assert_eq!(commit_offsets(&r, 77, 1, "g", &[offset(0, 5)], true, 42), Err(ResponseError::InvalidProducerEpoch));
        let p = prepared(end(&next, None, 77, 0, true, true));
        assert_eq!(p.offsets.len(), 1, "the offsets commit with the transaction");
    }
}
