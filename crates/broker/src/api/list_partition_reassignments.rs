//! ListPartitionReassignments (v0): the moves in progress, of every
//! partition or of those named, with the replicas being added and removed.

use std::collections::BTreeMap;

use runnel_controller::Metadata;
use runnel_protocol::kafka_protocol::messages::list_partition_reassignments_response::{OngoingPartitionReassignment, OngoingTopicReassignment};
use runnel_protocol::kafka_protocol::messages::{BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName};

use super::str_bytes;
use crate::topics;

fn ids(v: &[runnel_controller::metadata::NodeId]) -> Vec<BrokerId> {
    v.iter().map(|n| BrokerId(n.0 as i32)).collect()
}

pub(crate) fn handle(metadata: &Metadata, request: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    let only: Option<BTreeMap<String, Vec<i32>>> = request.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
    let state = metadata.state();
    let mut by_topic: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for r in topics::reassignments(&state.image, only.as_ref()) {
        by_topic.entry(r.topic).or_default().push(
            OngoingPartitionReassignment::default()
                .with_partition_index(r.partition)
                .with_replicas(ids(&r.replicas))
                .with_adding_replicas(ids(&r.adding))
                .with_removing_replicas(ids(&r.removing)),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, partitions)| OngoingTopicReassignment::default().with_name(TopicName(str_bytes(name))).with_partitions(partitions))
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
