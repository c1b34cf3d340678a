//! OffsetForLeaderEpoch (KIP-101/320): where a leader epoch ends in the
//! leader's log, so a consumer that saw an older leader can detect a
//! truncated log.

use runnel_protocol::kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use runnel_protocol::kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use runnel_replica::ReplicaManager;

use runnel_protocol::kafka_protocol::error::ResponseError;

use super::{code, leader_error};
use crate::acl::{Access, Resource, op};

pub(crate) fn handle(access: &Access, replicas: &ReplicaManager, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let allowed = access.allowed(Resource::Topic, &name, op::DESCRIBE);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let out = EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
                    if !allowed {
                        return out.with_error_code(code(ResponseError::TopicAuthorizationFailed));
                    }
                    let partition = match replicas.leader(&name, p.partition) {
                        Ok(x) => x,
                        Err(e) => return out.with_error_code(code(leader_error(&e))),
                    };
                    if let Some(e) = super::check_leader_epoch(p.current_leader_epoch, partition.epochs().0) {
                        return out.with_error_code(code(e));
                    }
                    match partition.log().end_offset_for_epoch(p.leader_epoch) {
                        Some((epoch, end)) => out.with_leader_epoch(epoch).with_end_offset(end),
                        None => out,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
