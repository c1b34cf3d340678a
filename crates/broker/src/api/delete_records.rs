//! DeleteRecords (v0-2, KIP-107): moves each partition's log start offset
//! up to the offset asked (-1: the high watermark) on its leader; records
//! below it are no longer served and whole segments below it are deleted.
//! Followers take the leader's log start with their next fetch. The answer
//! comes once the leader has moved and persisted it (Kafka also waits for
//! the followers; here they follow within a fetch round).

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use runnel_protocol::kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use runnel_replica::ReplicaManager;
use runnel_storage::StorageError;

use super::{code, leader_error};
use crate::acl::{Access, Resource, op};

/// Up to the high watermark (Kafka's -1).
const HIGH_WATERMARK: i64 = -1;

pub(crate) async fn handle(access: &Access, replicas: &ReplicaManager, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let allowed = access.allowed(Resource::Topic, &name, op::DELETE);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let result = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index).with_low_watermark(-1);
            let outcome = if allowed { delete_below(replicas, &name, p.partition_index, p.offset).await } else { Err(ResponseError::TopicAuthorizationFailed) };
            partitions.push(match outcome {
                Ok(low_watermark) => result.with_low_watermark(low_watermark),
                Err(e) => result.with_error_code(code(e)),
            });
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(topic.name).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// The partition's new log start offset, or why it did not move.
async fn delete_below(replicas: &ReplicaManager, topic: &str, partition: i32, offset: i64) -> Result<i64, ResponseError> {
    let led = replicas.leader(topic, partition).map_err(|e| leader_error(&e))?;
    let log = led.log().clone();
    let high_watermark = log.high_watermark();
    let target = if offset == HIGH_WATERMARK { high_watermark } else { offset };
    if target < 0 || target > high_watermark {
        return Err(ResponseError::OffsetOutOfRange);
    }
    match tokio::task::spawn_blocking(move || log.advance_log_start(target)).await {
        Ok(Ok(start)) => Ok(start),
        // The replica was deleted or moved away meanwhile: the client looks again.
        Ok(Err(StorageError::Closed(_))) => Err(ResponseError::NotLeaderOrFollower),
        Ok(Err(e)) => {
            tracing::error!(topic, partition, error = %e, "could not move the log start offset");
            Err(ResponseError::KafkaStorageError)
        }
        Err(e) => {
            tracing::error!(topic, partition, error = %e, "log start offset task failed");
            Err(ResponseError::UnknownServerError)
        }
    }
}
