//! Golden byte fixtures of every controller encoding (issue 14): one sample
//! of every Raft entry kind, every command, result and error, the vote, the
//! committed log id, a snapshot and a metadata-stream message, frozen as
//! files in `tests/compat/controller-v<format>/` (each kind under the
//! format that introduced it; snapshots at every format). Each fixture must decode to the
//! value built here and encode back to the same bytes; a change to a layout
//! (a field inserted, a variant moved) fails here instead of in a user's
//! data directory.
//!
//! A new command or record kind gets a sample below and a fixture written
//! once with `RUNNEL_WRITE_MISSING_FIXTURES=1 cargo test -p runnel-controller --test golden`
//! (existing fixtures are never rewritten: they are what older binaries wrote).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};
use prost::Message;
use runnel_controller::command::{Command, CommandError, CommandOk, CommandResult};
use runnel_controller::configs::{TOPIC_DEFAULT_CONFIGS, UNCLEAN_ELECTION};
use runnel_controller::metadata::MetadataImage;
use runnel_controller::records::{
    AclRecord, ConsumerGroupRecord, ConsumerMemberRecord, Generation, MemberRecord, NodeId, OffsetCommit, OffsetRecord, TransactionRecord, TransactionState,
};
use runnel_controller::store::{AppliedState, StoredSnapshot, decode_state, encode_state};
use runnel_controller::types::{Request, Response, TypeConfig, decode, encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// Fixtures live in `tests/compat/controller-v<format>/`; a name below
/// starts with that directory.
fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat")
}

/// Checks one fixture both ways: the frozen bytes decode to `value`, and
/// `value` encodes to them.
fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: &T) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(bytes) = frozen(name, &encode(value).expect("encode"), &mut failures) {
        match decode::<T>(&bytes) {
            Ok(decoded) if &decoded == value => {}
            Ok(decoded) => failures.push(format!("{name}: the frozen bytes decode to {decoded:?}, expected {value:?}")),
            Err(e) => failures.push(format!("{name}: the frozen bytes no longer decode: {e}")),
        }
    }
    failures
}

/// The frozen bytes of `name`, written from `current` when missing and
/// allowed; a failure when they differ from `current`.
fn frozen(name: &str, current: &[u8], failures: &mut Vec<String>) -> Option<Vec<u8>> {
    let path = dir().join(format!("{name}.bin"));
    match std::fs::read(&path) {
        Ok(frozen) => {
            if frozen != current {
                failures.push(format!("{name}: encodes to other bytes than the frozen ones (a layout changed)"));
            }
            Some(frozen)
        }
        Err(_) if std::env::var_os("RUNNEL_WRITE_MISSING_FIXTURES").is_some() => {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, current).unwrap();
            None
        }
        Err(e) => {
            failures.push(format!("{name}: no fixture at {} ({e})", path.display()));
            None
        }
    }
}

/// The name of a command kind: exhaustive, so a new variant needs a name,
/// and the test below needs a sample of it.
fn command_kind(c: &Command) -> &'static str {
    match c {
        Command::InitCluster { .. } => "InitCluster",
        Command::RegisterBroker { .. } => "RegisterBroker",
        Command::UnregisterBroker { .. } => "UnregisterBroker",
        Command::FenceBroker { .. } => "FenceBroker",
        Command::UnfenceBroker { .. } => "UnfenceBroker",
        Command::ControlledShutdown { .. } => "ControlledShutdown",
        Command::CreateTopic { .. } => "CreateTopic",
        Command::DeleteTopic { .. } => "DeleteTopic",
        Command::CreatePartitions { .. } => "CreatePartitions",
        Command::AlterTopicConfig { .. } => "AlterTopicConfig",
        Command::AlterPartition { .. } => "AlterPartition",
        Command::ElectPreferredLeader { .. } => "ElectPreferredLeader",
        Command::AllocateProducerIds { .. } => "AllocateProducerIds",
        Command::StoreGroup { .. } => "StoreGroup",
        Command::CommitOffsets { .. } => "CommitOffsets",
        Command::DeleteGroups { .. } => "DeleteGroups",
        Command::DeleteOffsets { .. } => "DeleteOffsets",
        Command::FinalizeFeatures { .. } => "FinalizeFeatures",
        Command::ReassignPartition { .. } => "ReassignPartition",
        Command::CreateTopicWithReplicas { .. } => "CreateTopicWithReplicas",
        Command::UpsertScramCredential { .. } => "UpsertScramCredential",
        Command::DeleteScramCredential { .. } => "DeleteScramCredential",
        Command::CreateAcls { .. } => "CreateAcls",
        Command::DeleteAcls { .. } => "DeleteAcls",
        Command::AlterBrokerConfig { .. } => "AlterBrokerConfig",
        Command::PutTransaction { .. } => "PutTransaction",
        Command::ExpireTransactions { .. } => "ExpireTransactions",
        Command::CreatePartitionsWithReplicas { .. } => "CreatePartitionsWithReplicas",
        Command::RenewTransaction { .. } => "RenewTransaction",
        Command::PutConsumerGroups { .. } => "PutConsumerGroups",
        Command::ExpireOffsets { .. } => "ExpireOffsets",
        Command::BumpTransaction { .. } => "BumpTransaction",
    }
}

