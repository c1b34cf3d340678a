//! ListOffsets: earliest (-2), latest (-1, the high watermark, or the last
//! stable offset for isolation level READ_COMMITTED), max timestamp (-3),
//! and the first offset whose record timestamp is at or after a given time;
//! read_committed lookups stay below the last stable offset. Without tiered
//! storage, as Kafka answers when it is off: the earliest local offset (-4,
//! v8) is the earliest, and the latest tiered offset (-5, v9) is unknown
//! (-1). v10's timeout bounds remote reads, of which there are none.

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use runnel_protocol::kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use runnel_protocol::kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use runnel_storage::compression::decode_record_sets;
use runnel_storage::{LeaderEpoch, PartitionLog, StorageError};

use runnel_replica::ReplicaManager;

use super::{code, leader_error};
use crate::acl::{Access, Resource, op};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
/// Kafka's isolation level READ_COMMITTED (ListOffsets v2+, Fetch v4+).
pub(crate) const READ_COMMITTED: i8 = 1;

pub(crate) fn handle(access: &Access, replicas: &ReplicaManager, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    // The leader epoch field exists from v4; older versions must leave it unset.
    let leader_epoch_field = version >= 4;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = if access.allowed(Resource::Topic, &name, op::DESCRIBE) {
                let committed = request.isolation_level == READ_COMMITTED;
                topic.partitions.into_iter().map(|p| partition_offset(replicas, &name, &p, leader_epoch_field, committed)).collect()
            } else {
                let denied = |p: ListOffsetsPartition| {
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code(ResponseError::TopicAuthorizationFailed))
                        .with_offset(-1)
                        .with_timestamp(-1)
                };
                topic.partitions.into_iter().map(denied).collect()
            };
            ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn partition_offset(
    replicas: &ReplicaManager,
    name: &str,
    p: &ListOffsetsPartition,
    leader_epoch_field: bool,
    committed: bool,
) -> ListOffsetsPartitionResponse {
    let led = replicas.leader(name, p.partition_index);
    let epoch = match &led {
        Ok(partition) => partition.epochs().0,
        Err(_) => LeaderEpoch(leader_epoch_in_metadata(replicas, name, p.partition_index)),
    };
    let response =
        ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index).with_leader_epoch(if leader_epoch_field { epoch.0 } else { -1 });
    let failed = |response: ListOffsetsPartitionResponse, e: ResponseError| response.with_error_code(code(e)).with_offset(-1).with_timestamp(-1);
    let partition = match led {
        Ok(partition) => partition,
        Err(e) => return failed(response, leader_error(&e)),
    };
    if let Some(e) = super::check_leader_epoch(p.current_leader_epoch, epoch) {
        return failed(response, e);
    }
    // A new leader whose high watermark has not caught up (KIP-207): retriable.
    if partition.exposed_high_watermark(epoch).is_none() {
        return failed(response, ResponseError::OffsetNotAvailable);
    }
    let log = partition.log();
    let upper = if committed { log.last_stable_offset() } else { log.high_watermark() };
    match lookup(log, p.timestamp, upper) {
        // Nothing is tiered: no offset, and no epoch of one (as Kafka).
        Ok(_) if p.timestamp == LATEST_TIERED => response.with_offset(-1).with_timestamp(-1).with_leader_epoch(-1),
        Ok((offset, timestamp)) => response.with_offset(offset).with_timestamp(timestamp),
        Err(e @ LookupError::Decode(_)) => {
            // A stored batch whose records cannot be read (a producer's
            // compressed batch is stored unread): this lookup fails, the
            // log and the node are fine.
            tracing::warn!(topic = %name, partition = p.partition_index, error = %e, "offset lookup failed");
            failed(response, ResponseError::CorruptMessage)
        }
        // Deleted or moved away since it was found: the client looks again.
        Err(LookupError::Storage(StorageError::Closed(_))) => failed(response, ResponseError::NotLeaderOrFollower),
        Err(e) => {
            tracing::error!(topic = %name, partition = p.partition_index, error = %e, "offset lookup failed");
            failed(response, ResponseError::KafkaStorageError)
        }
    }
}

/// The leader epoch the metadata gives a partition not led here (-1 if unknown).
fn leader_epoch_in_metadata(replicas: &ReplicaManager, topic: &str, partition: i32) -> i32 {
    let state = replicas.metadata().state();
    state.image.topics.get(topic).and_then(|t| usize::try_from(partition).ok().and_then(|i| t.partitions.get(i))).map_or(-1, |p| p.leader_epoch)
}

/// Why an offset lookup failed: the log could not be read, or a stored
/// batch could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("decode stored batch: {0}")]
    Decode(String),
}

/// `(offset, timestamp)` below `high_watermark` (the last stable offset for
/// read_committed); `(-1, -1)` when no record is at or after the time.
/// Never below the log start (DeleteRecords may cut through a batch), as
/// Kafka searches from it.
pub(crate) fn lookup(log: &PartitionLog, timestamp: i64, high_watermark: i64) -> Result<(i64, i64), LookupError> {
    match timestamp {
        EARLIEST | EARLIEST_LOCAL => Ok((log.log_start_offset(), -1)),
        LATEST => Ok((high_watermark, -1)),
        MAX_TIMESTAMP => max_timestamp(log, high_watermark),
        t if t >= 0 => {
            let mut from = log.log_start_offset();
            loop {
                let Some(batch) = log.batch_for_timestamp(t, from, high_watermark)? else {
                    return Ok((-1, -1));
                };
                if let Some(found) = record_times(&batch)?.into_iter().find(|(offset, time)| *time >= t && *offset >= from) {
                    return Ok(found);
                }
                // Its records at the time all lie below the log start.
                let header = runnel_storage::batch::BatchHeader::parse(&batch).map_err(|e| LookupError::Decode(e.to_string()))?;
                from = from.max(header.last_offset() + 1);
            }
        }
        _ => Ok((-1, -1)),
    }
}

