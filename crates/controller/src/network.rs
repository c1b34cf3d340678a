//! The Raft network over tonic: one lazily connected channel per peer
//! address, openraft's messages carried as bincode inside `RaftMessage`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use runnel_rpc::raft::raft_client::RaftClient;
use runnel_rpc::raft::{PreVoteReply, PreVoteRequest, RaftMessage, TakeLeadershipReply, TakeLeadershipRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use crate::identity::{LocalIdentity, PeerChannel};
use crate::tls::{RpcTls, TlsDialer};
use crate::types::{NodeId, TypeConfig, decode, encode};

/// Largest gRPC message between controllers (snapshot chunks are smaller).
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Peer addresses to dial through another address (a proxy or a NAT),
/// process-wide: `runnel serve --rpc-address-map FROM=TO,...`. The chaos
/// harness routes every link between nodes through its fault proxy this way.
static ADDRESS_MAP: std::sync::OnceLock<HashMap<String, String>> = std::sync::OnceLock::new();

/// Sets the address map once, at start-up.
pub fn set_address_map(map: HashMap<String, String>) {
    if !map.is_empty() && ADDRESS_MAP.set(map).is_err() {
        tracing::warn!("the gRPC address map was already set; keeping the first");
    }
}

/// The address to connect to for `addr`.
pub fn dial_address(addr: &str) -> &str {
    ADDRESS_MAP.get().and_then(|m| m.get(addr)).map_or(addr, String::as_str)
}

/// TLS for every gRPC connection this process makes to another node
/// (`--rpc-tls-*`): the cluster's CA to check the peer, this node's
/// certificate to present, both read again when their files change.
/// Process-wide like the address map, set once at start-up, so every link
/// (Raft, proposals, heartbeats, the metadata stream, replication, admin
/// forwarding) uses it.
static TLS: std::sync::OnceLock<Arc<RpcTls>> = std::sync::OnceLock::new();

/// Sets the TLS of links between nodes once, at start-up.
pub fn set_tls(tls: Arc<RpcTls>) {
    if TLS.set(tls).is_err() {
        tracing::warn!("the gRPC TLS settings were already set; keeping the first");
    }
}

/// An endpoint for a connection to the node at `addr` (HOST:PORT), through
/// the address map. Connect it with [`connect`] or [`connect_lazy`], which
/// add TLS when it is set.
pub fn endpoint(addr: &str) -> Result<Endpoint, InvalidAddress> {
    let addr = dial_address(addr);
    Endpoint::from_shared(format!("http://{addr}")).map_err(|e| InvalidAddress { address: addr.to_string(), message: e.to_string() })
}

/// Connects `endpoint` now, over TLS when set.
pub async fn connect(endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
    match TLS.get() {
        None => endpoint.connect().await,
        Some(tls) => endpoint.connect_with_connector(TlsDialer(tls.clone())).await,
    }
}

/// A channel to `endpoint` that connects at its first request (and again
/// whenever its connection is lost), over TLS when set.
pub fn connect_lazy(endpoint: Endpoint) -> Channel {
    match TLS.get() {
        None => endpoint.connect_lazy(),
        Some(tls) => endpoint.connect_with_connector_lazy(TlsDialer(tls.clone())),
    }
}

/// A peer address that is not a usable URI authority (HOST:PORT).
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid address {address:?}: {message}")]
pub struct InvalidAddress {
    pub address: String,
    pub message: String,
}

/// A lazily connected channel to `addr` (HOST:PORT), for the links between
/// nodes (Raft, proposals, heartbeats, replication).
///
/// HTTP/2 keepalive pings find a connection whose peer vanished without a
/// reset (a host gone from the network, a frozen process): without them
/// its requests only time out, the channel never reconnects (nor resolves
/// the name again), and the peer stays unreachable until TCP gives up,
/// minutes later.
pub fn channel(addr: &str) -> Result<Channel, InvalidAddress> {
    endpoint(addr).map(|e| {
        connect_lazy(
            e.connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(3))
                .keep_alive_while_idle(true),
        )
    })
}

/// gRPC clients of one kind for other nodes, one per node and address,
/// made on first use over [`channel`] and stamped with this node's
/// identity addressed to that node.
pub struct PeerClients<C> {
    clients: Mutex<HashMap<(NodeId, String), C>>,
}

impl<C: Clone> Default for PeerClients<C> {
    fn default() -> Self {
        PeerClients { clients: Mutex::new(HashMap::new()) }
    }
}

impl<C: Clone> PeerClients<C> {
    /// The client for node `target` at `address`; `make` wraps a new channel.
    pub fn get(&self, identity: &LocalIdentity, target: NodeId, address: &str, make: impl FnOnce(PeerChannel) -> C) -> Result<C, InvalidAddress> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let key = (target, address.to_string());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let c = make(identity.stamp(channel(address)?, Some(target)));
        clients.insert(key, c.clone());
        Ok(c)
    }
}

/// Creates Raft clients for peers, one per peer and address (see
/// [`PeerClients`]); every request carries this node's identity.
#[derive(Clone)]
pub struct Network {
    identity: LocalIdentity,
    clients: Arc<PeerClients<RaftClient<PeerChannel>>>,
}

impl Network {
    pub fn new(identity: LocalIdentity) -> Network {
        Network { identity, clients: Arc::default() }
    }

    fn client(&self, target: NodeId, address: &str) -> Result<RaftClient<PeerChannel>, InvalidAddress> {
        self.clients.get(&self.identity, target, address, |c| {
            RaftClient::new(c).max_decoding_message_size(MESSAGE_BYTES_MAX).max_encoding_message_size(MESSAGE_BYTES_MAX)
        })
    }

    /// Asks voter `target` at `address` whether it would vote for this node
    /// now (see [`crate::pre_vote`]).
    pub async fn pre_vote(&self, target: NodeId, address: &str, request: PreVoteRequest) -> Result<PreVoteReply, tonic::Status> {
        let mut client = self.client(target, address).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        client.pre_vote(request).await.map(tonic::Response::into_inner)
    }

    /// Asks voter `target` at `address` to campaign now and take over
    /// leadership from this node.
    pub async fn take_leadership(&self, target: NodeId, address: &str, request: TakeLeadershipRequest) -> Result<TakeLeadershipReply, tonic::Status> {
        let mut client = self.client(target, address).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        client.take_leadership(request).await.map(tonic::Response::into_inner)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer { target, client: self.client(target, &node.addr) }
    }
}

pub struct Peer {
    target: NodeId,
    client: Result<RaftClient<PeerChannel>, InvalidAddress>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Peer {
    async fn call<Req, Resp, E>(&mut self, request: &Req, method: Method) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(e))),
        };
        let payload = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let message = RaftMessage { payload };
        let reply = match method {
            Method::AppendEntries => client.append_entries(message).await,
            Method::Vote => client.vote(message).await,
            Method::InstallSnapshot => client.install_snapshot(message).await,
        };
        let reply = reply.map_err(|status| {
            let e = TransportError(format!("{}: {}", status.code(), status.message()));
            match status.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            }
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> = decode(&reply.into_inner().payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(&rpc, Method::AppendEntries).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(&rpc, Method::InstallSnapshot).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, _option: RPCOption) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(&rpc, Method::Vote).await
    }
}