/// The format that introduced a command kind: where its fixture lives.
fn command_format(c: &Command) -> u32 {
    match c {
        Command::FinalizeFeatures { level } => u32::from(*level),
        Command::ReassignPartition { .. } | Command::CreateTopicWithReplicas { .. } => 3,
        Command::UpsertScramCredential { .. } | Command::DeleteScramCredential { .. } => 4,
        Command::CreateAcls { .. } | Command::DeleteAcls { .. } => 5,
        // The command is format 6; a dynamic log default is level 10's, a
        // dynamic produce default level 11's, unclean elections level 12's.
        Command::AlterBrokerConfig { configs, .. } if configs.contains_key(UNCLEAN_ELECTION) => 12,
        Command::AlterBrokerConfig { configs, .. } if configs.keys().any(|k| TOPIC_DEFAULT_CONFIGS.contains(&k.as_str())) => 11,
        Command::AlterBrokerConfig { configs, .. } if configs.keys().any(|k| k.starts_with("log.")) => 10,
        Command::AlterBrokerConfig { .. } => 6,
        Command::PutTransaction { .. } => 7,
        Command::ExpireTransactions { .. } => 8,
        Command::CreatePartitionsWithReplicas { .. } => 9,
        Command::RenewTransaction { .. } => 14,
        Command::PutConsumerGroups { .. } => 15,
        Command::ExpireOffsets { .. } => 16,
        Command::BumpTransaction { .. } => 17,
        // The command is format 1; a compacted topic is level 8's.
        Command::CreateTopic { configs, .. } if configs.get("cleanup.policy").is_some_and(|p| p.contains("compact")) => 8,
        _ => 1,
    }
}

const COMMAND_KINDS: usize = 32;

fn topic_id() -> Uuid {
    Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)
}

