//! OffsetDelete: removes a group's committed offsets of topics its members
//! do not subscribe to.

use std::collections::BTreeMap;

use runnel_controller::Metadata;
use runnel_coordinator::GroupCoordinator;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use runnel_protocol::kafka_protocol::messages::{GroupId, OffsetDeleteRequest, OffsetDeleteResponse, TopicName};

use super::{code, str_bytes};
use crate::acl::{Access, Resource, op};

type Partitions = Vec<(String, i32)>;

pub(crate) async fn handle(access: &Access, groups: &GroupCoordinator, metadata: &Metadata, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group: &GroupId = &request.group_id;
    if !access.allowed(Resource::Group, group, op::DELETE) {
        return OffsetDeleteResponse::default().with_error_code(code(ResponseError::GroupAuthorizationFailed));
    }
    let partitions: Partitions = request.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index))).collect();
    let state = metadata.state();
    let image = &state.image;
    let (allowed, denied): (Partitions, Partitions) = partitions.into_iter().partition(|(t, _)| access.allowed(Resource::Topic, t, op::READ));
    let (known, unknown): (Partitions, Partitions) =
        allowed.into_iter().partition(|(t, p)| image.topics.get(t).is_some_and(|r| *p >= 0 && (*p as usize) < r.partitions.len()));
    let mut results: Vec<((String, i32), i16)> = unknown.into_iter().map(|tp| (tp, code(ResponseError::UnknownTopicOrPartition))).collect();
    results.extend(denied.into_iter().map(|tp| (tp, code(ResponseError::TopicAuthorizationFailed))));
    match groups.delete_offsets(group, known).await {
        Err(e) => return OffsetDeleteResponse::default().with_error_code(code(e)),
        Ok(outcomes) => results.extend(outcomes.into_iter().map(|(tp, r)| (tp, r.err().map_or(0, code)))),
    }
    let mut by_topic: BTreeMap<String, Vec<(i32, i16)>> = BTreeMap::new();
    for ((t, p), error) in results {
        by_topic.entry(t).or_default().push((p, error));
    }
    let topics = by_topic
        .into_iter()
        .map(|(t, ps)| {
            OffsetDeleteResponseTopic::default()
                .with_name(TopicName(str_bytes(t)))
                .with_partitions(ps.into_iter().map(|(p, e)| OffsetDeleteResponsePartition::default().with_partition_index(p).with_error_code(e)).collect())
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
