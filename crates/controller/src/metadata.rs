//! The cluster metadata state machine: pure code.
//!
//! Every change is a [`Command`] committed through Raft; every controller
//! applies the same commands in the same order with [`MetadataImage::apply`],
//! so every controller holds the same image. `apply` never does I/O and never
//! panics; a command that is not valid against the image is refused with a
//! [`CommandError`] and changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::shared::Shared;

pub use crate::command::{Command, CommandError, CommandOk, CommandResult};
pub use crate::configs::{
    ACCEPTED_CONFIGS, ConfigType, DYNAMIC_BROKER_CONFIGS, LOG_DEFAULT_CONFIGS, PARTITIONS_MAX, TOPIC_CONFIGS, broker_config_type, validate_broker_config,
    validate_config, validate_configs, validate_topic_name,
};
pub use crate::records::{
    AclRecord, BrokerRecord, ConsumerGroupRecord, ConsumerMemberRecord, GroupRecord, NodeId, PartitionRecord, Reassignment, ScramCredentialRecord, TopicRecord,
    TransactionRecord, TransactionState,
};

/// The whole metadata state: what a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub brokers: Shared<BTreeMap<NodeId, BrokerRecord>>,
    /// Each topic is shared between published copies until it changes, and
    /// so is the map (see [`Shared`]): publishing after an offset commit
    /// copies a pointer, not the topics.
    pub topics: Shared<BTreeMap<String, Arc<TopicRecord>>>,
    pub next_producer_id: i64,
    next_broker_epoch: u64,
    /// Consumer groups: last completed generation and committed offsets.
    /// Each group is shared between published copies until it changes.
    pub groups: Shared<BTreeMap<String, Arc<GroupRecord>>>,
    /// The finalized feature level; 0 until one is finalized (level 1).
    /// Not in the level-1 layout: snapshots and the metadata stream carry it
    /// after the image (see `store::encode_state`).
    #[serde(skip)]
    pub feature_level: u16,
    /// Partition reassignments in progress, by topic and partition (level
    /// 3; carried after the image like the level).
    #[serde(skip)]
    pub reassignments: Shared<BTreeMap<(String, i32), Reassignment>>,
    /// SCRAM credentials by user and mechanism (level 4; carried after the
    /// image like the reassignments).
    #[serde(skip)]
    pub scram: Shared<BTreeMap<(String, String), ScramCredentialRecord>>,
    /// ACL bindings (level 5; carried after the image like the SCRAM users).
    #[serde(skip)]
    pub acls: Shared<std::collections::BTreeSet<AclRecord>>,
    /// Dynamic broker configs by broker, `None` for every broker's default
    /// (level 6; carried after the image like the ACLs).
    #[serde(skip)]
    pub broker_configs: Shared<BTreeMap<Option<NodeId>, BTreeMap<String, String>>>,
    /// Transactional ids and their transactions (level 7; carried after the
    /// image like the broker configs).
    #[serde(skip)]
    pub transactions: Shared<BTreeMap<String, TransactionRecord>>,
    /// The producer id each transactional id had before its last renewal,
    /// until the transactional id next changes (level 14; carried after
    /// the image like the transactions).
    #[serde(skip)]
    pub renewed_from: Shared<BTreeMap<String, i64>>,
    /// KIP-848 consumer groups' membership, epochs and assignments (level
    /// 15; carried after the image like the renewals).
    #[serde(skip)]
    pub consumer_groups: Shared<BTreeMap<String, Arc<ConsumerGroupRecord>>>,
    /// The `(producer id, epoch)` an InitProducerId bumped each
    /// transactional id from, until the transactional id next changes
    /// (level 17; carried after the image like the consumer groups).
    #[serde(skip)]
    pub bumped_from: Shared<BTreeMap<String, (i64, i16)>>,
}

