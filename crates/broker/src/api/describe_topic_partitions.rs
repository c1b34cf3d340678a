//! DescribeTopicPartitions (KIP-966): what Metadata says of topics'
//! partitions, a page at a time. Topics go in name order (the ones asked
//! for, or every topic the principal may describe), at most
//! `response_partition_limit` partitions (capped at [`PARTITION_LIMIT`])
//! per answer; a cursor (topic, partition) says where the next page
//! starts. Each topic carries the operations the principal may perform
//! on it (KIP-430). A topic asked for by name that the principal may not
//! describe is TOPIC_AUTHORIZATION_FAILED whether or not it exists; one
//! that does not exist is UNKNOWN_TOPIC_OR_PARTITION. Runnel has no
//! eligible leader replicas (KIP-966's ELR): those fields are null.

use runnel_controller::Metadata;
use runnel_controller::metadata::{PartitionRecord, TopicRecord};
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use runnel_protocol::kafka_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName};
use runnel_replica::ReplicaManager;

use super::{code, str_bytes};
use crate::acl::{Access, Resource, op};
use crate::config::BrokerConfig;

/// The most partitions one answer holds (Kafka's
/// `max.request.partition.size.limit` default).
pub const PARTITION_LIMIT: usize = 2000;

pub(crate) fn handle(
    access: &Access,
    config: &BrokerConfig,
    metadata: &Metadata,
    replicas: &ReplicaManager,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let state = metadata.state();
    let image = &state.image;
    let serves = |t: &TopicRecord, p: &PartitionRecord| replicas.serves_as_leader(image, t, p);
    let limit = usize::try_from(request.response_partition_limit).ok().filter(|l| *l > 0).map_or(PARTITION_LIMIT, |l| l.min(PARTITION_LIMIT));
    // Every topic (those it may not describe left out, uncounted), or those asked for.
    let asked = !request.topics.is_empty();
    let mut names: Vec<String> = if asked {
        request.topics.iter().map(|t| t.name.0.to_string()).collect()
    } else {
        image.topics.keys().filter(|name| access.decide(Resource::Topic, name, op::DESCRIBE)).cloned().collect()
    };
    names.sort_unstable();
    names.dedup();
    let cursor = request.cursor.as_ref().map(|c| (c.topic_name.0.to_string(), c.partition_index.max(0) as usize));
    let mut left = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names.iter().filter(|n| cursor.as_ref().is_none_or(|(from, _)| n.as_str() >= from.as_str())) {
        let named = TopicName(str_bytes(name.clone()));
        let refused = |e: ResponseError| DescribeTopicPartitionsResponseTopic::default().with_name(Some(named.clone())).with_error_code(code(e));
        if asked && !access.allowed(Resource::Topic, name, op::DESCRIBE) {
            // Whether it exists is not for this principal to learn.
            topics.push(refused(ResponseError::TopicAuthorizationFailed));
            continue;
        }
        if !image.topics.contains_key(name) {
            topics.push(refused(ResponseError::UnknownTopicOrPartition));
            continue;
        }
        if left == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(named).with_partition_index(0));
            break;
        }
        let first = cursor.as_ref().filter(|(from, _)| from == name).map_or(0, |(_, p)| *p);
        let described = super::metadata::topic(image, name, config.node_id, &serves);
        let total = described.partitions.len();
        let partitions: Vec<DescribeTopicPartitionsResponsePartition> = described
            .partitions
            .into_iter()
            .skip(first)
            .take(left)
            .map(|p| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(p.error_code)
                    .with_partition_index(p.partition_index)
                    .with_leader_id(p.leader_id)
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replica_nodes)
                    .with_isr_nodes(p.isr_nodes)
                    .with_eligible_leader_replicas(None)
                    .with_last_known_elr(None)
                    .with_offline_replicas(p.offline_replicas)
            })
            .collect();
        left -= partitions.len();
        let next = first + partitions.len();
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(named.clone()))
                .with_topic_id(described.topic_id)
                .with_partitions(partitions)
                .with_topic_authorized_operations(access.authorized_operations(Resource::Topic, name)),
        );
        if next < total {
            next_cursor = Some(Cursor::default().with_topic_name(named).with_partition_index(next as i32));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}
