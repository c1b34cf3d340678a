//! The records of the cluster metadata: brokers, topics and their
//! partitions, consumer groups and their committed offsets. Plain data; the
//! rules that change them are in [`crate::metadata`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A node's id: the same number names its controller voter and its broker.
/// As a broker id on the Kafka wire it must fit an `i32`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The id as Kafka's protocol carries broker ids (validated to fit at start-up).
    pub fn broker_id(self) -> i32 {
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for NodeId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<NodeId, Self::Err> {
        s.parse().map(NodeId)
    }
}

impl From<u64> for NodeId {
    fn from(id: u64) -> NodeId {
        NodeId(id)
    }
}

/// A broker as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: NodeId,
    pub kafka_host: String,
    pub kafka_port: u16,
    /// The endpoint of a second Kafka listener for clients outside the
    /// nodes' network (a docker host, outside Kubernetes), if any.
    #[serde(default)]
    pub external: Option<(String, u16)>,
    pub rpc_address: String,
    pub rack: Option<String>,
    /// Changes at every registration, so a restarted broker is told apart
    /// from its previous life.
    pub epoch: u64,
    /// A fenced broker leads nothing and is out of every ISR.
    pub fenced: bool,
    /// Fenced by its own controlled shutdown: it stays fenced until it
    /// registers again, whatever heartbeats still arrive.
    pub shutting_down: bool,
    /// The Raft log index of the command that last made this broker live
    /// (its registration or unfencing). A broker whose metadata is older
    /// may not have seen its leaderships move while it was fenced, so it is
    /// granted no lease until it has applied this far.
    #[serde(default)]
    pub live_since_index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// None while no ISR member can lead.
    pub leader: Option<NodeId>,
    /// Bumped at every leader change.
    pub leader_epoch: i32,
    /// Bumped at every change of this record; AlterPartition is checked against it.
    pub partition_epoch: i32,
}

/// What the cluster keeps of a SCRAM user for one mechanism (RFC 5802):
/// never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentialRecord {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// One ACL binding (level 5), with Kafka's codes, so what a client sends
/// and what is stored are the same numbers: resource type (2 topic, 3 group,
/// 4 cluster, 5 transactional id), pattern type (3 literal, 4 prefixed),
/// operation (2 all, 3 read, 4 write, 5 create, 6 delete, 7 alter, 8
/// describe, 9 cluster action, 10 describe configs, 11 alter configs, 12
/// idempotent write) and permission (2 deny, 3 allow).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclRecord {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    /// `User:alice`, or `User:*` for every principal.
    pub principal: String,
    /// A client address, or `*` for any.
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

impl AclRecord {
    /// Why Kafka would refuse to store this binding, if it would.
    pub fn invalid(&self) -> Option<String> {
        if !(2..=5).contains(&self.resource_type) {
            return Some(format!("resource type {} is not one of topic (2), group (3), cluster (4) or transactional id (5)", self.resource_type));
        }
        if !matches!(self.pattern_type, 3 | 4) {
            return Some(format!("pattern type {} is not literal (3) or prefixed (4)", self.pattern_type));
        }
        if self.resource_name.is_empty() {
            return Some("the resource name is empty".into());
        }
        if self.resource_type == 4 && (self.resource_name != "kafka-cluster" || self.pattern_type != 3) {
            return Some("the cluster resource is the literal name kafka-cluster".into());
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return Some(format!("principal {:?} is not of the form User:name", self.principal)),
        }
        if self.host.is_empty() {
            return Some("the host is empty (use * for any)".into());
        }
        if !(2..=14).contains(&self.operation) {
            return Some(format!("operation {} is not a Kafka ACL operation (2 to 14)", self.operation));
        }
        if !matches!(self.permission, 2 | 3) {
            return Some(format!("permission type {} is not deny (2) or allow (3)", self.permission));
        }
        None
    }
}

/// A partition reassignment in progress: the partition's replicas are
/// `target` followed by the members of `original` that are not in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub target: Vec<NodeId>,
    /// The replicas before the first reassignment since the last completed one.
    pub original: Vec<NodeId>,
}

