//! Topic changes through the controller, with the Kafka error codes
//! clients expect.

use std::collections::BTreeMap;

use runnel_controller::metadata::{Command, CommandError, CommandOk, MetadataImage, NodeId};
use runnel_controller::{Metadata, ProposeError};
use runnel_protocol::kafka_protocol::error::ResponseError;
use uuid::Uuid;

/// A topic-level failure with the Kafka error code a client expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError {
    pub code: ResponseError,
    pub message: String,
}

impl TopicError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        TopicError { code, message: message.into() }
    }
}

impl From<CommandError> for TopicError {
    fn from(e: CommandError) -> Self {
        let code = match &e {
            CommandError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            CommandError::UnknownTopic(_) | CommandError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
            CommandError::InvalidTopicName(_) => ResponseError::InvalidTopicException,
            CommandError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            CommandError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            CommandError::InvalidConfig(_) => ResponseError::InvalidConfig,
            CommandError::UnknownBroker(_) => ResponseError::BrokerNotAvailable,
            CommandError::StaleEpoch(_) => ResponseError::FencedLeaderEpoch,
            CommandError::UnknownGroup(_) => ResponseError::GroupIdNotFound,
            CommandError::NoReassignmentInProgress(_) => ResponseError::NoReassignmentInProgress,
            CommandError::NoScramCredential(..) => ResponseError::ResourceNotFound,
            CommandError::ClusterAlreadyInitialized(_) | CommandError::InvalidRequest(_) => ResponseError::InvalidRequest,
        };
        TopicError::new(code, e.to_string())
    }
}

impl From<ProposeError> for TopicError {
    fn from(e: ProposeError) -> Self {
        // Kafka answers REQUEST_TIMED_OUT when the controller cannot commit in
        // time; clients retry it.
        TopicError::new(ResponseError::RequestTimedOut, e.to_string())
    }
}

/// Proposes a metadata change; returns once this node has applied it.
pub async fn propose(metadata: &Metadata, command: Command) -> Result<CommandOk, TopicError> {
    Ok(metadata.propose(command).await??)
}

/// Creates a topic through the controller; returns its id. Refused first
/// if it would give a broker more than `replicas_per_broker_max` replicas.
pub async fn create_topic(
    metadata: &Metadata,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: BTreeMap<String, String>,
    replicas_per_broker_max: usize,
) -> Result<Uuid, TopicError> {
    let id = Uuid::new_v4();
    let command = Command::CreateTopic { name: name.to_string(), id, partitions, replication_factor, configs };
    dry_run(metadata, &command, replicas_per_broker_max)?;
    match propose(metadata, command).await? {
        CommandOk::TopicCreated { id } => Ok(id),
        other => Err(TopicError::new(ResponseError::UnknownServerError, format!("unexpected controller answer {other:?}"))),
    }
}

pub async fn delete_topic(metadata: &Metadata, name: &str) -> Result<(), TopicError> {
    propose(metadata, Command::DeleteTopic { name: name.to_string() }).await.map(|_| ())
}

pub async fn add_partitions(metadata: &Metadata, name: &str, count: i32, replicas_per_broker_max: usize) -> Result<(), TopicError> {
    let command = Command::CreatePartitions { name: name.to_string(), count };
    dry_run(metadata, &command, replicas_per_broker_max)?;
    propose(metadata, command).await.map(|_| ())
}

