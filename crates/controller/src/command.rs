//! The changes the metadata takes, each a Raft entry, and their outcomes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::records::{Generation, NodeId, OffsetCommit};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets the cluster id once, at the first start of the quorum.
    InitCluster {
        cluster_id: String,
    },
    RegisterBroker {
        id: NodeId,
        kafka_host: String,
        kafka_port: u16,
        external: Option<(String, u16)>,
        rpc_address: String,
        rack: Option<String>,
    },
    UnregisterBroker {
        id: NodeId,
    },
    FenceBroker {
        id: NodeId,
    },
    UnfenceBroker {
        id: NodeId,
    },
    /// A broker stopping cleanly hands its leaderships to the rest of their
    /// ISRs before it exits.
    ControlledShutdown {
        id: NodeId,
    },
    /// `id` is chosen by the proposer, so every controller applies the same one.
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
    },
    /// Sets or (with `None`) removes config overrides.
    AlterTopicConfig {
        name: String,
        configs: BTreeMap<String, Option<String>>,
    },
    /// A partition leader changing its ISR, checked against the partition epoch.
    AlterPartition {
        topic: String,
        partition: i32,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
    },
    /// Moves leadership to the preferred replica if it is in the ISR and live.
    ElectPreferredLeader {
        topic: String,
        partition: i32,
    },
    AllocateProducerIds {
        count: i64,
    },
    /// A consumer group's completed generation, stored before its members
    /// are told their assignments.
    StoreGroup {
        group: String,
        generation: Generation,
    },
    /// Offset commits of one or more groups, batched by the coordinator.
    CommitOffsets {
        commits: Vec<(String, Vec<OffsetCommit>)>,
    },
    DeleteGroups {
        groups: Vec<String>,
    },
    DeleteOffsets {
        group: String,
        partitions: Vec<(String, i32)>,
    },
    // Variants are append-only: a new kind goes here, at the end, and is
    // proposed only once the finalized feature level allows it.
    /// Raises the cluster's finalized feature level (level 2 and later).
    /// Proposed by `runnelctl cluster upgrade` once every node supports it.
    FinalizeFeatures {
        level: u16,
    },
    /// Moves a partition to `target` replicas (level 3 and later), as
    /// Kafka's AlterPartitionReassignments (KIP-455): the new replicas are
    /// added and catch up; once all of them are in the ISR the old ones are
    /// dropped (and the leader moves if it is one of them). `None` cancels a
    /// reassignment in progress, back to the replicas it started from.
    ReassignPartition {
        topic: String,
        partition: i32,
        target: Option<Vec<NodeId>>,
    },
    /// CreateTopics with an explicit replica list per partition (level 3 and
    /// later); the first live replica of each leads.
    CreateTopicWithReplicas {
        name: String,
        id: Uuid,
        replicas: Vec<Vec<NodeId>>,
        configs: BTreeMap<String, String>,
    },
    /// Sets a SCRAM user's credential for one mechanism ("SCRAM-SHA-256",
    /// "SCRAM-SHA-512"), level 4 and later.
    UpsertScramCredential {
        user: String,
        mechanism: String,
        credential: crate::records::ScramCredentialRecord,
    },
    /// Removes a SCRAM user's credential for one mechanism (level 4).
    DeleteScramCredential {
        user: String,
        mechanism: String,
    },
    /// Adds ACL bindings (level 5), all or none; adding one that exists is
    /// no change.
    CreateAcls {
        acls: Vec<crate::records::AclRecord>,
    },
    /// Removes these ACL bindings (level 5); those not present are ignored,
    /// as the DeleteAcls that asked found them a moment before.
    DeleteAcls {
        acls: Vec<crate::records::AclRecord>,
    },
    /// Sets or (with `None`) removes dynamic broker configs (level 6), as
    /// Kafka's IncrementalAlterConfigs on a BROKER resource: for one broker,
    /// or (`None`) the default of every broker.
    AlterBrokerConfig {
        broker: Option<NodeId>,
        configs: BTreeMap<String, Option<String>>,
    },
    /// Stores a transactional id's state as the transaction coordinator
    /// decided it (level 7). A record in PrepareCommit commits the offsets
    /// it carries to their groups in this same entry (so they take effect
    /// exactly once, with the decision); PrepareAbort drops them.
    PutTransaction {
        transactional_id: String,
        record: crate::records::TransactionRecord,
    },
    /// Forgets transactional ids idle past `transactional.id.expiration.ms`
    /// (level 8): each `(id, producer id, producer epoch)` goes only if its
    /// record still has that producer id and epoch and no transaction in
    /// progress, so an id initialised again meanwhile stays.
    ExpireTransactions {
        expired: Vec<(String, i64, i16)>,
    },
    /// Adds partitions to a topic with an explicit replica list for each
    /// new one (level 9), as Kafka's CreatePartitions with assignments; the
    /// first live replica of each leads.
    CreatePartitionsWithReplicas {
        name: String,
        replicas: Vec<Vec<NodeId>>,
    },
    /// Stores a transactional id's record after its producer used up the
    /// epochs of `previous_producer_id` and moved to a fresh one (level
    /// 14), as [`Command::PutTransaction`] does, and remembers the previous
    /// id: an EndTxn retried under it (its response was lost) is answered
    /// with the fresh id instead of being refused. Any later change of the
    /// transactional id forgets it.
    RenewTransaction {
        transactional_id: String,
        record: crate::records::TransactionRecord,
        previous_producer_id: i64,
    },
    /// Stores KIP-848 consumer groups as their coordinator holds them
    /// (level 15), each group whole; `None` forgets a group's membership
    /// (its committed offsets stay, as DeleteGroups removes them). Written
    /// before the heartbeat that changed a group is answered, so a new
    /// coordinator goes on with every member at its epoch.
    PutConsumerGroups {
        groups: Vec<(String, Option<crate::records::ConsumerGroupRecord>)>,
    },
    /// Expires committed offsets past `offsets.retention.minutes` (level
    /// 16): for each group, `(topic, partition, commit time)` goes only if
    /// its offset is still the one committed at that time (a newer commit
    /// keeps it). A group left with no offsets and no members goes whole,
    /// as Kafka deletes an expired empty group.
    ExpireOffsets {
        groups: Vec<(String, ExpiringOffsets)>,
    },
    /// Stores a transactional id's record after an InitProducerId that
    /// named the producer's `(producer id, epoch)` as `previous` bumped its
    /// epoch (KIP-360, level 17), as [`Command::PutTransaction`] does, and
    /// remembers `previous`: the same request retried (its response was
    /// lost) is answered with the record's epoch instead of being fenced.
    /// Any later change of the transactional id forgets it.
    BumpTransaction {
        transactional_id: String,
        record: crate::records::TransactionRecord,
        previous: (i64, i16),
    },
}