fn generation() -> Generation {
    Generation {
        generation: 3,
        protocol_type: "consumer".into(),
        protocol: Some("range".into()),
        leader: Some("m-1".into()),
        members: vec![MemberRecord {
            member_id: "m-1".into(),
            instance_id: Some("i-1".into()),
            client_id: "billing-app".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 60_000,
            subscription: vec![0, 1, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e', b'r', b's'],
            assignment: vec![0, 1, 0, 0, 0, 1],
        }],
    }
}

fn offset_commit(partition: i32, offset: i64) -> OffsetCommit {
    OffsetCommit {
        topic: "orders".into(),
        partition,
        record: OffsetRecord { offset, leader_epoch: 2, metadata: Some("m".into()), commit_time_ms: 1_764_000_000_000 },
    }
}

fn scram(seed: u8) -> runnel_controller::metadata::ScramCredentialRecord {
    runnel_controller::metadata::ScramCredentialRecord {
        salt: vec![seed; 16],
        iterations: 4096,
        stored_key: vec![seed + 1; 32],
        server_key: vec![seed + 2; 32],
    }
}

fn commands() -> Vec<Command> {
    let register = |id: u64| Command::RegisterBroker {
        id: NodeId(id),
        kafka_host: format!("runnel-{id}"),
        kafka_port: 9092,
        external: (id == 1).then(|| ("127.0.0.1".to_string(), 19092)),
        rpc_address: format!("runnel-{id}:9093"),
        rack: (id != 3).then(|| format!("rack-{id}")),
    };
    vec![
        Command::InitCluster { cluster_id: "c-4b1d".into() },
        register(1),
        register(2),
        register(3),
        Command::CreateTopic {
            name: "orders".into(),
            id: topic_id(),
            partitions: 3,
            replication_factor: 3,
            configs: BTreeMap::from([("retention.ms".into(), "86400000".into())]),
        },
        Command::CreateTopic { name: "gone".into(), id: Uuid::from_u128(7), partitions: 1, replication_factor: 1, configs: BTreeMap::new() },
        Command::DeleteTopic { name: "gone".into() },
        Command::CreatePartitions { name: "orders".into(), count: 4 },
        Command::AlterTopicConfig {
            name: "orders".into(),
            configs: BTreeMap::from([("min.insync.replicas".into(), Some("2".into())), ("retention.ms".into(), None)]),
        },
        Command::AlterPartition {
            topic: "orders".into(),
            partition: 0,
            leader: NodeId(3),
            leader_epoch: 0,
            partition_epoch: 0,
            isr: vec![NodeId(3), NodeId(1)],
        },
        Command::ElectPreferredLeader { topic: "orders".into(), partition: 0 },
        Command::AllocateProducerIds { count: 1000 },
        Command::StoreGroup { group: "billing".into(), generation: generation() },
        Command::CommitOffsets { commits: vec![("billing".into(), vec![offset_commit(0, 120), offset_commit(1, 7)])] },
        Command::DeleteOffsets { group: "billing".into(), partitions: vec![("orders".into(), 1)] },
        Command::StoreGroup { group: "old".into(), generation: Generation { members: vec![], leader: None, ..generation() } },
        Command::DeleteGroups { groups: vec!["old".into()] },
        Command::FenceBroker { id: NodeId(3) },
        Command::UnfenceBroker { id: NodeId(3) },
        Command::ControlledShutdown { id: NodeId(2) },
        Command::UnregisterBroker { id: NodeId(2) },
        // Format 2.
        Command::FinalizeFeatures { level: 2 },
        // Format 3: orders-1 moving to broker 3 (not in its ISR since it was
        // fenced), orders-2's move cancelled.
        Command::FinalizeFeatures { level: 3 },
        Command::ReassignPartition { topic: "orders".into(), partition: 1, target: Some(vec![NodeId(3)]) },
        Command::ReassignPartition { topic: "orders".into(), partition: 2, target: Some(vec![NodeId(3), NodeId(1)]) },
        Command::ReassignPartition { topic: "orders".into(), partition: 2, target: None },
        Command::CreateTopicWithReplicas {
            name: "placed".into(),
            id: Uuid::from_u128(9),
            replicas: vec![vec![NodeId(1), NodeId(3)], vec![NodeId(3), NodeId(1)]],
            configs: BTreeMap::from([("retention.ms".into(), "60000".into())]),
        },
        // Format 4: SCRAM users in the metadata.
        Command::FinalizeFeatures { level: 4 },
        Command::UpsertScramCredential { user: "alice".into(), mechanism: "SCRAM-SHA-256".into(), credential: scram(1) },
        Command::UpsertScramCredential { user: "bob".into(), mechanism: "SCRAM-SHA-512".into(), credential: scram(2) },
        Command::DeleteScramCredential { user: "bob".into(), mechanism: "SCRAM-SHA-512".into() },
        // Format 5: ACLs; alice may write the orders topics, the group
        // consumers-* may be read by anyone, one binding removed again.
        Command::FinalizeFeatures { level: 5 },
        Command::CreateAcls {
            acls: vec![acl(2, "orders", 4, "User:alice", 4, 3), acl(3, "consumers-", 4, "User:*", 3, 3), acl(4, "kafka-cluster", 3, "User:bob", 2, 2)],
        },
        Command::DeleteAcls { acls: vec![acl(4, "kafka-cluster", 3, "User:bob", 2, 2)] },
        // Format 6: dynamic broker configs, a default for every broker and
        // one broker's own value, then one removed again.
        Command::FinalizeFeatures { level: 6 },
        Command::AlterBrokerConfig { broker: None, configs: BTreeMap::from([("follower.replication.throttled.rate".into(), Some("52428800".into()))]) },
        Command::AlterBrokerConfig {
            broker: Some(NodeId(3)),
            configs: BTreeMap::from([("follower.replication.throttled.rate".into(), Some("10485760".into()))]),
        },
        Command::AlterBrokerConfig { broker: None, configs: BTreeMap::from([("follower.replication.throttled.rate".into(), None)]) },
        // Format 7: a transaction that wrote two partitions and sent offsets
        // of a group, then decided to commit (the offsets go to the group),
        // and another one open.
        Command::FinalizeFeatures { level: 7 },
        Command::PutTransaction { transactional_id: "billing-tx".into(), record: transaction(TransactionState::Ongoing) },
        Command::PutTransaction { transactional_id: "billing-tx".into(), record: transaction(TransactionState::PrepareCommit) },
        Command::PutTransaction {
            transactional_id: "audit-tx".into(),
            record: TransactionRecord { producer_id: 4001, producer_epoch: 0, offsets: vec![], ..transaction(TransactionState::Ongoing) },
        },
        // Format 8: a compacted topic.
        Command::FinalizeFeatures { level: 8 },
        Command::CreateTopic {
            name: "profiles".into(),
            id: Uuid::from_u128(8),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::from([("cleanup.policy".into(), "compact".into()), ("min.cleanable.dirty.ratio".into(), "0.1".into())]),
        },
        // audit-tx is idle (its one transaction was never more than opened
        // here, so it stays); a stale expiry of billing-tx's older epoch
        // changes nothing.
        Command::ExpireTransactions { expired: vec![("billing-tx".into(), 4000, 1), ("nobody".into(), 1, 0)] },
        // Format 9: a partition added to the compacted topic on broker 3.
        Command::FinalizeFeatures { level: 9 },
        Command::CreatePartitionsWithReplicas { name: "profiles".into(), replicas: vec![vec![NodeId(3)]] },
        // Format 10: log defaults and the cleaner's throughput for every
        // broker.
        Command::FinalizeFeatures { level: 10 },
        Command::AlterBrokerConfig {
            broker: None,
            configs: BTreeMap::from([
                ("log.retention.ms".into(), Some("3600000".into())),
                ("log.cleaner.io.max.bytes.per.second".into(), Some("5242880".into())),
            ]),
        },
        // Format 11: produce defaults for broker 3.
        Command::FinalizeFeatures { level: 11 },
        Command::AlterBrokerConfig {
            broker: Some(NodeId(3)),
            configs: BTreeMap::from([
                ("min.insync.replicas".into(), Some("2".into())),
                ("message.max.bytes".into(), Some("2097152".into())),
                ("compression.type".into(), Some("zstd".into())),
                ("log.message.timestamp.type".into(), Some("LogAppendTime".into())),
            ]),
        },
        // Format 12: unclean elections allowed for every broker.
        Command::FinalizeFeatures { level: 12 },
        Command::AlterBrokerConfig { broker: None, configs: BTreeMap::from([(UNCLEAN_ELECTION.into(), Some("true".into()))]) },
        // Format 13: transaction version 2 (no record kind of its own; a
        // version-2 end is a PutTransaction at the bumped epoch).
        Command::FinalizeFeatures { level: 13 },
        // Format 14: billing-tx's producer used up producer id 4000's
        // epochs and goes on as 5000.
        Command::FinalizeFeatures { level: 14 },
        Command::RenewTransaction {
            transactional_id: "billing-tx".into(),
            record: TransactionRecord {
                producer_id: 5000,
                producer_epoch: 0,
                partitions: vec![],
                offsets: vec![],
                ..transaction(TransactionState::CompleteCommit)
            },
            previous_producer_id: 4000,
        },
        // Format 15: a KIP-848 group whose second member is giving up a
        // partition to the first, and a group forgotten.
        Command::FinalizeFeatures { level: 15 },
        Command::PutConsumerGroups { groups: vec![("orders-app".into(), Some(consumer_group())), ("old-app".into(), None)] },
        // Format 16: billing's offset of orders/0, committed at the time
        // given, expires; a group the metadata does not hold is passed over.
        Command::FinalizeFeatures { level: 16 },
        Command::ExpireOffsets {
            groups: vec![("billing".into(), vec![("orders".into(), 0, 1_764_000_000_000)]), ("gone-app".into(), vec![("orders".into(), 3, 1)])],
        },
        // Format 17: billing-tx's producer asked InitProducerId to bump
        // producer id 5000 from epoch 0.
        Command::FinalizeFeatures { level: 17 },
        Command::BumpTransaction {
            transactional_id: "billing-tx".into(),
            record: TransactionRecord { producer_id: 5000, producer_epoch: 1, partitions: vec![], offsets: vec![], ..transaction(TransactionState::Empty) },
            previous: (5000, 0),
        },
    ]
}

fn consumer_group() -> ConsumerGroupRecord {
    let member = |id: &str, epoch: i32, assigned: &[i32], target: &[i32]| ConsumerMemberRecord {
        id: id.into(),
        instance_id: (id == "m2").then(|| "host-2".into()),
        rack_id: Some("rack-a".into()),
        client_id: "rdkafka".into(),
        client_host: "/10.0.0.7".into(),
        epoch,
        previous_epoch: epoch - 1,
        topics: vec!["orders".into()],
        regex: (id == "m1").then(|| "orders.*".into()),
        assignor: Some("uniform".into()),
        hidden: vec!["payroll".into()],
        rebalance_timeout_ms: 300_000,
        departed: false,
        assigned: assigned.iter().map(|p| (topic_id(), *p)).collect(),
        target: target.iter().map(|p| (topic_id(), *p)).collect(),
    };
    ConsumerGroupRecord {
        epoch: 7,
        target_epoch: 7,
        layout: vec![("orders".into(), topic_id(), 3)],
        members: vec![member("m1", 7, &[0], &[0, 1]), member("m2", 6, &[1, 2], &[2])],
    }
}

fn transaction(state: TransactionState) -> TransactionRecord {
    TransactionRecord {
        producer_id: 4000,
        producer_epoch: 2,
        timeout_ms: 60_000,
        state,
        partitions: vec![("orders".into(), 0), ("orders".into(), 1)],
        offsets: vec![("billing".into(), vec![offset_commit(0, 130)])],
        started_ms: 1_700_000_000_000,
    }
}

fn acl(resource_type: i8, name: &str, pattern_type: i8, principal: &str, operation: i8, permission: i8) -> AclRecord {
    AclRecord { resource_type, resource_name: name.into(), pattern_type, principal: principal.into(), host: "*".into(), operation, permission }
}

/// Each with the format that introduced it.
fn results() -> Vec<(&'static str, u32, CommandResult)> {
    let format3 = [
        ("NoReassignmentInProgress", 3, Err(CommandError::NoReassignmentInProgress("orders-2".into()))),
        ("NoScramCredential", 4, Err(CommandError::NoScramCredential("carol".into(), "SCRAM-SHA-256".into()))),
    ];
    let format1 = vec![
        ("Done", Ok(CommandOk::Done)),
        ("BrokerRegistered", Ok(CommandOk::BrokerRegistered { epoch: 12 })),
        ("TopicCreated", Ok(CommandOk::TopicCreated { id: topic_id() })),
        ("ProducerIds", Ok(CommandOk::ProducerIds { first: 4000, count: 1000 })),
        ("PartitionChanged", Ok(CommandOk::PartitionChanged { leader: Some(NodeId(2)), leader_epoch: 5, partition_epoch: 9 })),
        ("OffsetsCommitted", Ok(CommandOk::OffsetsCommitted { results: vec![Ok(vec![("nope".into(), 0)]), Err(CommandError::UnknownGroup("g".into()))] })),
        ("ClusterAlreadyInitialized", Err(CommandError::ClusterAlreadyInitialized("c".into()))),
        ("TopicAlreadyExists", Err(CommandError::TopicAlreadyExists("orders".into()))),
        ("UnknownTopic", Err(CommandError::UnknownTopic("t".into()))),
        ("InvalidTopicName", Err(CommandError::InvalidTopicName("bad name".into()))),
        ("InvalidPartitions", Err(CommandError::InvalidPartitions("0".into()))),
        ("InvalidReplicationFactor", Err(CommandError::InvalidReplicationFactor("4".into()))),
        ("InvalidConfig", Err(CommandError::InvalidConfig("x".into()))),
        ("UnknownBroker", Err(CommandError::UnknownBroker(NodeId(9)))),
        ("UnknownPartition", Err(CommandError::UnknownPartition { topic: "orders".into(), partition: 9 })),
        ("StaleEpoch", Err(CommandError::StaleEpoch("epoch 3 < 4".into()))),
        ("InvalidRequest", Err(CommandError::InvalidRequest("r".into()))),
        ("UnknownGroup", Err(CommandError::UnknownGroup("g".into()))),
    ];
    format1.into_iter().map(|(name, r)| (name, 1, r)).chain(format3).collect()
}

fn log_id(index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(4, NodeId(1)), index)
}