/// Adds partitions on the replica lists a client gave (CreatePartitions
/// with assignments): one list per new partition, as Kafka checks them; with
/// `validate_only`, only checked.
pub async fn add_partitions_with_replicas(
    metadata: &Metadata,
    name: &str,
    count: i32,
    assignments: &[Vec<i32>],
    validate_only: bool,
    replicas_per_broker_max: usize,
) -> Result<(), TopicError> {
    let current = match metadata.state().image.topics.get(name) {
        Some(topic) => topic.partitions.len() as i32,
        None => return Err(TopicError::new(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist"))),
    };
    if count <= current {
        return Err(TopicError::new(
            ResponseError::InvalidPartitions,
            format!("topic {name:?} has {current} partitions; the new count must be larger, got {count}"),
        ));
    }
    if assignments.len() as i64 != i64::from(count - current) {
        return Err(TopicError::new(
            ResponseError::InvalidReplicaAssignment,
            format!("increasing the number of partitions of {name:?} by {} but {} assignments provided", count - current, assignments.len()),
        ));
    }
    if assignments.iter().flatten().any(|b| *b < 0) {
        return Err(TopicError::new(ResponseError::InvalidReplicaAssignment, "a replica assignment names a negative broker id"));
    }
    let replicas = assignments.iter().map(|list| list.iter().map(|b| NodeId(*b as u64)).collect()).collect();
    let command = Command::CreatePartitionsWithReplicas { name: name.to_string(), replicas };
    dry_run(metadata, &command, replicas_per_broker_max).map_err(as_assignment_error)?;
    if validate_only {
        return Ok(());
    }
    propose(metadata, command).await.map(|_| ()).map_err(as_assignment_error)
}

/// What a replica list can be refused for (an unknown broker, one named
/// twice, another replication factor), answered as Kafka does:
/// INVALID_REPLICA_ASSIGNMENT.
pub fn as_assignment_error(e: TopicError) -> TopicError {
    match e.code {
        ResponseError::BrokerNotAvailable | ResponseError::InvalidRequest | ResponseError::InvalidReplicationFactor => {
            TopicError::new(ResponseError::InvalidReplicaAssignment, e.message)
        }
        _ => e,
    }
}

/// Kafka's resource type codes in config requests.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Changes a topic's config overrides (`None` removes one) through the
/// controller, validated as the controller applies them; with
/// `validate_only`, only checked.
pub async fn alter_configs(metadata: &Metadata, name: &str, configs: BTreeMap<String, Option<String>>, validate_only: bool) -> Result<(), TopicError> {
    let command = Command::AlterTopicConfig { name: name.to_string(), configs };
    if validate_only {
        return dry_run(metadata, &command, usize::MAX).map(|_| ());
    }
    propose(metadata, command).await.map(|_| ())
}

/// One resource of an AlterConfigs or IncrementalAlterConfigs request: a
/// topic's overrides change as `changes` computes them; other resources are
/// refused.
pub async fn alter_resource(
    metadata: &Metadata,
    resource_type: i8,
    name: &str,
    changes: impl FnOnce() -> Result<BTreeMap<String, Option<String>>, TopicError>,
    validate_only: bool,
) -> Result<(), TopicError> {
    match resource_type {
        RESOURCE_TOPIC => alter_configs(metadata, name, changes()?, validate_only).await,
        RESOURCE_BROKER => {
            let command = Command::AlterBrokerConfig { broker: broker_resource(name)?, configs: changes()? };
            if validate_only {
                return dry_run(metadata, &command, usize::MAX).map(|_| ());
            }
            propose(metadata, command).await.map(|_| ())
        }
        other => Err(TopicError::new(ResponseError::InvalidRequest, format!("resource type {other} has no configs to alter; use 2 (topic) or 4 (broker)"))),
    }
}

/// A BROKER config resource's name: a broker id, or empty for the default
/// of every broker (as Kafka's `--entity-default`).
pub fn broker_resource(name: &str) -> Result<Option<NodeId>, TopicError> {
    if name.is_empty() {
        return Ok(None);
    }
    name.parse::<u64>()
        .map(|id| Some(NodeId(id)))
        .map_err(|_| TopicError::new(ResponseError::InvalidRequest, format!("broker resource {name:?} is not a broker id (or empty, for every broker)")))
}

/// Applies `command` to a copy of this node's metadata: the controller's own
/// checks, with nothing proposed, plus the per-broker replica limit (a
/// node's memory, start-up time and open files grow with the replicas it
/// hosts). Concurrent creations may pass the limit together; it is a guard
/// against a mistyped partition count, not an exact quota.
pub fn dry_run(metadata: &Metadata, command: &Command, replicas_per_broker_max: usize) -> Result<CommandOk, TopicError> {
    let state = metadata.state();
    let before = replicas_per_broker(&state.image);
    // Kafka checks a new name for collisions before validate_only.
    if let Command::CreateTopic { name, .. } | Command::CreateTopicWithReplicas { name, .. } = command {
        runnel_controller::configs::check_topic_collision(name, state.image.topics.keys())?;
    }
    let mut image = state.image.clone();
    // As the leader checks a proposal: Kafka answers TOPIC_ALREADY_EXISTS
    // before INVALID_CONFIG, so a name in use is left to the apply.
    let exists = matches!(command, Command::CreateTopic { name, .. } | Command::CreateTopicWithReplicas { name, .. }
        if state.image.topics.contains_key(name));
    if !exists {
        runnel_controller::configs::check_new_configs(command)?;
    }
    let ok = image.apply(command)?;
    for (broker, count) in replicas_per_broker(&image) {
        let had = before.get(&broker).copied().unwrap_or(0);
        if count > had && count > replicas_per_broker_max {
            return Err(TopicError::new(
                ResponseError::PolicyViolation,
                format!(
                    "broker {broker} would host {count} partition replicas ({had} now), more than its limit of {replicas_per_broker_max} \
                     (replicas_per_broker_max); use fewer partitions, more brokers, or raise the limit"
                ),
            ));
        }
    }
    Ok(ok)
}

fn replicas_per_broker(image: &MetadataImage) -> BTreeMap<NodeId, usize> {
    let mut counts = BTreeMap::new();
    for p in image.topics.values().flat_map(|t| &t.partitions) {
        for r in &p.replicas {
            *counts.entry(*r).or_insert(0) += 1;
        }
    }
    counts
}

/// Starts, replaces or (with `None`) cancels the reassignment of one
/// partition. Without `allow_replication_factor_change`, a target of
/// another size than the partition's replica set is refused.
pub async fn reassign(
    metadata: &Metadata,
    topic: &str,
    partition: i32,
    target: Option<Vec<NodeId>>,
    allow_replication_factor_change: bool,
) -> Result<(), TopicError> {
    if let Some(target) = &target
        && !allow_replication_factor_change
    {
        let state = metadata.state();
        let key = (topic.to_string(), partition);
        let current = match state.image.reassignments.get(&key) {
            Some(r) => Some(r.original.len()),
            None => state.image.topics.get(topic).and_then(|t| t.partitions.get(usize::try_from(partition).ok()?)).map(|p| p.replicas.len()),
        };
        if let Some(n) = current.filter(|n| *n != target.len()) {
            return Err(TopicError::new(
                ResponseError::InvalidReplicationFactor,
                format!("{topic}-{partition} has {n} replicas and the target {}; the request does not allow changing the replication factor", target.len()),
            ));
        }
    }
    match propose(metadata, Command::ReassignPartition { topic: topic.to_string(), partition, target }).await {
        Ok(_) => Ok(()),
        // A target naming a broker that does not exist, or one twice.
        Err(e) if matches!(e.code, ResponseError::BrokerNotAvailable) || e.message.contains("listed twice") => {
            Err(TopicError::new(ResponseError::InvalidReplicaAssignment, e.message))
        }
        Err(e) => Err(e),
    }
}

/// A reassignment in progress, as ListPartitionReassignments shows it.
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<NodeId>,
    pub adding: Vec<NodeId>,
    pub removing: Vec<NodeId>,
}

/// The reassignments in progress; of the given partitions only, if any are named.
pub fn reassignments(image: &MetadataImage, only: Option<&BTreeMap<String, Vec<i32>>>) -> Vec<OngoingReassignment> {
    image
        .reassignments
        .iter()
        .filter(|((t, p), _)| only.is_none_or(|only| only.get(t).is_some_and(|ps| ps.contains(p))))
        .map(|((topic, partition), r)| OngoingReassignment {
            topic: topic.clone(),
            partition: *partition,
            replicas: image.topics.get(topic).and_then(|t| t.partitions.get(*partition as usize)).map_or_else(|| r.replicas(), |p| p.replicas.clone()),
            adding: r.adding(),
            removing: r.removing(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_errors_map_to_kafka_codes() {
        let e: TopicError = CommandError::TopicAlreadyExists("t".into()).into();
        assert_eq!(e.code, ResponseError::TopicAlreadyExists);
        let e: TopicError = CommandError::InvalidReplicationFactor("x".into()).into();
        assert_eq!(e.code, ResponseError::InvalidReplicationFactor);
        let e: TopicError = ProposeError::NoQuorum.into();
        assert_eq!(e.code, ResponseError::RequestTimedOut);
        assert!(e.message.contains("majority"));
    }
}
