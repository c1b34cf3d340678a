//! Feature levels over the admin API: what the cluster has finalized, what
//! each node supports, and the upgrade that finalizes a higher level once
//! every node supports it.

use std::collections::BTreeMap;
use std::time::Duration;

use runnel_controller::features::{LEVEL_MAX, LEVEL_MIN, LEVELS};
use runnel_controller::metadata::{Command, NodeId};
use runnel_rpc::admin::admin_client::AdminClient;
use runnel_rpc::admin::{Empty, FeatureLevel, FeaturesReply, NodeFeatures, UpgradeFeaturesRequest};
use tonic::Status;

use crate::broker::Broker;
use crate::topics;

const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// The levels this binary supports, as node `id` at `address`.
pub fn local(id: NodeId, address: String) -> NodeFeatures {
    NodeFeatures {
        node_id: id.0,
        rpc_address: address,
        supported_min: u32::from(LEVEL_MIN),
        supported_max: u32::from(LEVEL_MAX),
        error: String::new(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Asks the node at `address` which levels it supports. A node of a version
/// without feature levels answers Unimplemented: it supports level 1 only.
async fn ask(id: NodeId, address: &str) -> NodeFeatures {
    let unknown = |error: String| NodeFeatures { node_id: id.0, rpc_address: address.to_string(), error, ..Default::default() };
    let endpoint = match runnel_controller::network::endpoint(address) {
        Ok(e) => e.connect_timeout(ASK_TIMEOUT).timeout(ASK_TIMEOUT),
        Err(e) => return unknown(format!("bad address: {e}")),
    };
    let channel = match runnel_controller::network::connect(endpoint).await {
        Ok(c) => c,
        Err(e) => return unknown(format!("unreachable: {e}")),
    };
    match AdminClient::new(channel).local_features(Empty {}).await {
        Ok(r) => NodeFeatures { node_id: id.0, rpc_address: address.to_string(), ..r.into_inner() },
        Err(s) if s.code() == tonic::Code::Unimplemented => NodeFeatures {
            node_id: id.0,
            rpc_address: address.to_string(),
            supported_min: 1,
            supported_max: 1,
            error: String::new(),
            version: "a version without feature levels".into(),
        },
        Err(s) => unknown(format!("{}: {}", s.code(), s.message())),
    }
}

/// The finalized level and every node's supported levels: the controllers
/// of the Raft membership and the registered brokers.
pub async fn features(broker: &Broker) -> FeaturesReply {
    let state = broker.metadata.state();
    let mut nodes: BTreeMap<NodeId, String> = state.membership.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
    for b in state.image.brokers.values() {
        nodes.entry(b.id).or_insert_with(|| b.rpc_address.clone());
    }
    let me = broker.config.node_id;
    let asked = nodes.iter().map(|(id, address)| async move { if *id == me { local(*id, address.clone()) } else { ask(*id, address).await } });
    FeaturesReply {
        finalized_level: u32::from(state.image.finalized_level()),
        nodes: futures::future::join_all(asked).await,
        levels: LEVELS.iter().map(|(level, what)| FeatureLevel { level: u32::from(*level), description: what.to_string() }).collect(),
    }
}

/// Finalizes `request.level` (or the highest every node supports) if every
/// node answers and supports it.
pub async fn upgrade(broker: &Broker, request: &UpgradeFeaturesRequest) -> Result<FeaturesReply, Status> {
    let reply = features(broker).await;
    let unanswered: Vec<String> = reply.nodes.iter().filter(|n| !n.error.is_empty()).map(|n| format!("node {} ({})", n.node_id, n.error)).collect();
    if !unanswered.is_empty() {
        return Err(Status::failed_precondition(format!(
            "every node must say which levels it supports before an upgrade, and these did not: {}",
            unanswered.join("; ")
        )));
    }
    let common = reply.nodes.iter().map(|n| n.supported_max).min().unwrap_or(u32::from(LEVEL_MAX)).min(u32::from(LEVEL_MAX));
    // Without a level asked for: the highest every node supports, and the
    // nodes holding the cluster back are named when that is nothing new.
    let target = match request.level {
        0 if common <= reply.finalized_level && common < u32::from(LEVEL_MAX) => u32::from(LEVEL_MAX),
        0 => common,
        level => level,
    };
    if target <= reply.finalized_level {
        return Err(Status::failed_precondition(format!(
            "the cluster is at feature level {} already{}",
            reply.finalized_level,
            if request.level == 0 { "; this version supports nothing higher" } else { "; levels only go up" }
        )));
    }
    let behind: Vec<String> = reply
        .nodes
        .iter()
        .filter(|n| n.supported_max < target)
        .map(|n| format!("node {} supports up to {} ({})", n.node_id, n.supported_max, n.version))
        .collect();
    if !behind.is_empty() {
        return Err(Status::failed_precondition(format!(
            "feature level {target} needs every node to support it: {}; upgrade those nodes first",
            behind.join(", ")
        )));
    }
    if request.dry_run {
        return Ok(FeaturesReply { finalized_level: target, ..reply });
    }
    let level = u16::try_from(target).map_err(|_| Status::invalid_argument(format!("no feature level {target}")))?;
    topics::propose(&broker.metadata, Command::FinalizeFeatures { level }).await.map_err(super::status)?;
    tracing::info!(level, "finalized the cluster's feature level");
    Ok(features(broker).await)
}
