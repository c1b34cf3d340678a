//! A running controller: the Raft node, proposals (forwarded to the leader
//! when this node is not it), and broker liveness (the leader fences brokers
//! whose heartbeats stop, or at whose gRPC address nothing listens any more,
//! and unfences them when they return).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use runnel_rpc::controller::controller_client::ControllerClient;
use runnel_rpc::controller::{HeartbeatRequest, ProposeRequest};
use runnel_rpc::raft::{PreVoteRequest, TakeLeadershipRequest};
use tokio::sync::watch;

use crate::identity::LocalIdentity;
use crate::metadata::{Command, CommandOk, CommandResult};
use crate::network::{MESSAGE_BYTES_MAX, Network, channel};
use crate::pre_vote::{self, VoterView};
use crate::store::{AppliedState, LogStore, StateMachine, open_db};
use crate::types::{NodeId, Raft, Request, decode, encode};

/// How long a proposal may wait for the quorum before the caller is told.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: NodeId,
    /// Where sled keeps the Raft log, vote and snapshots.
    pub raft_dir: PathBuf,
    /// The voters and their gRPC addresses, as `--controller-quorum` gives them.
    pub quorum: BTreeMap<NodeId, String>,
    /// A broker that misses heartbeats this long is fenced.
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// How often the leader checks that something listens at each live
    /// broker's gRPC address (a broker whose address refuses the connection
    /// is fenced at once); `None`: only the session timeout fences.
    pub probe_interval: Option<Duration>,
}

impl ControllerConfig {
    /// A broker that misses heartbeats this long is fenced.
    pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(6);
    /// How often the leader probes the live brokers' gRPC addresses.
    pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(250);

    pub fn new(node_id: NodeId, raft_dir: PathBuf, quorum: BTreeMap<NodeId, String>) -> Self {
        ControllerConfig {
            node_id,
            raft_dir,
            quorum,
            session_timeout: Self::DEFAULT_SESSION_TIMEOUT,
            heartbeat_interval: Duration::from_millis(150),
            // The maximum is also how long voters refuse to elect another
            // leader after hearing from theirs (openraft's leader lease), so
            // it bounds a gone leader's failover from below; silence from a
            // leader that is not gone starts a campaign after the lease plus
            // a random timeout between the two (1.8 to 2.4 s).
            election_timeout_min: Duration::from_millis(600),
            election_timeout_max: Duration::from_millis(1200),
            probe_interval: Some(Self::DEFAULT_PROBE_INTERVAL),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the controller leader (leader: {leader_id:?})")]
    NotLeader { leader_id: Option<NodeId>, leader_address: Option<String> },
    #[error("no controller leader: a majority of the controller quorum is not reachable")]
    NoQuorum,
    #[error("the controller quorum did not commit the change within {0:?}: a majority is not reachable")]
    Timeout(Duration),
    #[error("controller error: {0}")]
    Other(String),
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("create {0}: {1}")]
    CreateDir(PathBuf, std::io::Error),
    #[error("open the Raft store in {0}: {1}")]
    OpenStore(PathBuf, sled::Error),
    #[error(transparent)]
    StateMachine(#[from] crate::store::StoreError),
    #[error("start Raft: {0}")]
    Raft(String),
}

pub struct Controller {
    pub node_id: NodeId,
    pub raft: Raft,
    state_machine: StateMachine,
    /// The Raft log openraft writes, read here for pre-votes.
    log: LogStore,
    network: Network,
    identity: LocalIdentity,
    /// Set when shutdown begins.
    stopped: std::sync::atomic::AtomicBool,
    session_timeout: Duration,
    probe_interval: Option<Duration>,
    /// How long a heartbeat waits for a quorum to confirm this node leads.
    leadership_check_timeout: Duration,
    /// How long a voter refuses to vote after it last heard from its leader
    /// (openraft's leader lease: `election_timeout_max`).
    leader_lease: Duration,
    /// When this node last received AppendEntries (a heartbeat or entries)
    /// from a leader.
    leader_contact: Mutex<Option<Instant>>,
    /// Last heartbeat per broker, as seen by this node while it leads.
    heartbeats: Mutex<HashMap<NodeId, Heartbeat>>,
    /// The partition log sizes each broker last reported with a heartbeat
    /// (while this node leads; a new leader hears them within seconds).
    sizes: Mutex<HashMap<NodeId, HashMap<crate::balance::PartitionKey, u64>>>,
    /// Topic creations take turns on the leader, from the check of their
    /// names against the applied topics to their own apply.
    creations: tokio::sync::Mutex<()>,
    /// A handoff ask is in flight (see
    /// [`Controller::run_leadership_handoff`]): proposals wait, so the
    /// leader's log does not outgrow the candidate's meanwhile.
    handing_over: std::sync::atomic::AtomicBool,
}

/// A broker's last heartbeat on the leader.
#[derive(Debug, Clone, Copy)]
struct Heartbeat {
    at: Instant,
    /// The registration epoch the broker sent it with.
    epoch: u64,
    /// The broker reported its log directory failed.
    storage_failed: bool,
}

/// What the liveness check does about one broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    Keep,
    Fence(FenceCause),
    Unfence,
}

/// Why the liveness check fences a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FenceCause {
    /// No heartbeat for the session timeout.
    Silent,
    /// It reports a failed log directory.
    StorageFailed,
    /// Nothing listens at its gRPC address: its process is gone.
    Gone,
}

