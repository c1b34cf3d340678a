//! Fetch: read whole batches up to the high watermark, honouring max_bytes
//! (the whole response) and partition_max_bytes; wait up to max_wait_ms for
//! min_bytes to arrive. Fetch sessions (KIP-227) are declined: every response
//! has session id 0, and clients then send full requests.

use std::sync::Arc;
use std::time::Duration;

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::FetchRequest;
use runnel_protocol::kafka_protocol::messages::fetch_response::{FetchResponse, FetchableTopicResponse, PartitionData};
use runnel_storage::StorageError;

use super::code;
use crate::broker::Broker;

/// A client may not hold a fetch open longer than this, whatever it asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub(crate) async fn handle(broker: &Arc<Broker>, request: FetchRequest) -> FetchResponse {
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes <= 0 { i32::MAX as usize } else { request.max_bytes as usize };
    loop {
        let arrived = broker.data_arrived();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let (response, bytes, errors) = read_once(broker, &request, max_bytes);
        let timed_out = tokio::time::Instant::now() >= deadline;
        if bytes >= min_bytes || errors || timed_out || broker.is_shutting_down() {
            return response;
        }
        tokio::select! {
            _ = arrived => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// One pass over the requested partitions: the response, the record bytes
/// in it, and whether any partition has an error (which ends the wait).
fn read_once(broker: &Broker, request: &FetchRequest, max_bytes: usize) -> (FetchResponse, usize, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.topic.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_records(Some(bytes::Bytes::new()));
            let checked = broker.leader_partition(name, p.partition).and_then(|(log, record)| {
                match super::check_leader_epoch(p.current_leader_epoch, record.leader_epoch) {
                    Some(e) => Err(e),
                    None => Ok(log),
                }
            });
            let log = match checked {
                Ok(log) => log,
                Err(e) => {
                    data.error_code = code(e);
                    errors = true;
                    partitions.push(data);
                    continue;
                }
            };
            let high_watermark = log.high_watermark();
            data.high_watermark = high_watermark;
            data.last_stable_offset = high_watermark;
            data.log_start_offset = log.log_start_offset();
            let budget = (p.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
            // KIP-74: the first batch of the response is sent whole even when
            // larger than the limits, so a consumer can always progress.
            let min_one = total == 0;
            match log.read(p.fetch_offset, budget, high_watermark, min_one) {
                Ok(records) => {
                    total += records.len();
                    if !records.is_empty() {
                        broker.metrics.bytes_out(name, records.len());
                    }
                    data.records = Some(records);
                }
                Err(StorageError::OffsetOutOfRange { .. }) => {
                    data.error_code = code(ResponseError::OffsetOutOfRange);
                    errors = true;
                }
                Err(e) => {
                    tracing::error!(topic = name, partition = p.partition, error = %e, "read failed");
                    data.error_code = code(ResponseError::KafkaStorageError);
                    errors = true;
                }
            }
            partitions.push(data);
        }
        topics.push(FetchableTopicResponse::default().with_topic(topic.topic.clone()).with_topic_id(topic.topic_id).with_partitions(partitions));
    }
    (FetchResponse::default().with_session_id(0).with_responses(topics), total, errors)
}
