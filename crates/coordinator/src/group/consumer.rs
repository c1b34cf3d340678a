//! KIP-848 consumer groups ("group.protocol=consumer"): the coordinator, not
//! a member, computes the assignment, and each member moves to it on its own
//! through ConsumerGroupHeartbeat, with no group-wide barrier.
//!
//! The model, as in Kafka: the group epoch rises with every change of
//! membership, subscription or of the subscribed topics' partitions; the
//! target assignment is recomputed for it (a sticky, balanced assignor);
//! each member then reconciles towards its target. A member first gives up
//! what it must lose (it keeps its epoch until its heartbeat shows those
//! partitions revoked), then gets what the target adds, except partitions
//! another member still holds, which it receives on a later heartbeat once
//! they are released. A partition is therefore never owned by two members.
//!
//! Pure state, no I/O: the coordinator feeds it heartbeats, the topics of
//! the metadata image and the clock. From feature level 15 the coordinator
//! writes a group's [`ConsumerGroupRecord`] through Raft whenever what it
//! holds changes (not the heartbeat times), and a new coordinator loads
//! the groups from those records; below it, membership lives in memory and
//! a new coordinator answers UNKNOWN_MEMBER_ID, so the members join again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runnel_controller::records::{ConsumerGroupRecord, ConsumerMemberRecord};
use runnel_protocol::kafka_protocol::error::ResponseError;
use uuid::Uuid;

/// A partition of a topic, by topic id as the protocol names it.
pub type TopicPartition = (Uuid, i32);

/// The topics a group may subscribe to: name -> (id, partition count).
pub type Topics = BTreeMap<String, (Uuid, i32)>;

/// Member epochs with a meaning of their own in a heartbeat.
pub const JOIN_EPOCH: i32 = 0;
pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// The assignors a client may name (`group.remote.assignor`); both give
/// the same sticky, balanced assignment here.
const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// One ConsumerGroupHeartbeat, as the coordinator needs it.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    /// None: unchanged since the last heartbeat.
    pub topics: Option<Vec<String>>,
    /// None: unchanged; an empty string drops the regular expression.
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// The partitions the member owns now; None: unchanged.
    pub owned: Option<BTreeSet<TopicPartition>>,
    /// Topics the member's principal may not describe: never assigned to
    /// it, whatever its regular expression matches.
    pub hidden: BTreeSet<String>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatReply {
    pub member_id: String,
    pub member_epoch: i32,
    /// The partitions the member should own now; None: as last sent.
    pub assignment: Option<BTreeSet<TopicPartition>>,
}

/// An error with the message the response carries.
pub type Refusal = (ResponseError, String);

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    previous_epoch: i32,
    pub topics: Vec<String>,
    pub regex: Option<String>,
    matcher: Option<regex::Regex>,
    pub assignor: Option<String>,
    hidden: BTreeSet<String>,
    /// What the coordinator counts as this member's: partitions granted and
    /// not yet seen revoked.
    pub assigned: BTreeSet<TopicPartition>,
    last_sent: Option<BTreeSet<TopicPartition>>,
    rebalance_timeout: Duration,
    last_seen: Instant,
    /// Since when it has been asked to give partitions up.
    revoking_since: Option<Instant>,
    /// A static member that left with epoch -2 (a restart): its partitions
    /// wait for its instance id to join again, until its session ends.
    departed: bool,
}

impl ConsumerMember {
    /// Whether the member subscribes to `topic`.
    fn subscribes(&self, topic: &str) -> bool {
        !self.hidden.contains(topic) && (self.topics.iter().any(|t| t == topic) || self.matcher.as_ref().is_some_and(|m| m.is_match(topic)))
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub id: String,
    /// Rises with every change the assignment depends on.
    pub epoch: i32,
    /// The group epoch `target` was computed for.
    pub target_epoch: i32,
    target: BTreeMap<String, BTreeSet<TopicPartition>>,
    pub members: BTreeMap<String, ConsumerMember>,
    /// The subscribed topics' (name, id, partition count) the target saw.
    layout: Vec<(String, Uuid, i32)>,
    /// The topics `layout` was taken from: while a heartbeat brings the
    /// same ones and nothing else changed, the layout is not taken again.
    layout_of: Option<Arc<Topics>>,
}

impl ConsumerGroup {
    pub fn new(id: &str) -> ConsumerGroup {
        ConsumerGroup { id: id.to_string(), epoch: 0, target_epoch: 0, target: BTreeMap::new(), members: BTreeMap::new(), layout: Vec::new(), layout_of: None }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kafka's names of a consumer group's states.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.target_epoch < self.epoch {
            "Assigning"
        } else if self.members.values().all(|m| m.epoch == self.target_epoch && self.target.get(&m.id).is_none_or(|t| *t == m.assigned)) {
            "Stable"
        } else {
            "Reconciling"
        }
    }

    /// The topics some member subscribes to.
    pub fn subscribed_topics(&self, topics: &Topics) -> BTreeSet<String> {
        topics.keys().filter(|t| self.members.values().any(|m| m.subscribes(t))).cloned().collect()
    }

