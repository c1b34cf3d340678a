//! Who is talking between nodes. Every request one node sends another over
//! gRPC (Raft, proposals, heartbeats, the metadata stream, replication)
//! carries the sender's cluster id (once it has one), node id, advertised
//! address and incarnation, and the node id it means to reach. The receiver
//! checks them before the request reaches openraft or the replica manager,
//! so a node of another cluster that happens to dial this node's address (a
//! second `runnel dev` whose ports collide with a running one) is refused
//! instead of joining its elections and breaking its metadata.
//!
//! # The rule
//! A request is refused when:
//! - it names another node than this one as its target;
//! - it comes from a node of another cluster (both cluster ids known, different);
//! - it comes from a node of no cluster yet while this node belongs to one,
//!   and this node does not know the sender as a member (a forming
//!   cluster's votes must not reach a running one; a slow member of this
//!   cluster that has not applied the cluster id yet is heard);
//! - its sender claims a node id that this node's membership knows at
//!   another address.
//!
//! A node of no cluster yet accepts requests of a cluster: that is how a
//! new node joins (the leader's AppendEntries bring it the cluster id).
//! Requests without identity headers come from a node of an earlier
//! version; they are accepted so a rolling upgrade keeps working.

use std::sync::{Arc, RwLock};

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::records::NodeId;

const CLUSTER_ID: &str = "runnel-cluster-id";
const NODE_ID: &str = "runnel-node-id";
const NODE_ADDRESS: &str = "runnel-node-address";
const INCARNATION: &str = "runnel-incarnation";
const TARGET_NODE_ID: &str = "runnel-target-node-id";
/// The controller format of the bincode the request carries (the sender's
/// finalized feature level, at most [`crate::types::FORMAT_VERSION`]);
/// absent from nodes of before versions (format 1).
const FORMAT: &str = "runnel-format";

/// This node's identity as its peers see it. Cloning shares it.
#[derive(Debug, Clone)]
pub struct LocalIdentity(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    node_id: NodeId,
    /// Made once, when the data directory is first used: tells a restarted
    /// node (same data) from a new one with the same node id.
    incarnation: String,
    /// The gRPC address peers know this node by.
    address: RwLock<String>,
    cluster_id: RwLock<Option<String>>,
    /// The controller format this node writes: the cluster's finalized
    /// feature level, 1 until it knows one.
    format: std::sync::atomic::AtomicU32,
}

impl LocalIdentity {
    pub fn new(node_id: NodeId, incarnation: String, address: String, cluster_id: Option<String>) -> LocalIdentity {
        LocalIdentity(Arc::new(Inner {
            node_id,
            incarnation,
            address: RwLock::new(address),
            cluster_id: RwLock::new(cluster_id),
            format: std::sync::atomic::AtomicU32::new(1),
        }))
    }

    pub fn node_id(&self) -> NodeId {
        self.0.node_id
    }

    pub fn incarnation(&self) -> &str {
        &self.0.incarnation
    }

