//! How a broker reaches the metadata: through the controller in its own
//! process, or, on a broker-only node, through a controller node over gRPC
//! (a resumable watch stream of the applied state, proposals and heartbeats).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runnel_rpc::controller::controller_client::ControllerClient;
use runnel_rpc::controller::{HeartbeatRequest, ProposeRequest, WatchRequest};
use tokio::sync::watch;

use crate::controller::{Controller, PROPOSE_TIMEOUT, ProposeError};
use crate::identity::{LocalIdentity, PeerChannel, Refusal};
use crate::metadata::{Command, CommandResult};
use crate::network::{MESSAGE_BYTES_MAX, channel};
use crate::store::AppliedState;
use crate::types::{NodeId, TypeConfig, decode, encode};
use openraft::Entry;

/// Where a broker gets metadata and sends changes.
#[derive(Clone)]
pub enum Metadata {
    /// This node runs a controller voter.
    Local(Arc<Controller>),
    /// A broker-only node following a controller over gRPC.
    Remote(Arc<RemoteController>),
}

impl Metadata {
    pub fn subscribe(&self) -> watch::Receiver<Arc<AppliedState>> {
        match self {
            Metadata::Local(c) => c.subscribe(),
            Metadata::Remote(r) => r.published.subscribe(),
        }
    }

    pub fn state(&self) -> Arc<AppliedState> {
        self.subscribe().borrow().clone()
    }

    /// Proposes on the controller leader; returns once applied here.
    pub async fn propose(&self, command: Command) -> Result<CommandResult, ProposeError> {
        match self {
            Metadata::Local(c) => c.propose(command).await,
            Metadata::Remote(r) => r.propose(command).await,
        }
    }

    /// Sends a broker heartbeat to the leader; whether the broker is denied
    /// a lease (fenced, or behind on metadata), if a leader answered.
    pub async fn heartbeat(&self, beat: HeartbeatRequest) -> Option<bool> {
        match self {
            Metadata::Local(c) => c.heartbeat(beat).await,
            Metadata::Remote(r) => r.heartbeat(beat).await,
        }
    }

    /// The controller leader's id and gRPC address, as far as known here.
    pub fn leader(&self) -> (Option<NodeId>, Option<String>) {
        match self {
            Metadata::Local(c) => c.leader(),
            Metadata::Remote(r) => r.leader.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// The controller in this process, if any.
    pub fn local(&self) -> Option<&Arc<Controller>> {
        match self {
            Metadata::Local(c) => Some(c),
            Metadata::Remote(_) => None,
        }
    }

    /// Who this node is to its peers.
    pub fn identity(&self) -> &LocalIdentity {
        match self {
            Metadata::Local(c) => c.identity(),
            Metadata::Remote(r) => &r.identity,
        }
    }

    /// The check every gRPC service between nodes runs on its requests.
    /// The check for Raft RPCs: a node of no cluster yet that this node's
    /// membership does not know is refused (a new quorum forming with a
    /// running node's address must not reach its Raft core).
    pub fn peer_check(&self) -> PeerCheck {
        PeerCheck { metadata: self.clone(), joining: false }
    }

    /// The check for the controller and replication services: as
    /// [`Metadata::peer_check`], except that a node of no cluster yet may
    /// call them; that is how a new broker joins a running cluster (it
    /// learns the cluster id from the metadata stream).
    pub fn peer_check_joining(&self) -> PeerCheck {
        PeerCheck { metadata: self.clone(), joining: true }
    }

    /// The gRPC addresses of the controller voters.
    pub fn controller_addresses(&self) -> Vec<String> {
        match self {
            Metadata::Local(c) => c.state().membership.membership().nodes().map(|(_, n)| n.addr.clone()).collect(),
            Metadata::Remote(r) => r.quorum.clone(),
        }
    }
}

/// Why following a controller's metadata stream stopped.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Connect(#[from] ProposeError),
    #[error(transparent)]
    Rpc(#[from] tonic::Status),
    #[error("decode metadata: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("the metadata stream sent entry {got} where {expected} was next")]
    Gap { expected: u64, got: u64 },
}

/// Refuses requests between nodes whose identity does not fit this node's
/// (see [`crate::identity`]), before they reach the service.
#[derive(Clone)]
pub struct PeerCheck {
    metadata: Metadata,
    /// Whether a node of no cluster yet may call.
    joining: bool,
}

impl tonic::service::Interceptor for PeerCheck {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let state = self.metadata.state();
        let address_of = |id: NodeId| {
            state.membership.membership().get_node(&id).map(|n| n.addr.clone()).or_else(|| state.image.brokers.get(&id).map(|b| b.rpc_address.clone()))
        };
        match self.metadata.identity().check(request.metadata(), address_of) {
            Ok(()) => Ok(request),
            Err(Refusal::NoCluster { .. }) if self.joining => Ok(request),
            Err(refusal) => {
                refused(&refusal);
                Err(refusal.into())
            }
        }
    }
}

/// Logs a refused request, at most once a second per process.
fn refused(refusal: &Refusal) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        *last = Some(Instant::now());
        tracing::warn!(reason = %refusal, "refused a request from another node");
    }
}

/// A broker-only node's view of the controller quorum.
pub struct RemoteController {
    quorum: Vec<String>,
    published: watch::Sender<Arc<AppliedState>>,
    leader: Mutex<(Option<NodeId>, Option<String>)>,
    identity: LocalIdentity,
}

