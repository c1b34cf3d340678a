//! One consumer group on its coordinator: the classic rebalance protocol as
//! a state machine over members, with no I/O. The coordinator stores what a
//! transition asks it to (a completed generation) through Raft and feeds the
//! outcome back.
//!
//! States, as Kafka names them:
//! - `Empty`: no members (offsets may still be stored);
//! - `PreparingRebalance`: waiting for members to (re)join;
//! - `CompletingRebalance`: joined; waiting for the leader's assignment;
//! - `Stable`: every member has its assignment and heartbeats.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use runnel_controller::groups::{Generation, MemberRecord};
use runnel_protocol::kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup answers.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: every member's id, instance id and metadata.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(e: ResponseError, member_id: &str) -> JoinResult {
        JoinResult { error: Some(e), generation: -1, member_id: member_id.to_string(), ..Default::default() }
    }
}

pub type SyncResult = Result<Bytes, ResponseError>;

/// A JoinGroup or SyncGroup answered now or once the rebalance moves on.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// What a JoinGroup leads to inside the group.
pub enum Joined {
    Reply(Reply<JoinResult>),
    Static(Box<StaticRejoin>),
}

impl From<Reply<JoinResult>> for Joined {
    fn from(reply: Reply<JoinResult>) -> Joined {
        Joined::Reply(reply)
    }
}

pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member must first ask for its id (KIP-394).
    pub require_known_member_id: bool,
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_heard: Instant,
    join: Option<oneshot::Sender<JoinResult>>,
    sync: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    pub fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol.and_then(|p| self.protocols.iter().find(|(n, _)| n == p)).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == protocol)
    }
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Static members: instance id -> member id.
    instances: HashMap<String, String>,
    /// Member ids handed out by MEMBER_ID_REQUIRED, until they join.
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    /// The first-join delay (group.initial.rebalance.delay.ms): until then a
    /// rebalance of a group that was empty waits for more members; each new
    /// member pushes it out again, up to the cap.
    initial_until: Option<Instant>,
    initial_cap: Option<Instant>,
    sync_deadline: Option<Instant>,
    /// A completed generation is being stored; its members wait for it.
    storing: bool,
}

/// A static member that rejoined with a new id and no rebalance (KIP-345):
/// its group must be stored with the new id before the JoinGroup is
/// answered, or a new coordinator would fence the member. If the store
/// fails, [`Group::static_rejoin_failed`] puts the old id back.
pub struct StaticRejoin {
    pub store: Store,
    pub answer: JoinResult,
    instance: String,
    old_id: String,
    /// What the member had before: client id, host, session and rebalance timeouts.
    before: (String, String, Duration, Duration),
}

/// A completed generation the coordinator must store through Raft.
pub struct Store {
    pub generation: Generation,
    /// True when members wait for it (after the leader's SyncGroup).
    pub for_sync: bool,
}