fn membership() -> Membership<NodeId, BasicNode> {
    let nodes: BTreeMap<NodeId, BasicNode> = (1..=3).map(|i| (NodeId(i), BasicNode::new(format!("runnel-{i}:9093")))).collect();
    Membership::new(vec![BTreeSet::from([NodeId(1), NodeId(2), NodeId(3)])], nodes)
}

/// The state after applying every sample command: brokers, a topic with
/// configs and ISR changes, a group with offsets, producer ids.
fn applied_state(format: u32) -> AppliedState {
    let mut image = MetadataImage::default();
    // CreateTopicWithReplicas joined format 3 after its state fixture was
    // frozen: its encoding is checked above, the state stays as frozen.
    let in_state = |c: &Command| !matches!(c, Command::CreateTopicWithReplicas { .. });
    for (i, c) in commands().iter().filter(|c| command_format(c) <= format && in_state(c)).enumerate() {
        image.apply_at(i as u64 + 1, c).unwrap_or_else(|e| panic!("sample command {c:?} does not apply: {e}"));
    }
    AppliedState { last_applied: Some(log_id(21)), membership: StoredMembership::new(Some(log_id(1)), membership()), image }
}

#[test]
fn every_frozen_encoding_still_decodes_and_encodes_the_same() {
    let mut failures = Vec::new();
    let commands = commands();
    let kinds: BTreeSet<&str> = commands.iter().map(command_kind).collect();
    assert_eq!(kinds.len(), COMMAND_KINDS, "every command kind needs a sample: {kinds:?}");
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &commands {
        let n = seen.entry(command_kind(c)).or_default();
        *n += 1;
        let v = command_format(c);
        let name = if *n == 1 { format!("controller-v{v}/command-{}", command_kind(c)) } else { format!("controller-v{v}/command-{}-{n}", command_kind(c)) };
        failures.extend(check(&name, c));
    }
    for (name, format, r) in results() {
        failures.extend(check(&format!("controller-v{format}/result-{name}"), &r));
    }
    // Raft log entries, as the store and AppendEntries carry them.
    let entries: Vec<(&str, Entry<TypeConfig>)> = vec![
        ("controller-v1/entry-normal", Entry { log_id: log_id(5), payload: EntryPayload::Normal(Request(commands[4].clone())) }),
        ("controller-v1/entry-blank", Entry { log_id: log_id(2), payload: EntryPayload::Blank }),
        ("controller-v1/entry-membership", Entry { log_id: log_id(1), payload: EntryPayload::Membership(membership()) }),
    ];
    for (name, e) in &entries {
        failures.extend(check(name, e));
    }
    // The metadata stream's entries message (broker-only nodes apply them)
    // and the request that asks for it.
    let request = runnel_rpc::controller::WatchRequest { from_index: 20, entries: true };
    if let Some(frozen) = frozen("watch-stream/request", &request.encode_to_vec(), &mut failures) {
        assert_eq!(runnel_rpc::controller::WatchRequest::decode(frozen.as_slice()).expect("the frozen request decodes"), request);
    }
    let update =
        runnel_rpc::controller::MetadataUpdate { applied_index: 5, state: Vec::new(), entries: entries.iter().map(|(_, e)| encode(e).unwrap()).collect() };
    if let Some(frozen) = frozen("watch-stream/entries", &update.encode_to_vec(), &mut failures) {
        let decoded = runnel_rpc::controller::MetadataUpdate::decode(frozen.as_slice()).expect("the frozen entries message decodes");
        for (raw, (name, e)) in decoded.entries.iter().zip(&entries) {
            assert_eq!(&decode::<Entry<TypeConfig>>(raw).unwrap_or_else(|err| panic!("{name} in the stream: {err}")), e);
        }
    }
    failures.extend(check("controller-v1/response", &Response(Some(Ok(CommandOk::TopicCreated { id: topic_id() })))));
    failures.extend(check("controller-v1/vote", &Vote::new_committed(4, NodeId(1))));
    failures.extend(check("controller-v1/committed", &Some(log_id(21))));

    // Snapshots and the metadata stream, at each format: AppliedState has no
    // PartialEq, so compare what matters and the bytes.
    for format in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17] {
        let state = applied_state(format);
        assert_eq!(u32::from(state.image.finalized_level()), format);
        if format >= 3 {
            assert_eq!(state.image.reassignments.len(), 1, "a reassignment in progress in the format-3 state");
        }
        if format >= 4 {
            assert_eq!(state.image.scram.len(), 1, "a SCRAM user in the format-4 state");
        }
        if format >= 5 {
            assert_eq!(state.image.acls.len(), 2, "ACL bindings in the format-5 state");
        }
        if format >= 6 {
            // Format 10 adds defaults for every broker (11 adds to broker 3's).
            let expected = if format >= 10 { 2 } else { 1 };
            assert_eq!(state.image.broker_configs.len(), expected, "dynamic broker configs in the format-{format} state");
        }
        if format >= 7 {
            assert_eq!(state.image.transactions.len(), 2, "transactions in the format-7 state");
            if format < 16 {
                assert_eq!(state.image.groups["billing"].offsets[&("orders".to_string(), 0)].offset, 130, "the committed transaction's offset");
            }
        }
        if format >= 8 {
            assert_eq!(state.image.topics["profiles"].configs["cleanup.policy"], "compact", "a compacted topic in the format-8 state");
        }
        if format >= 9 {
            assert_eq!(state.image.topics["profiles"].partitions[1].replicas, [NodeId(3)], "a partition added on given replicas in the format-9 state");
        }
        if format >= 10 {
            assert_eq!(state.image.log_defaults(NodeId(2)).get("retention.ms"), Some(&("3600000", false)), "a dynamic log default in the format-10 state");
        }
        if format >= 11 {
            assert_eq!(
                state.image.log_defaults(NodeId(3)).get("max.message.bytes"),
                Some(&("2097152", true)),
                "a dynamic produce default in the format-11 state"
            );
        }
        if format >= 12 {
            assert!(state.image.unclean_election(&state.image.topics["profiles"]), "unclean elections for every broker in the format-12 state");
        }
        if format >= 14 {
            assert_eq!(state.image.transactions["billing-tx"].producer_id, 5000, "a renewed producer in the format-14 state");
        }
        if (14..17).contains(&format) {
            assert_eq!(state.image.renewed_from["billing-tx"], 4000, "and the id it had");
        }
        if format >= 15 {
            assert_eq!(state.image.consumer_groups.keys().collect::<Vec<_>>(), ["orders-app"], "a KIP-848 group in the format-15 state");
            assert_eq!(*state.image.consumer_groups["orders-app"], consumer_group());
        }
        if format >= 16 {
            let billing = &state.image.groups["billing"];
            assert!(!billing.offsets.contains_key(&("orders".to_string(), 0)), "an expired offset in the format-16 state: {:?}", billing.offsets);
            assert!(!billing.generation.members.is_empty(), "its group, with members, stays");
        }
        if format >= 17 {
            assert_eq!(state.image.transactions["billing-tx"].producer_epoch, 1, "a bumped epoch in the format-17 state");
            assert_eq!(state.image.bumped_from["billing-tx"], (5000, 0), "and the one it was bumped from");
            assert!(state.image.renewed_from.is_empty(), "the bump forgets the renewal");
        }
        let snapshot_bytes = encode_state(&state).unwrap();
        if let Some(frozen) = frozen(&format!("controller-v{format}/snapshot-state"), &snapshot_bytes, &mut failures) {
            let decoded = decode_state(&frozen).expect("the frozen snapshot decodes");
            assert_eq!(decoded.image, state.image);
            assert_eq!(decoded.last_applied, state.last_applied);
            assert_eq!(decoded.membership, state.membership);
        }
        let update = runnel_rpc::controller::MetadataUpdate { applied_index: 21, state: snapshot_bytes.clone(), entries: Vec::new() };
        if let Some(frozen) = frozen(&format!("controller-v{format}/watch-update"), &update.encode_to_vec(), &mut failures) {
            let decoded = runnel_rpc::controller::MetadataUpdate::decode(frozen.as_slice()).expect("the frozen stream message decodes");
            assert_eq!(decoded.applied_index, 21);
            assert_eq!(decode_state(&decoded.state).expect("its state decodes").image, state.image);
        }
        if format == 1 {
            let stored = StoredSnapshot {
                meta: SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership.clone(), snapshot_id: "4-1-21-1".into() },
                data: snapshot_bytes,
            };
            if let Some(frozen) = frozen("controller-v1/snapshot-stored", &encode(&stored).unwrap(), &mut failures) {
                let decoded: StoredSnapshot = decode(&frozen).expect("the frozen stored snapshot decodes");
                assert_eq!(decoded.meta, stored.meta);
                assert_eq!(decoded.data, stored.data);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bytes_left_over_or_a_record_of_another_kind_are_refused() {
    let c = Command::DeleteTopic { name: "orders".into() };
    let mut bytes = encode(&c).unwrap();
    bytes.push(0);
    let e = decode::<Command>(&bytes).unwrap_err().to_string();
    assert!(e.contains("1 bytes left over"), "{e}");
    // A vote is not a command.
    assert!(decode::<Command>(&encode(&Vote::new_committed(4, NodeId(1))).unwrap()).is_err());
}

/// Checks that `message` encodes to the frozen bytes of `name`, which
/// decode back to it.
fn same<M: Message + Default + PartialEq + std::fmt::Debug>(name: &str, message: &M, failures: &mut Vec<String>) {
    if let Some(frozen) = frozen(name, &message.encode_to_vec(), failures) {
        assert_eq!(&M::decode(frozen.as_slice()).unwrap_or_else(|e| panic!("{name}: {e}")), message, "{name}");
    }
}

/// The replication RPCs between brokers: a follower's fetch and its
/// truncation check as nodes before topic ids sent them (no id, served
/// unchecked: a rolling upgrade mixes both), with the id, and the refusal a
/// follower of another topic of the name gets.
#[test]
fn the_replication_requests_of_every_node_version_still_decode() {
    use runnel_rpc::replication::{EpochEndOffsetReply, EpochEndOffsetRequest, FetchPartition, FetchReply, FetchRequest, FetchedPartition, ReplicaError};
    let mut failures = Vec::new();
    let id = topic_id().as_bytes().to_vec();
    for (name, topic_id) in [("replication/fetch-request", Vec::new()), ("replication/fetch-request-topic-id", id.clone())] {
        let partition = FetchPartition { topic: "orders".into(), partition: 2, leader_epoch: 3, fetch_offset: 120, flushed_offset: 118, topic_id };
        same(name, &FetchRequest { replica_id: 2, max_wait_ms: 500, max_bytes: 8 << 20, partitions: vec![partition] }, &mut failures);
    }
    for (name, topic_id) in [("replication/epoch-end-offset-request", Vec::new()), ("replication/epoch-end-offset-request-topic-id", id)] {
        same(name, &EpochEndOffsetRequest { topic: "orders".into(), partition: 2, leader_epoch: 3, requested_epoch: 2, topic_id }, &mut failures);
    }
    let mut refused = FetchedPartition { topic: "orders".into(), partition: 2, ..Default::default() };
    refused.set_error(ReplicaError::UnknownTopicId);
    same("replication/fetch-reply-unknown-topic-id", &FetchReply { partitions: vec![refused] }, &mut failures);
    let mut refused = EpochEndOffsetReply { epoch: -1, end_offset: -1, ..Default::default() };
    refused.set_error(ReplicaError::UnknownTopicId);
    same("replication/epoch-end-offset-reply-unknown-topic-id", &refused, &mut failures);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The controllers' own RPCs beside openraft's (whose messages ride as
/// bincode in `RaftMessage`, covered above): the pre-vote, and the ask a
/// controller-only leader sends a voter that is also a broker to take
/// leadership over. A rolling upgrade mixes nodes of both sides.
#[test]
fn the_controller_rpcs_of_every_node_version_still_decode() {
    use runnel_rpc::raft::{LogPosition, PreVoteReply, PreVoteRequest, TakeLeadershipReply, TakeLeadershipRequest};
    let mut failures = Vec::new();
    let last_log = Some(LogPosition { term: 4, leader: 3, index: 21 });
    same("raft/pre-vote-request", &PreVoteRequest { candidate: 2, last_log }, &mut failures);
    same("raft/pre-vote-reply-refused", &PreVoteReply { granted: false, reason: "node 1 leads and a quorum confirms it".into() }, &mut failures);
    same("raft/take-leadership-request", &TakeLeadershipRequest { leader: 3, last_log }, &mut failures);
    same("raft/take-leadership-reply-declined", &TakeLeadershipReply { campaigning: false, reason: "node 1 does not follow node 3".into() }, &mut failures);
    same("raft/take-leadership-reply", &TakeLeadershipReply { campaigning: true, reason: String::new() }, &mut failures);
    assert!(failures.is_empty(), "{failures:#?}");
}
