//! ElectLeaders (v0-2). Preferred elections go through the controller, one
//! partition at a time: ELECTION_NOT_NEEDED where the preferred replica
//! leads already, PREFERRED_LEADER_NOT_AVAILABLE where it is not a live ISR
//! member. Unclean elections are what a leaderless partition of a topic
//! with `unclean.leader.election.enable` gets by itself: a partition with a
//! leader answers ELECTION_NOT_NEEDED, one without ELIGIBLE_LEADERS_NOT_AVAILABLE.

use std::collections::BTreeMap;

use runnel_controller::Metadata;
use runnel_controller::metadata::{Command, CommandError};
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use runnel_protocol::kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};

use super::{code, str_bytes};

const PREFERRED: i8 = 0;

/// The outcome of one partition's election.
async fn elect(metadata: &Metadata, unclean: bool, topic: &str, partition: i32) -> Result<(), (ResponseError, String)> {
    let state = metadata.state();
    let Some(p) = state.image.topics.get(topic).and_then(|t| t.partitions.get(usize::try_from(partition).ok()?)) else {
        return Err((ResponseError::UnknownTopicOrPartition, format!("{topic}-{partition} does not exist")));
    };
    if unclean {
        return Err(match p.leader {
            Some(l) => (ResponseError::ElectionNotNeeded, format!("{topic}-{partition} has a leader ({l})")),
            None => (
                ResponseError::EligibleLeadersNotAvailable,
                format!("{topic}-{partition} has no live ISR member; set unclean.leader.election.enable=true on the topic to elect any live replica"),
            ),
        });
    }
    if p.leader == p.replicas.first().copied() {
        return Err((ResponseError::ElectionNotNeeded, format!("the preferred replica leads {topic}-{partition} already")));
    }
    match metadata.propose(Command::ElectPreferredLeader { topic: topic.to_string(), partition }).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(CommandError::InvalidRequest(m))) => Err((ResponseError::PreferredLeaderNotAvailable, m)),
        Ok(Err(e)) => Err((ResponseError::UnknownServerError, e.to_string())),
        Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
    }
}

pub(crate) async fn handle(metadata: &Metadata, request: ElectLeadersRequest, version: i16) -> ElectLeadersResponse {
    let unclean = version >= 1 && request.election_type != PREFERRED;
    // No topics named: every partition of every topic.
    let wanted: BTreeMap<String, Vec<i32>> = match request.topic_partitions {
        Some(topics) => topics.into_iter().map(|t| (t.topic.to_string(), t.partitions)).collect(),
        None => metadata.state().image.topics.iter().map(|(name, t)| (name.clone(), (0..t.partitions.len() as i32).collect())).collect(),
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let mut partition_result = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let result = PartitionResult::default().with_partition_id(partition);
            partition_result.push(match elect(metadata, unclean, &topic, partition).await {
                Ok(()) => result,
                Err((e, message)) => result.with_error_code(code(e)).with_error_message(Some(str_bytes(message))),
            });
        }
        results.push(ReplicaElectionResult::default().with_topic(TopicName(str_bytes(topic))).with_partition_result(partition_result));
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}
