//! Consumer groups as the metadata holds them: each completed generation
//! and every committed offset, and (level 15) each KIP-848 group's members,
//! epochs and assignments. Classic membership between generations
//! (heartbeats, pending joins) lives only in the coordinator's memory; what
//! is here is what a new coordinator resumes from.

use std::sync::Arc;

pub use crate::configs::{GROUP_ID_MAX_CHARS, validate_group_id};
use crate::metadata::{CommandError, CommandOk, CommandResult, MetadataImage};
pub use crate::records::{ConsumerGroupRecord, ConsumerMemberRecord, Generation, GroupRecord, MemberRecord, OffsetCommit, OffsetRecord};

impl MetadataImage {
    fn group_mut(&mut self, group: &str) -> &mut GroupRecord {
        Arc::make_mut(self.groups.entry(group.to_string()).or_default())
    }

    pub(crate) fn store_group(&mut self, group: &str, generation: &Generation) -> CommandResult {
        validate_group_id(group)?;
        let record = self.group_mut(group);
        if generation.generation < record.generation.generation {
            return Err(CommandError::StaleEpoch(format!(
                "generation {} of group {group:?} is older than the stored {}",
                generation.generation, record.generation.generation
            )));
        }
        record.generation = generation.clone();
        Ok(CommandOk::Done)
    }

    /// Stores offsets of existing partitions; returns the ones that name no
    /// existing partition, which are not stored.
    pub(crate) fn commit_offsets(&mut self, group: &str, offsets: &[OffsetCommit]) -> Result<Vec<(String, i32)>, CommandError> {
        validate_group_id(group)?;
        let (known, unknown): (Vec<&OffsetCommit>, Vec<&OffsetCommit>) =
            offsets.iter().partition(|o| self.topics.get(&o.topic).is_some_and(|t| o.partition >= 0 && (o.partition as usize) < t.partitions.len()));
        if !known.is_empty() {
            let record = self.group_mut(group);
            for o in known {
                record.offsets.insert((o.topic.clone(), o.partition), o.record.clone());
            }
        }
        Ok(unknown.into_iter().map(|o| (o.topic.clone(), o.partition)).collect())
    }

    pub(crate) fn delete_groups(&mut self, groups: &[String]) -> CommandResult {
        for g in groups {
            self.groups.remove(g);
            // Look first: `remove` copies a map still shared with an older
            // image even when the id is absent.
            if self.consumer_groups.contains_key(g) {
                self.consumer_groups.remove(g);
            }
        }
        Ok(CommandOk::Done)
    }

    /// Stores (or, with `None`, forgets) KIP-848 groups' membership (level 15).
    pub(crate) fn put_consumer_groups(&mut self, groups: &[(String, Option<ConsumerGroupRecord>)]) -> CommandResult {
        self.require_level(crate::features::CONSUMER_GROUPS_LEVEL, "consumer groups kept in the metadata need")?;
        for (id, _) in groups {
            validate_group_id(id)?;
        }
        for (id, record) in groups {
            match record {
                Some(record) => {
                    self.consumer_groups.insert(id.clone(), Arc::new(record.clone()));
                }
                None if self.consumer_groups.contains_key(id) => {
                    self.consumer_groups.remove(id);
                }
                None => {}
            }
        }
        Ok(CommandOk::Done)
    }

    /// Expires offsets whose commit time is still the one given; a group
    /// left with no offsets and no members goes whole (level 16).
    pub(crate) fn expire_offsets(&mut self, groups: &[(String, crate::command::ExpiringOffsets)]) -> CommandResult {
        self.require_level(crate::features::OFFSET_EXPIRY_LEVEL, "expiring committed offsets needs")?;
        for (group, expired) in groups {
            let Some(record) = self.groups.get(group) else {
                // A KIP-848 group that never committed: it goes once empty.
                if self.consumer_groups.get(group).is_some_and(|c| c.members.is_empty()) {
                    self.consumer_groups.remove(group);
                }
                continue;
            };
            let unchanged = |(topic, partition, time): &(String, i32, i64)| {
                record.offsets.get(&(topic.clone(), *partition)).is_some_and(|o| o.commit_time_ms == *time).then(|| (topic.clone(), *partition))
            };
            let gone: Vec<(String, i32)> = expired.iter().filter_map(unchanged).collect();
            if !gone.is_empty() {
                let record = self.group_mut(group);
                for key in &gone {
                    record.offsets.remove(key);
                }
            }
            let members = self.groups[group].generation.members.len() + self.consumer_groups.get(group).map_or(0, |c| c.members.len());
            if self.groups[group].offsets.is_empty() && members == 0 {
                self.groups.remove(group);
                if self.consumer_groups.contains_key(group) {
                    self.consumer_groups.remove(group);
                }
            }
        }
        Ok(CommandOk::Done)
    }