/// The offset of the record with the largest timestamp (KIP-734), the
/// first of them if several share it; none below the log start. Segments
/// are read in the order of their largest timestamps, and only while one
/// could hold a larger time (or the same at a lower offset) than found, so
/// the answer costs about a segment's read, not the whole log's.
fn max_timestamp(log: &PartitionLog, high_watermark: i64) -> Result<(i64, i64), LookupError> {
    let start = log.log_start_offset();
    let mut segments: Vec<(i64, i64, i64)> = log.segment_times().into_iter().filter(|(base, next, _)| *next > start && *base < high_watermark).collect();
    segments.sort_by_key(|(base, _, max)| (std::cmp::Reverse(*max), *base));
    let mut best = (-1, -1);
    for (base, next, max) in segments {
        if max < best.1 {
            break;
        }
        if best.0 >= 0 && max == best.1 && base > best.0 {
            continue;
        }
        let upper = next.min(high_watermark);
        let mut from = base.max(start);
        while from < upper {
            let bytes = log.read(from, 1 << 20, upper, true)?;
            if bytes.is_empty() {
                break;
            }
            // Past the last batch read: a compacted log's batch may end after
            // its last record.
            from = from.max(runnel_storage::batch::next_offset_after(&bytes).unwrap_or(from));
            for (offset, time) in record_times(&bytes)? {
                let better = time > best.1 || (time == best.1 && offset < best.0);
                if better && offset >= start && offset < upper {
                    best = (offset, time);
                }
                from = from.max(offset + 1);
            }
        }
    }
    Ok(best)
}

/// Each record's `(offset, timestamp)` in whole stored batches, with the
/// timestamp a consumer sees: in a LogAppendTime batch every record has
/// the batch's max timestamp (the broker's append time; the records keep
/// the producer's create time inside), as Kafka's lookups take it.
fn record_times(bytes: &bytes::Bytes) -> Result<Vec<(i64, i64)>, LookupError> {
    use runnel_storage::batch::{LOG_APPEND_TIME, validate_record_set};
    let decode = |e: &dyn std::fmt::Display| LookupError::Decode(e.to_string());
    let mut out = Vec::new();
    for (header, range) in validate_record_set(bytes).map_err(|e| decode(&e))? {
        let appended = header.attributes & LOG_APPEND_TIME != 0;
        for set in decode_record_sets(&bytes.slice(range)).map_err(|e| decode(&e))? {
            out.extend(set.records.iter().map(|r| (r.offset, if appended { header.max_timestamp } else { r.timestamp })));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_storage::LogConfig;
    use runnel_storage::batch::{build_batch, stamp_log_append_time};

    /// A log of one-record batches at the given times, over many small
    /// segments; the `appended` ones stamped LogAppendTime at that time
    /// (their records keep the time 1 inside).
    fn log_at(dir: &std::path::Path, times: &[(i64, bool)]) -> PartitionLog {
        let config = LogConfig { segment_bytes: 300, ..LogConfig::default() };
        let (log, _) = PartitionLog::open(dir, config).unwrap();
        for (i, &(time, appended)) in times.iter().enumerate() {
            let value = format!("record {i}");
            let mut batch = build_batch(if appended { 1 } else { time }, &[value.as_bytes()]);
            if appended {
                stamp_log_append_time(&mut batch, time);
            }
            log.append(&batch, 0).unwrap();
        }
        log
    }

    /// Reads every record from the start: what the answer must be.
    fn brute_force(log: &PartitionLog, high_watermark: i64) -> (i64, i64) {
        let start = log.log_start_offset();
        let mut best = (-1, -1);
        let mut from = start;
        while from < high_watermark {
            let bytes = log.read(from, 1 << 20, high_watermark, true).unwrap();
            if bytes.is_empty() {
                break;
            }
            for (offset, time) in record_times(&bytes).unwrap() {
                if time > best.1 && offset >= start {
                    best = (offset, time);
                }
                from = from.max(offset + 1);
            }
        }
        best
    }

    /// KIP-734's answer, read segment by segment in the order of their
    /// largest times: the first record of the largest time, never below the
    /// log start nor at or past the high watermark, with LogAppendTime
    /// batches taken at their append time.
    #[test]
    fn the_max_timestamp_is_the_first_record_of_the_largest_time_in_range() {
        let dir = tempfile::tempdir().unwrap();
        let times = [(5, false), (90, false), (30, false), (40, true), (90, false), (10, false), (70, true), (95, false), (60, false), (20, false)];
        let log = log_at(dir.path(), &times);
        assert!(log.segment_count() >= 4, "{} segments", log.segment_count());
        let end = log.log_end_offset();
        log.advance_high_watermark(end);
        assert_eq!(max_timestamp(&log, end).unwrap(), (7, 95));
        assert_eq!(max_timestamp(&log, 7).unwrap(), (1, 90), "95 is not below the high watermark");
        assert_eq!(lookup(&log, 65, 7).unwrap(), (1, 90));
        assert_eq!(lookup(&log, 35, end).unwrap(), (1, 90));
        assert_eq!(lookup(&log, 31, 4).unwrap(), (1, 90));
        log.advance_log_start(2).unwrap();
        assert_eq!(max_timestamp(&log, 7).unwrap(), (4, 90), "the first 90 is below the log start");
        assert_eq!(lookup(&log, 35, 7).unwrap(), (3, 40), "a LogAppendTime batch at its append time, not the 1 inside");
        for hw in 0..=end {
            assert_eq!(max_timestamp(&log, hw).unwrap(), brute_force(&log, hw), "high watermark {hw}");
        }
    }
}