    /// Handles one heartbeat at `now`, against the topics that exist (the
    /// coordinator passes the same `Arc` until the topics change).
    pub fn heartbeat(&mut self, hb: Heartbeat, topics: &Arc<Topics>, now: Instant) -> Result<HeartbeatReply, Refusal> {
        if hb.member_epoch == STATIC_LEAVE_EPOCH
            && let Some(member) = self.members.get_mut(&hb.member_id)
            && member.instance_id.is_some()
        {
            // Nothing moves: the next instance with this id takes over.
            member.departed = true;
            member.last_seen = now;
            return Ok(HeartbeatReply { member_id: hb.member_id, member_epoch: hb.member_epoch, assignment: None });
        }
        if hb.member_epoch == LEAVE_EPOCH || hb.member_epoch == STATIC_LEAVE_EPOCH {
            self.remove(&hb.member_id);
            return Ok(HeartbeatReply { member_id: hb.member_id, member_epoch: hb.member_epoch, assignment: None });
        }
        if let Some(a) = hb.assignor.as_deref()
            && !ASSIGNORS.contains(&a)
        {
            return Err((ResponseError::UnsupportedAssignor, format!("assignor {a:?} is not one of {ASSIGNORS:?}")));
        }
        let matcher = match hb.regex.as_deref() {
            Some(r) if !r.is_empty() => Some(
                regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| (ResponseError::InvalidRegularExpression, format!("subscribed topic regex {r:?}: {e}")))?,
            ),
            _ => None,
        };
        let member_id = match hb.member_epoch {
            JOIN_EPOCH => self.join(&hb, now)?,
            epoch if epoch > 0 => {
                let Some(member) = self.members.get(&hb.member_id).filter(|m| !m.departed) else {
                    return Err((ResponseError::UnknownMemberId, format!("member {:?} is not in group {:?}", hb.member_id, self.id)));
                };
                let lost_answer = epoch == member.previous_epoch && hb.owned.as_ref().is_some_and(|o| o.is_subset(&member.assigned));
                if epoch != member.epoch && !lost_answer {
                    return Err((ResponseError::FencedMemberEpoch, format!("member epoch {epoch} is not the member's epoch {}", member.epoch)));
                }
                hb.member_id.clone()
            }
            epoch => return Err((ResponseError::InvalidRequest, format!("member epoch {epoch} is not valid"))),
        };
        let mut changed = false;
        {
            let member = self.members.get_mut(&member_id).expect("joined or known");
            member.last_seen = now;
            if let Some(topics) = hb.topics {
                let mut topics = topics;
                topics.sort();
                topics.dedup();
                changed |= topics != member.topics;
                member.topics = topics;
            }
            if let Some(r) = hb.regex {
                let r = (!r.is_empty()).then_some(r);
                changed |= r != member.regex;
                member.regex = r;
                member.matcher = matcher;
            }
            if hb.assignor.is_some() {
                member.assignor = hb.assignor;
            }
            if hb.hidden != member.hidden {
                changed = true;
                member.hidden = hb.hidden;
            }
            if hb.rebalance_timeout_ms > 0 {
                member.rebalance_timeout = Duration::from_millis(hb.rebalance_timeout_ms as u64);
            }
            if hb.rack_id.is_some() {
                member.rack_id = hb.rack_id;
            }
        }
        if changed {
            self.epoch += 1;
        }
        self.refresh_target(topics);
        Ok(self.reconcile(&member_id, hb.member_epoch == JOIN_EPOCH, hb.owned.as_ref(), now))
    }

    /// A member joining (epoch 0): a new one, one that lost its state, or a
    /// static member's new instance taking its place.
    fn join(&mut self, hb: &Heartbeat, now: Instant) -> Result<String, Refusal> {
        if hb.topics.is_none() && hb.regex.is_none() {
            return Err((ResponseError::InvalidRequest, "a joining member must name its subscribed topics or regex".to_string()));
        }
        if hb.rebalance_timeout_ms <= 0 {
            return Err((ResponseError::InvalidRequest, "a joining member must give its rebalance timeout".to_string()));
        }
        // v0 lets the coordinator choose the id; v1 clients bring their own.
        let id = if hb.member_id.is_empty() { Uuid::new_v4().to_string() } else { hb.member_id.clone() };
        self.remove(&id);
        if let Some(instance) = &hb.instance_id {
            let previous: Vec<String> = self.members.values().filter(|m| m.instance_id.as_ref() == Some(instance)).map(|m| m.id.clone()).collect();
            for p in previous {
                if self.members[&p].departed {
                    // The static member's next instance: it takes over the
                    // partitions, epoch and subscription, with no rebalance.
                    let mut member = self.members.remove(&p).expect("listed");
                    if let Some(target) = self.target.remove(&p) {
                        self.target.insert(id.clone(), target);
                    }
                    member.id = id.clone();
                    member.departed = false;
                    member.last_seen = now;
                    member.last_sent = None;
                    member.client_id = hb.client_id.clone();
                    member.client_host = hb.client_host.clone();
                    self.members.insert(id.clone(), member);
                    return Ok(id);
                }
                // Still active (it crashed and restarted before its session
                // ended): the new instance replaces it.
                self.remove(&p);
            }
        }
        self.members.insert(
            id.clone(),
            ConsumerMember {
                id: id.clone(),
                instance_id: hb.instance_id.clone(),
                rack_id: None,
                client_id: hb.client_id.clone(),
                client_host: hb.client_host.clone(),
                epoch: 0,
                previous_epoch: -1,
                topics: Vec::new(),
                regex: None,
                matcher: None,
                assignor: None,
                hidden: BTreeSet::new(),
                assigned: BTreeSet::new(),
                last_sent: None,
                rebalance_timeout: Duration::from_millis(hb.rebalance_timeout_ms as u64),
                last_seen: now,
                revoking_since: None,
                departed: false,
            },
        );
        self.epoch += 1;
        Ok(id)
    }

