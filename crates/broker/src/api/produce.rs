//! Produce: validate and append each partition's record batches, then wait
//! (for acks=1 and acks=all) until the batches are visible under the flush
//! policy, i.e. fsynced by default. acks=0 gets no response.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::ProduceRequest;
use runnel_protocol::kafka_protocol::messages::produce_request::PartitionProduceData;
use runnel_protocol::kafka_protocol::messages::produce_response::{PartitionProduceResponse, ProduceResponse, TopicProduceResponse};
use runnel_storage::batch::BatchError;
use runnel_storage::producer_state::ProducerError;
use runnel_storage::{PartitionLog, StorageError, TopicPartition};

use super::{code, str_bytes};
use crate::broker::{Broker, CommitError};

struct Appended {
    topic: usize,
    partition: usize,
    tp: TopicPartition,
    log: Arc<PartitionLog>,
    end: i64,
    leader_epoch: i32,
}

pub(crate) fn handle(broker: &Arc<Broker>, request: ProduceRequest) -> BoxFuture<'static, Option<ProduceResponse>> {
    let acks = request.acks;
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    let mut appended = Vec::new();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for (ti, topic) in request.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (pi, data) in topic.partition_data.into_iter().enumerate() {
            let mut response =
                PartitionProduceResponse::default().with_index(data.index).with_base_offset(-1).with_log_append_time_ms(-1).with_log_start_offset(-1);
            let outcome = if ![0, 1, -1].contains(&acks) {
                Err((ResponseError::InvalidRequiredAcks, format!("acks must be 0, 1 or -1, got {acks}")))
            } else {
                append(broker, &name, data, acks)
            };
            match outcome {
                Ok((log, info, leader_epoch)) => {
                    response.base_offset = info.base_offset;
                    response.log_start_offset = info.log_start_offset;
                    let tp = TopicPartition::new(name.clone(), response.index);
                    appended.push(Appended { topic: ti, partition: pi, tp, log, end: info.last_offset + 1, leader_epoch });
                }
                Err((e, message)) => {
                    tracing::debug!(topic = %name, partition = response.index, error = %message, "produce refused");
                    response.error_code = code(e);
                    response.error_message = Some(str_bytes(message));
                }
            }
            partitions.push(response);
        }
        topics.push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partitions));
    }
    if !appended.is_empty() {
        broker.notify_appended();
    }
    let broker = broker.clone();
    Box::pin(async move {
        if acks == 0 {
            for a in appended {
                let broker = broker.clone();
                tokio::spawn(async move {
                    if let Err(e) = broker.commit(&a.tp, &a.log, a.end, false, a.leader_epoch).await {
                        tracing::error!(error = %e, "flush after an acks=0 produce failed");
                    }
                });
            }
            return None;
        }
        let waits = appended.iter().map(|a| tokio::time::timeout(timeout, broker.commit(&a.tp, &a.log, a.end, acks == -1, a.leader_epoch)));
        for (a, result) in appended.iter().zip(join_all(waits).await) {
            let response = &mut topics[a.topic].partition_responses[a.partition];
            let failure = match result {
                Ok(Ok(())) => continue,
                Err(_) => (ResponseError::RequestTimedOut, format!("not replicated and durable within the request timeout of {} ms", timeout.as_millis())),
                Ok(Err(CommitError::NotLeader)) => (ResponseError::NotLeaderOrFollower, CommitError::NotLeader.to_string()),
                Ok(Err(CommitError::Storage(e))) => {
                    tracing::error!(error = %e, "flush failed");
                    (ResponseError::KafkaStorageError, e.to_string())
                }
            };
            response.error_code = code(failure.0);
            response.error_message = Some(str_bytes(failure.1));
        }
        Some(ProduceResponse::default().with_responses(topics))
    })
}

fn append(
    broker: &Broker,
    topic: &str,
    data: PartitionProduceData,
    acks: i16,
) -> Result<(Arc<PartitionLog>, runnel_storage::AppendInfo, i32), (ResponseError, String)> {
    let (log, partition) = broker.leader_partition(topic, data.index).map_err(|e| (e, format!("{topic}-{}: {e}", data.index)))?;
    if acks == -1 {
        // min.insync.replicas: the topic's, or the smaller of 2 and the replication factor.
        let factor = partition.replicas.len();
        let min_isr = broker
            .state()
            .image
            .topics
            .get(topic)
            .and_then(|t| t.configs.get("min.insync.replicas").and_then(|v| v.parse::<usize>().ok()))
            .unwrap_or(factor.min(2));
        if partition.isr.len() < min_isr {
            return Err((
                ResponseError::NotEnoughReplicas,
                format!("{topic}-{}: {} in-sync replicas, min.insync.replicas is {min_isr}", data.index, partition.isr.len()),
            ));
        }
    }
    let Some(records) = data.records.filter(|r| !r.is_empty()) else {
        return Err((ResponseError::CorruptMessage, "the request carries no record batch".into()));
    };
    let max = broker
        .state()
        .image
        .topics
        .get(topic)
        .and_then(|t| t.configs.get("max.message.bytes").and_then(|v| v.parse::<usize>().ok()))
        .unwrap_or(broker.config.message_max_bytes);
    if records.len() > max {
        return Err((ResponseError::MessageTooLarge, format!("record batch of {} bytes exceeds max.message.bytes {max}", records.len())));
    }
    match log.append(&records, partition.leader_epoch) {
        Ok(info) => {
            broker.metrics.bytes_in(topic, records.len());
            Ok((log, info, partition.leader_epoch))
        }
        Err(StorageError::InvalidBatch(BatchError::BadMagic(m))) => {
            Err((ResponseError::UnsupportedForMessageFormat, format!("record batch magic {m}; only v2 batches are accepted")))
        }
        Err(StorageError::InvalidBatch(e)) => Err((ResponseError::CorruptMessage, e.to_string())),
        Err(e @ StorageError::RecordSetTooLarge { .. }) => Err((ResponseError::MessageTooLarge, e.to_string())),
        Err(StorageError::Producer(e @ ProducerError::FencedEpoch { .. })) => Err((ResponseError::InvalidProducerEpoch, e.to_string())),
        Err(StorageError::Producer(e @ ProducerError::OutOfOrder { .. })) => Err((ResponseError::OutOfOrderSequenceNumber, e.to_string())),
        Err(StorageError::InvalidRecord(message)) => Err((ResponseError::InvalidRecord, message)),
        Err(e) => {
            tracing::error!(topic, partition = data.index, error = %e, "append failed");
            broker.note_storage_error(&e);
            Err((ResponseError::KafkaStorageError, e.to_string()))
        }
    }
}