impl Group {
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            instances: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_until: None,
            initial_cap: None,
            sync_deadline: None,
            storing: false,
        }
    }

    /// A group as its last stored generation left it: members with their
    /// assignments are Stable and must heartbeat this coordinator within
    /// their session timeouts.
    pub fn resume(id: &str, stored: &Generation, now: Instant) -> Group {
        let mut group = Group::new(id);
        group.generation = stored.generation;
        group.protocol_type = Some(stored.protocol_type.clone()).filter(|t| !t.is_empty());
        if stored.members.is_empty() {
            return group;
        }
        group.state = GroupState::Stable;
        group.protocol = stored.protocol.clone();
        group.leader = stored.leader.clone();
        for m in &stored.members {
            let protocols = vec![(stored.protocol.clone().unwrap_or_default(), Bytes::from(m.subscription.clone()))];
            if let Some(instance) = &m.instance_id {
                group.instances.insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: Duration::from_millis(m.session_timeout_ms.max(0) as u64),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    protocols,
                    assignment: Bytes::from(m.assignment.clone()),
                    last_heard: now,
                    join: None,
                    sync: None,
                },
            );
        }
        group
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// No members, and no member id handed out that has yet to join.
    pub fn is_idle(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// The generation as stored: members with their chosen metadata and assignments.
    fn record(&self) -> Generation {
        let protocol = self.protocol.as_deref();
        Generation {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberRecord {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis().min(i32::MAX as u128) as i32,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32,
                    subscription: m.metadata(protocol).to_vec(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
        }
    }

    /// Checks a request's member id, instance id and generation as Kafka does.
    pub fn check_member(&self, member_id: &str, instance_id: Option<&str>, generation: Option<i32>) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            match self.instances.get(instance) {
                Some(known) if known != member_id => return Err(ResponseError::FencedInstanceId),
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation.is_some_and(|g| g != self.generation) {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Whether `protocol_type` and at least one of `protocols` fit the members.
    fn compatible(&self, protocol_type: &str, protocols: &[(String, Bytes)], replacing: Option<&str>) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self.members.values().filter(|m| Some(m.id.as_str()) != replacing).collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref().is_some_and(|t| t != protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| others.iter().all(|m| m.supports(name)))
    }

    /// JoinGroup. A static member's rejoin without a rebalance comes back as
    /// a [`StaticRejoin`], answered once its group is stored.
    pub fn join(&mut self, request: JoinRequest, now: Instant, initial_delay: Duration) -> Joined {
        let member_id = &request.member_id.clone();
        let instance_id = &request.instance_id.clone();
        let known_instance = instance_id.as_ref().and_then(|i| self.instances.get(i)).cloned();
        let replacing = if member_id.is_empty() { known_instance.as_deref() } else { Some(member_id.as_str()) };
        if !self.compatible(&request.protocol_type, &request.protocols, replacing) {
            return Reply::Now(JoinResult::error(ResponseError::InconsistentGroupProtocol, member_id)).into();
        }
        if member_id.is_empty() {
            if let Some(old) = known_instance {
                return self.rejoin_static(old, request, now);
            }
            let prefix = instance_id.clone().unwrap_or_else(|| request.client_id.clone());
            let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
            if instance_id.is_none() && request.require_known_member_id {
                self.pending.insert(new_id.clone(), now + request.session_timeout);
                return Reply::Now(JoinResult::error(ResponseError::MemberIdRequired, &new_id)).into();
            }
            return self.add_member(new_id, request, now, initial_delay).into();
        }
        if let (Some(instance), Some(known)) = (instance_id, &known_instance)
            && known != member_id
        {
            tracing::debug!(group = %self.id, instance, "fenced a stale static member");
            return Reply::Now(JoinResult::error(ResponseError::FencedInstanceId, member_id)).into();
        }
        if self.pending.remove(member_id).is_some() {
            let id = member_id.clone();
            return self.add_member(id, request, now, initial_delay).into();
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return Reply::Now(JoinResult::error(ResponseError::UnknownMemberId, member_id)).into();
        };
        let unchanged = member.protocols == request.protocols;
        member.last_heard = now;
        member.protocols = request.protocols;
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            // A follower that lost its JoinGroup answer asks again: same generation.
            GroupState::Stable | GroupState::CompletingRebalance if unchanged && !is_leader => Reply::Now(self.join_result(member_id, false)).into(),
            _ => {
                let id = member_id.clone();
                self.prepare_rebalance(now, initial_delay);
                self.wait_for_join(&id, now).into()
            }
        }
    }

    /// A static member back with a new member id (KIP-345): it takes over the
    /// old id's place and assignment, and the old id is fenced.
    fn rejoin_static(&mut self, old: String, request: JoinRequest, now: Instant) -> Joined {
        let instance = request.instance_id.clone().unwrap_or_default();
        let new_id = format!("{instance}-{}", uuid::Uuid::new_v4());
        let Some(mut member) = self.members.remove(&old) else {
            return Reply::Now(JoinResult::error(ResponseError::UnknownMemberId, "")).into();
        };
        let before = (member.client_id.clone(), member.client_host.clone(), member.session_timeout, member.rebalance_timeout);
        if let Some(tx) = member.join.take() {
            let _ = tx.send(JoinResult::error(ResponseError::FencedInstanceId, &old));
        }
        if let Some(tx) = member.sync.take() {
            let _ = tx.send(Err(ResponseError::FencedInstanceId));
        }
        let unchanged = member.protocols == request.protocols;
        member.id = new_id.clone();
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        member.protocols = request.protocols;
        member.last_heard = now;
        self.members.insert(new_id.clone(), member);
        self.instances.insert(instance.clone(), new_id.clone());
        let was_leader = self.leader.as_deref() == Some(old.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        if self.state == GroupState::Stable && unchanged && !was_leader {
            // Same generation, same assignment: no rebalance (the point of
            // KIP-345), once the new id is stored.
            return Joined::Static(Box::new(StaticRejoin {
                store: Store { generation: self.record(), for_sync: false },
                answer: self.join_result(&new_id, false),
                instance,
                old_id: old,
                before,
            }));
        }
        self.prepare_rebalance(now, Duration::ZERO);
        self.wait_for_join(&new_id, now).into()
    }

    /// Storing a static member's new id failed: the member gets its old id
    /// back (as Kafka reverts it), unless the group moved on meanwhile.
    pub fn static_rejoin_failed(&mut self, rejoin: StaticRejoin) {
        let StaticRejoin { store, answer, instance, old_id, before } = rejoin;
        let new_id = answer.member_id;
        if self.generation != store.generation.generation || self.instances.get(&instance) != Some(&new_id) || self.members.contains_key(&old_id) {
            return;
        }
        let Some(mut member) = self.members.remove(&new_id) else { return };
        member.id = old_id.clone();
        (member.client_id, member.client_host, member.session_timeout, member.rebalance_timeout) = before;
        self.members.insert(old_id.clone(), member);
        self.instances.insert(instance, old_id);
    }

    fn add_member(&mut self, id: String, request: JoinRequest, now: Instant, initial_delay: Duration) -> Reply<JoinResult> {
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if let Some(instance) = &request.instance_id {
            self.instances.insert(instance.clone(), id.clone());
        }
        let rebalance_timeout = request.rebalance_timeout;
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: request.instance_id,
                client_id: request.client_id,
                client_host: request.client_host,
                session_timeout: request.session_timeout,
                rebalance_timeout,
                protocols: request.protocols,
                assignment: Bytes::new(),
                last_heard: now,
                join: None,
                sync: None,
            },
        );
        if self.state == GroupState::PreparingRebalance {
            if let (Some(_), Some(cap)) = (self.initial_until, self.initial_cap) {
                self.initial_until = Some((now + initial_delay).min(cap));
            }
        } else {
            self.prepare_rebalance(now, initial_delay);
        }
        self.wait_for_join(&id, now)
    }

    fn wait_for_join(&mut self, id: &str, now: Instant) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(id)
            && let Some(old) = m.join.replace(tx)
        {
            let _ = old.send(JoinResult::error(ResponseError::UnknownMemberId, id));
        }
        self.maybe_complete_join(now);
        Reply::Later(rx)
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default()
    }

    /// Starts (or continues) a rebalance: every member must join again.
    pub fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        for m in self.members.values_mut() {
            if let Some(tx) = m.sync.take() {
                let _ = tx.send(Err(ResponseError::RebalanceInProgress));
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        self.storing = false;
        self.sync_deadline = None;
        let timeout = self.max_rebalance_timeout();
        self.rebalance_deadline = Some(now + timeout);
        if was_empty && !initial_delay.is_zero() {
            self.initial_until = Some(now + initial_delay.min(timeout));
            self.initial_cap = Some(now + timeout);
        } else {
            self.initial_until = None;
            self.initial_cap = None;
        }
    }

    /// Completes the join phase once every member has joined (after the
    /// first-join delay) or the rebalance timeout has passed. Returns a
    /// generation to store when the group ended up empty.
    pub fn maybe_complete_join(&mut self, now: Instant) -> Option<Store> {
        if self.state != GroupState::PreparingRebalance {
            return None;
        }
        let all_joined = self.members.values().all(|m| m.join.is_some());
        let delayed = self.initial_until.is_some_and(|t| now < t);
        let timed_out = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !timed_out && (delayed || !all_joined) {
            return None;
        }
        // Members that did not join in time leave the group.
        let gone: Vec<String> = self.members.values().filter(|m| m.join.is_none()).map(|m| m.id.clone()).collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        self.initial_until = None;
        self.initial_cap = None;
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return Some(Store { generation: self.record(), for_sync: false });
        }
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let result = self.join_result(&id, is_leader);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heard = now;
                if let Some(tx) = m.join.take() {
                    let _ = tx.send(result);
                }
            }
        }
        None
    }

    /// The protocol every member supports that the members rank highest
    /// (each votes for its first supported choice), as Kafka chooses.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first.protocols.iter().map(|(n, _)| n).filter(|n| self.members.values().all(|m| m.supports(n))).collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0usize, *c)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n))
                && let Some(v) = votes.iter_mut().find(|(_, c)| *c == name)
            {
                v.0 += 1;
            }
        }
        // The most votes; ties go to the earlier in the first member's order.
        let best = votes.iter().map(|(v, _)| *v).max()?;
        votes.into_iter().find(|(v, _)| *v == best).map(|(_, c)| c.clone())
    }

    fn join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        let protocol = self.protocol.as_deref();
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                self.members.values().map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(protocol))).collect()
            } else {
                Vec::new()
            },
        }
    }

    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Result<(Reply<SyncResult>, Option<Store>), ResponseError> {
        self.check_member(member_id, instance_id, Some(generation))?;
        match self.state {
            GroupState::Empty => Err(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let m = &self.members[member_id];
                Ok((Reply::Now(Ok(m.assignment.clone())), None))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let m = self.members.get_mut(member_id).expect("checked");
                m.last_heard = now;
                if let Some(old) = m.sync.replace(tx) {
                    let _ = old.send(Err(ResponseError::RebalanceInProgress));
                }
                let mut store = None;
                if self.leader.as_deref() == Some(member_id) && !self.storing {
                    let mut assigned: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = assigned.remove(&m.id).unwrap_or_default();
                    }
                    self.storing = true;
                    store = Some(Store { generation: self.record(), for_sync: true });
                }
                Ok((Reply::Later(rx), store))
            }
        }
    }

    /// The outcome of storing generation `generation`: members waiting on
    /// SyncGroup get their assignments, or the error and a new rebalance.
    pub fn stored(&mut self, generation: i32, result: Result<(), ResponseError>, now: Instant) {
        if self.generation != generation || self.state != GroupState::CompletingRebalance || !self.storing {
            return;
        }
        self.storing = false;
        match result {
            Ok(()) => {
                self.state = GroupState::Stable;
                self.sync_deadline = None;
                for m in self.members.values_mut() {
                    m.last_heard = now;
                    if let Some(tx) = m.sync.take() {
                        let _ = tx.send(Ok(m.assignment.clone()));
                    }
                }
            }
            Err(e) => {
                for m in self.members.values_mut() {
                    if let Some(tx) = m.sync.take() {
                        let _ = tx.send(Err(e));
                    }
                }
                self.prepare_rebalance(now, Duration::ZERO);
            }
        }
    }

    pub fn heartbeat(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now: Instant) -> Result<(), ResponseError> {
        if self.state == GroupState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        self.check_member(member_id, instance_id, Some(generation))?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heard = now;
        }
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// An offset commit counts as a heartbeat, as in Kafka.
    pub fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heard = now;
        }
    }

    /// LeaveGroup for one member: by member id, or by instance id for
    /// static members.
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now: Instant) -> Result<String, ResponseError> {
        let id = match instance_id {
            Some(instance) => match self.instances.get(instance) {
                Some(known) if !member_id.is_empty() && known != member_id => return Err(ResponseError::FencedInstanceId),
                Some(known) => known.clone(),
                None => return Err(ResponseError::UnknownMemberId),
            },
            None => member_id.to_string(),
        };
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.remove_member(&id);
        self.prepare_rebalance(now, Duration::ZERO);
        Ok(id)
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(instance) = &m.instance_id
                && self.instances.get(instance).is_some_and(|k| k == id)
            {
                self.instances.remove(instance);
            }
            if let Some(tx) = m.join.take() {
                let _ = tx.send(JoinResult::error(ResponseError::UnknownMemberId, id));
            }
            if let Some(tx) = m.sync.take() {
                let _ = tx.send(Err(ResponseError::UnknownMemberId));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// Timers: session expiry, pending member ids, the join and sync
    /// deadlines. Returns a generation to store if the group became empty.
    pub fn tick(&mut self, now: Instant) -> Option<Store> {
        self.pending.retain(|_, expires| *expires > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join.is_none() && m.sync.is_none() && now.duration_since(m.last_heard) > m.session_timeout)
            .map(|m| m.id.clone())
            .collect();
        if !expired.is_empty() {
            tracing::info!(group = %self.id, members = ?expired, "session timeout: removing members");
            for id in &expired {
                self.remove_member(id);
            }
            if self.state != GroupState::Empty {
                self.prepare_rebalance(now, Duration::ZERO);
            }
        }
        if self.state == GroupState::CompletingRebalance && !self.storing && self.sync_deadline.is_some_and(|d| now >= d) {
            // Members that never sent SyncGroup are gone.
            let silent: Vec<String> = self.members.values().filter(|m| m.sync.is_none()).map(|m| m.id.clone()).collect();
            for id in &silent {
                self.remove_member(id);
            }
            self.prepare_rebalance(now, Duration::ZERO);
        }
        self.maybe_complete_join(now)
    }

    /// Topics the members subscribe to, where their metadata says (the
    /// "consumer" protocol); None when it cannot be told.
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        use runnel_protocol::kafka_protocol::messages::ConsumerProtocolSubscription;
        use runnel_protocol::kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let mut topics = Vec::new();
        for m in self.members.values() {
            let mut metadata = m.metadata(self.protocol.as_deref());
            if metadata.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([metadata[0], metadata[1]]);
            let _ = bytes::Buf::get_i16(&mut metadata);
            let subscription = ConsumerProtocolSubscription::decode(&mut metadata, version.clamp(0, 3)).ok()?;
            topics.extend(subscription.topics.iter().map(|t| t.to_string()));
        }
        Some(topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_request(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: "consumer".into(),
            protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from_static(b"m"))).collect(),
            require_known_member_id: true,
        }
    }

    fn now_result(joined: Joined) -> JoinResult {
        match joined {
            Joined::Reply(Reply::Now(r)) => r,
            Joined::Reply(Reply::Later(mut rx)) => rx.try_recv().expect("answered"),
            Joined::Static(_) => panic!("a static member's rejoin waits for the store"),
        }
    }

    /// Joins a new member through MEMBER_ID_REQUIRED; returns its receiver.
    fn join_new(group: &mut Group, protocols: &[&str], now: Instant) -> (String, oneshot::Receiver<JoinResult>) {
        let first = now_result(group.join(join_request("", protocols), now, Duration::ZERO));
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        match group.join(join_request(&first.member_id, protocols), now, Duration::ZERO) {
            Joined::Reply(Reply::Later(rx)) => (first.member_id, rx),
            Joined::Reply(Reply::Now(r)) => panic!("expected to wait, got {r:?}"),
            Joined::Static(_) => panic!("not a static member"),
        }
    }

    #[test]
    fn two_members_join_sync_and_a_leave_rebalances() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, mut ra) = join_new(&mut g, &["range"], now);
        // A single member completes the join at once.
        let ja = ra.try_recv().unwrap();
        assert_eq!((ja.generation, ja.leader.as_str(), ja.members.len()), (1, a.as_str(), 1));
        let (b, mut rb) = join_new(&mut g, &["range"], now);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert!(rb.try_recv().is_err(), "waits for the leader to rejoin");
        let Joined::Reply(Reply::Later(mut ra)) = g.join(join_request(&a, &["range"]), now, Duration::ZERO) else { panic!() };
        let (ja, jb) = (ra.try_recv().unwrap(), rb.try_recv().unwrap());
        assert_eq!((ja.generation, jb.generation), (2, 2));
        assert_eq!(ja.members.len(), 2, "the leader gets the member list");
        assert!(jb.members.is_empty());
        // The follower's sync waits; the leader's asks for the store.
        let (Reply::Later(mut sb), None) = g.sync(&b, None, 2, vec![], now).unwrap() else { panic!() };
        let (Reply::Later(mut sa), Some(store)) =
            g.sync(&a, None, 2, vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))], now).unwrap()
        else {
            panic!()
        };
        assert_eq!(store.generation.members.len(), 2);
        g.stored(2, Ok(()), now);
        assert_eq!((sa.try_recv().unwrap().unwrap(), sb.try_recv().unwrap().unwrap()), (Bytes::from_static(b"A"), Bytes::from_static(b"B")));
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.heartbeat(&b, None, 1, now), Err(ResponseError::IllegalGeneration));
        assert_eq!(g.heartbeat("nobody", None, 2, now), Err(ResponseError::UnknownMemberId));
        g.leave(&b, None, now).unwrap();
        assert_eq!(g.heartbeat(&a, None, 2, now), Err(ResponseError::RebalanceInProgress));
    }

    #[test]
    fn a_silent_member_is_removed_after_its_session_timeout() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, _ra) = join_new(&mut g, &["range"], now);
        let (Reply::Later(_), Some(_)) = g.sync(&a, None, 1, vec![], now).unwrap() else { panic!() };
        g.stored(1, Ok(()), now);
        assert!(g.tick(now + Duration::from_secs(9)).is_none());
        assert_eq!(g.members.len(), 1);
        let store = g.tick(now + Duration::from_secs(11)).expect("the empty generation is stored");
        assert!(store.generation.members.is_empty());
        assert_eq!((g.state, g.generation), (GroupState::Empty, 2));
    }

    #[test]
    fn no_common_protocol_is_refused() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let _ = join_new(&mut g, &["range"], now);
        let r = now_result(g.join(join_request("", &["roundrobin"]), now, Duration::ZERO));
        assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
    }

    fn static_join(member: &str) -> JoinRequest {
        JoinRequest { instance_id: Some("i-1".into()), ..join_request(member, &["range"]) }
    }

    /// A group at generation 2, stored: a leader assigned "L" and static
    /// member "i-1" assigned "S"; the static member's id.
    fn with_static_member(now: Instant) -> (Group, String) {
        let mut g = Group::new("g");
        let (leader, _) = join_new(&mut g, &["range"], now);
        let Joined::Reply(Reply::Later(_)) = g.join(static_join(""), now, Duration::ZERO) else { panic!() };
        let old = g.instances["i-1"].clone();
        let Joined::Reply(Reply::Later(_)) = g.join(join_request(&leader, &["range"]), now, Duration::ZERO) else { panic!() };
        let assignments = vec![(leader.clone(), Bytes::from_static(b"L")), (old.clone(), Bytes::from_static(b"S"))];
        let (_, Some(_)) = g.sync(&leader, None, 2, assignments, now).unwrap() else { panic!() };
        g.stored(2, Ok(()), now);
        (g, old)
    }

    #[test]
    fn a_static_member_rejoining_keeps_its_assignment_and_fences_the_old_id() {
        let now = Instant::now();
        let (mut g, old) = with_static_member(now);
        // The static member restarts: a new id, the same generation, no
        // rebalance, answered once the group is stored with the new id.
        let Joined::Static(rejoin) = g.join(static_join(""), now, Duration::ZERO) else { panic!("the new id must be stored first") };
        let r = rejoin.answer.clone();
        assert_eq!((r.error, r.generation), (None, 2));
        let stored: Vec<(&str, Option<&str>)> = rejoin.store.generation.members.iter().map(|m| (m.member_id.as_str(), m.instance_id.as_deref())).collect();
        assert!(stored.contains(&(r.member_id.as_str(), Some("i-1"))) && !stored.iter().any(|(id, _)| *id == old), "{stored:?}");
        assert_eq!(g.state, GroupState::Stable);
        let (Reply::Now(Ok(assignment)), None) = g.sync(&r.member_id, Some("i-1"), 2, vec![], now).unwrap() else { panic!() };
        assert_eq!(assignment, Bytes::from_static(b"S"));
        assert_eq!(g.heartbeat(&old, Some("i-1"), 2, now), Err(ResponseError::FencedInstanceId));
        // A group resumed from that store knows the member by its new id.
        let resumed = Group::resume("g", &rejoin.store.generation, now);
        assert_eq!(resumed.check_member(&r.member_id, Some("i-1"), Some(2)), Ok(()));
        assert_eq!(resumed.check_member(&old, Some("i-1"), Some(2)), Err(ResponseError::FencedInstanceId));
    }

    #[test]
    fn a_static_rejoin_whose_store_fails_gives_the_member_its_old_id_back() {
        let now = Instant::now();
        let (mut g, old) = with_static_member(now);
        let rejoin_request = JoinRequest { client_id: "restarted".into(), session_timeout: Duration::from_secs(45), ..static_join("") };
        let Joined::Static(rejoin) = g.join(rejoin_request, now, Duration::ZERO) else { panic!() };
        let new_id = rejoin.answer.member_id.clone();
        g.static_rejoin_failed(*rejoin);
        assert_eq!(g.heartbeat(&old, Some("i-1"), 2, now), Ok(()), "the old id is the member again");
        assert_eq!(g.heartbeat(&new_id, Some("i-1"), 2, now), Err(ResponseError::FencedInstanceId));
        let member = &g.members[&old];
        assert_eq!((member.client_id.as_str(), member.session_timeout, &member.assignment[..]), ("c", Duration::from_secs(10), &b"S"[..]));
    }

    /// Issue 13: after the last member left, the group stayed
    /// PreparingRebalance until the next tick, and DeleteGroups right after
    /// the consumer closed answered NON_EMPTY_GROUP.
    #[test]
    fn the_last_member_leaving_empties_the_group_at_once() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, _ra) = join_new(&mut g, &["range"], now);
        let (Reply::Later(_), Some(_)) = g.sync(&a, None, 1, vec![], now).unwrap() else { panic!() };
        g.stored(1, Ok(()), now);
        assert_eq!(g.leave(&a, None, now), Ok(a.clone()));
        let store = g.maybe_complete_join(now).expect("the empty generation is stored");
        assert!(store.generation.members.is_empty());
        assert_eq!((g.state, g.generation), (GroupState::Empty, 2));
        assert!(g.is_empty());
    }

    #[test]
    fn the_first_join_delay_waits_for_more_members() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let delay = Duration::from_secs(3);
        let first = now_result(g.join(join_request("", &["range"]), now, delay));
        let Joined::Reply(Reply::Later(mut rx)) = g.join(join_request(&first.member_id, &["range"]), now, delay) else { panic!() };
        assert!(rx.try_recv().is_err());
        assert!(g.tick(now + Duration::from_secs(2)).is_none());
        assert!(rx.try_recv().is_err(), "still inside the delay");
        g.tick(now + Duration::from_secs(4));
        assert_eq!(rx.try_recv().unwrap().generation, 1);
    }
}
