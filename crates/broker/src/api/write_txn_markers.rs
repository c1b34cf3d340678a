//! WriteTxnMarkers v1, for administrators (KIP-664's abort of a hanging
//! transaction: `kafka-transactions.sh abort`, kafka-python's
//! `abort_transaction`): each marker is written into the partitions led
//! here and replicated as acks=all. Runnel's own coordinator writes its
//! markers over gRPC, not through this API. Needs CLUSTER_ACTION on the
//! cluster, as in Kafka.

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use runnel_protocol::kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use runnel_replica::ReplicaManager;
use runnel_replica::markers::write_local;
use runnel_rpc::replication::{ReplicaError, TxnMarker};

use super::code;

pub(crate) async fn handle(replicas: &ReplicaManager, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let mut markers = Vec::with_capacity(request.markers.len());
    for m in request.markers {
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in m.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for p in t.partition_indexes {
                let marker = TxnMarker {
                    topic: t.name.0.to_string(),
                    partition: p,
                    producer_id: m.producer_id.0,
                    producer_epoch: i32::from(m.producer_epoch),
                    commit: m.transaction_result,
                    coordinator_epoch: m.coordinator_epoch,
                };
                let written = write_local(replicas, &marker).await;
                let error = match ReplicaError::try_from(written.error) {
                    Ok(ReplicaError::None) => None,
                    Ok(ReplicaError::NotLeader | ReplicaError::FencedEpoch | ReplicaError::UnknownEpoch) => Some(ResponseError::NotLeaderOrFollower),
                    Ok(ReplicaError::NotEnoughReplicas) => Some(ResponseError::NotEnoughReplicas),
                    Ok(ReplicaError::ProducerFenced) => Some(ResponseError::InvalidProducerEpoch),
                    _ => Some(ResponseError::KafkaStorageError),
                };
                partitions.push(WritableTxnMarkerPartitionResult::default().with_partition_index(p).with_error_code(error.map_or(0, code)));
            }
            topics.push(WritableTxnMarkerTopicResult::default().with_name(t.name).with_partitions(partitions));
        }
        markers.push(WritableTxnMarkerResult::default().with_producer_id(m.producer_id).with_topics(topics));
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