/// The liveness rule for broker `b`, whose last heartbeat to this node is
/// `beat`, on a leader since `since`; `gone` when the latest probe of the
/// broker's current registration found its gRPC address refusing
/// connections. A failed log directory counts only as reported to this
/// leader by the broker's current registration: an entry left from an
/// earlier term of this node's leadership, or from before the broker
/// restarted, says nothing about it now.
///
/// A broker is otherwise fenced only once its lease has run out; a gone one
/// is fenced at once (a new leader does not give it a session either), as
/// the process that held the lease can no longer serve under it. A fenced
/// broker is unfenced only while its address answers, so a broker whose
/// heartbeats get through while something refuses its gRPC connections is
/// not fenced and unfenced by turns.
fn liveness(b: &crate::records::BrokerRecord, beat: Option<&Heartbeat>, since: Instant, now: Instant, session_timeout: Duration, gone: bool) -> Liveness {
    // A new leader gives every broker a full session to reach it.
    let last = beat.map_or(since, |h| h.at.max(since));
    let alive = now.duration_since(last) < session_timeout;
    let heard_since_leading = beat.is_some_and(|h| h.at >= since);
    let storage_failed = beat.is_some_and(|h| h.storage_failed && h.at >= since && h.epoch == b.epoch);
    if !b.fenced && gone {
        Liveness::Fence(FenceCause::Gone)
    } else if !b.fenced && !alive {
        Liveness::Fence(FenceCause::Silent)
    } else if !b.fenced && storage_failed {
        Liveness::Fence(FenceCause::StorageFailed)
    } else if b.fenced && !b.shutting_down && alive && heard_since_leading && !storage_failed && !gone {
        Liveness::Unfence
    } else {
        Liveness::Keep
    }
}

/// How long a heartbeat waits for a quorum to confirm this node leads: long
/// enough for a follower's Raft log fsync that stalls behind other writes.
const LEADERSHIP_CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// How long after a gone leader's lease ends the first voter campaigns:
/// the other voters' leases (which began when the same heartbeat reached
/// them, give or take the network) have ended by then too.
const CAMPAIGN_MARGIN: Duration = Duration::from_millis(50);

/// How much later each further voter campaigns, if the first did not win.
const CAMPAIGN_TURN: Duration = Duration::from_millis(300);

/// How long a pre-vote waits for the other voters' answers.
const PRE_VOTE_TIMEOUT: Duration = Duration::from_millis(300);