    pub fn address(&self) -> String {
        self.0.address.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the advertised address once the listener is bound (port 0).
    pub fn set_address(&self, address: String) {
        *self.0.address.write().unwrap_or_else(|p| p.into_inner()) = address;
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.0.cluster_id.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The format stamped on requests: the finalized feature level.
    pub fn format(&self) -> u32 {
        self.0.format.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_format(&self, format: u32) {
        self.0.format.fetch_max(format, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records the cluster id once this node has learned it.
    pub fn set_cluster_id(&self, cluster_id: &str) {
        let mut current = self.0.cluster_id.write().unwrap_or_else(|p| p.into_inner());
        if current.as_deref() != Some(cluster_id) {
            *current = Some(cluster_id.to_string());
        }
    }

    /// A channel whose every request carries this identity and `target`.
    pub fn stamp(&self, channel: Channel, target: Option<NodeId>) -> PeerChannel {
        InterceptedService::new(channel, Stamp { identity: self.clone(), target })
    }

    /// Checks an incoming request's identity against this node's; `address_of`
    /// gives the address this node's membership knows a node id by.
    pub fn check(&self, headers: &MetadataMap, address_of: impl Fn(NodeId) -> Option<String>) -> Result<(), Refusal> {
        let text = |key: &str| headers.get(key).and_then(|v| v.to_str().ok()).map(str::to_string);
        let Some(sender) = text(NODE_ID).and_then(|v| v.parse::<NodeId>().ok()) else {
            return Ok(()); // a node of an earlier version
        };
        if let Some(format) = text(FORMAT).and_then(|v| v.parse::<u32>().ok())
            && let Err(why) = crate::types::check_format(format, &format!("a request from node {sender}"))
        {
            return Err(Refusal::NewerFormat { sender, why });
        }
        if let Some(target) = text(TARGET_NODE_ID).and_then(|v| v.parse::<NodeId>().ok())
            && target != self.node_id()
        {
            return Err(Refusal::WrongNode { sender, target, me: self.node_id() });
        }
        let known = address_of(sender);
        let theirs = text(CLUSTER_ID);
        match (theirs, self.cluster_id()) {
            (Some(theirs), Some(mine)) if theirs != mine => return Err(Refusal::OtherCluster { sender, theirs, mine }),
            (None, Some(mine)) if known.is_none() => return Err(Refusal::NoCluster { sender, mine }),
            _ => {}
        }
        if let (Some(claimed), Some(known)) = (text(NODE_ADDRESS), known)
            && claimed != known
        {
            return Err(Refusal::Impostor { sender, claimed, known });
        }
        Ok(())
    }
}

/// Why a request between nodes is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a request for node {target} from node {sender} reached node {me}")]
    WrongNode { sender: NodeId, target: NodeId, me: NodeId },
    #[error("node {sender} belongs to cluster {theirs}, this node to cluster {mine}")]
    OtherCluster { sender: NodeId, theirs: String, mine: String },
    #[error("node {sender} belongs to no cluster yet (a new quorum forming?) and is no member of this node's cluster {mine}")]
    NoCluster { sender: NodeId, mine: String },
    #[error("{why}")]
    NewerFormat { sender: NodeId, why: String },
    #[error("a node claims to be node {sender} at {claimed}, but this cluster knows node {sender} at {known}: is a node id used twice?")]
    Impostor { sender: NodeId, claimed: String, known: String },
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        Status::failed_precondition(format!("refused: {r}"))
    }
}

/// A channel to a peer that stamps every request with this node's identity.
pub type PeerChannel = InterceptedService<Channel, Stamp>;

/// The interceptor behind [`PeerChannel`].
#[derive(Debug, Clone)]
pub struct Stamp {
    identity: LocalIdentity,
    target: Option<NodeId>,
}

impl Interceptor for Stamp {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let headers = request.metadata_mut();
        let mut set = |key: &'static str, value: String| {
            if let Ok(v) = MetadataValue::try_from(value) {
                headers.insert(key, v);
            }
        };
        set(NODE_ID, self.identity.node_id().to_string());
        set(NODE_ADDRESS, self.identity.address());
        set(INCARNATION, self.identity.incarnation().to_string());
        set(FORMAT, self.identity.format().to_string());
        if let Some(cluster_id) = self.identity.cluster_id() {
            set(CLUSTER_ID, cluster_id);
        }
        if let Some(target) = self.target {
            set(TARGET_NODE_ID, target.to_string());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(from: &LocalIdentity, target: Option<NodeId>) -> MetadataMap {
        let mut stamp = Stamp { identity: from.clone(), target };
        stamp.call(Request::new(())).unwrap().metadata().clone()
    }

    fn node(id: u64, cluster: Option<&str>) -> LocalIdentity {
        LocalIdentity::new(NodeId(id), format!("inc-{id}"), format!("127.0.0.1:{}", 9000 + id), cluster.map(String::from))
    }

    #[test]
    fn nodes_of_one_cluster_talk_and_a_forming_cluster_talks_to_itself() {
        let known = |id: NodeId| Some(format!("127.0.0.1:{}", 9000 + id.0));
        assert_eq!(node(1, Some("x")).check(&stamped(&node(2, Some("x")), Some(NodeId(1))), known), Ok(()));
        assert_eq!(node(1, None).check(&stamped(&node(2, None), Some(NodeId(1))), known), Ok(()));
        // A new node joins: the leader's requests bring the cluster id.
        assert_eq!(node(3, None).check(&stamped(&node(1, Some("x")), Some(NodeId(3))), known), Ok(()));
        // A node of an earlier version sends no identity.
        assert_eq!(node(1, Some("x")).check(&MetadataMap::new(), known), Ok(()));
    }

    #[test]
    fn another_cluster_a_forming_cluster_a_wrong_target_and_a_duplicate_id_are_refused() {
        let known = |id: NodeId| Some(format!("127.0.0.1:{}", 9000 + id.0));
        let running = node(1, Some("x"));
        assert!(matches!(running.check(&stamped(&node(2, Some("y")), Some(NodeId(1))), known), Err(Refusal::OtherCluster { .. })));
        let unknown = |_: NodeId| None;
        assert!(matches!(running.check(&stamped(&node(2, None), Some(NodeId(1))), unknown), Err(Refusal::NoCluster { .. })));
        // A member that has not applied the cluster id yet is heard.
        assert_eq!(running.check(&stamped(&node(2, None), Some(NodeId(1))), known), Ok(()));
        assert!(matches!(running.check(&stamped(&node(2, Some("x")), Some(NodeId(3))), known), Err(Refusal::WrongNode { .. })));
        let twin = LocalIdentity::new(NodeId(2), "other".into(), "127.0.0.1:7777".into(), Some("x".into()));
        assert!(matches!(running.check(&stamped(&twin, Some(NodeId(1))), known), Err(Refusal::Impostor { .. })));
    }

    #[test]
    fn a_request_of_a_later_format_is_refused_and_says_why() {
        let known = |id: NodeId| Some(format!("127.0.0.1:{}", 9000 + id.0));
        let running = node(1, Some("x"));
        let mut headers = stamped(&node(2, Some("x")), Some(NodeId(1)));
        // Format 1 until the cluster's level is raised, so older nodes read it.
        assert_eq!(headers.get(FORMAT).and_then(|v| v.to_str().ok()), Some("1"));
        headers.insert(FORMAT, MetadataValue::try_from((crate::types::FORMAT_VERSION + 1).to_string()).unwrap());
        let refused = running.check(&headers, known).unwrap_err();
        assert!(matches!(refused, Refusal::NewerFormat { .. }));
        assert!(refused.to_string().contains("written by a newer Runnel"), "{refused}");
    }
}