    /// Drops a member; what it held is free for the others.
    fn remove(&mut self, member_id: &str) -> bool {
        let removed = self.members.remove(member_id).is_some();
        if removed {
            self.target.remove(member_id);
            self.epoch += 1;
        }
        removed
    }

    /// Raises the epoch when the subscribed topics changed (created,
    /// deleted, recreated, more partitions) and recomputes the target when
    /// it is behind the group epoch.
    fn refresh_target(&mut self, topics: &Arc<Topics>) {
        let same_topics = self.layout_of.as_ref().is_some_and(|seen| Arc::ptr_eq(seen, topics));
        if same_topics && self.target_epoch == self.epoch {
            return;
        }
        self.layout_of = Some(topics.clone());
        let layout: Vec<(String, Uuid, i32)> = self.subscribed_topics(topics).into_iter().map(|t| (t.clone(), topics[&t].0, topics[&t].1)).collect();
        if layout != self.layout {
            self.epoch += 1;
        }
        if self.target_epoch == self.epoch {
            return;
        }
        self.target = assign(&self.members, &self.target, &layout);
        self.layout = layout;
        self.target_epoch = self.epoch;
    }

    /// Moves one member towards its target and says what it should own.
    fn reconcile(&mut self, member_id: &str, joining: bool, reported_now: Option<&BTreeSet<TopicPartition>>, now: Instant) -> HeartbeatReply {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held_by_others: BTreeSet<TopicPartition> = self.members.values().filter(|m| m.id != member_id).flat_map(|m| m.assigned.iter().copied()).collect();
        let target_epoch = self.target_epoch;
        let member = self.members.get_mut(member_id).expect("known member");
        let revoke: BTreeSet<TopicPartition> = member.assigned.difference(&target).copied().collect();
        // Partitions to give up count as released only once a heartbeat
        // lists what the member owns and they are not among them.
        let view = if !revoke.is_empty() && !reported_now.is_some_and(|r| r.is_disjoint(&revoke)) {
            // Still holding partitions it must give up: it keeps its epoch
            // and is told what to keep.
            member.revoking_since.get_or_insert(now);
            member.assigned.intersection(&target).copied().collect()
        } else {
            member.revoking_since = None;
            member.assigned.retain(|tp| target.contains(tp));
            member.assigned.extend(target.difference(&held_by_others).copied());
            if member.epoch != target_epoch {
                member.previous_epoch = member.epoch;
                member.epoch = target_epoch;
            }
            member.assigned.clone()
        };
        let send = joining || member.last_sent.as_ref() != Some(&view) || reported_now.is_some_and(|r| *r != view);
        if send {
            member.last_sent = Some(view.clone());
        }
        HeartbeatReply { member_id: member_id.to_string(), member_epoch: member.epoch, assignment: send.then_some(view) }
    }

