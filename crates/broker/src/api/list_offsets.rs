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
pub(crate) fn lookup(log: &PartitionLog, timestamp: i64, high_watermark: i64) -> Result<(i64, i64), LookupError> {
    match timestamp {
        EARLIEST | EARLIEST_LOCAL => Ok((log.log_start_offset(), -1)),
        LATEST => Ok((high_watermark, -1)),
        MAX_TIMESTAMP => max_timestamp(log, high_watermark),
        t if t >= 0 => {
            // Never below the log start (DeleteRecords may cut through a
            // batch), as Kafka searches from it.
            let mut from = log.log_start_offset();
            loop {
                let Some(batch) = log.batch_for_timestamp(t, from, high_watermark)? else {
                    return Ok((-1, -1));
                };
                let sets = decode_record_sets(&batch).map_err(|e| LookupError::Decode(e.to_string()))?;
                if let Some(r) = sets.iter().flat_map(|s| &s.records).find(|r| r.timestamp >= t && r.offset >= from) {
                    return Ok((r.offset, r.timestamp));
                }
                // Its records at the time all lie below the log start.
                let header = runnel_storage::batch::BatchHeader::parse(&batch).map_err(|e| LookupError::Decode(e.to_string()))?;
                from = from.max(header.last_offset() + 1);
            }
        }
        _ => Ok((-1, -1)),
    }
}

/// The offset of the record with the largest timestamp (KIP-734).
fn max_timestamp(log: &PartitionLog, high_watermark: i64) -> Result<(i64, i64), LookupError> {
    let mut best = (-1, -1);
    let mut next = log.log_start_offset();
    while next < high_watermark {
        let bytes = log.read(next, 1 << 20, high_watermark, true)?;
        if bytes.is_empty() {
            break;
        }
        // Past the last batch read: a compacted log's batch may end after its
        // last record.
        next = next.max(runnel_storage::batch::next_offset_after(&bytes).unwrap_or(next));
        for set in decode_record_sets(&bytes).map_err(|e| LookupError::Decode(e.to_string()))? {
            for r in &set.records {
                if r.timestamp > best.1 {
                    best = (r.offset, r.timestamp);
                }
                next = next.max(r.offset + 1);
            }
        }
    }
    Ok(best)
}
