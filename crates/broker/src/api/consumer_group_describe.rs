//! ConsumerGroupDescribe (KIP-848): a consumer group's epochs, assignor and
//! members, each with its subscription, its assignment and its target.
//! A classic group, or none, is GROUP_ID_NOT_FOUND, which tells admin
//! clients (librdkafka's describe_consumer_groups) to ask DescribeGroups.

use std::collections::{BTreeMap, BTreeSet};

use runnel_coordinator::GroupCoordinator;
use runnel_coordinator::group::consumer::{ConsumerGroup, ConsumerMember, TopicPartition, Topics};
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use runnel_protocol::kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName};

use super::{code, str_bytes};
use crate::acl::{Access, Resource, op};

/// KIP-1099's member type of a consumer-protocol member.
const CONSUMER_MEMBER: i8 = 1;

pub(crate) fn handle(access: &Access, groups: &GroupCoordinator, request: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
    let described = request
        .group_ids
        .iter()
        .map(|id| {
            let mut described = DescribedGroup::default().with_group_id(id.clone()).with_authorized_operations(i32::MIN);
            if !access.allowed(Resource::Group, id, op::DESCRIBE) {
                return described.with_error_code(code(ResponseError::GroupAuthorizationFailed));
            }
            if request.include_authorized_operations {
                described = described.with_authorized_operations(access.authorized_operations(Resource::Group, id));
            }
            match groups.describe_consumer(id) {
                Err(e) => described.with_error_code(code(e)),
                Ok(None) => described
                    .with_error_code(code(ResponseError::GroupIdNotFound))
                    .with_error_message(Some(str_bytes(format!("group {:?} is not a consumer group", id.to_string())))),
                Ok(Some((group, topics))) => {
                    let names: BTreeMap<uuid::Uuid, &String> = topics.iter().map(|(name, (id, _))| (*id, name)).collect();
                    let members = group
                        .members
                        .values()
                        .map(|m| {
                            let regex_topics = subscribed_by_regex(&group, m, &topics);
                            Member::default()
                                .with_member_id(str_bytes(m.id.clone()))
                                .with_instance_id(m.instance_id.clone().map(str_bytes))
                                .with_rack_id(m.rack_id.clone().map(str_bytes))
                                .with_member_epoch(m.epoch)
                                .with_client_id(str_bytes(m.client_id.clone()))
                                .with_client_host(str_bytes(m.client_host.clone()))
                                .with_subscribed_topic_names(m.topics.iter().chain(regex_topics.iter()).map(|t| TopicName(str_bytes(t.clone()))).collect())
                                .with_subscribed_topic_regex(m.regex.clone().map(str_bytes))
                                .with_assignment(assignment(&m.assigned, &names))
                                .with_target_assignment(assignment(&group.target_of(&m.id), &names))
                                .with_member_type(CONSUMER_MEMBER)
                        })
                        .collect();
                    described
                        .with_group_state(str_bytes(group.state()))
                        .with_group_epoch(group.epoch)
                        .with_assignment_epoch(group.target_epoch)
                        .with_assignor_name(str_bytes("uniform"))
                        .with_members(members)
                }
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(described)
}

/// The topics a member's regular expression matches now (Kafka lists them
/// among its subscribed topic names).
fn subscribed_by_regex(group: &ConsumerGroup, member: &ConsumerMember, topics: &Topics) -> Vec<String> {
    if member.regex.is_none() {
        return Vec::new();
    }
    topics.keys().filter(|t| !member.topics.contains(t) && group.member_subscribes(&member.id, t)).cloned().collect()
}

fn assignment(partitions: &BTreeSet<TopicPartition>, names: &BTreeMap<uuid::Uuid, &String>) -> Assignment {
    let mut by_topic: BTreeMap<uuid::Uuid, Vec<i32>> = BTreeMap::new();
    for (id, p) in partitions {
        by_topic.entry(*id).or_default().push(*p);
    }
    Assignment::default().with_topic_partitions(
        by_topic
            .into_iter()
            .map(|(id, ps)| {
                let name = names.get(&id).map(|n| n.to_string()).unwrap_or_default();
                TopicPartitions::default().with_topic_id(id).with_topic_name(TopicName(str_bytes(name))).with_partitions(ps)
            })
            .collect(),
    )
}