/// Offsets to expire, each as `(topic, partition, commit time in ms)`.
pub type ExpiringOffsets = Vec<(String, i32, i64)>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOk {
    Done,
    BrokerRegistered {
        epoch: u64,
    },
    TopicCreated {
        id: Uuid,
    },
    ProducerIds {
        first: i64,
        count: i64,
    },
    PartitionChanged {
        leader: Option<NodeId>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// Per group of the batch: the offsets naming partitions that do not
    /// exist (not stored), or why none of its offsets were.
    OffsetsCommitted {
        results: Vec<Result<Vec<(String, i32)>, CommandError>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    #[error("the cluster id is already set to {0}")]
    ClusterAlreadyInitialized(String),
    #[error("topic {0:?} already exists")]
    TopicAlreadyExists(String),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidTopicName(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("broker {0} is not registered")]
    UnknownBroker(NodeId),
    #[error("partition {topic}-{partition} does not exist")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("stale request: {0}")]
    StaleEpoch(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("group {0:?} does not exist")]
    UnknownGroup(String),
    // Variants are append-only, as the commands'.
    #[error("no reassignment of {0} is in progress")]
    NoReassignmentInProgress(String),
    #[error("user {0:?} has no {1} credential")]
    NoScramCredential(String, String),
}

pub type CommandResult = Result<CommandOk, CommandError>;