/// How often a controller-only leader looks for a voter to hand
/// leadership to (see [`Controller::run_leadership_handoff`]).
const HANDOFF_PERIOD: Duration = Duration::from_millis(500);
/// The wait after an ask that did not move leadership; it doubles up to
/// [`HANDOFF_BACKOFF_MAX`], and starts again once a broker leads.
const HANDOFF_BACKOFF_MIN: Duration = Duration::from_secs(2);
const HANDOFF_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long the leader waits for the answer to an ask.
const HANDOFF_ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the election gate looks again (see
/// [`Controller::run_election_gate`]); well under the shortest election
/// timeout past the lease, so a gate that should open is open in time.
const ELECTION_GATE_PERIOD: Duration = Duration::from_millis(100);

/// Whether the connection to `addr` (HOST:PORT, through the address map)
/// is refused within `timeout`: the host answers, and nothing listens on
/// the port. A timeout, an unreachable host or a name that does not resolve
/// says nothing (a partition looks the same), and neither does a proxy in
/// between, which accepts whatever is behind it.
async fn refuses_connections(addr: &str, timeout: Duration) -> bool {
    let addr = crate::network::dial_address(addr).to_string();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// Whether a heartbeat gets no lease: the broker is fenced, its metadata is
/// older than its registration or unfencing, or it reports a failed log
/// directory (it must not lead while its disk fails, whatever the image
/// says until the fence is applied).
fn lease_denied(image: &crate::metadata::MetadataImage, beat: &HeartbeatRequest) -> bool {
    beat.storage_failed || !image.grants_lease(NodeId(beat.broker_id), beat.metadata_index)
}

impl Controller {
    /// Opens the Raft state and starts the Raft node. On the very first start
    /// of a quorum the membership is initialized from `quorum` (each voter
    /// does the same, which openraft accepts; later starts find it set).
    pub async fn start(config: ControllerConfig, identity: LocalIdentity) -> Result<Arc<Controller>, StartError> {
        let dir = config.raft_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| StartError::CreateDir(dir.clone(), e))?;
        let db = open_db(&dir).map_err(|e| StartError::OpenStore(dir.clone(), e))?;
        let log = LogStore::open(&db)?;
        let state_machine = StateMachine::open(&db)?;
        let raft_config = openraft::Config {
            cluster_name: "runnel".into(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: config.election_timeout_min.as_millis() as u64,
            election_timeout_max: config.election_timeout_max.as_millis() as u64,
            install_snapshot_timeout: 10_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
            max_in_snapshot_log_to_keep: 1_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(format!("configuration: {e}")))?;
        let network = Network::new(identity.clone());
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network.clone(), log.clone(), state_machine.clone())
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let initialized = raft.is_initialized().await.map_err(|e| StartError::Raft(format!("read its state: {e}")))?;
        if !initialized && config.quorum.contains_key(&config.node_id) {
            let members: BTreeMap<NodeId, BasicNode> = config.quorum.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(node_id = %config.node_id, voters = ?config.quorum, "initialized the controller quorum"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(StartError::Raft(format!("initialize the controller quorum: {e}"))),
            }
        }
        Ok(Arc::new(Controller {
            node_id: config.node_id,
            raft,
            state_machine,
            log,
            network,
            identity,
            stopped: std::sync::atomic::AtomicBool::new(false),
            session_timeout: config.session_timeout,
            probe_interval: config.probe_interval,
            leadership_check_timeout: LEADERSHIP_CHECK_TIMEOUT,
            leader_lease: config.election_timeout_max,
            leader_contact: Mutex::new(None),
            heartbeats: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
            creations: tokio::sync::Mutex::new(()),
            handing_over: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Every applied metadata state, as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<AppliedState>> {
        self.state_machine.subscribe()
    }

    /// The applied entries after index `after` up to index `upto`, encoded
    /// as the Raft log stores them, if this node still holds them (see
    /// [`crate::store::RECENT_ENTRIES`]).
    pub fn entries_between(&self, after: u64, upto: u64) -> Option<Vec<Arc<[u8]>>> {
        self.state_machine.entries_between(after, upto)
    }

    /// Keeps applied entries for a metadata stream while the guard lives.
    pub fn watch_entries(&self) -> crate::store::EntryWatcher {
        self.state_machine.watch_entries()
    }

    /// The current applied state.
    pub fn state(&self) -> Arc<AppliedState> {
        self.state_machine.subscribe().borrow().clone()
    }

    /// The leader's id and gRPC address, if one is known.
    pub fn leader(&self) -> (Option<NodeId>, Option<String>) {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader;
        let address = leader.and_then(|l| metrics.membership_config.membership().get_node(&l).map(|n| n.addr.clone()));
        (leader, address)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Proposes on this node, which must be the leader; returns the result
    /// and the log index of the committed entry.
    pub async fn propose_local(&self, command: Command) -> Result<(CommandResult, u64), ProposeError> {
        if self.is_stopped() {
            return Err(ProposeError::NotLeader { leader_id: None, leader_address: None });
        }
        self.wait_for_handoff().await;
        // Kafka answers TOPIC_ALREADY_EXISTS before it looks at configs: a
        // creation of a name in use is left to the apply to refuse.
        let exists = matches!(&command, Command::CreateTopic { name, .. } | Command::CreateTopicWithReplicas { name, .. }
            if self.state().image.topics.contains_key(name));
        if !exists && let Err(refused) = crate::configs::check_new_configs(&command) {
            let index = self.state().last_applied.map_or(0, |l| l.index);
            return Ok((Err(refused), index));
        }
        let mut _creating = None;
        if let Command::CreateTopic { name, .. } | Command::CreateTopicWithReplicas { name, .. } = &command
            && self.is_leader()
        {
            // Checked against every topic committed before, with no other
            // creation between the check and this one's apply (a new
            // leader may not have applied its predecessors' last entries).
            _creating = Some(self.creations.lock().await);
            if tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.ensure_linearizable()).await.is_ok_and(|r| r.is_ok())
                && let Err(refused) = crate::configs::check_topic_collision(name, self.state().image.topics.keys())
            {
                let index = self.state().last_applied.map_or(0, |l| l.index);
                return Ok((Err(refused), index));
            }
        }
        match tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.client_write(Request(command))).await {
            Err(_) => Err(ProposeError::Timeout(PROPOSE_TIMEOUT)),
            Ok(Ok(response)) => Ok((response.data.0.unwrap_or(Ok(CommandOk::Done)), response.log_id.index)),
            Ok(Err(e)) => match e.forward_to_leader() {
                Some(f) => Err(ProposeError::NotLeader { leader_id: f.leader_id, leader_address: f.leader_node.as_ref().map(|n| n.addr.clone()) }),
                None => Err(ProposeError::Other(e.to_string())),
            },
        }
    }

    /// Proposes a command on the leader, wherever it is, and returns its
    /// result once committed there and applied here (so the caller reads its
    /// own write from this node's metadata).
    pub async fn propose(&self, command: Command) -> Result<CommandResult, ProposeError> {
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        let (result, index) = self.propose_anywhere(command, deadline).await?;
        self.wait_applied(index, deadline).await;
        Ok(result)
    }

    /// Proposes only while this node leads Raft term `term` (never forwarded:
    /// the group coordinator's writes must fail once it stops leading);
    /// returns once applied here.
    pub async fn propose_in_term(&self, term: u64, command: Command) -> Result<CommandResult, ProposeError> {
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            if m.state != ServerState::Leader || m.current_term != term {
                return Err(ProposeError::NotLeader { leader_id: m.current_leader, leader_address: None });
            }
        }
        let (result, index) = self.propose_local(command).await?;
        self.wait_applied(index, deadline).await;
        Ok(result)
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) {
        let mut rx = self.state_machine.subscribe();
        let applied = rx.wait_for(|s| s.last_applied.is_some_and(|l| l.index >= index));
        if tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), applied).await.is_err() {
            tracing::warn!(index, "committed, but not yet applied on this node");
        }
    }

    async fn propose_anywhere(&self, command: Command, deadline: Instant) -> Result<(CommandResult, u64), ProposeError> {
        loop {
            let outcome = match self.propose_local(command.clone()).await {
                Err(ProposeError::NotLeader { leader_id: Some(id), leader_address: Some(addr) }) if id != self.node_id => {
                    self.propose_remote(id, &addr, &command).await
                }
                other => other,
            };
            match outcome {
                Err(ProposeError::NotLeader { .. }) if Instant::now() < deadline => {
                    // An election is under way: ask again shortly.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(ProposeError::NotLeader { .. }) => return Err(ProposeError::NoQuorum),
                other => return other,
            }
        }
    }

    async fn propose_remote(&self, leader: NodeId, addr: &str, command: &Command) -> Result<(CommandResult, u64), ProposeError> {
        let channel = channel(addr).map_err(|e| ProposeError::Other(e.to_string()))?;
        let mut client = ControllerClient::new(self.identity.stamp(channel, Some(leader))).max_decoding_message_size(MESSAGE_BYTES_MAX);
        let request = ProposeRequest { command: encode(command).map_err(|e| ProposeError::Other(e.to_string()))? };
        let reply = match tokio::time::timeout(PROPOSE_TIMEOUT, client.propose(request)).await {
            Err(_) => return Err(ProposeError::Timeout(PROPOSE_TIMEOUT)),
            Ok(Err(status)) => {
                tracing::debug!(%addr, error = %status, "forwarding a proposal failed");
                return Err(ProposeError::NotLeader { leader_id: None, leader_address: None });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        if !reply.result.is_empty() {
            let result = decode(&reply.result).map_err(|e| ProposeError::Other(format!("decode result: {e}")))?;
            return Ok((result, reply.log_index));
        }
        if reply.error == "not the leader" {
            return Err(ProposeError::NotLeader {
                leader_id: reply.leader_id.map(NodeId),
                leader_address: Some(reply.leader_rpc_address).filter(|a| !a.is_empty()),
            });
        }
        Err(ProposeError::Other(reply.error))
    }

    /// Records a broker heartbeat on the leader; returns whether the broker
    /// is denied a lease (fenced, or its metadata older than its unfencing),
    /// or `None` if a quorum did not confirm in time that this node still
    /// leads.
    ///
    /// An accepted heartbeat extends the broker's lease (the session timeout
    /// from when it sent it), so only a leader a quorum still follows may
    /// accept one: a leader cut off from the others keeps believing it leads
    /// until it hears of a newer term, and without this check it would keep
    /// the lease of a broker beside it alive while the new leader fences that
    /// broker and moves its partitions. With it, every voter that confirmed
    /// did so after the broker sent the heartbeat, so no new leader can be
    /// elected, and then let the session run out, before that lease ends.
    pub async fn record_heartbeat(&self, beat: &HeartbeatRequest) -> Option<bool> {
        if self.is_stopped() {
            return None;
        }
        let broker_id = NodeId(beat.broker_id);
        let read_log_id = match tokio::time::timeout(self.leadership_check_timeout, self.raft.get_read_log_id()).await {
            Ok(Ok((read_log_id, _))) => read_log_id,
            Ok(Err(e)) => {
                tracing::debug!(broker = %broker_id, error = %e, "heartbeat refused: leadership not confirmed");
                return None;
            }
            Err(_) => {
                tracing::debug!(broker = %broker_id, "heartbeat refused: no quorum confirmed this node's leadership in time");
                return None;
            }
        };
        // A new leader may not have applied everything its predecessors
        // committed (a FenceBroker among it): decide on the image only once
        // it has.
        if let Some(read) = read_log_id {
            let applied = self.raft.wait(Some(self.leadership_check_timeout)).applied_index_at_least(Some(read.index), "heartbeat").await;
            if applied.is_err() {
                tracing::debug!(broker = %broker_id, index = read.index, "heartbeat refused: this leader has not applied the committed log yet");
                return None;
            }
        }
        let seen = Heartbeat { at: Instant::now(), epoch: beat.broker_epoch, storage_failed: beat.storage_failed };
        self.heartbeats.lock().unwrap_or_else(|p| p.into_inner()).insert(broker_id, seen);
        if beat.sizes_reported {
            let sizes = beat.sizes.iter().map(|s| ((s.topic.clone(), s.partition), s.bytes)).collect();
            self.sizes.lock().unwrap_or_else(|p| p.into_inner()).insert(broker_id, sizes);
        }
        Some(lease_denied(&self.state().image, beat))
    }

    /// The partition log sizes each broker last reported: `(broker,
    /// (topic, partition), bytes)`. Empty unless this node leads.
    pub fn reported_sizes(&self) -> Vec<crate::balance::Reported> {
        let state = self.state();
        let sizes = self.sizes.lock().unwrap_or_else(|p| p.into_inner());
        // An unregistered broker's last report is no one's any more.
        let registered = sizes.iter().filter(|(id, _)| state.image.brokers.contains_key(id));
        registered.flat_map(|(id, s)| s.iter().map(move |(key, bytes)| (*id, key.clone(), *bytes))).collect()
    }

    /// Sends this node's broker heartbeat to the leader (locally when it is
    /// the leader). Returns whether the broker is denied a lease, if a
    /// leader answered.
    pub async fn heartbeat(&self, beat: HeartbeatRequest) -> Option<bool> {
        let (leader, address) = self.leader();
        let leader = leader?;
        if leader == self.node_id {
            return self.record_heartbeat(&beat).await;
        }
        let mut client = ControllerClient::new(self.identity.stamp(channel(&address?).ok()?, Some(leader)));
        let reply = tokio::time::timeout(Duration::from_secs(2), client.heartbeat(beat)).await.ok()?.ok()?;
        let reply = reply.into_inner();
        (reply.leader_id == Some(leader.0)).then_some(reply.fenced)
    }

    /// On the leader: fences brokers whose heartbeats stopped for the session
    /// timeout, whose gRPC address refuses connections (with a probe
    /// interval set), or that report a failed log directory, and unfences
    /// fenced brokers that heartbeat again with healthy storage. Returns when
    /// `stop` completes.
    pub async fn run_liveness(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut leading_since: Option<Instant> = None;
        let period = self.probe_interval.map_or(Duration::from_millis(250), |p| p.min(Duration::from_millis(250)));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_probe: Option<Instant> = None;
        // The last probe's refusals, kept until the next probe: a tick
        // without a probe must not take a broker for back.
        let mut gone: HashMap<NodeId, u64> = HashMap::new();
        // The leader contact a campaign was started after: one campaign per
        // gone leader.
        let mut campaigned: Option<Instant> = None;
        let mut won = false;
        loop {
            // A campaign just won: the new leader's first probe goes now,
            // not a tick later.
            if !std::mem::take(&mut won) {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tick.tick() => {}
                }
            }
            if !self.is_leader() {
                leading_since = None;
                last_probe = None;
                gone.clear();
                won = self.campaign_if_leader_gone(period, &mut campaigned).await;
                continue;
            }
            let state = self.state();
            if self.probe_interval.is_some_and(|p| last_probe.is_none_or(|at| at.elapsed() >= p)) {
                last_probe = Some(Instant::now());
                gone = self.probe_brokers(&state.image, period).await;
            }
            let now = Instant::now();
            let since = *leading_since.get_or_insert(now);
            let mut to_fence = Vec::new();
            let mut to_unfence = Vec::new();
            {
                let heartbeats = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
                for b in state.image.brokers.values() {
                    let gone = gone.get(&b.id) == Some(&b.epoch);
                    match liveness(b, heartbeats.get(&b.id), since, now, self.session_timeout, gone) {
                        Liveness::Fence(cause) => to_fence.push((b.id, cause)),
                        Liveness::Unfence => to_unfence.push(b.id),
                        Liveness::Keep => {}
                    }
                }
            }
            for (id, cause) in to_fence {
                if cause == FenceCause::Gone {
                    // Its heartbeats came from the process that is gone:
                    // only a heartbeat sent after this may unfence it.
                    self.heartbeats.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                }
                match cause {
                    FenceCause::Silent => tracing::warn!(broker = %id, timeout = ?self.session_timeout, "broker missed its session timeout; fencing it"),
                    FenceCause::StorageFailed => tracing::warn!(broker = %id, "broker reports its log directory failed; fencing it until it recovers"),
                    FenceCause::Gone => tracing::warn!(broker = %id, "nothing listens at the broker's gRPC address any more (connection refused); fencing it"),
                }
                if let Err(e) = self.propose_local(Command::FenceBroker { id }).await {
                    tracing::warn!(broker = %id, error = %e, "could not fence broker");
                }
            }
            for id in to_unfence {
                tracing::info!(broker = %id, "fenced broker is heartbeating again with healthy storage; unfencing it");
                if let Err(e) = self.propose_local(Command::UnfenceBroker { id }).await {
                    tracing::warn!(broker = %id, error = %e, "could not unfence broker");
                }
            }
        }
    }

    /// Notes that AppendEntries from a leader arrived (the Raft service
    /// calls it), the start of that leader's lease on this voter.
    pub fn note_leader_contact(&self) {
        *self.leader_contact.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn last_leader_contact(&self) -> Option<Instant> {
        *self.leader_contact.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// On a voter that follows: when nothing listens at the Raft leader's
    /// gRPC address any more (connection refused: its process is gone),
    /// campaigns as soon as the leader's lease has run out on the voters,
    /// instead of openraft's timer, which waits a random election timeout
    /// on top of the lease (0.6 to 1.2 s more by default). The voters left
    /// take turns by node id, so two of them do not split the vote by
    /// campaigning at once; openraft's timer stays the fallback. A leader
    /// that is silent but not gone (paused, cut off) is left to the timer.
    /// Returns whether this node won such a campaign. `campaigned` is the
    /// leader contact the last campaign followed: one campaign per gone
    /// leader.
    async fn campaign_if_leader_gone(&self, probe_timeout: Duration, campaigned: &mut Option<Instant>) -> bool {
        if self.probe_interval.is_none() {
            return false;
        }
        let metrics = self.raft.metrics().borrow().clone();
        let Some(leader) = metrics.current_leader.filter(|l| *l != self.node_id) else { return false };
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let Some(address) = membership.get_node(&leader).map(|n| n.addr.clone()) else { return false };
        let Some(heard) = self.last_leader_contact().filter(|h| *campaigned != Some(*h)) else { return false };
        if !voters.contains(&self.node_id) || !refuses_connections(&address, probe_timeout).await {
            return false;
        }
        let turn = voters.iter().filter(|v| **v != leader && **v < self.node_id).count() as u32;
        let at = heard + self.leader_lease + CAMPAIGN_MARGIN + CAMPAIGN_TURN * turn;
        tokio::time::sleep_until(at.into()).await;
        // Still following that leader, and still nothing from it.
        let now = self.raft.metrics().borrow().clone();
        if now.current_leader != Some(leader) || now.state != ServerState::Follower || self.last_leader_contact() != Some(heard) {
            return false;
        }
        *campaigned = Some(heard);
        if !self.pre_vote().await {
            return false;
        }
        tracing::info!(%leader, "nothing listens at the controller leader's gRPC address and its lease has run out; campaigning now");
        if let Err(e) = self.raft.trigger().elect().await {
            tracing::debug!(error = %e, "could not start a campaign");
            return false;
        }
        // The votes come back within a round trip, or not at all.
        let mut metrics = self.raft.metrics();
        let elected = tokio::time::timeout(probe_timeout, metrics.wait_for(|m| m.state == ServerState::Leader)).await;
        matches!(elected, Ok(Ok(_)))
    }

    /// The leader this voter follows and heard from within the leader
    /// lease (the lease openraft's real vote honours too).
    async fn following(&self) -> Option<NodeId> {
        let lease = self.leader_lease;
        let heard = self.raft.with_raft_state(|st| (st.vote_ref().is_committed(), st.vote_ref().leader_id().voted_for(), st.vote_last_modified())).await;
        match heard {
            Ok((true, Some(leader), Some(at))) if leader != self.node_id && at.elapsed() < lease => Some(leader),
            _ => None,
        }
    }

    async fn last_log(&self) -> Option<openraft::LogId<NodeId>> {
        use openraft::storage::RaftLogStorage;
        self.log.clone().get_log_state().await.ok().and_then(|s| s.last_log_id)
    }

    /// What this node would answer a pre-vote now.
    pub async fn voter_view(&self) -> VoterView {
        let metrics = self.raft.metrics().borrow().clone();
        let lease_ms = self.leader_lease.as_millis() as u64;
        VoterView {
            node_id: self.node_id,
            leading_confirmed: metrics.state == ServerState::Leader && metrics.millis_since_quorum_ack.is_some_and(|ms| ms <= lease_ms),
            following: self.following().await,
            last_log: self.last_log().await,
        }
    }

    /// Asks the other voters whether they would vote for this node now;
    /// whether a majority, this node included, would (see
    /// [`crate::pre_vote`]).
    pub async fn pre_vote(&self) -> bool {
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if !voters.contains(&self.node_id) {
            return false;
        }
        let request = PreVoteRequest { candidate: self.node_id.0, last_log: pre_vote::to_position(self.last_log().await) };
        let mut asks = tokio::task::JoinSet::new();
        for voter in voters.iter().copied().filter(|v| *v != self.node_id) {
            let Some(address) = membership.get_node(&voter).map(|n| n.addr.clone()) else { continue };
            let network = self.network.clone();
            asks.spawn(async move { (voter, tokio::time::timeout(PRE_VOTE_TIMEOUT, network.pre_vote(voter, &address, request)).await) });
        }
        let mut granted = 1;
        let mut refusals = Vec::new();
        while !pre_vote::wins(granted, voters.len()) {
            let Some(Ok((voter, answer))) = asks.join_next().await else { break };
            match answer {
                Ok(Ok(reply)) if reply.granted => granted += 1,
                Ok(Ok(reply)) => refusals.push(format!("node {}: {}", voter.0, reply.reason)),
                // A node of an earlier version has no pre-vote and votes as before.
                Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => granted += 1,
                Ok(Err(status)) => refusals.push(format!("node {}: {}", voter.0, status.message())),
                Err(_) => refusals.push(format!("node {}: no answer within {PRE_VOTE_TIMEOUT:?}", voter.0)),
            }
        }
        let won = pre_vote::wins(granted, voters.len());
        if !won {
            tracing::debug!(granted, voters = voters.len(), ?refusals, "pre-vote lost: not campaigning");
        }
        won
    }

    /// On a controller-only node (the caller knows the roles): while this
    /// node leads, hands leadership to a voter that is also a live,
    /// registered broker and holds every entry this node has, since the
    /// group and transaction coordinators run on the leader and this node
    /// serves no Kafka requests: with it leading, consumer groups and
    /// transactions would wait until leadership happened to move. Asks
    /// only once this node has led for twice the leader lease (its own
    /// vote refuses a candidate before that), and backs off between asks
    /// that did not move leadership. Returns when `stop` completes.
    pub async fn run_leadership_handoff(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut leading: Option<(u64, Instant)> = None;
        let mut next_ask = Instant::now();
        let mut backoff = HANDOFF_BACKOFF_MIN;
        let mut warned_quorum = false;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(HANDOFF_PERIOD) => {}
            }
            let metrics = self.raft.metrics().borrow().clone();
            if metrics.state != ServerState::Leader {
                // Handed over: the next time this node leads, it asks soon.
                if metrics.current_leader.is_some_and(|l| self.state().image.brokers.contains_key(&l)) {
                    backoff = HANDOFF_BACKOFF_MIN;
                }
                leading = None;
                continue;
            }
            let now = Instant::now();
            let since = match leading {
                Some((term, at)) if term == metrics.current_term => at,
                _ => {
                    leading = Some((metrics.current_term, now));
                    now
                }
            };
            if now < since + self.leader_lease * 2 || now < next_ask {
                continue;
            }
            let membership = metrics.membership_config.membership();
            // The candidate can count on two votes: its own and this
            // node's, whose lease ended; the others' leases are fresh.
            if !pre_vote::wins(2, membership.voter_ids().count()) {
                if !warned_quorum {
                    warned_quorum = true;
                    tracing::warn!(
                        "this controller-only node leads a quorum of more than three voters and cannot hand leadership to a broker; \
                         consumer groups and transactions wait until leadership moves (runnelctl controller transfer-leader)"
                    );
                }
                continue;
            }
            // No proposal lengthens the log while the candidate campaigns.
            self.handing_over.store(true, std::sync::atomic::Ordering::Release);
            let last_log = self.last_log().await;
            let image = self.state().image.clone();
            let caught_up = |v: &NodeId| metrics.replication.as_ref().and_then(|r| r.get(v)).is_some_and(|matched| *matched == last_log);
            let Some((target, address)) = membership
                .voter_ids()
                .filter(|v| *v != self.node_id && image.brokers.get(v).is_some_and(|b| !b.fenced) && caught_up(v))
                .find_map(|v| Some((v, membership.get_node(&v)?.addr.clone())))
            else {
                self.handing_over.store(false, std::sync::atomic::Ordering::Release);
                continue;
            };
            tracing::info!(%target, "this controller-only node leads: handing leadership to a voter that is a broker, where the coordinators run");
            let request = TakeLeadershipRequest { leader: self.node_id.0, last_log: pre_vote::to_position(last_log) };
            match tokio::time::timeout(HANDOFF_ASK_TIMEOUT, self.network.take_leadership(target, &address, request)).await {
                Ok(Ok(reply)) if reply.campaigning => {
                    // The candidate's votes come back within a round trip.
                    let mut watch = self.raft.metrics();
                    let _ = tokio::time::timeout(HANDOFF_ASK_TIMEOUT, watch.wait_for(|m| m.state != ServerState::Leader)).await;
                }
                Ok(Ok(reply)) => tracing::debug!(%target, reason = %reply.reason, "the voter asked to take leadership declined"),
                // A node of an earlier version cannot take it.
                Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => backoff = HANDOFF_BACKOFF_MAX,
                Ok(Err(status)) => tracing::debug!(%target, error = %status, "could not ask a voter to take leadership"),
                Err(_) => tracing::debug!(%target, "no answer from the voter asked to take leadership"),
            }
            self.handing_over.store(false, std::sync::atomic::Ordering::Release);
            next_ask = Instant::now() + backoff;
            backoff = (backoff * 2).min(HANDOFF_BACKOFF_MAX);
        }
    }

    /// Holds a proposal while a handoff ask is in flight (at most
    /// [`HANDOFF_ASK_TIMEOUT`] twice over: the ask, then the votes).
    async fn wait_for_handoff(&self) {
        let deadline = Instant::now() + HANDOFF_ASK_TIMEOUT * 2;
        while self.handing_over.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The leader `leader` asks this voter to take leadership over (see
    /// [`Controller::run_leadership_handoff`]): campaigns now if it follows
    /// `leader` and its log reaches `last_log`; else why not.
    pub async fn take_leadership_from(&self, leader: NodeId, last_log: Option<openraft::LogId<NodeId>>) -> Result<(), String> {
        let metrics = self.raft.metrics().borrow().clone();
        if !metrics.membership_config.membership().voter_ids().any(|v| v == self.node_id) {
            return Err(format!("node {} is not a voter", self.node_id.0));
        }
        if metrics.state != ServerState::Follower || metrics.current_leader != Some(leader) {
            return Err(format!("node {} does not follow node {}", self.node_id.0, leader.0));
        }
        let mine = self.last_log().await;
        if mine < last_log {
            return Err(format!("node {}'s log ends before the leader's", self.node_id.0));
        }
        tracing::info!(%leader, "the controller leader hands leadership over: campaigning now");
        self.raft.trigger().elect().await.map_err(|e| e.to_string())
    }

    /// Keeps openraft's election timer switched on only while this voter
    /// would win a pre-vote: while it follows a live leader, or a majority
    /// would not vote for it (it is cut off, or its log is behind), the
    /// timer stays off and its term does not rise. openraft still picks
    /// the moment of an election, and a leader or the only voter is left
    /// alone. Returns when `stop` completes.
    pub async fn run_election_gate(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        // openraft starts with its timer on.
        let mut open = true;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(ELECTION_GATE_PERIOD) => {}
            }
            let metrics = self.raft.metrics().borrow().clone();
            let voters = metrics.membership_config.membership().voter_ids().count();
            let leading_or_alone = metrics.state == ServerState::Leader || voters <= 1;
            let should_open = leading_or_alone || (self.following().await.is_none() && self.pre_vote().await);
            if should_open != open {
                open = should_open;
                self.raft.runtime_config().elect(open);
                if open && !leading_or_alone {
                    tracing::info!("no live leader, and a majority would vote for this node: its election timer is on");
                } else {
                    tracing::debug!(open, "election timer switched");
                }
            }
        }
    }

    /// Probes the gRPC address of every broker but this node, at once, each
    /// for at most `timeout`; returns the ones that refused the connection,
    /// each with the registration epoch it was probed under (a broker that
    /// registers again meanwhile is not judged by its previous life).
    async fn probe_brokers(&self, image: &crate::metadata::MetadataImage, timeout: Duration) -> HashMap<NodeId, u64> {
        let mut probes = tokio::task::JoinSet::new();
        for b in image.brokers.values().filter(|b| b.id != self.node_id) {
            let (id, epoch, address) = (b.id, b.epoch, b.rpc_address.clone());
            probes.spawn(async move { refuses_connections(&address, timeout).await.then_some((id, epoch)) });
        }
        let mut gone = HashMap::new();
        while let Some(probe) = probes.join_next().await {
            if let Ok(Some((id, epoch))) = probe {
                gone.insert(id, epoch);
            }
        }
        gone
    }

    /// Sets the cluster id once: the first leader of a new quorum proposes a
    /// fresh one, and every later leader finds it set. Returns when the id is
    /// in the applied metadata or `stop` completes.
    pub async fn run_bootstrap(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut changes = self.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            if self.state().image.cluster_id.is_some() {
                return;
            }
            if self.is_leader() {
                // A new cluster starts at the newest feature level this
                // binary supports, as Kafka formats a new cluster at its
                // release's metadata.version; a cluster made by an older
                // version keeps its level until `runnelctl cluster upgrade`.
                // Before the id, so nothing is written at a lower level.
                let newest = crate::features::LEVEL_MAX;
                if self.state().image.finalized_level() < newest
                    && let Err(e) = self.propose_local(Command::FinalizeFeatures { level: newest }).await
                {
                    tracing::debug!(error = %e, "could not set the new cluster's feature level yet");
                }
                let cluster_id = uuid::Uuid::new_v4().simple().to_string();
                match self.propose_local(Command::InitCluster { cluster_id }).await {
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "could not set the cluster id yet"),
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
                _ = changes.changed() => {}
            }
        }
    }

    /// Adds a voter (as a learner first, caught up, then promoted).
    pub async fn add_voter(&self, id: NodeId, address: String) -> Result<(), ProposeError> {
        let map = |e: RaftError<NodeId, openraft::error::ClientWriteError<NodeId, BasicNode>>| match e.forward_to_leader() {
            Some(f) => ProposeError::NotLeader { leader_id: f.leader_id, leader_address: f.leader_node.as_ref().map(|n| n.addr.clone()) },
            None => ProposeError::Other(e.to_string()),
        };
        self.raft.add_learner(id, BasicNode::new(address), true).await.map_err(map)?;
        self.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await.map_err(map)?;
        Ok(())
    }

    pub async fn remove_voter(&self, id: NodeId) -> Result<(), ProposeError> {
        let result = self.raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false).await;
        result.map(|_| ()).map_err(|e| match e.forward_to_leader() {
            Some(f) => ProposeError::NotLeader { leader_id: f.leader_id, leader_address: f.leader_node.as_ref().map(|n| n.addr.clone()) },
            None => ProposeError::Other(e.to_string()),
        })
    }

    /// Starts an election on this node (used to move leadership here).
    pub async fn campaign(&self) -> Result<(), openraft::error::Fatal<NodeId>> {
        self.raft.trigger().elect().await
    }

    /// Stops the Raft node. Requests that arrive from now on are refused
    /// before they reach it.
    pub async fn shutdown(&self) {
        self.stopped.store(true, std::sync::atomic::Ordering::Release);
        let _ = self.raft.shutdown().await;
    }

    /// Whether [`Controller::shutdown`] has begun.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Who this node is to its peers.
    pub fn identity(&self) -> &LocalIdentity {
        &self.identity
    }

    /// The channel cache is shared with the Raft network.
    pub fn network(&self) -> &Network {
        &self.network
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Command, MetadataImage};

    /// Issue 14, part 2, fault 6: a heartbeat that reports a failed log
    /// directory was granted a lease as long as the fence was not applied.
    #[test]
    fn a_heartbeat_reporting_failed_storage_gets_no_lease() {
        let mut image = MetadataImage::default();
        image
            .apply_at(
                3,
                &Command::RegisterBroker { id: NodeId(1), kafka_host: "h".into(), kafka_port: 9092, external: None, rpc_address: "h:9093".into(), rack: None },
            )
            .unwrap();
        let beat = |storage_failed, metadata_index| HeartbeatRequest { broker_id: 1, broker_epoch: 1, storage_failed, metadata_index, ..Default::default() };
        assert!(!lease_denied(&image, &beat(false, 3)));
        assert!(lease_denied(&image, &beat(true, 3)), "a failed log directory must not lead");
        assert!(lease_denied(&image, &beat(false, 2)), "metadata older than the registration");
    }

    /// Issue 14, part 2, fault 5: a failed-storage report left in the
    /// heartbeat map fenced a healthy broker after this node led again, or
    /// after the broker restarted.
    #[test]
    fn a_stale_failed_storage_report_fences_no_one() {
        let t0 = Instant::now();
        let session = Duration::from_secs(6);
        let broker = |epoch, fenced| crate::records::BrokerRecord {
            id: NodeId(2),
            kafka_host: "h".into(),
            kafka_port: 9092,
            external: None,
            rpc_address: "h:9093".into(),
            rack: None,
            epoch,
            fenced,
            shutting_down: false,
            live_since_index: 0,
        };
        let failed = |at, epoch| Heartbeat { at, epoch, storage_failed: true };
        let later = t0 + Duration::from_secs(1);
        // Reported to this leadership by the current registration: fenced.
        assert_eq!(liveness(&broker(5, false), Some(&failed(later, 5)), t0, later, session, false), Liveness::Fence(FenceCause::StorageFailed));
        // Reported to an earlier leadership of this node: not.
        assert_eq!(liveness(&broker(5, false), Some(&failed(t0, 5)), later, later, session, false), Liveness::Keep);
        // Reported by the broker's previous life (it restarted since): not.
        assert_eq!(liveness(&broker(6, false), Some(&failed(later, 5)), t0, later, session, false), Liveness::Keep);
        // Fenced for its disk, heartbeating healthy again: unfenced.
        let healthy = Heartbeat { at: later, epoch: 6, storage_failed: false };
        assert_eq!(liveness(&broker(6, true), Some(&healthy), t0, later, session, false), Liveness::Unfence);
        // Silent past the session: fenced as dead.
        assert_eq!(liveness(&broker(6, false), Some(&healthy), t0, later + session, session, false), Liveness::Fence(FenceCause::Silent));
    }

    /// Issue 19, goal 3: a broker whose gRPC address refuses connections is
    /// fenced at once, within its lease and on a leader that has not given
    /// it a session yet, but not for a probe of its previous registration;
    /// and it is not unfenced while the refusals go on.
    #[test]
    fn a_broker_whose_address_refuses_is_fenced_at_once() {
        let t0 = Instant::now();
        let session = Duration::from_secs(6);
        let mut b = crate::records::BrokerRecord {
            id: NodeId(3),
            kafka_host: "h".into(),
            kafka_port: 9092,
            external: None,
            rpc_address: "h:9093".into(),
            rack: None,
            epoch: 4,
            fenced: false,
            shutting_down: false,
            live_since_index: 0,
        };
        let beat = Heartbeat { at: t0, epoch: 4, storage_failed: false };
        let soon = t0 + Duration::from_millis(300);
        // Heartbeating a moment ago, lease still running: fenced once gone.
        assert_eq!(liveness(&b, Some(&beat), t0, soon, session, false), Liveness::Keep);
        assert_eq!(liveness(&b, Some(&beat), t0, soon, session, true), Liveness::Fence(FenceCause::Gone));
        // A leader of a moment ago, which never heard from it: the same.
        assert_eq!(liveness(&b, None, soon, soon, session, true), Liveness::Fence(FenceCause::Gone));
        // Gone and silent: the probe is the cause it names.
        assert_eq!(liveness(&b, Some(&beat), t0, t0 + session, session, true), Liveness::Fence(FenceCause::Gone));
        // Fenced, heartbeating, but its address still refuses: stays fenced.
        b.fenced = true;
        let again = Heartbeat { at: soon, epoch: 4, storage_failed: false };
        assert_eq!(liveness(&b, Some(&again), t0, soon, session, true), Liveness::Keep);
        assert_eq!(liveness(&b, Some(&again), t0, soon, session, false), Liveness::Unfence);
    }

    /// The probe itself: a port nobody listens on refuses; a listening one
    /// does not; an address that does not resolve says nothing.
    #[tokio::test]
    async fn a_closed_port_refuses_and_an_open_one_does_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let wait = Duration::from_secs(2);
        assert!(!refuses_connections(&open, wait).await);
        assert!(refuses_connections(&closed, wait).await);
        assert!(!refuses_connections("no-such-host.invalid:9093", wait).await);
    }
}