    /// Members past their session timeout, or past their rebalance timeout
    /// while holding partitions they were asked to give up, are removed.
    /// Returns the ids removed.
    pub fn expire(&mut self, now: Instant, session_timeout: Duration) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| now.duration_since(m.last_seen) > session_timeout || m.revoking_since.is_some_and(|s| now.duration_since(s) > m.rebalance_timeout))
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        expired
    }

    /// What the metadata keeps of the group: everything but the clock.
    pub fn to_record(&self) -> ConsumerGroupRecord {
        ConsumerGroupRecord {
            epoch: self.epoch,
            target_epoch: self.target_epoch,
            layout: self.layout.clone(),
            members: self.members.values().map(|m| self.member_record(m)).collect(),
        }
    }

    fn member_record(&self, m: &ConsumerMember) -> ConsumerMemberRecord {
        ConsumerMemberRecord {
            id: m.id.clone(),
            instance_id: m.instance_id.clone(),
            rack_id: m.rack_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            epoch: m.epoch,
            previous_epoch: m.previous_epoch,
            topics: m.topics.clone(),
            regex: m.regex.clone(),
            assignor: m.assignor.clone(),
            hidden: m.hidden.iter().cloned().collect(),
            rebalance_timeout_ms: m.rebalance_timeout.as_millis().try_into().unwrap_or(i64::MAX),
            departed: m.departed,
            assigned: m.assigned.iter().copied().collect(),
            target: self.target.get(&m.id).map(|t| t.iter().copied().collect()).unwrap_or_default(),
        }
    }

    /// A group as a new coordinator loads it at `now`: every member gets a
    /// full session (and rebalance timeout) from then, and its next
    /// heartbeat is answered with its whole assignment.
    pub fn from_record(id: &str, record: &ConsumerGroupRecord, now: Instant) -> ConsumerGroup {
        let mut target = BTreeMap::new();
        let mut members = BTreeMap::new();
        for m in &record.members {
            target.insert(m.id.clone(), m.target.iter().copied().collect());
            let matcher = m.regex.as_deref().and_then(|r| regex::Regex::new(&format!("^(?:{r})$")).ok());
            members.insert(
                m.id.clone(),
                ConsumerMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    epoch: m.epoch,
                    previous_epoch: m.previous_epoch,
                    topics: m.topics.clone(),
                    regex: m.regex.clone(),
                    matcher,
                    assignor: m.assignor.clone(),
                    hidden: m.hidden.iter().cloned().collect(),
                    assigned: m.assigned.iter().copied().collect(),
                    last_sent: None,
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    last_seen: now,
                    revoking_since: None,
                    departed: m.departed,
                },
            );
        }
        ConsumerGroup {
            id: id.to_string(),
            epoch: record.epoch,
            target_epoch: record.target_epoch,
            target,
            members,
            layout: record.layout.clone(),
            layout_of: None,
        }
    }

    /// What a heartbeat of `member_id` can change of what the metadata
    /// keeps: compared before and after it, without copying the group.
    pub fn kept_by(&self, member_id: &str) -> (i32, i32, usize, Option<ConsumerMemberRecord>) {
        (self.epoch, self.target_epoch, self.members.len(), self.members.get(member_id).map(|m| self.member_record(m)))
    }

    /// OffsetCommit and TxnOffsetCommit: the member must be in the group at
    /// its current epoch (or the one before, whose partitions it may still
    /// be committing for as it revokes them).
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        if member_id.is_empty() && epoch < 0 {
            // An admin or a standalone consumer: only an empty group's offsets.
            return if self.members.is_empty() { Ok(()) } else { Err(ResponseError::UnknownMemberId) };
        }
        let Some(member) = self.members.get(member_id) else { return Err(ResponseError::UnknownMemberId) };
        if epoch == member.epoch || (epoch == member.previous_epoch && epoch >= 0) { Ok(()) } else { Err(ResponseError::StaleMemberEpoch) }
    }

    /// OffsetFetch from a member: it must be in the group at its current
    /// epoch (unlike a commit, the previous epoch will not do).
    pub fn check_fetch(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        let Some(member) = self.members.get(member_id) else { return Err(ResponseError::UnknownMemberId) };
        if epoch == member.epoch { Ok(()) } else { Err(ResponseError::StaleMemberEpoch) }
    }

    /// Whether a member subscribes to `topic`, by name or regex.
    pub fn member_subscribes(&self, member_id: &str, topic: &str) -> bool {
        self.members.get(member_id).is_some_and(|m| m.subscribes(topic))
    }

    /// The partitions the current target gives a member.
    pub fn target_of(&self, member_id: &str) -> BTreeSet<TopicPartition> {
        self.target.get(member_id).cloned().unwrap_or_default()
    }
}

