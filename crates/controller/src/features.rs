//! Feature levels: what record kinds and layouts the cluster may write, as
//! Kafka's finalized `metadata.version` (KIP-584, KIP-778).
//!
//! Every binary supports a range of levels; the cluster's metadata holds the
//! finalized one. A node writes only what the finalized level allows, so
//! nodes of an older version keep reading everything while a rolling upgrade
//! replaces them; once every node runs a version that supports a higher
//! level, `runnelctl cluster upgrade` finalizes it (a Raft command, refused
//! unless every registered node and controller says it supports it), and
//! from then on the new kinds may be written. A node that does not know the
//! finalized level refuses to start: the Raft store records the format in
//! use, and requests between nodes carry it.
//!
//! The level is also the controller format in use (see
//! [`crate::types::FORMAT_VERSION`]).

/// The level of a cluster that never finalized one: everything written
/// before levels existed (commit 2a9fcc0's layout). A new cluster starts at
/// [`LEVEL_MAX`].
pub const LEVEL_MIN: u16 = 1;

/// The highest level this binary supports.
pub const LEVEL_MAX: u16 = 17;

/// From this level, a broker registering with the id of a live broker at
/// another address is refused.
pub const DUPLICATE_NODE_ID_LEVEL: u16 = 2;

/// From this level, partitions can be reassigned (`ReassignPartition`, and
/// reassignments in progress in snapshots and the metadata stream), and
/// topics created with explicit replica lists (`CreateTopicWithReplicas`).
pub const REASSIGNMENT_LEVEL: u16 = 3;

/// From this level, SCRAM users are kept in the metadata
/// (`UpsertScramCredential`, `DeleteScramCredential`, and the credentials in
/// snapshots and the metadata stream).
pub const SCRAM_USERS_LEVEL: u16 = 4;

/// From this level, ACL bindings are kept in the metadata (`CreateAcls`,
/// `DeleteAcls`, and the bindings in snapshots and the metadata stream).
pub const ACLS_LEVEL: u16 = 5;

/// From this level, broker configs can be changed at run time
/// (`AlterBrokerConfig`, and the dynamic configs in snapshots and the
/// metadata stream).
pub const BROKER_CONFIGS_LEVEL: u16 = 6;

/// From this level, transactional ids and their transactions are kept in
/// the metadata (`PutTransaction`, and the transactions in snapshots and
/// the metadata stream).
pub const TRANSACTIONS_LEVEL: u16 = 7;

/// From this level, topics may be compacted (`cleanup.policy` with
/// `compact`): cleaned segments have gaps in their offsets, which a node
/// of an earlier version would take for damage, and such a node refuses
/// the policy, so its metadata would differ.
pub const COMPACTION_LEVEL: u16 = 8;

/// From this level, the dynamic broker config
/// `leader.replication.throttled.rate` is accepted (a node of an earlier
/// version refuses the name).
pub const LEADER_THROTTLE_LEVEL: u16 = 8;

/// From this level, transactional ids idle past
/// `transactional.id.expiration.ms` are forgotten (`ExpireTransactions`).
pub const TRANSACTION_EXPIRY_LEVEL: u16 = 8;

/// From this level, partitions can be added to a topic with explicit
/// replica lists (`CreatePartitionsWithReplicas`).
pub const PARTITION_ASSIGNMENT_LEVEL: u16 = 9;

/// From this level, the dynamic broker configs that set topics' log
/// defaults (`log.retention.ms`, `log.segment.bytes`, ...) and the cleaner's
/// throughput are accepted (a node of an earlier version refuses the names).
pub const LOG_DEFAULTS_LEVEL: u16 = 10;

/// From this level, the dynamic broker configs that set what leaders check
/// and do with produced batches of topics without their own value
/// (`min.insync.replicas`, `message.max.bytes`, `compression.type`,
/// `log.message.timestamp.*`) are accepted.
pub const TOPIC_DEFAULTS_LEVEL: u16 = 11;

/// From this level, `unclean.leader.election.enable` is accepted as a
/// dynamic config for every broker, and the controller's elections follow
/// it for topics without their own value.
pub const UNCLEAN_DEFAULT_LEVEL: u16 = 12;

/// From this level, the cluster runs transaction version 2 (KIP-890 part
/// 2; Kafka's finalized `transaction.version` 2, which ApiVersions
/// advertises): EndTxn v5 bumps the producer epoch at every transaction
/// end, and a partition leader adds a Produce v12 producer's partition to
/// its transaction itself (the producer sends no AddPartitionsToTxn; nor
/// AddOffsetsToTxn before TxnOffsetCommit v5). No record kind changes; the
/// level makes sure every node serves these versions (and the coordinator
/// RPC a leader adds partitions with) before clients are told to use them.
pub const TRANSACTIONS_V2_LEVEL: u16 = 13;

/// From this level, a transactional producer that used up its epochs and
/// moved to a fresh producer id is stored with the id it had
/// (`RenewTransaction`; those previous ids in snapshots and the metadata
/// stream), so the EndTxn it retries under the old id succeeds.
pub const TRANSACTION_RENEWAL_LEVEL: u16 = 14;