impl MetadataImage {
    /// Brokers that can host new replicas, in placement order: racks
    /// alternate (as Kafka's rack-aware assignment does), ids ascend within a rack.
    fn placement_order(&self) -> Vec<NodeId> {
        let mut by_rack: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
        for b in self.brokers.values().filter(|b| !b.fenced) {
            by_rack.entry(b.rack.as_deref()).or_default().push(b.id);
        }
        let mut order = Vec::new();
        let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for ids in by_rack.values() {
                if let Some(id) = ids.get(i) {
                    order.push(*id);
                }
            }
        }
        order
    }

    /// Replica lists for partitions `from..to` of a topic: partition p starts
    /// at a rotating broker so leaders spread evenly, and its followers are the
    /// next brokers in rack-alternating order.
    fn place(&self, from: i32, to: i32, replication_factor: i32, seed: usize) -> Result<Vec<Vec<NodeId>>, CommandError> {
        let order = self.placement_order();
        if replication_factor < 1 || replication_factor as usize > order.len() {
            return Err(CommandError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor} is invalid: it must be between 1 and the {} live broker(s)",
                order.len()
            )));
        }
        let n = order.len();
        Ok((from..to)
            .map(|p| {
                let start = (p as usize + seed) % n;
                (0..replication_factor as usize).map(|k| order[(start + k) % n]).collect()
            })
            .collect())
    }

    fn live(&self, id: NodeId) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Picks a leader for a partition whose leader is gone: the first live
    /// ISR member in replica order, or with unclean election any live replica.
    fn elect(&self, p: &mut PartitionRecord, unclean: bool) {
        let candidate = p
            .replicas
            .iter()
            .copied()
            .find(|r| p.isr.contains(r) && self.live(*r))
            .or_else(|| if unclean { p.replicas.iter().copied().find(|r| self.live(*r)) } else { None });
        if candidate != p.leader {
            p.leader = candidate;
            p.leader_epoch += 1;
            if let Some(l) = candidate
                && !p.isr.contains(&l)
            {
                p.isr = vec![l]; // unclean: the new leader's log is the truth
            }
        }
        p.partition_epoch += 1;
    }

    /// Applies the command committed at Raft log `index`: [`MetadataImage::apply`],
    /// plus the index of a broker's registration or unfencing.
    pub fn apply_at(&mut self, index: u64, command: &Command) -> CommandResult {
        let result = self.apply(command);
        if let (Ok(_), Command::RegisterBroker { id, .. } | Command::UnfenceBroker { id }) = (&result, command)
            && let Some(b) = self.brokers.get_mut(id)
        {
            b.live_since_index = index;
        }
        result
    }

    /// Whether a broker that sent a heartbeat with its metadata applied up
    /// to `metadata_index` may act as a partition leader: registered, not
    /// fenced, and its metadata no older than the command that made it live.
    pub fn grants_lease(&self, id: NodeId, metadata_index: u64) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced && metadata_index >= b.live_since_index)
    }

    /// Applies one committed command.
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        match command {
            Command::InitCluster { cluster_id } => match &self.cluster_id {
                Some(existing) if existing != cluster_id => Err(CommandError::ClusterAlreadyInitialized(existing.clone())),
                _ => {
                    self.cluster_id = Some(cluster_id.clone());
                    Ok(CommandOk::Done)
                }
            },
            Command::RegisterBroker { id, kafka_host, kafka_port, external, rpc_address, rack } => {
                // Two nodes given the same id: the second must not take over
                // the first's partitions while the first is live (from level
                // 2: an older node accepts it, and the metadata would differ).
                if self.finalized_level() >= crate::features::DUPLICATE_NODE_ID_LEVEL
                    && let Some(existing) = self.brokers.get(id)
                    && !existing.fenced
                    && existing.rpc_address != *rpc_address
                {
                    return Err(CommandError::InvalidRequest(format!(
                        "node id {id} is in use by a live broker at {}; give this node another --node-id, or stop that one first (a crashed one is fenced once its session times out)",
                        existing.rpc_address
                    )));
                }
                self.next_broker_epoch += 1;
                let epoch = self.next_broker_epoch;
                self.brokers.insert(
                    *id,
                    BrokerRecord {
                        id: *id,
                        kafka_host: kafka_host.clone(),
                        kafka_port: *kafka_port,
                        external: external.clone(),
                        rpc_address: rpc_address.clone(),
                        rack: rack.clone(),
                        epoch,
                        fenced: false,
                        shutting_down: false,
                        live_since_index: 0,
                    },
                );
                self.elect_leaderless();
                Ok(CommandOk::BrokerRegistered { epoch })
            }
            Command::UnregisterBroker { id } => {
                if !self.brokers.contains_key(id) {
                    return Err(CommandError::UnknownBroker(*id));
                }
                self.fence(*id);
                self.brokers.remove(id);
                Ok(CommandOk::Done)
            }
            Command::FenceBroker { id } => {
                if !self.brokers.contains_key(id) {
                    return Err(CommandError::UnknownBroker(*id));
                }
                self.fence(*id);
                Ok(CommandOk::Done)
            }
            Command::ControlledShutdown { id } => {
                if !self.brokers.contains_key(id) {
                    return Err(CommandError::UnknownBroker(*id));
                }
                self.fence(*id);
                if let Some(b) = self.brokers.get_mut(id) {
                    b.shutting_down = true;
                }
                Ok(CommandOk::Done)
            }
            Command::UnfenceBroker { id } => {
                let Some(b) = self.brokers.get_mut(id) else { return Err(CommandError::UnknownBroker(*id)) };
                b.fenced = false;
                self.elect_leaderless();
                Ok(CommandOk::Done)
            }
            Command::CreateTopic { name, id, partitions, replication_factor, configs } => {
                validate_topic_name(name)?;
                if self.topics.contains_key(name) {
                    return Err(CommandError::TopicAlreadyExists(name.clone()));
                }
                if *partitions < 1 || *partitions > PARTITIONS_MAX {
                    return Err(CommandError::InvalidPartitions(format!("number of partitions must be between 1 and {PARTITIONS_MAX}, got {partitions}")));
                }
                validate_configs(configs, self.finalized_level())?;
                let replicas = self.place(0, *partitions, *replication_factor, self.topics.len())?;
                let partitions = replicas
                    .into_iter()
                    .map(|r| PartitionRecord { leader: r.first().copied(), isr: r.clone(), replicas: r, leader_epoch: 0, partition_epoch: 0 })
                    .collect();
                if self.topics.values().any(|t| t.id == *id) {
                    return Err(CommandError::InvalidRequest(format!("topic id {id} is already in use")));
                }
                self.topics.insert(name.clone(), Arc::new(TopicRecord { id: *id, configs: configs.clone(), partitions }));
                Ok(CommandOk::TopicCreated { id: *id })
            }
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => {
                    self.forget_topic_offsets(name);
                    self.reassignments.retain(|(t, _), _| t != name);
                    Ok(CommandOk::Done)
                }
                None => Err(CommandError::UnknownTopic(name.clone())),
            },
            Command::CreatePartitions { name, count } => {
                let Some(topic) = self.topics.get(name) else { return Err(CommandError::UnknownTopic(name.clone())) };
                let current = topic.partitions.len() as i32;
                if *count <= current || *count > PARTITIONS_MAX {
                    return Err(CommandError::InvalidPartitions(format!(
                        "topic {name:?} has {current} partitions; the new count must be larger and at most {PARTITIONS_MAX}, got {count}"
                    )));
                }
                let factor = topic.partitions.first().map_or(1, |p| p.replicas.len() as i32);
                let replicas = self.place(current, *count, factor, self.topics.len())?;
                let topic = Arc::make_mut(self.topics.get_mut(name).expect("checked above"));
                topic.partitions.extend(replicas.into_iter().map(|r| PartitionRecord {
                    leader: r.first().copied(),
                    isr: r.clone(),
                    replicas: r,
                    leader_epoch: 0,
                    partition_epoch: 0,
                }));
                Ok(CommandOk::Done)
            }
            Command::AlterTopicConfig { name, configs } => {
                for (k, v) in configs {
                    if let Some(v) = v {
                        validate_config(k, v, self.finalized_level())?;
                    }
                }
                let Some(topic) = self.topics.get_mut(name).map(Arc::make_mut) else { return Err(CommandError::UnknownTopic(name.clone())) };
                for (k, v) in configs {
                    match v {
                        Some(v) => topic.configs.insert(k.clone(), v.clone()),
                        None => topic.configs.remove(k),
                    };
                }
                Ok(CommandOk::Done)
            }
            Command::AlterPartition { topic, partition, leader, leader_epoch, partition_epoch, isr } => {
                let unknown = || CommandError::UnknownPartition { topic: topic.clone(), partition: *partition };
                let live: Vec<NodeId> = isr.iter().copied().filter(|r| self.live(*r)).collect();
                let p = self.topics.get_mut(topic).map(Arc::make_mut).and_then(|t| t.partitions.get_mut(*partition as usize)).ok_or_else(unknown)?;
                if p.leader != Some(*leader) || p.leader_epoch != *leader_epoch {
                    return Err(CommandError::StaleEpoch(format!(
                        "broker {leader} at leader epoch {leader_epoch} is not the leader of {topic}-{partition} (leader {:?}, epoch {})",
                        p.leader, p.leader_epoch
                    )));
                }
                if p.partition_epoch != *partition_epoch {
                    return Err(CommandError::StaleEpoch(format!(
                        "partition epoch {partition_epoch} of {topic}-{partition} is stale (now {})",
                        p.partition_epoch
                    )));
                }
                if !isr.contains(leader) || isr.iter().any(|r| !p.replicas.contains(r)) {
                    return Err(CommandError::InvalidRequest(format!("ISR {isr:?} must contain the leader {leader} and only replicas {:?}", p.replicas)));
                }
                if live.len() != isr.len() {
                    return Err(CommandError::InvalidRequest(format!("ISR {isr:?} contains a fenced or unknown broker")));
                }
                p.isr = isr.clone();
                p.partition_epoch += 1;
                // An ISR that now holds every replica a reassignment adds completes it.
                self.complete_reassignment(topic, *partition);
                let p = &self.topics[topic].partitions[*partition as usize];
                Ok(CommandOk::PartitionChanged { leader: p.leader, leader_epoch: p.leader_epoch, partition_epoch: p.partition_epoch })
            }
            Command::ElectPreferredLeader { topic, partition } => {
                let unknown = || CommandError::UnknownPartition { topic: topic.clone(), partition: *partition };
                let t = self.topics.get(topic).ok_or_else(unknown)?;
                let p = t.partitions.get(*partition as usize).ok_or_else(unknown)?;
                let preferred = p.replicas[0];
                if p.leader == Some(preferred) {
                    return Ok(CommandOk::PartitionChanged { leader: p.leader, leader_epoch: p.leader_epoch, partition_epoch: p.partition_epoch });
                }
                if !p.isr.contains(&preferred) || !self.live(preferred) {
                    return Err(CommandError::InvalidRequest(format!("preferred replica {preferred} of {topic}-{partition} is not a live ISR member")));
                }
                let p = &mut Arc::make_mut(self.topics.get_mut(topic).expect("checked")).partitions[*partition as usize];
                p.leader = Some(preferred);
                p.leader_epoch += 1;
                p.partition_epoch += 1;
                Ok(CommandOk::PartitionChanged { leader: p.leader, leader_epoch: p.leader_epoch, partition_epoch: p.partition_epoch })
            }
            Command::AllocateProducerIds { count } => {
                if *count < 1 || *count > 1_000_000 {
                    return Err(CommandError::InvalidRequest(format!("producer id block of {count} is out of range")));
                }
                let first = self.next_producer_id;
                self.next_producer_id += count;
                Ok(CommandOk::ProducerIds { first, count: *count })
            }
            Command::StoreGroup { group, generation } => self.store_group(group, generation),
            Command::CommitOffsets { commits } => {
                Ok(CommandOk::OffsetsCommitted { results: commits.iter().map(|(group, offsets)| self.commit_offsets(group, offsets)).collect() })
            }
            Command::DeleteGroups { groups } => self.delete_groups(groups),
            Command::DeleteOffsets { group, partitions } => self.delete_offsets(group, partitions),
            Command::FinalizeFeatures { level } => {
                if *level <= self.finalized_level() {
                    return Err(CommandError::InvalidRequest(format!("the cluster is at feature level {} already; levels only go up", self.finalized_level())));
                }
                self.feature_level = *level;
                Ok(CommandOk::Done)
            }
            Command::ReassignPartition { topic, partition, target } => self.reassign(topic, *partition, target.as_deref()),
            Command::CreateTopicWithReplicas { name, id, replicas, configs } => self.create_with_replicas(name, *id, replicas, configs),
            Command::UpsertScramCredential { user, mechanism, credential } => {
                self.scram_level()?;
                if user.is_empty() || !matches!(mechanism.as_str(), "SCRAM-SHA-256" | "SCRAM-SHA-512") {
                    return Err(CommandError::InvalidRequest(format!(
                        "a SCRAM credential needs a user name and SCRAM-SHA-256 or SCRAM-SHA-512, got {user:?} and {mechanism:?}"
                    )));
                }
                if !(4096..=16384).contains(&credential.iterations) || credential.salt.is_empty() {
                    return Err(CommandError::InvalidRequest(format!(
                        "SCRAM iterations must be between 4096 and 16384 with a salt, got {}",
                        credential.iterations
                    )));
                }
                self.scram.insert((user.clone(), mechanism.clone()), credential.clone());
                Ok(CommandOk::Done)
            }
            Command::DeleteScramCredential { user, mechanism } => {
                self.scram_level()?;
                match self.scram.remove(&(user.clone(), mechanism.clone())) {
                    Some(_) => Ok(CommandOk::Done),
                    None => Err(CommandError::NoScramCredential(user.clone(), mechanism.clone())),
                }
            }
            Command::CreateAcls { acls } => {
                self.acl_level()?;
                if let Some(why) = acls.iter().find_map(AclRecord::invalid) {
                    return Err(CommandError::InvalidRequest(why));
                }
                self.acls.extend(acls.iter().cloned());
                Ok(CommandOk::Done)
            }
            Command::DeleteAcls { acls } => {
                self.acl_level()?;
                for acl in acls {
                    self.acls.remove(acl);
                }
                Ok(CommandOk::Done)
            }
            Command::AlterBrokerConfig { broker, configs } => {
                self.require_level(crate::features::BROKER_CONFIGS_LEVEL, "broker configs changed at run time need")?;
                if let Some(id) = broker
                    && !self.brokers.contains_key(id)
                {
                    return Err(CommandError::UnknownBroker(*id));
                }
                for (name, value) in configs {
                    crate::configs::validate_broker_config(name, value.as_deref(), self.finalized_level())?;
                    if broker.is_some() && name == crate::configs::UNCLEAN_ELECTION && value.is_some() {
                        return Err(CommandError::InvalidConfig(format!(
                            "{name} is set for every broker only (the empty resource name; runnelctl broker config without --broker): the controller elects leaders for the whole cluster"
                        )));
                    }
                }
                let set = self.broker_configs.entry(*broker).or_default();
                for (name, value) in configs {
                    match value {
                        Some(v) => set.insert(name.clone(), v.clone()),
                        None => set.remove(name),
                    };
                }
                if set.is_empty() {
                    self.broker_configs.remove(broker);
                }
                // Allowed now, partitions left without a leader get one, as
                // Kafka's controller does when this config changes.
                if configs.get(crate::configs::UNCLEAN_ELECTION).is_some_and(|v| v.as_deref() == Some("true")) {
                    self.elect_leaderless();
                }
                Ok(CommandOk::Done)
            }
            Command::PutTransaction { transactional_id, record } => self.put_transaction(transactional_id, record),
            Command::PutConsumerGroups { groups } => self.put_consumer_groups(groups),
            Command::ExpireOffsets { groups } => self.expire_offsets(groups),
            Command::RenewTransaction { transactional_id, record, previous_producer_id } => {
                self.require_level(crate::features::TRANSACTION_RENEWAL_LEVEL, "recording a renewed producer id needs")?;
                self.put_transaction(transactional_id, record)?;
                self.renewed_from.insert(transactional_id.clone(), *previous_producer_id);
                Ok(CommandOk::Done)
            }
            Command::BumpTransaction { transactional_id, record, previous } => {
                self.require_level(crate::features::INIT_RETRY_LEVEL, "recording the epoch an InitProducerId bumped from needs")?;
                self.put_transaction(transactional_id, record)?;
                self.bumped_from.insert(transactional_id.clone(), *previous);
                Ok(CommandOk::Done)
            }
            Command::CreatePartitionsWithReplicas { name, replicas } => self.add_partitions_with_replicas(name, replicas),
            Command::ExpireTransactions { expired } => {
                self.require_level(crate::features::TRANSACTION_EXPIRY_LEVEL, "expiring transactional ids needs")?;
                for (id, producer_id, epoch) in expired {
                    let idle = self.transactions.get(id).is_some_and(|r| {
                        r.producer_id == *producer_id
                            && r.producer_epoch == *epoch
                            && matches!(r.state, TransactionState::Empty | TransactionState::CompleteCommit | TransactionState::CompleteAbort)
                    });
                    if idle {
                        self.transactions.remove(id);
                        self.renewed_from.remove(id);
                        if self.bumped_from.contains_key(id) {
                            self.bumped_from.remove(id);
                        }
                    }
                }
                Ok(CommandOk::Done)
            }
        }
    }

    fn put_transaction(&mut self, transactional_id: &str, record: &TransactionRecord) -> CommandResult {
        self.require_level(crate::features::TRANSACTIONS_LEVEL, "transactions need")?;
        if transactional_id.is_empty() {
            return Err(CommandError::InvalidRequest("a transactional id must not be empty".into()));
        }
        let mut record = record.clone();
        if record.state == TransactionState::PrepareCommit {
            for (group, offsets) in &record.offsets {
                // Offsets of partitions deleted since are dropped, as a
                // plain commit drops them.
                self.commit_offsets(group, offsets)?;
            }
        }
        if record.state != TransactionState::Ongoing {
            record.offsets.clear();
        }
        self.transactions.insert(transactional_id.to_string(), record);
        // Look before removing: `remove` goes through DerefMut, which copies
        // a map still shared with an older image even when the id is absent,
        // and most transaction records have no renewal to forget.
        if self.renewed_from.contains_key(transactional_id) {
            self.renewed_from.remove(transactional_id);
        }
        if self.bumped_from.contains_key(transactional_id) {
            self.bumped_from.remove(transactional_id);
        }
        Ok(CommandOk::Done)
    }

    /// A dynamic broker config as it applies to `broker`: its own value,
    /// else the cluster-wide default; and whether it is the broker's own.
    pub fn broker_config(&self, broker: NodeId, name: &str) -> Option<(&str, bool)> {
        let own = self.broker_configs.get(&Some(broker)).and_then(|c| c.get(name)).map(|v| (v.as_str(), true));
        own.or_else(|| self.broker_configs.get(&None).and_then(|c| c.get(name)).map(|v| (v.as_str(), false)))
    }

    /// Whether the controller may elect a replica outside the ISR of `t`:
    /// its own `unclean.leader.election.enable`, else the dynamic default
    /// for every broker (level 12).
    pub fn unclean_election(&self, t: &TopicRecord) -> bool {
        t.unclean_election(self.unclean_election_default())
    }

    fn unclean_election_default(&self) -> bool {
        self.broker_configs.get(&None).and_then(|c| c.get(crate::configs::UNCLEAN_ELECTION)).is_some_and(|v| v == "true")
    }

    /// The topic configs that `broker`'s dynamic defaults set for topics
    /// without their own value (levels 10 to 12): topic config name ->
    /// (value, whether it is the broker's own rather than every broker's).
    pub fn log_defaults(&self, broker: NodeId) -> BTreeMap<&'static str, (&str, bool)> {
        LOG_DEFAULT_CONFIGS.iter().filter_map(|(name, topic_name)| Some((*topic_name, self.broker_config(broker, name)?))).collect()
    }

    fn acl_level(&self) -> Result<(), CommandError> {
        self.require_level(crate::features::ACLS_LEVEL, "ACLs need")
    }

    fn scram_level(&self) -> Result<(), CommandError> {
        self.require_level(crate::features::SCRAM_USERS_LEVEL, "SCRAM users in the metadata need")
    }

    /// Refuses records that need feature `level` while the cluster is
    /// below it; `what` names them, verb included ("ACLs need").
    pub(crate) fn require_level(&self, level: u16, what: &str) -> Result<(), CommandError> {
        let finalized = self.finalized_level();
        if finalized < level {
            return Err(CommandError::InvalidRequest(format!("{what} feature level {level}; the cluster is at {finalized} (runnelctl cluster upgrade)")));
        }
        Ok(())
    }

    /// A topic whose partitions' replicas are given: each list as long as
    /// the first, without repeats, of registered brokers; the ISR is the
    /// live ones, the first of them leads.
    fn create_with_replicas(&mut self, name: &str, id: uuid::Uuid, replicas: &[Vec<NodeId>], configs: &BTreeMap<String, String>) -> CommandResult {
        self.require_level(crate::features::REASSIGNMENT_LEVEL, "topics with explicit replica assignments need")?;
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(CommandError::TopicAlreadyExists(name.to_string()));
        }
        if replicas.is_empty() || replicas.len() > PARTITIONS_MAX as usize {
            return Err(CommandError::InvalidPartitions(format!("number of partitions must be between 1 and {PARTITIONS_MAX}, got {}", replicas.len())));
        }
        validate_configs(configs, self.finalized_level())?;
        let partitions = self.placed_partitions(0, replicas, replicas[0].len(), "partition 0")?;
        if self.topics.values().any(|t| t.id == id) {
            return Err(CommandError::InvalidRequest(format!("topic id {id} is already in use")));
        }
        self.topics.insert(name.to_string(), Arc::new(TopicRecord { id, configs: configs.clone(), partitions }));
        Ok(CommandOk::TopicCreated { id })
    }

    /// Partitions `first`, `first + 1`, ... on the given replica lists, each
    /// of `factor` distinct registered brokers (as `reference` has), led by
    /// its first live replica.
    fn placed_partitions(&self, first: usize, replicas: &[Vec<NodeId>], factor: usize, reference: &str) -> Result<Vec<PartitionRecord>, CommandError> {
        let mut partitions = Vec::with_capacity(replicas.len());
        for (p, list) in (first..).zip(replicas) {
            if list.is_empty() || list.len() != factor {
                return Err(CommandError::InvalidReplicationFactor(format!(
                    "partition {p} has {} replicas and {reference} has {factor}: every partition needs the same number, at least one",
                    list.len()
                )));
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = list.iter().find(|r| !seen.insert(**r)) {
                return Err(CommandError::InvalidRequest(format!("partition {p}: broker {dup} is listed twice")));
            }
            if let Some(missing) = list.iter().find(|r| !self.brokers.contains_key(r)) {
                return Err(CommandError::UnknownBroker(*missing));
            }
            let isr: Vec<NodeId> = list.iter().copied().filter(|r| self.live(*r)).collect();
            if isr.is_empty() {
                return Err(CommandError::InvalidRequest(format!("partition {p}: none of brokers {list:?} is live")));
            }
            partitions.push(PartitionRecord { leader: isr.first().copied(), isr, replicas: list.clone(), leader_epoch: 0, partition_epoch: 0 });
        }
        Ok(partitions)
    }

    /// Adds partitions to `name` on the given replica lists (level 9).
    fn add_partitions_with_replicas(&mut self, name: &str, replicas: &[Vec<NodeId>]) -> CommandResult {
        self.require_level(crate::features::PARTITION_ASSIGNMENT_LEVEL, "adding partitions with explicit replica assignments needs")?;
        let Some(topic) = self.topics.get(name) else { return Err(CommandError::UnknownTopic(name.to_string())) };
        let current = topic.partitions.len();
        let count = current + replicas.len();
        if replicas.is_empty() || count > PARTITIONS_MAX as usize {
            return Err(CommandError::InvalidPartitions(format!(
                "topic {name:?} has {current} partitions; the new count must be larger and at most {PARTITIONS_MAX}, got {count}"
            )));
        }
        let factor = topic.partitions.first().map_or(replicas[0].len(), |p| p.replicas.len());
        let added = self.placed_partitions(current, replicas, factor, "the topic's partitions")?;
        Arc::make_mut(self.topics.get_mut(name).expect("checked above")).partitions.extend(added);
        Ok(CommandOk::Done)
    }

    /// Starts, replaces or (with no target) cancels a partition's reassignment.
    fn reassign(&mut self, topic: &str, partition: i32, target: Option<&[NodeId]>) -> CommandResult {
        self.require_level(crate::features::REASSIGNMENT_LEVEL, "partition reassignment needs")?;
        let unknown = || CommandError::UnknownPartition { topic: topic.to_string(), partition };
        let current = self.topics.get(topic).and_then(|t| t.partitions.get(usize::try_from(partition).ok()?)).ok_or_else(unknown)?.clone();
        let key = (topic.to_string(), partition);
        let original = self.reassignments.get(&key).map_or_else(|| current.replicas.clone(), |r| r.original.clone());
        let in_progress = self.reassignments.contains_key(&key);
        let next = match target {
            None if !in_progress => return Err(CommandError::NoReassignmentInProgress(format!("{topic}-{partition}"))),
            None => None,
            Some(target) => {
                if target.is_empty() {
                    return Err(CommandError::InvalidReplicationFactor(format!("{topic}-{partition}: a reassignment needs at least one replica")));
                }
                let mut seen = std::collections::BTreeSet::new();
                if let Some(dup) = target.iter().find(|r| !seen.insert(**r)) {
                    return Err(CommandError::InvalidRequest(format!("{topic}-{partition}: broker {dup} is listed twice")));
                }
                if let Some(missing) = target.iter().find(|r| !self.brokers.contains_key(r)) {
                    return Err(CommandError::UnknownBroker(*missing));
                }
                Some(Reassignment { target: target.to_vec(), original: original.clone() })
            }
        };
        let replicas = next.as_ref().map_or(original, Reassignment::replicas);
        let isr: Vec<NodeId> = replicas.iter().copied().filter(|r| current.isr.contains(r)).collect();
        if isr.is_empty() {
            return Err(CommandError::InvalidRequest(format!(
                "{topic}-{partition}: no replica of {replicas:?} is in the ISR {:?}; it would have no replica to lead from",
                current.isr
            )));
        }
        match next {
            Some(r) => self.reassignments.insert(key, r),
            None => self.reassignments.remove(&key),
        };
        let live = |id: &NodeId| self.brokers.get(id).is_some_and(|b| !b.fenced);
        let leader = match current.leader {
            Some(l) if replicas.contains(&l) => Some(l),
            _ => replicas.iter().copied().find(|r| isr.contains(r) && live(r)),
        };
        let p = &mut Arc::make_mut(self.topics.get_mut(topic).expect("checked above")).partitions[partition as usize];
        if leader != p.leader {
            p.leader = leader;
            p.leader_epoch += 1;
        }
        p.isr = isr;
        p.replicas = replicas;
        p.partition_epoch += 1;
        self.complete_reassignment(topic, partition);
        let p = &self.topics[topic].partitions[partition as usize];
        Ok(CommandOk::PartitionChanged { leader: p.leader, leader_epoch: p.leader_epoch, partition_epoch: p.partition_epoch })
    }

    /// Ends a reassignment whose target replicas are all in the ISR: the
    /// replicas become the target, those leaving drop out of the ISR, and a
    /// leaving leader hands over to the first target replica in the ISR.
    fn complete_reassignment(&mut self, topic: &str, partition: i32) {
        let key = (topic.to_string(), partition);
        let Some(r) = self.reassignments.get(&key) else { return };
        let Some(p) = self.topics.get(topic).and_then(|t| t.partitions.get(partition as usize)) else { return };
        if !r.target.iter().all(|t| p.isr.contains(t)) {
            return;
        }
        let target = r.target.clone();
        self.reassignments.remove(&key);
        let live: Vec<NodeId> = target.iter().copied().filter(|id| self.brokers.get(id).is_some_and(|b| !b.fenced)).collect();
        let p = &mut Arc::make_mut(self.topics.get_mut(topic).expect("checked above")).partitions[partition as usize];
        p.isr = target.clone();
        if p.leader.is_none_or(|l| !target.contains(&l)) {
            p.leader = live.first().copied();
            p.leader_epoch += 1;
        }
        p.replicas = target;
        p.partition_epoch += 1;
    }

    /// The cluster's finalized feature level: what its nodes may write.
    pub fn finalized_level(&self) -> u16 {
        self.feature_level.max(crate::features::LEVEL_MIN)
    }

    /// Fences a broker: out of every ISR it shares with others, and every
    /// partition it led gets a new leader (or none).
    fn fence(&mut self, id: NodeId) {
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = true;
        }
        let image = self.clone();
        let unclean_default = image.unclean_election_default();
        // Only the topics the broker is in are copied out of the shared state.
        for topic in self.topics.values_mut().filter(|t| t.partitions.iter().any(|p| p.isr.contains(&id) || p.leader == Some(id))) {
            let topic = Arc::make_mut(topic);
            let unclean = topic.unclean_election(unclean_default);
            for p in &mut topic.partitions {
                let in_isr = p.isr.contains(&id);
                if in_isr && p.isr.len() > 1 {
                    p.isr.retain(|r| *r != id);
                    p.partition_epoch += 1;
                }
                if p.leader == Some(id) {
                    image.elect(p, unclean);
                }
            }
        }
    }

    /// Gives leaderless partitions a leader, if one can be elected now (a
    /// broker is live again, or unclean election was allowed).
    fn elect_leaderless(&mut self) {
        let image = self.clone();
        let unclean_default = image.unclean_election_default();
        for topic in self.topics.values_mut().filter(|t| t.partitions.iter().any(|p| p.leader.is_none())) {
            let topic = Arc::make_mut(topic);
            let unclean = topic.unclean_election(unclean_default);
            for p in &mut topic.partitions {
                if p.leader.is_none() {
                    image.elect(p, unclean);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use uuid::Uuid;

    pub(crate) fn register(image: &mut MetadataImage, id: u64, rack: Option<&str>) -> u64 {
        let cmd = Command::RegisterBroker {
            id: NodeId(id),
            kafka_host: "127.0.0.1".into(),
            kafka_port: 9000 + id as u16,
            external: None,
            rpc_address: format!("127.0.0.1:{}", 9100 + id),
            rack: rack.map(String::from),
        };
        match image.apply(&cmd) {
            Ok(CommandOk::BrokerRegistered { epoch }) => epoch,
            other => panic!("{other:?}"),
        }
    }

    pub(crate) fn create(image: &mut MetadataImage, name: &str, partitions: i32, rf: i32) -> CommandResult {
        image.apply(&Command::CreateTopic { name: name.into(), id: Uuid::new_v4(), partitions, replication_factor: rf, configs: BTreeMap::new() })
    }

    fn three_brokers() -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            register(&mut image, id, None);
        }
        image
    }

    #[test]
    fn cluster_id_is_set_once() {
        let mut image = MetadataImage::default();
        assert_eq!(image.apply(&Command::InitCluster { cluster_id: "a".into() }), Ok(CommandOk::Done));
        assert_eq!(image.apply(&Command::InitCluster { cluster_id: "a".into() }), Ok(CommandOk::Done));
        assert_eq!(image.apply(&Command::InitCluster { cluster_id: "b".into() }), Err(CommandError::ClusterAlreadyInitialized("a".into())));
    }

    #[test]
    fn the_feature_level_starts_at_1_and_only_goes_up() {
        let mut image = MetadataImage::default();
        assert_eq!(image.finalized_level(), 1);
        assert!(matches!(image.apply(&Command::FinalizeFeatures { level: 1 }), Err(CommandError::InvalidRequest(_))));
        assert_eq!(image.apply(&Command::FinalizeFeatures { level: 2 }), Ok(CommandOk::Done));
        assert_eq!(image.finalized_level(), 2);
        let refused = image.apply(&Command::FinalizeFeatures { level: 2 }).unwrap_err();
        assert!(refused.to_string().contains("feature level 2 already"), "{refused}");
        assert_eq!(image.finalized_level(), 2);
    }

    #[test]
    fn kafka_configs_runnel_does_not_act_on_are_accepted_from_level_2() {
        let mut image = three_brokers();
        let with = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let create = |image: &mut MetadataImage, name: &str, configs| {
            image.apply(&Command::CreateTopic { name: name.into(), id: Uuid::new_v4(), partitions: 1, replication_factor: 1, configs })
        };
        // Level 1: refused, saying how to get it (an older node refuses it too).
        let refused = create(&mut image, "a", with("compression.type", "lz4")).unwrap_err();
        assert!(refused.to_string().contains("runnelctl cluster upgrade"), "{refused}");
        image.apply(&Command::FinalizeFeatures { level: 2 }).unwrap();
        create(&mut image, "a", with("compression.type", "lz4")).unwrap();
        assert_eq!(image.topics["a"].configs["compression.type"], "lz4");
        // Values are still checked, and unknown names refused.
        assert!(matches!(create(&mut image, "b", with("compression.type", "brotli")), Err(CommandError::InvalidConfig(_))));
        assert!(matches!(create(&mut image, "b", with("min.cleanable.dirty.ratio", "2")), Err(CommandError::InvalidConfig(_))));
        assert!(matches!(create(&mut image, "b", with("no.such.config", "1")), Err(CommandError::InvalidConfig(_))));
        create(&mut image, "b", with("message.timestamp.type", "LogAppendTime")).unwrap();
        let set = BTreeMap::from([("delete.retention.ms".to_string(), Some("1000".to_string()))]);
        image.apply(&Command::AlterTopicConfig { name: "b".into(), configs: set }).unwrap();
    }

    #[test]
    fn idle_transactional_ids_expire_only_as_they_were_seen() {
        let mut image = three_brokers();
        let record = |producer_epoch: i16, state: TransactionState| TransactionRecord {
            producer_id: 40,
            producer_epoch,
            timeout_ms: 60_000,
            state,
            partitions: vec![],
            offsets: vec![],
            started_ms: 1,
        };
        image.apply(&Command::FinalizeFeatures { level: crate::features::TRANSACTIONS_LEVEL }).unwrap();
        for (id, state) in [("done", TransactionState::CompleteCommit), ("busy", TransactionState::Ongoing), ("again", TransactionState::Empty)] {
            image.apply(&Command::PutTransaction { transactional_id: id.into(), record: record(3, state) }).unwrap();
        }
        let expire =
            Command::ExpireTransactions { expired: vec![("done".into(), 40, 3), ("busy".into(), 40, 3), ("again".into(), 40, 2), ("none".into(), 1, 0)] };
        let refused = image.apply(&expire).unwrap_err();
        assert!(refused.to_string().contains("feature level 8"), "{refused}");
        image.apply(&Command::FinalizeFeatures { level: crate::features::TRANSACTION_EXPIRY_LEVEL }).unwrap();
        image.apply(&expire).unwrap();
        // Gone: the idle one seen at its epoch. Kept: one in a transaction,
        // and one initialised again (a newer epoch) since it was seen.
        assert_eq!(image.transactions.keys().map(String::as_str).collect::<Vec<_>>(), vec!["again", "busy"]);
    }

    /// Applies a transaction command at `level - 1`, where it must be
    /// refused with nothing stored, then finalizes `level`.
    fn refused_until(image: &mut MetadataImage, level: u16, command: &Command) {
        image.apply(&Command::FinalizeFeatures { level: level - 1 }).unwrap();
        let refused = image.apply(command).unwrap_err();
        assert!(refused.to_string().contains(&format!("feature level {level}")), "{refused}");
        assert!(image.transactions.is_empty(), "nothing stored by a refused command");
        image.apply(&Command::FinalizeFeatures { level }).unwrap();
    }

    fn record(producer_id: i64, state: TransactionState) -> TransactionRecord {
        TransactionRecord { producer_id, producer_epoch: 0, timeout_ms: 60_000, state, partitions: vec![], offsets: vec![], started_ms: 1 }
    }

    #[test]
    fn a_renewed_producer_id_is_remembered_until_the_transactional_id_changes() {
        let mut image = three_brokers();
        let renew = |id: &str| Command::RenewTransaction {
            transactional_id: id.into(),
            record: record(50, TransactionState::CompleteCommit),
            previous_producer_id: 40,
        };
        refused_until(&mut image, crate::features::TRANSACTION_RENEWAL_LEVEL, &renew("a"));
        image.apply(&renew("a")).unwrap();
        image.apply(&renew("b")).unwrap();
        assert_eq!((image.transactions["a"].producer_id, image.renewed_from.get("a")), (50, Some(&40)));
        // The producer goes on under its fresh id: the old one is forgotten.
        image.apply(&Command::PutTransaction { transactional_id: "a".into(), record: record(50, TransactionState::Ongoing) }).unwrap();
        assert_eq!(image.renewed_from.get("a"), None);
        // An expired transactional id takes its previous id along.
        image.apply(&Command::ExpireTransactions { expired: vec![("b".into(), 50, 0)] }).unwrap();
        assert!(image.renewed_from.is_empty() && !image.transactions.contains_key("b"));
    }

    #[test]
    fn the_epoch_an_init_bumped_from_is_remembered_until_the_transactional_id_changes() {
        let mut image = three_brokers();
        let bumped = TransactionRecord { producer_epoch: 8, ..record(50, TransactionState::Empty) };
        let bump = |id: &str| Command::BumpTransaction { transactional_id: id.into(), record: bumped.clone(), previous: (50, 7) };
        refused_until(&mut image, crate::features::INIT_RETRY_LEVEL, &bump("a"));
        image.apply(&bump("a")).unwrap();
        image.apply(&bump("b")).unwrap();
        assert_eq!((image.transactions["a"].producer_epoch, image.bumped_from.get("a")), (8, Some(&(50, 7))));
        // The producer went on at its new epoch: a retry is no longer one.
        image.apply(&Command::PutTransaction { transactional_id: "a".into(), record: record(50, TransactionState::Ongoing) }).unwrap();
        assert_eq!(image.bumped_from.get("a"), None);
        image.apply(&Command::ExpireTransactions { expired: vec![("b".into(), 50, 8)] }).unwrap();
        assert!(image.bumped_from.is_empty() && !image.transactions.contains_key("b"));
    }

    #[test]
    fn partitions_are_added_on_the_given_replicas_from_level_9() {
        let mut image = three_brokers();
        image.apply(&Command::FinalizeFeatures { level: crate::features::PARTITION_ASSIGNMENT_LEVEL - 1 }).unwrap();
        image.apply(&Command::CreateTopic { name: "t".into(), id: Uuid::new_v4(), partitions: 1, replication_factor: 2, configs: BTreeMap::new() }).unwrap();
        let add = |name: &str, lists: &[&[u64]]| Command::CreatePartitionsWithReplicas {
            name: name.into(),
            replicas: lists.iter().map(|l| l.iter().copied().map(NodeId).collect()).collect(),
        };
        let refused = image.apply(&add("t", &[&[2, 3]])).unwrap_err();
        assert!(refused.to_string().contains("feature level 9") && refused.to_string().contains("runnelctl cluster upgrade"), "{refused}");
        image.apply(&Command::FinalizeFeatures { level: crate::features::PARTITION_ASSIGNMENT_LEVEL }).unwrap();

        // Refused whole: another replication factor than the topic's, a
        // broker twice, an unknown broker (even after a good list), no list.
        assert!(matches!(image.apply(&add("t", &[&[2]])), Err(CommandError::InvalidReplicationFactor(m)) if m.contains("partition 1 has 1 replicas")));
        assert!(matches!(image.apply(&add("t", &[&[2, 2]])), Err(CommandError::InvalidRequest(m)) if m.contains("listed twice")));
        assert_eq!(image.apply(&add("t", &[&[3, 1], &[2, 9]])), Err(CommandError::UnknownBroker(NodeId(9))));
        assert!(matches!(image.apply(&add("t", &[])), Err(CommandError::InvalidPartitions(_))));
        assert!(matches!(image.apply(&add("nope", &[&[1, 2]])), Err(CommandError::UnknownTopic(_))));
        assert_eq!(image.topics["t"].partitions.len(), 1, "nothing was added by a refused command");

        image.apply(&Command::FenceBroker { id: NodeId(3) }).unwrap();
        image.apply(&add("t", &[&[3, 1], &[2, 3]])).unwrap();
        let partitions = &image.topics["t"].partitions;
        assert_eq!(partitions.len(), 3);
        assert_eq!(
            (partitions[1].replicas.clone(), partitions[1].leader, partitions[1].isr.clone()),
            (vec![NodeId(3), NodeId(1)], Some(NodeId(1)), vec![NodeId(1)])
        );
        assert_eq!(
            (partitions[2].replicas.clone(), partitions[2].leader, partitions[2].isr.clone()),
            (vec![NodeId(2), NodeId(3)], Some(NodeId(2)), vec![NodeId(2)])
        );
    }

    #[test]
    fn compaction_is_accepted_from_level_8_and_bad_policies_never() {
        let mut image = three_brokers();
        let policy = |v: &str| BTreeMap::from([("cleanup.policy".to_string(), v.to_string())]);
        let create = |image: &mut MetadataImage, name: &str, configs| {
            image.apply(&Command::CreateTopic { name: name.into(), id: Uuid::new_v4(), partitions: 1, replication_factor: 1, configs })
        };
        image.apply(&Command::FinalizeFeatures { level: crate::features::COMPACTION_LEVEL - 1 }).unwrap();
        create(&mut image, "d", policy("delete")).unwrap();
        let refused = create(&mut image, "c", policy("compact")).unwrap_err();
        assert!(refused.to_string().contains("from feature level 8") && refused.to_string().contains("runnelctl cluster upgrade"), "{refused}");
        let alter =
            Command::AlterTopicConfig { name: "d".into(), configs: BTreeMap::from([("cleanup.policy".to_string(), Some("compact,delete".to_string()))]) };
        assert!(matches!(image.apply(&alter), Err(CommandError::InvalidConfig(_))));
        image.apply(&Command::FinalizeFeatures { level: crate::features::COMPACTION_LEVEL }).unwrap();
        create(&mut image, "c", policy("compact")).unwrap();
        image.apply(&alter).unwrap();
        assert_eq!(image.topics["d"].configs["cleanup.policy"], "compact,delete");
        create(&mut image, "e", policy(" delete , compact")).unwrap();
        for bad in ["", "shred", "compact,compact", "compact;delete", "compact,"] {
            let refused = create(&mut image, "f", policy(bad)).unwrap_err();
            assert!(refused.to_string().contains("cleanup.policy must be"), "{bad:?}: {refused}");
        }
    }

    #[test]
    fn a_second_broker_with_a_live_brokers_id_is_refused_from_level_2() {
        let register = |image: &mut MetadataImage, address: &str| {
            image.apply(&Command::RegisterBroker {
                id: NodeId(1),
                kafka_host: "h".into(),
                kafka_port: 9092,
                external: None,
                rpc_address: address.into(),
                rack: None,
            })
        };
        let mut image = MetadataImage::default();
        register(&mut image, "a:9093").unwrap();
        // Level 1 keeps 2a9fcc0's behaviour: the last registration wins.
        register(&mut image, "b:9093").unwrap();
        image.apply(&Command::FinalizeFeatures { level: 2 }).unwrap();
        let refused = register(&mut image, "a:9093").unwrap_err();
        assert!(refused.to_string().contains("node id 1 is in use by a live broker at b:9093"), "{refused}");
        assert_eq!(image.brokers[&NodeId(1)].rpc_address, "b:9093");
        // The same node restarting (same address) registers again.
        register(&mut image, "b:9093").unwrap();
        // Once the live one is fenced (stopped, or its session ran out), the id is free.
        image.apply(&Command::FenceBroker { id: NodeId(1) }).unwrap();
        register(&mut image, "a:9093").unwrap();
    }

    #[test]
    fn registration_gives_a_new_epoch_each_time() {
        let mut image = MetadataImage::default();
        let first = register(&mut image, 1, None);
        let second = register(&mut image, 1, None);
        assert!(second > first);
        assert_eq!(image.brokers[&NodeId(1)].epoch, second);
        assert_eq!(image.apply(&Command::UnregisterBroker { id: NodeId(1) }), Ok(CommandOk::Done));
        assert!(image.brokers.is_empty());
        assert_eq!(image.apply(&Command::UnregisterBroker { id: NodeId(1) }), Err(CommandError::UnknownBroker(NodeId(1))));
    }

    #[test]
    fn topics_spread_partitions_and_leaders_over_live_brokers() {
        let mut image = three_brokers();
        assert!(matches!(create(&mut image, "t", 6, 3), Ok(CommandOk::TopicCreated { .. })));
        let t = &image.topics["t"];
        let mut leaders = BTreeMap::new();
        for p in &t.partitions {
            assert_eq!(p.replicas.len(), 3);
            assert_eq!(p.isr, p.replicas);
            assert_eq!(p.leader, Some(p.replicas[0]));
            *leaders.entry(p.leader.unwrap()).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "leaders spread evenly: {leaders:?}");
        assert_eq!(create(&mut image, "t", 1, 1), Err(CommandError::TopicAlreadyExists("t".into())));
        assert!(matches!(create(&mut image, "u", 1, 4), Err(CommandError::InvalidReplicationFactor(_))));
        assert!(matches!(create(&mut image, "u", 0, 1), Err(CommandError::InvalidPartitions(_))));
        assert!(matches!(create(&mut image, "bad name", 1, 1), Err(CommandError::InvalidTopicName(_))));
        let bad_config = Command::CreateTopic {
            name: "v".into(),
            id: Uuid::new_v4(),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::from([("retention.ms".into(), "soon".into())]),
        };
        assert!(matches!(image.apply(&bad_config), Err(CommandError::InvalidConfig(_))));
        assert!(!image.topics.contains_key("v"), "a refused command changes nothing");
    }

    #[test]
    fn placement_alternates_racks() {
        let mut image = MetadataImage::default();
        register(&mut image, 1, Some("a"));
        register(&mut image, 2, Some("a"));
        register(&mut image, 3, Some("b"));
        register(&mut image, 4, Some("b"));
        create(&mut image, "r", 4, 2).unwrap();
        for p in &image.topics["r"].partitions {
            let racks: Vec<_> = p.replicas.iter().map(|r| image.brokers[r].rack.clone()).collect();
            assert_ne!(racks[0], racks[1], "replicas {:?} share a rack", p.replicas);
        }
    }

    #[test]
    fn fencing_moves_leadership_to_the_rest_of_the_isr() {
        let mut image = three_brokers();
        create(&mut image, "t", 3, 3).unwrap();
        create(&mut image, "solo", 3, 1).unwrap();
        let before = image.topics["t"].clone();
        image.apply(&Command::FenceBroker { id: NodeId(1) }).unwrap();
        for (p, old) in image.topics["t"].partitions.iter().zip(&before.partitions) {
            assert!(!p.isr.contains(&NodeId(1)));
            assert_ne!(p.leader, Some(NodeId(1)));
            assert!(p.leader.is_some());
            if old.leader == Some(NodeId(1)) {
                assert_eq!(p.leader_epoch, old.leader_epoch + 1);
            } else {
                assert_eq!(p.leader_epoch, old.leader_epoch, "untouched leaders keep their epoch");
            }
        }
        // A single-replica partition on the fenced broker has no leader (clean election only).
        let solo_on_1 = image.topics["solo"].partitions.iter().find(|p| p.replicas == vec![NodeId(1)]).unwrap();
        assert_eq!((solo_on_1.leader, solo_on_1.isr.clone()), (None, vec![NodeId(1)]));
        // Unfencing brings it back.
        image.apply(&Command::UnfenceBroker { id: NodeId(1) }).unwrap();
        let solo_on_1 = image.topics["solo"].partitions.iter().find(|p| p.replicas == vec![NodeId(1)]).unwrap();
        assert_eq!(solo_on_1.leader, Some(NodeId(1)));
        assert_eq!(image.apply(&Command::FenceBroker { id: NodeId(9) }), Err(CommandError::UnknownBroker(NodeId(9))));
    }

    /// Found by the Docker tier (a controller leader taken off the network,
    /// then put back): the new controller unfenced the returning broker at
    /// its first heartbeat while its metadata was still the stale view from
    /// before the fault, which named it leader of a partition that had
    /// moved; it served that partition again, with a high watermark far
    /// below the one clients had seen. A lease now needs metadata at least
    /// as new as the broker's unfencing.
    #[test]
    fn a_lease_needs_metadata_as_new_as_the_brokers_registration_or_unfencing() {
        let mut image = MetadataImage::default();
        let register = Command::RegisterBroker { id: NodeId(1), kafka_host: "h".into(), kafka_port: 1, external: None, rpc_address: "h:2".into(), rack: None };
        image.apply_at(5, &register).unwrap();
        assert!(!image.grants_lease(NodeId(1), 4), "metadata older than the registration");
        assert!(image.grants_lease(NodeId(1), 5));
        assert!(!image.grants_lease(NodeId(2), 100), "an unknown broker");
        image.apply_at(9, &Command::FenceBroker { id: NodeId(1) }).unwrap();
        assert!(!image.grants_lease(NodeId(1), 9), "fenced");
        image.apply_at(12, &Command::UnfenceBroker { id: NodeId(1) }).unwrap();
        assert!(!image.grants_lease(NodeId(1), 11), "metadata from before its unfencing may still name it leader of what moved away");
        assert!(image.grants_lease(NodeId(1), 12));
        image
            .apply_at(20, &Command::CreateTopic { name: "t".into(), id: Uuid::new_v4(), partitions: 1, replication_factor: 1, configs: BTreeMap::new() })
            .unwrap();
        assert!(image.grants_lease(NodeId(1), 12), "later changes are not waited for");
    }

    #[test]
    fn controlled_shutdown_hands_over_leadership_until_the_broker_registers_again() {
        let mut image = three_brokers();
        create(&mut image, "t", 3, 3).unwrap();
        image.apply(&Command::ControlledShutdown { id: NodeId(2) }).unwrap();
        assert!(image.brokers[&NodeId(2)].fenced && image.brokers[&NodeId(2)].shutting_down);
        for p in &image.topics["t"].partitions {
            assert_ne!(p.leader, Some(NodeId(2)));
            assert!(!p.isr.contains(&NodeId(2)));
        }
        register(&mut image, 2, None);
        assert!(!image.brokers[&NodeId(2)].fenced && !image.brokers[&NodeId(2)].shutting_down);
    }

    #[test]
    fn unclean_election_only_when_the_topic_allows_it() {
        let mut image = three_brokers();
        image
            .apply(&Command::CreateTopic {
                name: "u".into(),
                id: Uuid::new_v4(),
                partitions: 1,
                replication_factor: 2,
                configs: BTreeMap::from([("unclean.leader.election.enable".into(), "true".into())]),
            })
            .unwrap();
        let replicas = image.topics["u"].partitions[0].replicas.clone();
        let (a, b) = (replicas[0], replicas[1]);
        let p = &image.topics["u"].partitions[0];
        image
            .apply(&Command::AlterPartition {
                topic: "u".into(),
                partition: 0,
                leader: a,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: vec![a],
            })
            .unwrap();
        image.apply(&Command::FenceBroker { id: a }).unwrap();
        assert_eq!(image.topics["u"].partitions[0].leader, Some(b), "unclean: a live out-of-sync replica leads");
        assert_eq!(image.topics["u"].partitions[0].isr, vec![b]);
    }

    /// `unclean.leader.election.enable` for every broker (level 12): topics
    /// without their own value follow it, a leaderless partition gets a
    /// leader as soon as it is allowed, and it cannot be set per broker.
    #[test]
    fn unclean_election_follows_the_default_for_every_broker() {
        let mut image = three_brokers();
        let allow = |broker: Option<NodeId>| Command::AlterBrokerConfig {
            broker,
            configs: BTreeMap::from([(crate::configs::UNCLEAN_ELECTION.to_string(), Some("true".to_string()))]),
        };
        // Two topics whose only ISR member is broker `a` of replicas [a, b].
        let only_in_sync = |image: &mut MetadataImage, name: &str, configs: BTreeMap<String, String>| {
            image.apply(&Command::CreateTopic { name: name.into(), id: Uuid::new_v4(), partitions: 1, replication_factor: 2, configs }).unwrap();
            let p = image.topics[name].partitions[0].clone();
            let isr = vec![p.replicas[0]];
            let alter = Command::AlterPartition {
                topic: name.into(),
                partition: 0,
                leader: p.replicas[0],
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr,
            };
            image.apply(&alter).unwrap();
            (p.replicas[0], p.replicas[1])
        };
        let (a, b) = only_in_sync(&mut image, "d", BTreeMap::new());
        image.apply(&Command::FenceBroker { id: a }).unwrap();
        assert_eq!(image.topics["d"].partitions[0].leader, None, "clean elections only by default");

        image.feature_level = crate::features::UNCLEAN_DEFAULT_LEVEL - 1;
        assert!(matches!(image.apply(&allow(None)), Err(CommandError::InvalidConfig(m)) if m.contains("from feature level 12")));
        image.feature_level = crate::features::UNCLEAN_DEFAULT_LEVEL;
        assert!(matches!(image.apply(&allow(Some(b))), Err(CommandError::InvalidConfig(m)) if m.contains("for every broker only")));
        image.apply(&allow(None)).unwrap();
        assert_eq!(image.topics["d"].partitions[0].leader, Some(b), "allowed: the live out-of-sync replica leads at once");
        assert_eq!(image.topics["d"].partitions[0].isr, vec![b]);
        assert!(image.unclean_election(&image.topics["d"]));

        // A topic's own false wins over the default.
        let own = BTreeMap::from([(crate::configs::UNCLEAN_ELECTION.to_string(), "false".to_string())]);
        image.apply(&Command::UnfenceBroker { id: a }).unwrap_or_else(|e| panic!("{e}"));
        let (a, _) = only_in_sync(&mut image, "own", own);
        image.apply(&Command::FenceBroker { id: a }).unwrap();
        assert_eq!(image.topics["own"].partitions[0].leader, None, "the topic's own setting wins");
    }

    #[test]
    fn alter_partition_checks_leader_and_partition_epochs() {
        let mut image = three_brokers();
        create(&mut image, "t", 1, 3).unwrap();
        let p = image.topics["t"].partitions[0].clone();
        let leader = p.leader.unwrap();
        let shrunk: Vec<_> = p.replicas.iter().copied().filter(|r| *r == leader).collect();
        let alter = |pe: i32, le: i32, isr: Vec<NodeId>| Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader,
            leader_epoch: le,
            partition_epoch: pe,
            isr,
        };
        let ok = image.apply(&alter(p.partition_epoch, p.leader_epoch, shrunk.clone())).unwrap();
        assert_eq!(ok, CommandOk::PartitionChanged { leader: Some(leader), leader_epoch: 0, partition_epoch: 1 });
        assert_eq!(image.topics["t"].partitions[0].isr, shrunk);
        // The same request again is stale.
        assert!(matches!(image.apply(&alter(p.partition_epoch, p.leader_epoch, p.replicas.clone())), Err(CommandError::StaleEpoch(_))));
        assert!(matches!(image.apply(&alter(1, 5, p.replicas.clone())), Err(CommandError::StaleEpoch(_))));
        assert!(matches!(image.apply(&alter(1, 0, vec![NodeId(99), leader])), Err(CommandError::InvalidRequest(_))));
        image.apply(&alter(1, 0, p.replicas.clone())).unwrap();
        assert_eq!(image.topics["t"].partitions[0].isr, p.replicas);
    }

    #[test]
    fn preferred_leader_election_moves_leadership_back() {
        let mut image = three_brokers();
        create(&mut image, "t", 1, 3).unwrap();
        let preferred = image.topics["t"].partitions[0].replicas[0];
        image.apply(&Command::FenceBroker { id: preferred }).unwrap();
        assert_ne!(image.topics["t"].partitions[0].leader, Some(preferred));
        assert!(image.apply(&Command::ElectPreferredLeader { topic: "t".into(), partition: 0 }).is_err(), "fenced and out of the ISR");
        image.apply(&Command::UnfenceBroker { id: preferred }).unwrap();
        let p = image.topics["t"].partitions[0].clone();
        let others: Vec<_> = p.replicas.clone();
        image
            .apply(&Command::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader: p.leader.unwrap(),
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: others,
            })
            .unwrap();
        let r = image.apply(&Command::ElectPreferredLeader { topic: "t".into(), partition: 0 }).unwrap();
        assert!(matches!(r, CommandOk::PartitionChanged { leader: Some(l), .. } if l == preferred));
    }

    #[test]
    fn partitions_configs_deletion_and_producer_ids() {
        let mut image = three_brokers();
        create(&mut image, "t", 2, 2).unwrap();
        image.apply(&Command::CreatePartitions { name: "t".into(), count: 5 }).unwrap();
        assert_eq!(image.topics["t"].partitions.len(), 5);
        assert!(image.topics["t"].partitions.iter().all(|p| p.replicas.len() == 2));
        assert!(matches!(image.apply(&Command::CreatePartitions { name: "t".into(), count: 5 }), Err(CommandError::InvalidPartitions(_))));
        assert!(matches!(image.apply(&Command::CreatePartitions { name: "x".into(), count: 5 }), Err(CommandError::UnknownTopic(_))));
        let set = BTreeMap::from([("retention.ms".to_string(), Some("1000".to_string()))]);
        image.apply(&Command::AlterTopicConfig { name: "t".into(), configs: set }).unwrap();
        assert_eq!(image.topics["t"].configs["retention.ms"], "1000");
        let unset = BTreeMap::from([("retention.ms".to_string(), None)]);
        image.apply(&Command::AlterTopicConfig { name: "t".into(), configs: unset }).unwrap();
        assert!(image.topics["t"].configs.is_empty());
        let bad = BTreeMap::from([("segment.bytes".to_string(), Some("1".to_string()))]);
        assert!(matches!(image.apply(&Command::AlterTopicConfig { name: "t".into(), configs: bad }), Err(CommandError::InvalidConfig(_))));
        image.apply(&Command::DeleteTopic { name: "t".into() }).unwrap();
        assert_eq!(image.apply(&Command::DeleteTopic { name: "t".into() }), Err(CommandError::UnknownTopic("t".into())));
        assert_eq!(image.apply(&Command::AllocateProducerIds { count: 1000 }), Ok(CommandOk::ProducerIds { first: 0, count: 1000 }));
        assert_eq!(image.apply(&Command::AllocateProducerIds { count: 10 }), Ok(CommandOk::ProducerIds { first: 1000, count: 10 }));
    }

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|i| NodeId(*i)).collect()
    }

    /// Three brokers plus a fourth, at level 3, with topic t (one partition
    /// on 1,2,3 led by 1).
    fn four_brokers_level_3() -> MetadataImage {
        let mut image = three_brokers();
        image.apply(&Command::FinalizeFeatures { level: 3 }).unwrap();
        create(&mut image, "t", 1, 3).unwrap();
        register(&mut image, 4, None);
        image
    }

    fn reassign(image: &mut MetadataImage, target: Option<&[u64]>) -> CommandResult {
        image.apply(&Command::ReassignPartition { topic: "t".into(), partition: 0, target: target.map(ids) })
    }

    /// The leader's ISR change, at the partition's current epochs.
    fn alter_isr(image: &mut MetadataImage, isr: &[u64]) -> CommandResult {
        let p = image.topics["t"].partitions[0].clone();
        image.apply(&Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: p.leader.unwrap(),
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: ids(isr),
        })
    }

    #[test]
    fn reassignment_adds_replicas_first_and_drops_the_old_ones_once_the_new_are_in_sync() {
        let mut image = four_brokers_level_3();
        let before = image.topics["t"].partitions[0].clone();
        assert_eq!((before.replicas.clone(), before.leader), (ids(&[1, 2, 3]), Some(NodeId(1))));
        // Move 1 (the leader) out and 4 in.
        reassign(&mut image, Some(&[4, 2, 3])).unwrap();
        let p = &image.topics["t"].partitions[0];
        assert_eq!(p.replicas, ids(&[4, 2, 3, 1]), "target first, then the replicas being removed");
        assert_eq!((p.isr.clone(), p.leader, p.leader_epoch), (ids(&[2, 3, 1]), Some(NodeId(1)), before.leader_epoch), "nothing moves yet");
        assert!(p.partition_epoch > before.partition_epoch);
        let r = &image.reassignments[&("t".to_string(), 0)];
        assert_eq!((r.adding(), r.removing()), (ids(&[4]), ids(&[1])));
        // 4 caught up: the leader adds it to the ISR, which completes the move.
        alter_isr(&mut image, &[4, 2, 3, 1]).unwrap();
        let p = &image.topics["t"].partitions[0];
        assert_eq!((p.replicas.clone(), p.isr.clone()), (ids(&[4, 2, 3]), ids(&[4, 2, 3])));
        assert_eq!((p.leader, p.leader_epoch), (Some(NodeId(4)), before.leader_epoch + 1), "the leaving leader hands over to the first target replica");
        assert!(image.reassignments.is_empty());
    }

    #[test]
    fn reassignment_that_only_shrinks_or_reorders_completes_at_once() {
        let mut image = four_brokers_level_3();
        reassign(&mut image, Some(&[2, 3])).unwrap();
        let p = &image.topics["t"].partitions[0];
        assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader), (ids(&[2, 3]), ids(&[2, 3]), Some(NodeId(2))));
        assert!(image.reassignments.is_empty(), "a lower replication factor needs no catching up");
        let epoch = p.leader_epoch;
        reassign(&mut image, Some(&[3, 2])).unwrap();
        let p = &image.topics["t"].partitions[0];
        assert_eq!((p.replicas.clone(), p.leader, p.leader_epoch), (ids(&[3, 2]), Some(NodeId(2)), epoch), "a reorder keeps the leader");
    }

    #[test]
    fn a_cancelled_reassignment_goes_back_to_the_original_replicas() {
        let mut image = four_brokers_level_3();
        reassign(&mut image, Some(&[4, 2, 3])).unwrap();
        // A second request replaces the target; the original set is kept.
        reassign(&mut image, Some(&[1, 4])).unwrap();
        let r = &image.reassignments[&("t".to_string(), 0)];
        assert_eq!((r.original.clone(), image.topics["t"].partitions[0].replicas.clone()), (ids(&[1, 2, 3]), ids(&[1, 4, 2, 3])));
        reassign(&mut image, None).unwrap();
        let p = &image.topics["t"].partitions[0];
        assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader), (ids(&[1, 2, 3]), ids(&[1, 2, 3]), Some(NodeId(1))));
        assert_eq!(reassign(&mut image, None), Err(CommandError::NoReassignmentInProgress("t-0".into())));
    }

    #[test]
    fn reassignment_refuses_bad_targets_and_lower_levels() {
        let mut image = four_brokers_level_3();
        let before = image.clone();
        assert!(matches!(reassign(&mut image, Some(&[])), Err(CommandError::InvalidReplicationFactor(_))));
        assert!(matches!(reassign(&mut image, Some(&[2, 2])), Err(CommandError::InvalidRequest(_))));
        assert_eq!(reassign(&mut image, Some(&[2, 9])), Err(CommandError::UnknownBroker(NodeId(9))));
        assert_eq!(
            image.apply(&Command::ReassignPartition { topic: "t".into(), partition: 5, target: Some(ids(&[1])) }),
            Err(CommandError::UnknownPartition { topic: "t".into(), partition: 5 })
        );
        assert_eq!(image, before, "a refused reassignment changes nothing");
        let mut old = three_brokers();
        create(&mut old, "t", 1, 3).unwrap();
        assert!(matches!(reassign(&mut old, Some(&[1])), Err(CommandError::InvalidRequest(m)) if m.contains("feature level 3")));
    }

    #[test]
    fn deleting_a_topic_ends_its_reassignments_and_snapshots_carry_them() {
        let mut image = four_brokers_level_3();
        reassign(&mut image, Some(&[4, 2, 3])).unwrap();
        let state = crate::store::AppliedState { image: image.clone(), ..Default::default() };
        let decoded = crate::store::decode_state(&crate::store::encode_state(&state).unwrap()).unwrap();
        assert_eq!(decoded.image, image);
        assert_eq!(decoded.image.reassignments.len(), 1);
        image.apply(&Command::DeleteTopic { name: "t".into() }).unwrap();
        assert!(image.reassignments.is_empty());
    }

    #[test]
    fn topics_with_explicit_replicas_lead_from_their_first_live_replica() {
        let mut image = four_brokers_level_3();
        let create = |image: &mut MetadataImage, name: &str, replicas: Vec<Vec<u64>>| {
            image.apply(&Command::CreateTopicWithReplicas {
                name: name.into(),
                id: Uuid::new_v4(),
                replicas: replicas.iter().map(|r| ids(r)).collect(),
                configs: BTreeMap::new(),
            })
        };
        image.apply(&Command::FenceBroker { id: NodeId(2) }).unwrap();
        assert!(matches!(create(&mut image, "placed", vec![vec![2, 4], vec![4, 1]]), Ok(CommandOk::TopicCreated { .. })));
        let t = &image.topics["placed"];
        assert_eq!((t.partitions[0].replicas.clone(), t.partitions[0].isr.clone(), t.partitions[0].leader), (ids(&[2, 4]), ids(&[4]), Some(NodeId(4))));
        assert_eq!((t.partitions[1].isr.clone(), t.partitions[1].leader), (ids(&[4, 1]), Some(NodeId(4))));
        let before = image.clone();
        assert!(matches!(create(&mut image, "x", vec![vec![1, 3], vec![1]]), Err(CommandError::InvalidReplicationFactor(_))));
        assert!(matches!(create(&mut image, "x", vec![vec![1, 1]]), Err(CommandError::InvalidRequest(_))));
        assert_eq!(create(&mut image, "x", vec![vec![1, 9]]), Err(CommandError::UnknownBroker(NodeId(9))));
        assert!(matches!(create(&mut image, "x", vec![vec![2]]), Err(CommandError::InvalidRequest(m)) if m.contains("live")));
        assert!(matches!(create(&mut image, "x", vec![]), Err(CommandError::InvalidPartitions(_))));
        assert_eq!(create(&mut image, "placed", vec![vec![1]]), Err(CommandError::TopicAlreadyExists("placed".into())));
        assert_eq!(image, before);
    }

    #[test]
    fn scram_users_need_level_4_and_sane_credentials() {
        let credential = ScramCredentialRecord { salt: vec![1; 16], iterations: 4096, stored_key: vec![2; 32], server_key: vec![3; 32] };
        let upsert = |mechanism: &str, credential: &ScramCredentialRecord| Command::UpsertScramCredential {
            user: "dana".into(),
            mechanism: mechanism.into(),
            credential: credential.clone(),
        };
        let mut image = four_brokers_level_3();
        assert!(matches!(image.apply(&upsert("SCRAM-SHA-256", &credential)), Err(CommandError::InvalidRequest(m)) if m.contains("feature level 4")));
        image.apply(&Command::FinalizeFeatures { level: 4 }).unwrap();
        image.apply(&upsert("SCRAM-SHA-256", &credential)).unwrap();
        assert!(image.apply(&upsert("PLAIN", &credential)).is_err());
        assert!(image.apply(&upsert("SCRAM-SHA-512", &ScramCredentialRecord { iterations: 10, ..credential.clone() })).is_err());
        assert_eq!(image.scram.len(), 1);
        let delete = Command::DeleteScramCredential { user: "dana".into(), mechanism: "SCRAM-SHA-256".into() };
        assert_eq!(image.apply(&delete), Ok(CommandOk::Done));
        assert_eq!(image.apply(&delete), Err(CommandError::NoScramCredential("dana".into(), "SCRAM-SHA-256".into())));
    }

    #[test]
    fn a_broker_s_own_dynamic_config_wins_over_the_default_and_both_can_go() {
        let mut image = MetadataImage { feature_level: crate::features::BROKER_CONFIGS_LEVEL, ..Default::default() };
        image
            .apply(&Command::RegisterBroker { id: NodeId(1), kafka_host: "h".into(), kafka_port: 1, external: None, rpc_address: "h:2".into(), rack: None })
            .unwrap();
        let rate = "follower.replication.throttled.rate";
        let set = |broker: Option<NodeId>, value: Option<&str>| Command::AlterBrokerConfig {
            broker,
            configs: BTreeMap::from([(rate.to_string(), value.map(String::from))]),
        };
        image.apply(&set(None, Some("4194304"))).unwrap();
        assert_eq!(image.broker_config(NodeId(1), rate), Some(("4194304", false)));
        image.apply(&set(Some(NodeId(1)), Some("2097152"))).unwrap();
        assert_eq!(image.broker_config(NodeId(1), rate), Some(("2097152", true)));
        image.apply(&set(Some(NodeId(1)), None)).unwrap();
        image.apply(&set(None, None)).unwrap();
        assert_eq!(image.broker_config(NodeId(1), rate), None);
        assert!(image.broker_configs.is_empty());
        assert!(matches!(image.apply(&set(Some(NodeId(9)), Some("2097152"))), Err(CommandError::UnknownBroker(NodeId(9)))));
        assert!(matches!(image.apply(&set(None, Some("100"))), Err(CommandError::InvalidConfig(_))));
        let other = Command::AlterBrokerConfig { broker: None, configs: BTreeMap::from([("num.io.threads".to_string(), Some("8".to_string()))]) };
        assert!(matches!(image.apply(&other), Err(CommandError::InvalidConfig(m)) if m.contains("cannot be changed at run time")));
        // Log defaults only from level 10, with the values the topic
        // configs take; they apply to topics by their topic config name.
        let log_default = |name: &str, value: &str| Command::AlterBrokerConfig {
            broker: Some(NodeId(1)),
            configs: BTreeMap::from([(name.to_string(), Some(value.to_string()))]),
        };
        assert!(matches!(image.apply(&log_default("log.retention.ms", "1000")), Err(CommandError::InvalidConfig(m)) if m.contains("from feature level 10")));
        image.feature_level = crate::features::LOG_DEFAULTS_LEVEL;
        image.apply(&log_default("log.retention.ms", "1000")).unwrap();
        image.apply(&log_default("log.cleaner.io.max.bytes.per.second", "1.5E7")).unwrap();
        assert!(matches!(image.apply(&log_default("log.segment.bytes", "12")), Err(CommandError::InvalidConfig(m)) if m.starts_with("log.segment.bytes")));
        assert!(matches!(image.apply(&log_default("log.cleaner.io.max.bytes.per.second", "0")), Err(CommandError::InvalidConfig(_))));
        assert_eq!(image.log_defaults(NodeId(1)), BTreeMap::from([("retention.ms", ("1000", true))]));
        image.apply(&Command::AlterBrokerConfig { broker: Some(NodeId(1)), configs: BTreeMap::from([("log.retention.ms".to_string(), None)]) }).unwrap();
        // The produce settings' defaults only from level 11, under Kafka's
        // broker names, as the topic configs they stand for.
        assert!(matches!(image.apply(&log_default("min.insync.replicas", "2")), Err(CommandError::InvalidConfig(m)) if m.contains("from feature level 11")));
        image.feature_level = crate::features::TOPIC_DEFAULTS_LEVEL;
        image.apply(&log_default("min.insync.replicas", "2")).unwrap();
        image.apply(&log_default("message.max.bytes", "2048")).unwrap();
        image.apply(&log_default("compression.type", "zstd")).unwrap();
        image.apply(&log_default("log.message.timestamp.type", "LogAppendTime")).unwrap();
        assert!(matches!(image.apply(&log_default("compression.type", "brotli")), Err(CommandError::InvalidConfig(m)) if m.starts_with("compression.type")));
        assert!(matches!(image.apply(&log_default("min.insync.replicas", "0")), Err(CommandError::InvalidConfig(_))));
        assert!(matches!(image.apply(&log_default("log.message.timestamp.type", "Now")), Err(CommandError::InvalidConfig(_))));
        assert_eq!(
            image.log_defaults(NodeId(1)),
            BTreeMap::from([
                ("min.insync.replicas", ("2", true)),
                ("max.message.bytes", ("2048", true)),
                ("compression.type", ("zstd", true)),
                ("message.timestamp.type", ("LogAppendTime", true)),
            ])
        );
        // The leader-side rate only from level 8: older nodes refuse its name.
        let leader = Command::AlterBrokerConfig {
            broker: None,
            configs: BTreeMap::from([("leader.replication.throttled.rate".to_string(), Some("2097152".to_string()))]),
        };
        image.feature_level = crate::features::LEADER_THROTTLE_LEVEL - 1;
        assert!(matches!(image.apply(&leader), Err(CommandError::InvalidConfig(m)) if m.contains("from feature level 8")));
        image.feature_level = crate::features::LEADER_THROTTLE_LEVEL;
        image.apply(&leader).unwrap();
        image.feature_level = crate::features::ACLS_LEVEL;
        assert!(matches!(image.apply(&set(None, Some("2097152"))), Err(CommandError::InvalidRequest(m)) if m.contains("feature level 6")));
    }
}
