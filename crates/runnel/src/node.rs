//! Runs one node: the controller (a Raft voter), the broker, the gRPC server
//! (Raft, controller and admin services) and the Kafka listener. Shuts down
//! in order: stop taking Kafka requests, let connections finish, flush every
//! log, stop Raft and the gRPC server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use runnel_broker::admin::AdminService;
use runnel_broker::replication::{FETCH_MESSAGE_BYTES_MAX, ReplicationService};
use runnel_broker::{Broker, BrokerConfig};
use runnel_controller::network::MESSAGE_BYTES_MAX;
use runnel_controller::service::{ControllerService, RaftService};
use runnel_controller::{Controller, ControllerConfig, Metadata, RemoteController};
use runnel_rpc::admin::admin_server::AdminServer;
use runnel_rpc::controller::controller_server::ControllerServer;
use runnel_rpc::raft::raft_server::RaftServer;
use runnel_rpc::replication::replication_server::ReplicationServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// How long open connections get to finish their requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// A voter in the Raft quorum that owns the metadata.
    pub controller: bool,
    /// Serves Kafka clients and hosts partition replicas.
    pub broker: bool,
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub broker: BrokerConfig,
    pub rpc_listener: SocketAddr,
    /// The advertised gRPC host; the port is the listener's when 0 was asked.
    pub advertised_rpc_host: String,
    pub advertised_rpc_port: u16,
    /// Voters and their gRPC addresses; empty for a single node that is its own quorum.
    pub quorum: BTreeMap<u64, String>,
    pub session_timeout: Duration,
    pub roles: Roles,
    /// Where /healthz and /readyz are served.
    pub http_listener: SocketAddr,
    /// Peer gRPC addresses dialled through other addresses (proxy, NAT).
    pub rpc_address_map: std::collections::HashMap<String, String>,
}

/// What a node remembers about itself across restarts.
#[derive(Debug, Serialize, Deserialize)]
struct NodeIdentity {
    node_id: i32,
    cluster_id: Option<String>,
}