impl Reassignment {
    /// Replicas being added: in the target, not in the original set.
    pub fn adding(&self) -> Vec<NodeId> {
        self.target.iter().copied().filter(|r| !self.original.contains(r)).collect()
    }

    /// Replicas being removed: in the original set, not in the target.
    pub fn removing(&self) -> Vec<NodeId> {
        self.original.iter().copied().filter(|r| !self.target.contains(r)).collect()
    }

    /// The replica list while it is in progress.
    pub fn replicas(&self) -> Vec<NodeId> {
        self.target.iter().copied().chain(self.removing()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: Uuid,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRecord>,
}

impl BrokerRecord {
    /// The Kafka endpoint to give a client that came in on the external
    /// listener (`external`) or the main one.
    pub fn kafka_endpoint(&self, external: bool) -> (&str, u16) {
        match (&self.external, external) {
            (Some((host, port)), true) => (host, *port),
            _ => (&self.kafka_host, self.kafka_port),
        }
    }
}

impl TopicRecord {
    /// Whether a replica outside the ISR may be elected: the topic's own
    /// `unclean.leader.election.enable`, else `default` (every broker's).
    pub fn unclean_election(&self, default: bool) -> bool {
        match self.configs.get(crate::configs::UNCLEAN_ELECTION) {
            Some(v) => v == "true",
            None => default,
        }
    }
}

/// A member as of its group's last completed generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub member_id: String,
    /// Static membership (KIP-345).
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// The member's metadata for the chosen protocol (its subscription).
    pub subscription: Vec<u8>,
    /// What the leader assigned it.
    pub assignment: Vec<u8>,
}

/// A group's last completed generation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRecord {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_time_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub generation: Generation,
    /// (topic, partition) -> committed offset.
    pub offsets: BTreeMap<(String, i32), OffsetRecord>,
}

/// One offset in a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub record: OffsetRecord,
}

/// Where a transactional id's transaction stands (Kafka's TransactionState).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransactionState {
    /// No transaction open (after InitProducerId).
    Empty,
    /// Partitions or offsets were added; EndTxn or the timeout ends it.
    Ongoing,
    /// Commit decided: markers are being written.
    PrepareCommit,
    /// Abort decided: markers are being written.
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

/// A transactional id as the transaction coordinator keeps it (level 7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRecord {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// transaction.timeout.ms as the producer asked, within the broker's maximum.
    pub timeout_ms: i32,
    pub state: TransactionState,
    /// The partitions the open (or ending) transaction wrote to.
    pub partitions: Vec<(String, i32)>,
    /// Offsets sent inside the open transaction (TxnOffsetCommit), per
    /// group: they take effect in the entry that decides the commit.
    pub offsets: Vec<(String, Vec<OffsetCommit>)>,
    /// When the open transaction started (ms since the Unix epoch): its
    /// timeout counts from here. When the record last changed otherwise.
    pub started_ms: i64,
}

/// A KIP-848 consumer group as its coordinator keeps it (level 15): what a
/// coordinator on a newly elected leader needs to go on with every member
/// at its epoch and assignment, as Kafka's consumer-group records do.
/// Heartbeat times are not kept: a new coordinator gives every member a
/// full session from when it loads the group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupRecord {
    /// The group epoch: rises with every change the assignment depends on.
    pub epoch: i32,
    /// The group epoch the members' targets were computed for.
    pub target_epoch: i32,
    /// The subscribed topics (name, id, partition count) the targets saw.
    pub layout: Vec<(String, Uuid, i32)>,
    pub members: Vec<ConsumerMemberRecord>,
}

/// One member of a [`ConsumerGroupRecord`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMemberRecord {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    /// The epoch before the last one, which its commits may still carry.
    pub previous_epoch: i32,
    pub topics: Vec<String>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// Topics its principal may not describe: never assigned to it.
    pub hidden: Vec<String>,
    pub rebalance_timeout_ms: i64,
    /// A static member that left with epoch -2, waiting for its next instance.
    pub departed: bool,
    /// Partitions (topic id, partition) granted and not yet seen revoked.
    pub assigned: Vec<(Uuid, i32)>,
    /// What the target assignment gives it.
    pub target: Vec<(Uuid, i32)>,
}
