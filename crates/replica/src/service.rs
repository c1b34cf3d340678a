//! The leader side of replication over gRPC: followers fetch the batches of
//! the partitions they follow here, reporting their log end and flushed
//! offsets (which move the high watermark), and ask where an epoch ends
//! before they truncate (KIP-101/279); the transaction coordinator's node
//! has transaction markers written here (see [`crate::markers`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::select_all;
use runnel_rpc::replication::replication_server::Replication;
use runnel_rpc::replication::{
    EpochEndOffsetReply, EpochEndOffsetRequest, FetchReply, FetchRequest, FetchedPartition, ReplicaError, WriteMarkersReply, WriteMarkersRequest,
};
use runnel_storage::{LeaderEpoch, Offset, StorageError};
use tonic::{Request, Response, Status};

use runnel_controller::metadata::NodeId;

use crate::engine::{EpochMismatch, FollowerFetch};
use crate::manager::ReplicaManager;
use crate::partition::{FollowerFetchError, Partition};

/// Largest gRPC message of a replica fetch.
pub const FETCH_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The most bytes of one partition in a fetch reply (Kafka's
/// `replica.fetch.max.bytes` default).
pub const PARTITION_BYTES_MAX: usize = 1024 * 1024;

/// The longest a follower's fetch may wait for data.
const FETCH_WAIT_MAX: Duration = Duration::from_secs(5);

/// Whether a follower's request reaches the partition it means: this
/// leader's replica of the same topic (a deleted topic's, still here or
/// here already under a re-created topic's name, would hand its records to
/// the other's log) at the same leader epoch.
fn check_led(p: Arc<Partition>, leader_epoch: i32, topic_id: &[u8]) -> Result<Arc<Partition>, ReplicaError> {
    if !topic_id.is_empty() && topic_id != p.topic_id().as_bytes() {
        return Err(ReplicaError::UnknownTopicId);
    }
    let leader_epoch = LeaderEpoch(leader_epoch);
    match p.leader_epoch() {
        Some(e) if leader_epoch < e => Err(ReplicaError::FencedEpoch),
        Some(e) if leader_epoch > e => Err(ReplicaError::UnknownEpoch),
        Some(_) => Ok(p),
        None => Err(ReplicaError::NotLeader),
    }
}

pub struct ReplicationService {
    pub replicas: Arc<ReplicaManager>,
}

impl ReplicationService {
    /// A partition led here at exactly `leader_epoch`, of the topic id
    /// `topic_id` (16 bytes; empty: not checked), or why not.
    fn led(&self, topic: &str, partition: i32, leader_epoch: i32, topic_id: &[u8]) -> Result<Arc<Partition>, ReplicaError> {
        let p = self.replicas.leader(topic, partition).map_err(|_| ReplicaError::NotLeader)?;
        check_led(p, leader_epoch, topic_id)
    }

    /// One pass over the requested partitions (`led`, in request order):
    /// the reply, whether it should go now (data or an error), and the
    /// bytes in it for partitions where the follower is outside the ISR
    /// (what the leader-side throttle counts).
    fn fetch_once(&self, request: &FetchRequest, led: &[Result<Arc<Partition>, ReplicaError>]) -> (FetchReply, bool, usize) {
        let mut ready = false;
        let mut catching_up = 0;
        // Only a leader-side limit needs to know who is catching up.
        let throttled = self.replicas.leader_throttle().is_some();
        let budget_max = request.max_bytes.max(1) as usize;
        let mut budget = budget_max;
        let now = Instant::now();
        let partitions = request
            .partitions
            .iter()
            .zip(led)
            .map(|(p, partition)| {
                let mut out = FetchedPartition { topic: p.topic.clone(), partition: p.partition, ..Default::default() };
                let partition = match partition {
                    Ok(partition) => partition,
                    Err(e) => {
                        out.set_error(*e);
                        ready = true;
                        return out;
                    }
                };
                let fetch = FollowerFetch {
                    follower: NodeId(request.replica_id),
                    leader_epoch: LeaderEpoch(p.leader_epoch),
                    log_end: Offset(p.fetch_offset),
                    flushed: Offset(p.flushed_offset),
                };
                let log = partition.log().clone();
                let leader_end = log.log_end_offset();
                match partition.follower_fetch(fetch, now) {
                    Ok((high_watermark, log_start)) => {
                        out.high_watermark = high_watermark.0;
                        out.log_start_offset = log_start.0;
                    }
                    Err(e) => {
                        out.set_error(match e {
                            FollowerFetchError::NotLeader(_) => ReplicaError::NotLeader,
                            FollowerFetchError::Epoch(EpochMismatch::Fenced { .. }) => ReplicaError::FencedEpoch,
                            FollowerFetchError::Epoch(EpochMismatch::Unknown { .. }) => ReplicaError::UnknownEpoch,
                            // The follower truncates again when told.
                            FollowerFetchError::Ahead { .. } => ReplicaError::OffsetOutOfRange,
                        });
                        out.log_start_offset = log.log_start_offset();
                        ready = true;
                        return out;
                    }
                }
                // At most PARTITION_BYTES_MAX each, so one partition's
                // backlog (a follower catching up) cannot fill the reply and
                // hold back the others' new records (KIP-74's per-partition
                // limit); the first batch of the reply goes even if larger.
                match log.read(p.fetch_offset, budget.min(PARTITION_BYTES_MAX), leader_end, budget == budget_max) {
                    Ok(records) => {
                        budget = budget.saturating_sub(records.len());
                        ready |= !records.is_empty();
                        if throttled && !records.is_empty() && partition.in_isr(NodeId(request.replica_id)) == Some(false) {
                            catching_up += records.len();
                        }
                        out.records = records;
                    }
                    Err(StorageError::OffsetOutOfRange { .. }) => {
                        out.set_error(ReplicaError::OffsetOutOfRange);
                        ready = true;
                    }
                    // Deleted or moved away meanwhile: the follower looks again.
                    Err(StorageError::Closed(_)) => {
                        out.set_error(ReplicaError::NotLeader);
                        ready = true;
                    }
                    Err(e) => {
                        tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "read for a follower failed");
                        out.set_error(ReplicaError::Storage);
                        ready = true;
                    }
                }
                out
            })
            .collect();
        (FetchReply { partitions }, ready, catching_up)
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn fetch(&self, request: Request<FetchRequest>) -> Result<Response<FetchReply>, Status> {
        let request = request.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms)).min(FETCH_WAIT_MAX);
        loop {
            let led: Vec<_> = request.partitions.iter().map(|p| self.led(&p.topic, p.partition, p.leader_epoch, &p.topic_id)).collect();
            // Register for the wake-ups of exactly these partitions before
            // reading, so no append between the read and the wait is missed.
            let mut appended: Vec<_> = led.iter().flatten().map(|p| Box::pin(p.appended())).collect();
            for a in &mut appended {
                a.as_mut().enable();
            }
            let (reply, ready, catching_up) = self.fetch_once(&request, &led);
            if ready || appended.is_empty() || tokio::time::Instant::now() >= deadline || self.replicas.shutdown().is_cancelled() {
                // leader.replication.throttled.rate: a reply that carries a
                // catching-up follower's backlog goes out at the rate.
                if catching_up > 0
                    && let Some(throttle) = self.replicas.leader_throttle()
                {
                    throttle.take(catching_up).await;
                }
                return Ok(Response::new(reply));
            }
            tokio::select! {
                _ = select_all(appended) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.replicas.shutdown().cancelled() => {}
            }
        }
    }

    async fn epoch_end_offset(&self, request: Request<EpochEndOffsetRequest>) -> Result<Response<EpochEndOffsetReply>, Status> {
        let r = request.into_inner();
        let mut reply = EpochEndOffsetReply { epoch: -1, end_offset: -1, ..Default::default() };
        match self.led(&r.topic, r.partition, r.leader_epoch, &r.topic_id) {
            Ok(partition) => {
                if let Some((epoch, end)) = partition.log().end_offset_for_epoch(r.requested_epoch) {
                    reply.epoch = epoch;
                    reply.end_offset = end;
                }
            }
            Err(e) => reply.set_error(e),
        }
        Ok(Response::new(reply))
    }

    async fn write_markers(&self, request: Request<WriteMarkersRequest>) -> Result<Response<WriteMarkersReply>, Status> {
        let markers = request.into_inner().markers;
        let results = futures::future::join_all(markers.iter().map(|m| crate::markers::write_local(&self.replicas, m))).await;
        Ok(Response::new(WriteMarkersReply { results }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Durability, EngineConfig};
    use crate::partition::{Identity, TopicSettings};
    use runnel_controller::metadata::PartitionRecord;
    use runnel_storage::{LogConfig, LogManager, TopicPartition};
    use uuid::Uuid;

    /// A follower that applied a topic's deletion and re-creation fetches
    /// from a leader that has not yet (or the other way round): both replicas
    /// are at leader epoch 0 under the same name, and without the topic id
    /// the deleted topic's records would go into the new topic's log.
    #[test]
    fn a_follower_is_served_only_by_a_replica_of_its_own_topic() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogManager::open(dir.path(), |_| LogConfig::default(), 16).unwrap();
        let tp = TopicPartition::new("t", 0);
        let log = logs.get_or_create(&tp, LogConfig::default()).unwrap();
        let (id, me) = (Uuid::new_v4(), NodeId(1));
        let record = PartitionRecord { replicas: vec![me, NodeId(2)], isr: vec![me, NodeId(2)], leader: Some(me), leader_epoch: 3, partition_epoch: 0 };
        let engine_config = EngineConfig { replica_lag_time_max: Duration::from_secs(10), durability: Durability::Flushed };
        let identity = Identity { tp, topic_id: id, me, engine_config, timings: Arc::default() };
        let led = Arc::new(Partition::new(identity, log, record, TopicSettings::default(), 1, Instant::now()));

        let other = Uuid::new_v4();
        assert!(matches!(check_led(led.clone(), 3, other.as_bytes()), Err(ReplicaError::UnknownTopicId)));
        assert!(check_led(led.clone(), 3, id.as_bytes()).is_ok());
        assert!(check_led(led.clone(), 3, &[]).is_ok(), "a follower from before topic ids is served as before");
        assert!(matches!(check_led(led.clone(), 2, id.as_bytes()), Err(ReplicaError::FencedEpoch)));
        assert!(matches!(check_led(led, 4, id.as_bytes()), Err(ReplicaError::UnknownEpoch)));
    }
}
