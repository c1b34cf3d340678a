//! The gRPC services a controller serves: Raft RPCs from its peers, and
//! proposals and heartbeats from brokers.

use std::sync::Arc;

use tokio_stream::Stream;

use runnel_rpc::controller::controller_server::Controller as ControllerApi;
use runnel_rpc::controller::{HeartbeatReply, HeartbeatRequest, MetadataUpdate, ProposeReply, ProposeRequest, WatchRequest};
use runnel_rpc::raft::raft_server::Raft as RaftApi;
use runnel_rpc::raft::{PreVoteReply, PreVoteRequest, RaftMessage, TakeLeadershipReply, TakeLeadershipRequest};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::controller::{Controller, ProposeError};
use crate::metadata::Command;
use crate::pre_vote;
use crate::types::{NodeId, TypeConfig, decode, encode};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

pub struct RaftService {
    pub controller: Arc<Controller>,
}

fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("undecodable message: {e}"))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = encode(value).map_err(|e| Status::internal(format!("encode reply: {e}")))?;
    Ok(Response::new(RaftMessage { payload }))
}

impl RaftService {
    /// A candidate's vote request, or a leader's entries or snapshot, from a
    /// node this node's membership does not name is refused before it
    /// reaches the Raft core (a node of another cluster at a colliding
    /// address, one of an earlier version that sends no identity). A node
    /// with no membership yet (joining as a learner) accepts its leader.
    fn check_sender(&self, vote: &openraft::Vote<NodeId>) -> Result<(), Status> {
        self.check_node(vote.leader_id().voted_for())
    }

    /// [`RaftService::check_sender`] by the sender's node id.
    fn check_node(&self, sender: Option<NodeId>) -> Result<(), Status> {
        if self.controller.is_stopped() {
            return Err(Status::unavailable("this node's controller is shutting down"));
        }
        let Some(sender) = sender else { return Ok(()) };
        let state = self.controller.state();
        let membership = state.membership.membership();
        if membership.nodes().next().is_none() || membership.get_node(&sender).is_some() || sender == self.controller.node_id {
            return Ok(());
        }
        Err(Status::failed_precondition(format!("refused: node {sender} is not a member of this node's controller quorum")))
    }
}

#[tonic::async_trait]
impl RaftApi for RaftService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&request.into_inner().payload).map_err(bad_request)?;
        self.check_sender(&rpc.vote)?;
        self.controller.note_leader_contact();
        reply(&self.controller.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&request.into_inner().payload).map_err(bad_request)?;
        self.check_sender(&rpc.vote)?;
        reply(&self.controller.raft.vote(rpc).await)
    }

    async fn pre_vote(&self, request: Request<PreVoteRequest>) -> Result<Response<PreVoteReply>, Status> {
        let request = request.into_inner();
        self.check_node(Some(NodeId(request.candidate)))?;
        let view = self.controller.voter_view().await;
        Ok(Response::new(pre_vote::reply(pre_vote::judge(&view, pre_vote::from_position(request.last_log)))))
    }

    async fn take_leadership(&self, request: Request<TakeLeadershipRequest>) -> Result<Response<TakeLeadershipReply>, Status> {
        let request = request.into_inner();
        self.check_node(Some(NodeId(request.leader)))?;
        let answer = self.controller.take_leadership_from(NodeId(request.leader), pre_vote::from_position(request.last_log)).await;
        Ok(Response::new(match answer {
            Ok(()) => TakeLeadershipReply { campaigning: true, reason: String::new() },
            Err(reason) => TakeLeadershipReply { campaigning: false, reason },
        }))
    }

    async fn install_snapshot(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&request.into_inner().payload).map_err(bad_request)?;
        self.check_sender(&rpc.vote)?;
        reply(&self.controller.raft.install_snapshot(rpc).await)
    }
}

pub struct ControllerService {
    pub controller: Arc<Controller>,
}

#[tonic::async_trait]
impl ControllerApi for ControllerService {
    type WatchMetadataStream = std::pin::Pin<Box<dyn Stream<Item = Result<MetadataUpdate, Status>> + Send>>;

    async fn watch_metadata(&self, request: Request<WatchRequest>) -> Result<Response<Self::WatchMetadataStream>, Status> {
        let request = request.into_inner();
        let (from, wants_entries) = (request.from_index, request.entries);
        let controller = self.controller.clone();
        // Entries are kept from now on while this stream lives; the first
        // message is the whole state anyway.
        let keeping = wants_entries.then(|| self.controller.watch_entries());
        let mut rx = self.controller.subscribe();
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(
            async move {
                let _keeping = keeping;
                // The watcher has seen index `from` already (0: nothing yet).
                let mut sent = (from > 0).then_some(from);
                loop {
                    let state = rx.borrow_and_update().clone();
                    let index = state.last_applied.map_or(0, |l| l.index);
                    if sent.is_none_or(|s| index > s) {
                        let entries = sent.filter(|_| wants_entries).and_then(|s| controller.entries_between(s, index));
                        let update = match entries {
                            Some(entries) => {
                                Ok(MetadataUpdate { applied_index: index, state: Vec::new(), entries: entries.iter().map(|e| e.to_vec()).collect() })
                            }
                            None => crate::store::encode_state(&state).map(|bytes| MetadataUpdate { applied_index: index, state: bytes, entries: Vec::new() }),
                        }
                        .map_err(|e| Status::internal(e.to_string()));
                        if tx.send(update).await.is_err() {
                            return;
                        }
                        sent = Some(index);
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            }
            .in_current_span(),
        );
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out))))
    }

    async fn propose(&self, request: Request<ProposeRequest>) -> Result<Response<ProposeReply>, Status> {
        let command: Command = decode(&request.into_inner().command).map_err(bad_request)?;
        let mut out = ProposeReply::default();
        // Only the leader commits; a follower says who leads instead of
        // forwarding again, so a proposal crosses at most one hop.
        match self.controller.propose_local(command).await {
            Ok((result, index)) => {
                out.result = encode(&result).map_err(|e| Status::internal(e.to_string()))?;
                out.log_index = index;
            }
            Err(ProposeError::NotLeader { leader_id, leader_address }) => {
                out.leader_id = leader_id.map(|l| l.0);
                out.leader_rpc_address = leader_address.unwrap_or_default();
                out.error = "not the leader".into();
            }
            Err(e) => out.error = e.to_string(),
        }
        Ok(Response::new(out))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatReply>, Status> {
        if self.controller.is_stopped() {
            return Err(Status::unavailable("this node's controller is shutting down"));
        }
        let r = request.into_inner();
        let (leader_id, leader_address) = self.controller.leader();
        let mut out = HeartbeatReply { fenced: false, leader_id: leader_id.map(|l| l.0), leader_rpc_address: leader_address.unwrap_or_default() };
        if leader_id == Some(self.controller.node_id) {
            let Some(fenced) = self.controller.record_heartbeat(&r).await else {
                return Err(Status::unavailable("no quorum confirmed that this node leads the controller"));
            };
            out.fenced = fenced;
        }
        Ok(Response::new(out))
    }
}