fn read_identity(data_dir: &Path) -> Result<Option<NodeIdentity>> {
    let path = data_dir.join("node.json");
    match std::fs::read(&path) {
        Ok(raw) => Ok(Some(serde_json::from_slice(&raw).with_context(|| format!("read {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

fn write_identity(data_dir: &Path, identity: &NodeIdentity) -> Result<()> {
    let path = data_dir.join("node.json");
    let tmp = data_dir.join("node.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(identity)?).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(())
}

pub async fn run(config: NodeConfig, stop: impl std::future::Future<Output = ()>) -> Result<()> {
    let NodeConfig {
        broker: mut broker_config,
        rpc_listener,
        advertised_rpc_host,
        advertised_rpc_port,
        mut quorum,
        session_timeout,
        roles,
        http_listener,
        rpc_address_map,
    } = config;
    runnel_controller::network::set_address_map(rpc_address_map);
    let node_id = broker_config.node_id;
    let data_dir = broker_config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create data directory {}", data_dir.display()))?;
    let identity = read_identity(&data_dir)?;
    if let Some(identity) = &identity {
        if identity.node_id != node_id {
            bail!(
                "data directory {} belongs to node {} but this is node {node_id}; start with --node-id {} or another data directory",
                data_dir.display(),
                identity.node_id,
                identity.node_id
            );
        }
    } else {
        write_identity(&data_dir, &NodeIdentity { node_id, cluster_id: None })?;
    }

    let kafka = match roles.broker {
        true => Some(
            TcpListener::bind(broker_config.kafka_listener).await.with_context(|| format!("bind the Kafka listener on {}", broker_config.kafka_listener))?,
        ),
        false => None,
    };
    let external = match (&broker_config.external, roles.broker) {
        (Some(e), true) => Some(TcpListener::bind(e.bind).await.with_context(|| format!("bind the external Kafka listener on {}", e.bind))?),
        _ => None,
    };
    if let (Some(listener), Some(e)) = (&external, broker_config.external.as_mut())
        && e.advertised_port == 0
    {
        e.advertised_port = listener.local_addr()?.port();
    }
    let rpc = TcpListener::bind(rpc_listener).await.with_context(|| format!("bind the gRPC listener on {rpc_listener}"))?;
    let rpc_bound = rpc.local_addr()?;
    let http = TcpListener::bind(http_listener).await.with_context(|| format!("bind the HTTP listener on {http_listener}"))?;
    let http_bound = http.local_addr()?;
    if let Some(kafka) = &kafka
        && broker_config.advertised_port == 0
    {
        broker_config.advertised_port = kafka.local_addr()?.port();
    }
    let rpc_port = if advertised_rpc_port == 0 { rpc_bound.port() } else { advertised_rpc_port };
    broker_config.rpc_address = format!("{advertised_rpc_host}:{rpc_port}");
    if quorum.is_empty() && roles.controller {
        quorum.insert(node_id as u64, broker_config.rpc_address.clone());
    }

    let (controller, metadata) = if roles.controller {
        let mut controller_config = ControllerConfig::new(node_id as u64, data_dir.join("raft"), quorum.clone());
        controller_config.session_timeout = session_timeout;
        let controller = Controller::start(controller_config).await.map_err(anyhow::Error::msg).context("start the controller")?;
        (Some(controller.clone()), Metadata::Local(controller))
    } else {
        (None, Metadata::Remote(RemoteController::new(&quorum)))
    };
    let broker = {
        let metadata = metadata.clone();
        tokio::task::spawn_blocking(move || Broker::open(broker_config, metadata)).await?.map_err(anyhow::Error::msg).context("open the data directory")?
    };
    let follower = match &metadata {
        Metadata::Remote(remote) => {
            let b = broker.clone();
            Some(tokio::spawn(remote.clone().run(async move { b.shutdown_requested().await })))
        }
        Metadata::Local(_) => None,
    };

    let (rpc_stop_tx, rpc_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut rpc_server = tonic::transport::Server::builder();
    let replication = ReplicationServer::new(ReplicationService { broker: broker.clone() })
        .max_decoding_message_size(FETCH_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(FETCH_MESSAGE_BYTES_MAX);
    let router = match &controller {
        Some(controller) => rpc_server
            .add_service(
                RaftServer::new(RaftService { controller: controller.clone() })
                    .max_decoding_message_size(MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(MESSAGE_BYTES_MAX),
            )
            .add_service(
                ControllerServer::new(ControllerService { controller: controller.clone() })
                    .max_decoding_message_size(MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(MESSAGE_BYTES_MAX),
            )
            .add_service(AdminServer::new(AdminService { broker: broker.clone() }))
            .add_service(replication),
        None => rpc_server.add_service(AdminServer::new(AdminService { broker: broker.clone() })).add_service(replication),
    };
    // Replication and Raft are request/response on long-lived connections:
    // without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms per
    // round trip.
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(rpc), |stream| {
        stream.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    let rpc_task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = rpc_stop_rx.await;
    }));

    tracing::info!(node_id, ?roles, data_dir = %data_dir.display(), voters = ?quorum, "node starting");
    // Lines for people and for test harnesses that started us on port 0.
    if let Some(kafka) = &kafka {
        println!("runnel: Kafka listener on {}, advertised as {}:{}", kafka.local_addr()?, broker.config.advertised_host, broker.config.advertised_port);
    }
    if let (Some(listener), Some(e)) = (&external, &broker.config.external) {
        println!("runnel: external Kafka listener on {}, advertised as {}:{}", listener.local_addr()?, e.advertised_host, e.advertised_port);
    }
    println!("runnel: gRPC listener on {rpc_bound}, advertised as {}", broker.config.rpc_address);
    println!("runnel: HTTP listener on {http_bound}");
    if !roles.broker {
        println!("runnel: node {node_id} is serving as a controller only");
    }
    if roles.broker {
        let broker = broker.clone();
        tokio::spawn(async move {
            while !broker.is_registered() && !broker.is_shutting_down() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if broker.is_registered() {
                println!("runnel: node {node_id} is registered and serving");
            }
        });
    }

    let mut tasks = vec![tokio::spawn(broker.clone().run_background()), tokio::spawn(broker.clone().run_metadata())];
    if roles.broker {
        tasks.push(tokio::spawn(broker.clone().run_registration(session_timeout)));
        tasks.push(tokio::spawn(broker.clone().run_fetchers()));
        tasks.push(tokio::spawn(broker.clone().run_isr_maintenance()));
        if controller.is_some() {
            let b = broker.clone();
            tasks.push(tokio::spawn(broker.groups.clone().run(async move { b.shutdown_requested().await })));
        }
    }
    if let Some(controller) = &controller {
        let b = broker.clone();
        tasks.push(tokio::spawn(controller.clone().run_liveness(async move { b.shutdown_requested().await })));
        let b = broker.clone();
        tasks.push(tokio::spawn(controller.clone().run_bootstrap(async move { b.shutdown_requested().await })));
    }
    tasks.extend(follower);
    {
        let b = broker.clone();
        let stop = async move { b.shutdown_requested().await };
        let broker = broker.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::http::serve(http, broker, roles.broker, stop).await {
                tracing::error!(error = %e, "HTTP endpoint failed");
            }
        }));
    }
    let identity_check = tokio::spawn(keep_cluster_identity(broker.clone(), data_dir.clone()));
    let kafka_server = kafka.map(|k| tokio::spawn(runnel_broker::server::serve(broker.clone(), k, false)));
    let external_server = external.map(|k| tokio::spawn(runnel_broker::server::serve(broker.clone(), k, true)));

    let failure = tokio::select! {
        _ = stop => None,
        r = identity_check => match r {
            Ok(Err(e)) => Some(e),
            _ => None,
        },
    };
    tracing::info!("shutting down: no new connections or requests");
    broker.begin_shutdown();
    if roles.broker {
        broker.controlled_shutdown().await;
    }
    for server in kafka_server.into_iter().chain(external_server) {
        if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
            tracing::warn!("connections did not finish within {DRAIN_TIMEOUT:?}; closing them");
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    broker.close().await.context("flush logs at shutdown")?;
    if let Some(controller) = &controller {
        controller.shutdown().await;
    }
    let _ = rpc_stop_tx.send(());
    let _ = rpc_task.await;
    if let Some(e) = failure {
        return Err(e);
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Records the cluster id (which the controller sets once) in `node.json`;
/// a data directory from another cluster is refused.
async fn keep_cluster_identity(broker: Arc<Broker>, data_dir: std::path::PathBuf) -> Result<()> {
    let mut changes = broker.metadata.subscribe();
    let cluster_id = tokio::select! {
        state = changes.wait_for(|s| s.image.cluster_id.is_some()) => match state {
            Ok(state) => state.image.cluster_id.clone().unwrap_or_default(),
            Err(_) => return Ok(()),
        },
        _ = broker.shutdown_requested() => return Ok(()),
    };
    let identity = read_identity(&data_dir)?.unwrap_or(NodeIdentity { node_id: broker.config.node_id, cluster_id: None });
    match &identity.cluster_id {
        Some(mine) if *mine != cluster_id => bail!(
            "data directory {} belongs to cluster {mine}, but the controller quorum is cluster {cluster_id}; start this node with an empty --data-dir to join it",
            data_dir.display()
        ),
        Some(_) => {}
        None => {
            write_identity(&data_dir, &NodeIdentity { node_id: identity.node_id, cluster_id: Some(cluster_id.clone()) })?;
            tracing::info!(%cluster_id, "joined cluster");
        }
    }
    // Nothing changes the id once set.
    broker.shutdown_requested().await;
    Ok(())
}

/// Completes at SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGTERM handler");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