    pub(crate) fn delete_offsets(&mut self, group: &str, partitions: &[(String, i32)]) -> CommandResult {
        if !self.groups.contains_key(group) {
            return Err(CommandError::UnknownGroup(group.to_string()));
        }
        let record = self.group_mut(group);
        for tp in partitions {
            record.offsets.remove(tp);
        }
        Ok(CommandOk::Done)
    }

    /// Offsets of a deleted topic go with it.
    pub(crate) fn forget_topic_offsets(&mut self, topic: &str) {
        for record in self.groups.values_mut() {
            if record.offsets.keys().any(|(t, _)| t == topic) {
                Arc::make_mut(record).offsets.retain(|(t, _), _| t != topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Command;
    use crate::records::NodeId;

    fn image_with_topic() -> MetadataImage {
        let mut image = MetadataImage::default();
        image
            .apply(&Command::RegisterBroker { id: NodeId(1), kafka_host: "h".into(), kafka_port: 1, external: None, rpc_address: "h:2".into(), rack: None })
            .unwrap();
        image
            .apply(&Command::CreateTopic { name: "t".into(), id: uuid::Uuid::new_v4(), partitions: 2, replication_factor: 1, configs: Default::default() })
            .unwrap();
        image
    }

    fn commit(topic: &str, partition: i32, offset: i64) -> OffsetCommit {
        OffsetCommit { topic: topic.into(), partition, record: OffsetRecord { offset, leader_epoch: -1, metadata: None, commit_time_ms: 0 } }
    }

    #[test]
    fn offsets_of_unknown_partitions_are_refused_and_the_rest_stored() {
        let mut image = image_with_topic();
        let result = image.apply(&Command::CommitOffsets { commits: vec![("g".into(), vec![commit("t", 1, 5), commit("t", 2, 5), commit("x", 0, 1)])] });
        assert_eq!(result, Ok(CommandOk::OffsetsCommitted { results: vec![Ok(vec![("t".into(), 2), ("x".into(), 0)])] }));
        let offsets = &image.groups["g"].offsets;
        assert_eq!(offsets.len(), 1);
        assert_eq!(offsets[&("t".to_string(), 1)].offset, 5);
        // A batch: one group's bad id does not stop the others.
        let batch = Command::CommitOffsets { commits: vec![(String::new(), vec![commit("t", 0, 1)]), ("h".into(), vec![commit("t", 0, 2)])] };
        let Ok(CommandOk::OffsetsCommitted { results }) = image.apply(&batch) else { panic!() };
        assert!(matches!(results[..], [Err(CommandError::InvalidRequest(_)), Ok(_)]));
        assert_eq!(image.groups["h"].offsets[&("t".to_string(), 0)].offset, 2);
    }

    fn commit_at(partition: i32, offset: i64, time: i64) -> OffsetCommit {
        OffsetCommit { record: OffsetRecord { commit_time_ms: time, ..commit("t", partition, offset).record }, ..commit("t", partition, offset) }
    }

    #[test]
    fn expiry_takes_offsets_still_committed_at_the_time_given_then_the_empty_group() {
        let mut image = image_with_topic();
        let commits = |group: &str, offsets: Vec<OffsetCommit>| Command::CommitOffsets { commits: vec![(group.into(), offsets)] };
        image.apply(&commits("g", vec![commit_at(0, 100, 10), commit_at(1, 200, 20)])).unwrap();
        let expire = |group: &str, offsets: &[(i32, i64)]| Command::ExpireOffsets {
            groups: vec![(group.into(), offsets.iter().map(|(p, t)| ("t".into(), *p, *t)).collect())],
        };
        image.apply(&Command::FinalizeFeatures { level: 15 }).unwrap();
        let refused = image.apply(&expire("g", &[(0, 10)])).unwrap_err().to_string();
        assert!(refused.contains("feature level 16"), "{refused}");
        image.apply(&Command::FinalizeFeatures { level: 16 }).unwrap();

        // Partition 1 was committed again after the coordinator decided: it stays.
        image.apply(&commits("g", vec![commit_at(1, 300, 30)])).unwrap();
        image.apply(&expire("g", &[(0, 10), (1, 20)])).unwrap();
        let left: Vec<(i32, i64)> = image.groups["g"].offsets.iter().map(|((_, p), o)| (*p, o.offset)).collect();
        assert_eq!(left, vec![(1, 300)]);
        // Its last offset expires: the empty group goes.
        image.apply(&expire("g", &[(1, 30)])).unwrap();
        assert!(!image.groups.contains_key("g"));

        // A group with members keeps its record (and generation) when its offsets expire.
        let member = MemberRecord {
            member_id: "m".into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            subscription: vec![],
            assignment: vec![],
        };
        let generation = Generation { generation: 4, protocol_type: "consumer".into(), members: vec![member], ..Default::default() };
        image.apply(&Command::StoreGroup { group: "h".into(), generation }).unwrap();
        image.apply(&commits("h", vec![commit_at(0, 7, 10)])).unwrap();
        image.apply(&expire("h", &[(0, 10)])).unwrap();
        assert!(image.groups["h"].offsets.is_empty());
        assert_eq!(image.groups["h"].generation.generation, 4);
        // Groups the metadata does not hold are passed over.
        image.apply(&expire("never", &[(0, 10)])).unwrap();
    }

    #[test]
    fn an_older_generation_does_not_replace_a_newer_one() {
        let mut image = image_with_topic();
        let at = |n| Generation { generation: n, protocol_type: "consumer".into(), ..Default::default() };
        image.apply(&Command::StoreGroup { group: "g".into(), generation: at(3) }).unwrap();
        assert!(matches!(image.apply(&Command::StoreGroup { group: "g".into(), generation: at(2) }), Err(CommandError::StaleEpoch(_))));
        assert_eq!(image.groups["g"].generation.generation, 3);
    }

    #[test]
    fn deleting_a_topic_drops_its_offsets_and_deleting_a_group_drops_everything() {
        let mut image = image_with_topic();
        image.apply(&Command::CommitOffsets { commits: vec![("g".into(), vec![commit("t", 0, 1)])] }).unwrap();
        image.apply(&Command::DeleteTopic { name: "t".into() }).unwrap();
        assert!(image.groups["g"].offsets.is_empty());
        image.apply(&Command::DeleteGroups { groups: vec!["g".into()] }).unwrap();
        assert!(!image.groups.contains_key("g"));
        assert!(matches!(image.apply(&Command::DeleteOffsets { group: "g".into(), partitions: vec![] }), Err(CommandError::UnknownGroup(_))));
    }

    #[test]
    fn consumer_groups_are_kept_from_level_15_and_go_with_their_group() {
        let mut image = image_with_topic();
        let record = ConsumerGroupRecord { epoch: 3, target_epoch: 3, ..Default::default() };
        let put = |id: &str, r: Option<ConsumerGroupRecord>| Command::PutConsumerGroups { groups: vec![(id.into(), r)] };
        image.apply(&Command::FinalizeFeatures { level: 14 }).unwrap();
        let refused = image.apply(&put("g", Some(record.clone()))).unwrap_err().to_string();
        assert!(refused.contains("feature level 15"), "{refused}");
        assert!(image.consumer_groups.is_empty());
        image.apply(&Command::FinalizeFeatures { level: 15 }).unwrap();
        image.apply(&put("g", Some(record.clone()))).unwrap();
        image.apply(&put("h", Some(record.clone()))).unwrap();
        assert!(matches!(image.apply(&put("", Some(record.clone()))), Err(CommandError::InvalidRequest(_))));
        assert_eq!(*image.consumer_groups["g"], record);
        // A group that became classic is forgotten; a deleted one too.
        image.apply(&put("h", None)).unwrap();
        image.apply(&Command::CommitOffsets { commits: vec![("g".into(), vec![commit("t", 0, 1)])] }).unwrap();
        image.apply(&Command::DeleteGroups { groups: vec!["g".into()] }).unwrap();
        assert!(image.consumer_groups.is_empty() && image.groups.is_empty());
    }

    #[test]
    fn a_snapshot_shares_untouched_groups() {
        let mut image = image_with_topic();
        image.apply(&Command::CommitOffsets { commits: vec![("a".into(), vec![commit("t", 0, 1)])] }).unwrap();
        image.apply(&Command::CommitOffsets { commits: vec![("b".into(), vec![commit("t", 0, 1)])] }).unwrap();
        let published = image.clone();
        image.apply(&Command::CommitOffsets { commits: vec![("b".into(), vec![commit("t", 0, 2)])] }).unwrap();
        assert!(Arc::ptr_eq(&published.groups["a"], &image.groups["a"]));
        assert_eq!(published.groups["b"].offsets[&("t".to_string(), 0)].offset, 1);
    }
}