/// From this level, KIP-848 consumer groups' membership, epochs and
/// assignments are kept in the metadata (`PutConsumerGroups`; the groups
/// in snapshots and the metadata stream), so a new coordinator goes on with
/// every member where it was instead of making them all join again.
pub const CONSUMER_GROUPS_LEVEL: u16 = 15;

/// From this level, committed offsets expire past
/// `offsets.retention.minutes` once their group is empty or no longer
/// subscribes to their topic, and an expired empty group goes
/// (`ExpireOffsets`).
pub const OFFSET_EXPIRY_LEVEL: u16 = 16;

/// From this level, an InitProducerId that names the producer's id and
/// epoch (KIP-360) records the epoch it bumped from (`BumpTransaction`),
/// so the same request retried after a lost response, on this coordinator
/// or the next, is answered with the bumped epoch instead of fencing the
/// producer.
pub const INIT_RETRY_LEVEL: u16 = 17;

/// What each level adds, for `runnelctl cluster features`.
pub const LEVELS: &[(u16, &str)] = &[
    (1, "the metadata records of 2a9fcc0 (topics, brokers, partitions, groups, offsets, producer ids)"),
    (
        2,
        "the finalized level itself is recorded (FinalizeFeatures), and snapshots and the metadata stream carry it; topic configs Kafka defines that Runnel does not act on yet (compression.type, message.timestamp.type, the compaction settings, ...) are accepted instead of refused",
    ),
    (
        3,
        "partition reassignment (ReassignPartition; reassignments in progress in snapshots and the metadata stream) and topics created with explicit replica assignments (CreateTopicWithReplicas)",
    ),
    (4, "SCRAM users kept in the cluster metadata (UpsertScramCredential, DeleteScramCredential; credentials in snapshots and the metadata stream)"),
    (5, "ACL bindings kept in the cluster metadata (CreateAcls, DeleteAcls; bindings in snapshots and the metadata stream)"),
    (6, "broker configs changed at run time, per broker or for all (AlterBrokerConfig; dynamic configs in snapshots and the metadata stream)"),
    (
        7,
        "transactions: transactional ids and their state kept by the transaction coordinator (PutTransaction; transactions in snapshots and the metadata stream)",
    ),
    (
        8,
        "compacted topics (cleanup.policy compact or compact,delete, whose cleaned segments have gaps in their offsets), transactional ids forgotten once idle past transactional.id.expiration.ms (ExpireTransactions), and the dynamic broker config leader.replication.throttled.rate",
    ),
    (9, "partitions added to a topic with explicit replica assignments (CreatePartitionsWithReplicas), as Kafka's CreatePartitions with assignments"),
    (
        10,
        "dynamic broker configs for the log defaults of topics without their own value (log.retention.ms, log.retention.bytes, log.segment.bytes, log.roll.ms, log.cleanup.policy, log.cleaner.*) and the cleaner's throughput (log.cleaner.io.max.bytes.per.second)",
    ),
    (
        11,
        "dynamic broker configs for the produce settings of topics without their own value (min.insync.replicas, message.max.bytes, compression.type, log.message.timestamp.type, log.message.timestamp.before.max.ms, log.message.timestamp.after.max.ms)",
    ),
    (12, "the dynamic config unclean.leader.election.enable for every broker, which the controller's elections follow for topics without their own value"),
    (
        13,
        "transaction version 2 (KIP-890 part 2, finalized transaction.version 2 in ApiVersions): the producer epoch bumps at every transaction end (EndTxn v5), and partition leaders add a transaction's partitions themselves (Produce v12, TxnOffsetCommit v5)",
    ),
    (
        14,
        "a transactional producer that used up its epochs keeps its previous producer id on record (RenewTransaction; previous ids in snapshots and the metadata stream), so an EndTxn retried after a lost response succeeds",
    ),
    (
        15,
        "KIP-848 consumer groups' members, epochs and assignments kept in the metadata (PutConsumerGroups; the groups in snapshots and the metadata stream), so members go on through a coordinator failover without joining again",
    ),
    (
        16,
        "committed offsets of empty groups, and of topics a group no longer subscribes to, expire past offsets.retention.minutes, and expired empty groups go (ExpireOffsets)",
    ),
    (
        17,
        "an InitProducerId that bumps a transactional producer's epoch (KIP-360) keeps the epoch it bumped from on record (BumpTransaction; in snapshots and the metadata stream), so the same request retried after a lost response gets the bumped epoch instead of fencing the producer",
    ),
];

/// What a level adds, if this binary knows it.
pub fn describe(level: u16) -> Option<&'static str> {
    LEVELS.iter().find(|(l, _)| *l == level).map(|(_, what)| *what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_level_is_described_in_order() {
        let levels: Vec<u16> = LEVELS.iter().map(|(l, _)| *l).collect();
        assert_eq!(levels, (LEVEL_MIN..=LEVEL_MAX).collect::<Vec<_>>());
        assert!(describe(LEVEL_MAX).is_some() && describe(LEVEL_MAX + 1).is_none());
        assert_eq!(u32::from(LEVEL_MAX), crate::types::FORMAT_VERSION);
    }
}