fn client(identity: &LocalIdentity, addr: &str) -> Result<ControllerClient<PeerChannel>, ProposeError> {
    let channel = channel(addr).map_err(|e| ProposeError::Other(e.to_string()))?;
    Ok(ControllerClient::new(identity.stamp(channel, None)).max_decoding_message_size(MESSAGE_BYTES_MAX))
}

impl RemoteController {
    /// `quorum`: the controller voters to follow.
    pub fn new(quorum: &BTreeMap<NodeId, String>, identity: LocalIdentity) -> Arc<RemoteController> {
        let (published, _) = watch::channel(Arc::new(AppliedState::default()));
        Arc::new(RemoteController { quorum: quorum.values().cloned().collect(), published, leader: Mutex::new((None, None)), identity })
    }

    /// Follows the committed metadata, moving to another controller when the
    /// stream breaks and resuming from the last index seen. Returns when
    /// `stop` completes.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut next = 0usize;
        let mut backoff = Duration::from_millis(100);
        let mut last_refusal = String::new();
        loop {
            let addr = self.quorum[next % self.quorum.len()].clone();
            next += 1;
            tokio::select! {
                _ = &mut stop => return,
                result = self.follow(&addr) => {
                    if let Err(FollowError::Rpc(s)) = &result
                        && s.code() == tonic::Code::FailedPrecondition
                    {
                        // The controllers refuse this node (another node's
                        // id, another cluster): say so, once per reason.
                        if s.message() != last_refusal {
                            last_refusal = s.message().to_string();
                            tracing::error!(%addr, reason = s.message(), "the controller quorum refuses this node; it cannot join until the reason is fixed");
                        }
                    } else if let Err(e) = result {
                        tracing::debug!(%addr, error = %e, "metadata stream ended; trying the next controller");
                    } else {
                        backoff = Duration::from_millis(100);
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn follow(&self, addr: &str) -> Result<(), FollowError> {
        let mut c = client(&self.identity, addr)?;
        let from_index = self.published.borrow().last_applied.map_or(0, |l| l.index);
        let mut stream = c.watch_metadata(WatchRequest { from_index, entries: true }).await?.into_inner();
        while let Some(update) = stream.message().await? {
            let state = if update.entries.is_empty() {
                crate::store::decode_state(&update.state)?
            } else {
                // The entries since the last message, applied here as the
                // controllers applied them.
                let mut state = AppliedState::clone(&self.published.borrow());
                for raw in &update.entries {
                    let entry: Entry<TypeConfig> = decode(raw)?;
                    let expected = state.last_applied.map_or(0, |l| l.index) + 1;
                    if entry.log_id.index != expected {
                        return Err(FollowError::Gap { expected, got: entry.log_id.index });
                    }
                    state.apply_entry(entry);
                }
                tracing::debug!(entries = update.entries.len(), index = update.applied_index, "applied metadata entries from the stream");
                state
            };
            self.published.send_replace(Arc::new(state));
        }
        Ok(())
    }

    async fn propose(&self, command: Command) -> Result<CommandResult, ProposeError> {
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        let request = ProposeRequest { command: encode(&command).map_err(|e| ProposeError::Other(e.to_string()))? };
        let mut attempt = 0usize;
        loop {
            if Instant::now() >= deadline {
                return Err(ProposeError::NoQuorum);
            }
            let target = self.leader.lock().unwrap_or_else(|p| p.into_inner()).1.clone().unwrap_or_else(|| self.quorum[attempt % self.quorum.len()].clone());
            attempt += 1;
            let reply = match client(&self.identity, &target) {
                Ok(mut c) => tokio::time::timeout(PROPOSE_TIMEOUT, c.propose(request.clone())).await,
                Err(e) => return Err(e),
            };
            match reply {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    if !r.result.is_empty() {
                        let result: CommandResult = decode(&r.result).map_err(|e| ProposeError::Other(format!("decode result: {e}")))?;
                        let mut rx = self.published.subscribe();
                        let applied = rx.wait_for(|s| s.last_applied.is_some_and(|l| l.index >= r.log_index));
                        let _ = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), applied).await;
                        return Ok(result);
                    }
                    let leader = Some(r.leader_rpc_address).filter(|a| !a.is_empty());
                    if r.error != "not the leader" && !r.error.is_empty() {
                        return Err(ProposeError::Other(r.error));
                    }
                    *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = (r.leader_id.map(NodeId), leader.clone());
                    if leader.is_none() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = (None, None);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn heartbeat(&self, beat: HeartbeatRequest) -> Option<bool> {
        let known = self.leader.lock().unwrap_or_else(|p| p.into_inner()).1.clone();
        let targets: Vec<String> = known.into_iter().chain(self.quorum.iter().cloned()).collect();
        for target in targets {
            let Ok(mut c) = client(&self.identity, &target) else { continue };
            let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_secs(2), c.heartbeat(beat.clone())).await else {
                continue;
            };
            let reply = reply.into_inner();
            let leader_address = Some(reply.leader_rpc_address.clone()).filter(|a| !a.is_empty());
            *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = (reply.leader_id.map(NodeId), leader_address.clone());
            if leader_address.as_deref() == Some(target.as_str()) {
                return Some(reply.fenced);
            }
        }
        None
    }
}