/// The target assignment: each partition of a subscribed topic goes to one
/// member subscribed to it. With P partitions and M members, each member's
/// fair share is P / M, and P % M of them may hold one more. Partitions stay
/// with their previous target owner up to the share, then up to one more
/// while such places are left; the rest go to whichever eligible member has
/// fewest. So a joiner always gets its share, and the others lose only what
/// they must.
fn assign(
    members: &BTreeMap<String, ConsumerMember>,
    previous: &BTreeMap<String, BTreeSet<TopicPartition>>,
    layout: &[(String, Uuid, i32)],
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut target: BTreeMap<String, BTreeSet<TopicPartition>> = members.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    if members.is_empty() {
        return target;
    }
    let owner: BTreeMap<TopicPartition, &String> = previous.iter().flat_map(|(m, tps)| tps.iter().map(move |tp| (*tp, m))).collect();
    let partitions: Vec<(&String, TopicPartition)> = layout.iter().flat_map(|(name, id, count)| (0..*count).map(move |p| (name, (*id, p)))).collect();
    let share = partitions.len() / members.len();
    let mut one_more = partitions.len() % members.len();
    // Partitions whose previous owner may keep them, owner first.
    let mut sticky = Vec::new();
    let mut rest = Vec::new();
    for (name, tp) in &partitions {
        match owner.get(tp) {
            Some(m) if members.get(*m).is_some_and(|m| m.subscribes(name)) => sticky.push((*m, *name, *tp)),
            _ => rest.push((*name, *tp)),
        }
    }
    let mut over_share = Vec::new();
    for (m, name, tp) in sticky {
        let held = target.get_mut(m).expect("member");
        if held.len() < share {
            held.insert(tp);
        } else {
            over_share.push((m, name, tp));
        }
    }
    for (m, name, tp) in over_share {
        let held = target.get_mut(m).expect("member");
        if held.len() == share && one_more > 0 {
            held.insert(tp);
            one_more -= 1;
        } else {
            rest.push((name, tp));
        }
    }
    rest.sort();
    for (name, tp) in rest {
        if let Some(m) = members.values().filter(|m| m.subscribes(name)).min_by_key(|m| (target[&m.id].len(), &m.id)) {
            target.get_mut(&m.id).expect("member").insert(tp);
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: Uuid = Uuid::from_u128(1);
    const T2: Uuid = Uuid::from_u128(2);

    fn topics(list: &[(&str, Uuid, i32)]) -> Arc<Topics> {
        Arc::new(list.iter().map(|(n, id, c)| (n.to_string(), (*id, *c))).collect())
    }

    fn join(member: &str, topics: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: member.to_string(),
            member_epoch: JOIN_EPOCH,
            rebalance_timeout_ms: 30_000,
            topics: Some(topics.iter().map(|t| t.to_string()).collect()),
            owned: Some(BTreeSet::new()),
            ..Heartbeat::default()
        }
    }

    fn beat(member: &str, epoch: i32, owned: Option<&BTreeSet<TopicPartition>>) -> Heartbeat {
        Heartbeat { member_id: member.to_string(), member_epoch: epoch, owned: owned.cloned(), ..Heartbeat::default() }
    }

    /// Heartbeats as a well-behaved client sends them until nothing moves:
    /// each member acknowledges what it was told to own.
    fn settle(group: &mut ConsumerGroup, topics: &Arc<Topics>, now: Instant) {
        for _ in 0..10 {
            let ids: Vec<String> = group.members.keys().cloned().collect();
            for id in ids {
                let m = &group.members[&id];
                let owned = m.last_sent.clone().unwrap_or_default();
                let epoch = m.epoch;
                group.heartbeat(beat(&id, epoch, Some(&owned)), topics, now).unwrap();
            }
        }
    }

    fn no_partition_owned_twice(group: &ConsumerGroup) {
        let mut seen = BTreeSet::new();
        for m in group.members.values() {
            for tp in &m.assigned {
                assert!(seen.insert(*tp), "{tp:?} is held by two members");
            }
        }
    }

    #[test]
    fn a_lone_member_gets_every_partition_of_its_topics() {
        let t = topics(&[("a", T1, 3), ("b", T2, 2)]);
        let mut g = ConsumerGroup::new("g");
        let r = g.heartbeat(join("m1", &["a"]), &t, Instant::now()).unwrap();
        assert_eq!(r.member_epoch, g.epoch);
        assert_eq!(r.assignment.unwrap(), [(T1, 0), (T1, 1), (T1, 2)].into());
        assert_eq!(g.state(), "Stable");
    }

    #[test]
    fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
        let t = topics(&[("a", T1, 4)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        let first = g.heartbeat(join("m1", &["a"]), &t, now).unwrap();
        let all = first.assignment.clone().unwrap();
        g.heartbeat(beat("m1", first.member_epoch, Some(&all)), &t, now).unwrap();
        let second = g.heartbeat(join("m2", &["a"]), &t, now).unwrap();
        assert_eq!(second.assignment.unwrap(), BTreeSet::new(), "m1 still holds everything");
        assert_eq!(g.state(), "Reconciling");
        // m1 is told to keep two partitions, at its old epoch.
        let told = g.heartbeat(beat("m1", first.member_epoch, None), &t, now).unwrap();
        assert_eq!(told.member_epoch, first.member_epoch);
        let keep = told.assignment.unwrap();
        assert_eq!(keep.len(), 2);
        // Until m1 reports them revoked, m2 still gets nothing.
        let waiting = g.heartbeat(beat("m2", second.member_epoch, Some(&BTreeSet::new())), &t, now).unwrap();
        assert_eq!(waiting.assignment, None);
        no_partition_owned_twice(&g);
        // m1 reports it revoked; it moves to the new epoch.
        let done = g.heartbeat(beat("m1", first.member_epoch, Some(&keep)), &t, now).unwrap();
        assert_eq!(done.member_epoch, g.target_epoch);
        let got = g.heartbeat(beat("m2", second.member_epoch, Some(&BTreeSet::new())), &t, now).unwrap();
        let got = got.assignment.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.is_disjoint(&keep));
        no_partition_owned_twice(&g);
        settle(&mut g, &t, now);
        assert_eq!(g.state(), "Stable");
    }

    #[test]
    fn a_leaving_member_s_partitions_go_to_the_others() {
        let t = topics(&[("a", T1, 6)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        for m in ["m1", "m2", "m3"] {
            g.heartbeat(join(m, &["a"]), &t, now).unwrap();
            settle(&mut g, &t, now);
        }
        assert!(g.members.values().all(|m| m.assigned.len() == 2), "{:?}", g.members.values().map(|m| &m.assigned).collect::<Vec<_>>());
        let before: BTreeMap<String, BTreeSet<TopicPartition>> = g.members.values().map(|m| (m.id.clone(), m.assigned.clone())).collect();
        let left = g.heartbeat(beat("m2", g.members["m2"].epoch, None).with_epoch(LEAVE_EPOCH), &t, now).unwrap();
        assert_eq!(left.member_epoch, LEAVE_EPOCH);
        settle(&mut g, &t, now);
        assert_eq!(g.members.len(), 2);
        for m in g.members.values() {
            assert_eq!(m.assigned.len(), 3);
            assert!(before[&m.id].is_subset(&m.assigned), "the remaining members keep what they had (sticky)");
        }
        no_partition_owned_twice(&g);
    }

    #[test]
    fn a_joiner_gets_its_share_when_the_partitions_do_not_divide_evenly() {
        let t = topics(&[("a", T1, 12)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        for i in 0..6 {
            g.heartbeat(join(&format!("m{i}"), &["a"]), &t, now).unwrap();
            settle(&mut g, &t, now);
        }
        assert!(g.members.values().all(|m| m.assigned.len() == 2));
        let before: BTreeMap<String, BTreeSet<TopicPartition>> = g.members.values().map(|m| (m.id.clone(), m.assigned.clone())).collect();
        g.heartbeat(join("m6", &["a"]), &t, now).unwrap();
        settle(&mut g, &t, now);
        let mut counts: Vec<usize> = g.members.values().map(|m| m.assigned.len()).collect();
        counts.sort();
        assert_eq!(counts, vec![1, 1, 2, 2, 2, 2, 2], "twelve over seven: five hold two, two hold one");
        assert_eq!(g.members["m6"].assigned.len(), 1);
        for (id, had) in &before {
            assert!(g.members[id].assigned.is_subset(had), "{id} only lost partitions");
        }
        no_partition_owned_twice(&g);
        // More members than partitions: the extra ones hold nothing.
        let t = topics(&[("a", T1, 2)]);
        let mut g = ConsumerGroup::new("g");
        for i in 0..3 {
            g.heartbeat(join(&format!("m{i}"), &["a"]), &t, now).unwrap();
            settle(&mut g, &t, now);
        }
        let mut counts: Vec<usize> = g.members.values().map(|m| m.assigned.len()).collect();
        counts.sort();
        assert_eq!(counts, vec![0, 1, 1]);
    }

    #[test]
    fn members_only_get_partitions_of_topics_they_subscribe_to() {
        let t = topics(&[("a", T1, 2), ("b", T2, 2)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        g.heartbeat(join("m1", &["a"]), &t, now).unwrap();
        g.heartbeat(join("m2", &["a", "b"]), &t, now).unwrap();
        settle(&mut g, &t, now);
        assert!(g.members["m1"].assigned.iter().all(|(id, _)| *id == T1));
        let all: BTreeSet<_> = g.members.values().flat_map(|m| m.assigned.iter().copied()).collect();
        assert_eq!(all.len(), 4, "every partition is assigned");
    }

    #[test]
    fn a_regex_subscription_follows_topics_as_they_are_created() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        let mut hb = join("m1", &[]);
        hb.topics = None;
        hb.regex = Some("orders-.*".to_string());
        let t = topics(&[("orders-eu", T1, 1), ("other", T2, 1)]);
        let r = g.heartbeat(hb, &t, now).unwrap();
        assert_eq!(r.assignment.unwrap(), [(T1, 0)].into());
        let t = topics(&[("orders-eu", T1, 1), ("orders-us", T2, 2)]);
        let r = g.heartbeat(beat("m1", r.member_epoch, None), &t, now).unwrap();
        assert_eq!(r.assignment.unwrap(), [(T1, 0), (T2, 0), (T2, 1)].into());
        let mut bad = join("m2", &[]);
        bad.regex = Some("orders-(".to_string());
        assert_eq!(g.heartbeat(bad, &t, now).unwrap_err().0, ResponseError::InvalidRegularExpression);
    }

    #[test]
    fn a_regex_never_assigns_a_topic_the_member_may_not_describe() {
        let now = Instant::now();
        let t = topics(&[("orders-eu", T1, 1), ("orders-secret", T2, 1)]);
        let mut g = ConsumerGroup::new("g");
        let mut hb = join("m1", &[]);
        hb.topics = None;
        hb.regex = Some("orders-.*".to_string());
        hb.hidden = BTreeSet::from(["orders-secret".to_string()]);
        let r = g.heartbeat(hb, &t, now).unwrap();
        assert_eq!(r.assignment.unwrap(), [(T1, 0)].into());
        assert_eq!(g.subscribed_topics(&t), BTreeSet::from(["orders-eu".to_string()]));
        // Once allowed (an ACL added), the next heartbeat brings it.
        let r = g.heartbeat(beat("m1", r.member_epoch, None), &t, now).unwrap();
        assert_eq!(r.assignment.unwrap(), [(T1, 0), (T2, 0)].into());
    }

    #[test]
    fn more_partitions_reach_the_members() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        let r = g.heartbeat(join("m1", &["a"]), &topics(&[("a", T1, 1)]), now).unwrap();
        let r = g.heartbeat(beat("m1", r.member_epoch, None), &topics(&[("a", T1, 3)]), now).unwrap();
        assert_eq!(r.assignment.unwrap().len(), 3);
    }

    #[test]
    fn stale_and_unknown_members_are_fenced() {
        let t = topics(&[("a", T1, 2)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        let r = g.heartbeat(join("m1", &["a"]), &t, now).unwrap();
        assert_eq!(g.heartbeat(beat("m1", r.member_epoch + 5, None), &t, now).unwrap_err().0, ResponseError::FencedMemberEpoch);
        assert_eq!(g.heartbeat(beat("nobody", 3, None), &t, now).unwrap_err().0, ResponseError::UnknownMemberId);
        assert_eq!(g.check_commit("m1", r.member_epoch), Ok(()));
        assert_eq!(g.check_commit("m1", r.member_epoch + 1), Err(ResponseError::StaleMemberEpoch));
        assert_eq!(g.check_commit("nobody", 1), Err(ResponseError::UnknownMemberId));
        assert_eq!(g.check_commit("", -1), Err(ResponseError::UnknownMemberId), "not while the group has members");
    }

    #[test]
    fn an_offset_fetch_needs_the_member_s_current_epoch() {
        let t = topics(&[("a", T1, 2)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        let first = g.heartbeat(join("m1", &["a"]), &t, now).unwrap().member_epoch;
        assert_eq!(g.check_fetch("m1", first), Ok(()));
        g.heartbeat(join("m2", &["a"]), &t, now).unwrap();
        settle(&mut g, &t, now);
        let current = g.members["m1"].epoch;
        assert!(current > first, "m1 moved to a later epoch when m2 joined");
        assert_eq!(g.check_fetch("m1", current), Ok(()));
        assert_eq!(g.check_fetch("m1", first), Err(ResponseError::StaleMemberEpoch));
        assert_eq!(g.check_fetch("nobody", current), Err(ResponseError::UnknownMemberId));
    }

    #[test]
    fn a_silent_member_expires_and_its_partitions_are_released() {
        let t = topics(&[("a", T1, 2)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        g.heartbeat(join("m1", &["a"]), &t, now).unwrap();
        g.heartbeat(join("m2", &["a"]), &t, now).unwrap();
        settle(&mut g, &t, now);
        let later = now + Duration::from_secs(50);
        let r = g.heartbeat(beat("m2", g.members["m2"].epoch, None), &t, later).unwrap();
        assert_eq!(g.expire(later, Duration::from_secs(45)), vec!["m1".to_string()]);
        let r = g.heartbeat(beat("m2", r.member_epoch, None), &t, later).unwrap();
        assert_eq!(r.assignment.unwrap().len(), 2);
        assert_eq!(g.state(), "Stable");
    }

    #[test]
    fn a_member_that_does_not_revoke_in_its_rebalance_timeout_is_removed() {
        let t = topics(&[("a", T1, 2)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        let r = g.heartbeat(join("m1", &["a"]), &t, now).unwrap();
        let all = r.assignment.unwrap();
        g.heartbeat(beat("m1", r.member_epoch, Some(&all)), &t, now).unwrap();
        g.heartbeat(join("m2", &["a"]), &t, now).unwrap();
        g.heartbeat(beat("m1", r.member_epoch, Some(&all)), &t, now).unwrap();
        let later = now + Duration::from_secs(31);
        g.heartbeat(beat("m2", g.members["m2"].epoch, None), &t, later).unwrap();
        g.heartbeat(beat("m1", r.member_epoch, Some(&all)), &t, later).unwrap();
        assert_eq!(g.expire(later, Duration::from_secs(45)), vec!["m1".to_string()]);
    }

    #[test]
    fn a_static_member_s_new_instance_replaces_the_old_one() {
        let t = topics(&[("a", T1, 2)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        let mut first = join("m1", &["a"]);
        first.instance_id = Some("i".to_string());
        g.heartbeat(first, &t, now).unwrap();
        let mut again = join("m9", &["a"]);
        again.instance_id = Some("i".to_string());
        let r = g.heartbeat(again, &t, now).unwrap();
        assert_eq!(g.members.keys().collect::<Vec<_>>(), ["m9"]);
        assert_eq!(r.assignment.unwrap().len(), 2);
    }

    #[test]
    fn a_static_member_that_steps_away_gets_its_partitions_back_without_a_rebalance() {
        let t = topics(&[("a", T1, 4)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        let mut first = join("m1", &["a"]);
        first.instance_id = Some("i1".to_string());
        g.heartbeat(first, &t, now).unwrap();
        g.heartbeat(join("m2", &["a"]), &t, now).unwrap();
        settle(&mut g, &t, now);
        let (epoch, held) = (g.epoch, g.members["m1"].assigned.clone());
        assert_eq!(held.len(), 2);
        let left = g.heartbeat(beat("m1", g.members["m1"].epoch, None).with_epoch(STATIC_LEAVE_EPOCH), &t, now).unwrap();
        assert_eq!(left.member_epoch, STATIC_LEAVE_EPOCH);
        assert_eq!(g.epoch, epoch, "nothing moves while the instance restarts");
        let m2 = g.heartbeat(beat("m2", g.members["m2"].epoch, None), &t, now).unwrap();
        assert_eq!(m2.assignment, None);
        assert_eq!(g.heartbeat(beat("m1", g.members["m1"].epoch, None), &t, now).unwrap_err().0, ResponseError::UnknownMemberId);
        // The next instance, under a new member id, gets the same partitions at the same epoch.
        let mut again = join("m1-next", &["a"]);
        again.instance_id = Some("i1".to_string());
        let back = g.heartbeat(again, &t, now).unwrap();
        assert_eq!((back.member_epoch, back.assignment), (epoch, Some(held.clone())));
        assert_eq!(g.epoch, epoch);
        assert_eq!(g.members.keys().collect::<Vec<_>>(), ["m1-next", "m2"]);
        // One that does not come back within its session is removed, and its
        // partitions go to the others.
        g.heartbeat(beat("m1-next", epoch, None).with_epoch(STATIC_LEAVE_EPOCH), &t, now).unwrap();
        let later = now + Duration::from_secs(50);
        g.heartbeat(beat("m2", g.members["m2"].epoch, None), &t, later).unwrap();
        assert_eq!(g.expire(later, Duration::from_secs(45)), vec!["m1-next".to_string()]);
        let all = g.heartbeat(beat("m2", g.members["m2"].epoch, None), &t, later).unwrap();
        assert_eq!(all.assignment.map(|a| a.len()), Some(4));
    }

    #[test]
    fn a_group_loaded_from_its_record_goes_on_mid_reconciliation() {
        let t = topics(&[("a", T1, 4)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        let first = g.heartbeat(join("m1", &["a"]), &t, now).unwrap();
        let all = first.assignment.clone().unwrap();
        g.heartbeat(beat("m1", first.member_epoch, Some(&all)), &t, now).unwrap();
        let mut second = join("m2", &["a"]);
        second.regex = Some("b.*".to_string());
        second.instance_id = Some("host-2".to_string());
        let second = g.heartbeat(second, &t, now).unwrap();
        // m1 is told to give two partitions up and has not yet done so.
        let keep = g.heartbeat(beat("m1", first.member_epoch, None), &t, now).unwrap().assignment.unwrap();
        let record = g.to_record();

        // A new coordinator loads it later: the same group, members and epochs.
        let later = now + Duration::from_secs(60);
        let mut loaded = ConsumerGroup::from_record("g", &record, later);
        assert_eq!(loaded.to_record(), record);
        assert_eq!((loaded.epoch, loaded.state()), (g.epoch, "Reconciling"));
        assert!(loaded.member_subscribes("m2", "b1"), "the regex is compiled again");
        // Everyone has a full session from the load, none past it.
        assert!(loaded.expire(later + Duration::from_secs(44), Duration::from_secs(45)).is_empty());
        // m1 goes on at its epoch; m2 still waits for what m1 holds.
        let waiting = loaded.heartbeat(beat("m2", second.member_epoch, Some(&BTreeSet::new())), &t, later).unwrap();
        assert_eq!(waiting.assignment, Some(BTreeSet::new()), "the whole assignment is sent again after a load");
        let done = loaded.heartbeat(beat("m1", first.member_epoch, Some(&keep)), &t, later).unwrap();
        assert_eq!((done.member_epoch, done.assignment), (loaded.target_epoch, Some(keep.clone())));
        let got = loaded.heartbeat(beat("m2", second.member_epoch, Some(&BTreeSet::new())), &t, later).unwrap().assignment.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.is_disjoint(&keep));
        no_partition_owned_twice(&loaded);
        // The same topics bring no new epoch: the layout came with the record.
        settle(&mut loaded, &t, later);
        assert_eq!((loaded.epoch, loaded.state()), (g.epoch, "Stable"));
    }

    #[test]
    fn what_the_metadata_keeps_changes_only_with_the_group() {
        let t = topics(&[("a", T1, 2)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        let before = g.kept_by("m1");
        let r = g.heartbeat(join("m1", &["a"]), &t, now).unwrap();
        assert_ne!(g.kept_by("m1"), before, "a join is kept");
        let owned = r.assignment.unwrap();
        g.heartbeat(beat("m1", r.member_epoch, Some(&owned)), &t, now).unwrap();
        let settled = g.kept_by("m1");
        // Heartbeats that only keep the member alive change nothing kept.
        for i in 1..5 {
            g.heartbeat(beat("m1", r.member_epoch, Some(&owned)), &t, now + Duration::from_secs(i)).unwrap();
            assert_eq!(g.kept_by("m1"), settled);
        }
        let mut resubscribe = beat("m1", r.member_epoch, Some(&owned));
        resubscribe.topics = Some(vec!["a".to_string(), "b".to_string()]);
        g.heartbeat(resubscribe, &t, now).unwrap();
        assert_ne!(g.kept_by("m1"), settled, "a subscription change is kept");
    }

    #[test]
    fn a_lost_answer_is_sent_again() {
        let t = topics(&[("a", T1, 2)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        let r = g.heartbeat(join("m1", &["a"]), &t, now).unwrap();
        // The client never saw that answer and still owns nothing.
        let again = g.heartbeat(beat("m1", r.member_epoch, Some(&BTreeSet::new())), &t, now).unwrap();
        assert_eq!(again.assignment, r.assignment);
        let quiet = g.heartbeat(beat("m1", r.member_epoch, None), &t, now).unwrap();
        assert_eq!(quiet.assignment, None);
    }

    #[test]
    fn an_unknown_assignor_and_a_join_without_a_subscription_are_refused() {
        let t = topics(&[("a", T1, 2)]);
        let mut g = ConsumerGroup::new("g");
        let mut hb = join("m1", &["a"]);
        hb.assignor = Some("cooperative-sticky".to_string());
        assert_eq!(g.heartbeat(hb, &t, Instant::now()).unwrap_err().0, ResponseError::UnsupportedAssignor);
        let mut hb = join("m1", &["a"]);
        hb.topics = None;
        assert_eq!(g.heartbeat(hb, &t, Instant::now()).unwrap_err().0, ResponseError::InvalidRequest);
        assert!(g.members.is_empty());
    }

    impl Heartbeat {
        fn with_epoch(mut self, epoch: i32) -> Heartbeat {
            self.member_epoch = epoch;
            self
        }
    }
}
