//! Runs one node: the controller (a Raft voter), the broker, the gRPC server
//! (Raft, controller, replication and admin services) and the Kafka
//! listener. Shuts down in order: stop taking Kafka requests, let
//! connections finish, flush every log, stop Raft and the gRPC server.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use runnel_broker::Broker;
use runnel_broker::admin::AdminService;
use runnel_broker::txn_adds::CoordinatorService;
use runnel_controller::metadata::NodeId;
use runnel_controller::network::MESSAGE_BYTES_MAX;
use runnel_controller::service::{ControllerService, RaftService};
use runnel_controller::{Controller, ControllerConfig, LocalIdentity, Metadata, RemoteController};
use runnel_replica::service::{FETCH_MESSAGE_BYTES_MAX, ReplicationService};
use runnel_rpc::admin::admin_server::AdminServer;
use runnel_rpc::controller::controller_server::ControllerServer;
use runnel_rpc::coordinator::coordinator_server::CoordinatorServer;
use runnel_rpc::raft::raft_server::RaftServer;
use runnel_rpc::replication::replication_server::ReplicationServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tracing::Instrument;

use crate::config::NodeConfig;

/// How long open connections get to finish their requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The version of `node.json` this binary writes and reads; files of
/// before versions were recorded have none and are version 1.
const NODE_FILE_FORMAT: u32 = 1;

fn node_file_format() -> u32 {
    NODE_FILE_FORMAT
}

/// What a node remembers about itself across restarts.
#[derive(Debug, Serialize, Deserialize)]
struct NodeIdentity {
    #[serde(default = "node_file_format")]
    format_version: u32,
    node_id: NodeId,
    cluster_id: Option<String>,
    /// Made when the data directory is first used (older files have none
    /// and get one at the next start).
    #[serde(default)]
    incarnation: Option<String>,
}

fn read_identity(data_dir: &Path) -> Result<Option<NodeIdentity>> {
    let path = data_dir.join("node.json");
    match std::fs::read(&path) {
        Ok(raw) => {
            let identity: NodeIdentity = serde_json::from_slice(&raw).with_context(|| format!("read {}", path.display()))?;
            if identity.format_version > NODE_FILE_FORMAT {
                bail!(
                    "{} is format {}, and this binary reads formats up to {NODE_FILE_FORMAT}: the data directory was written by a newer Runnel; run that version (or a later one)",
                    path.display(),
                    identity.format_version
                );
            }
            Ok(Some(identity))
        }
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

/// Runs the nodes of this process (one, or `runnel dev --nodes N`) until
/// SIGTERM or Ctrl-C. Every listener of every node is bound before any node
/// starts, so a port in use stops them all before anything runs; a node that
/// fails stops the others. Under `dev --nodes N` one node can be stopped
/// and started again (see `dev.rs`).
pub async fn run_all(mut configs: Vec<NodeConfig>) -> Result<()> {
    let originals = configs.clone();
    let mut bound = Vec::with_capacity(configs.len());
    for config in &mut configs {
        bound.push(bind(config).await.with_context(|| format!("node {}", config.node_id))?);
    }
    let stop_all = CancellationToken::new();
    // When every node of a `dev --nodes N` process stops at once, there is
    // no one to hand leaderships to.
    let together = configs.len() > 1;
    let control = together.then(crate::dev::install);
    let runs = configs.into_iter().zip(bound).zip(originals).map(|((config, listeners), original)| {
        let stop_all = stop_all.clone();
        let node_id = config.node_id;
        async move {
            let (mut config, mut listeners) = (config, Some(listeners));
            loop {
                let alone = control.map(|c| c.running(node_id.0)).unwrap_or_default();
                let stop = {
                    let (stop_all, alone) = (stop_all.clone(), alone.clone());
                    async move {
                        tokio::select! {
                            _ = wait_for_signal() => together,
                            _ = stop_all.cancelled() => together,
                            // Only this node: it hands its leaderships over.
                            _ = alone.cancelled() => false,
                        }
                    }
                };
                let Some(bound) = listeners.take() else { unreachable!("bound before every run") };
                let result = run(config, bound, stop).await;
                if result.is_err() {
                    stop_all.cancel();
                    return result.with_context(|| format!("node {node_id}"));
                }
                let Some(control) = control.filter(|_| alone.is_cancelled() && !stop_all.is_cancelled()) else { return Ok(()) };
                println!("runnel: node {node_id} stopped; start it again with POST /dev/nodes/{node_id}/start on another node's HTTP port");
                tokio::select! {
                    _ = control.stopped(node_id.0) => {}
                    _ = wait_for_signal() => return Ok(()),
                    _ = stop_all.cancelled() => return Ok(()),
                }
                config = original.clone();
                match bind(&mut config).await {
                    Ok(l) => listeners = Some(l),
                    Err(e) => {
                        stop_all.cancel();
                        return Err(e).with_context(|| format!("node {node_id}: start again"));
                    }
                }
            }
        }
    });
    let mut first_error = None;
    for result in futures::future::join_all(runs).await {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Runs a node on its bound listeners until `stop` completes (with true if
/// every other node of this process stops at the same moment, so a
/// controlled shutdown has no one to hand leaderships to); every log line
/// it writes carries its node id (several nodes share one process under
/// `runnel dev --nodes N`).
pub async fn run(config: NodeConfig, listeners: Listeners, stop: impl std::future::Future<Output = bool>) -> Result<()> {
    let span = tracing::info_span!("node", node_id = config.node_id.0);
    run_node(config, listeners, stop).instrument(span).await
}

/// A node's listeners, bound before anything starts.
pub struct Listeners {
    kafka: Option<TcpListener>,
    external: Option<TcpListener>,
    rpc: TcpListener,
    http: TcpListener,
}

/// Binds a node's listeners and settles its advertised addresses (a port
/// 0 becomes the one bound).
pub async fn bind(config: &mut NodeConfig) -> Result<Listeners> {
    let broker = &mut config.broker;
    let kafka = match config.roles.broker {
        true => Some(TcpListener::bind(broker.kafka_listener).await.with_context(|| format!("bind the Kafka listener on {}", broker.kafka_listener))?),
        false => None,
    };
    let external = match (&broker.external, config.roles.broker) {
        (Some(e), true) => Some(TcpListener::bind(e.bind).await.with_context(|| format!("bind the external Kafka listener on {}", e.bind))?),
        _ => None,
    };
    if let (Some(listener), Some(e)) = (&external, broker.external.as_mut())
        && e.advertised_port == 0
    {
        e.advertised_port = listener.local_addr()?.port();
    }
    let rpc = TcpListener::bind(config.rpc_listener).await.with_context(|| format!("bind the gRPC listener on {}", config.rpc_listener))?;
    let http = TcpListener::bind(config.http_listener).await.with_context(|| format!("bind the HTTP listener on {}", config.http_listener))?;
    if let Some(kafka) = &kafka
        && broker.advertised_port == 0
    {
        broker.advertised_port = kafka.local_addr()?.port();
    }
    let rpc_port = if config.advertised_rpc_port == 0 { rpc.local_addr()?.port() } else { config.advertised_rpc_port };
    broker.rpc_address = format!("{}:{rpc_port}", config.advertised_rpc_host);
    Ok(Listeners { kafka, external, rpc, http })
}

async fn run_node(mut config: NodeConfig, listeners: Listeners, stop: impl std::future::Future<Output = bool>) -> Result<()> {
    runnel_controller::network::set_address_map(std::mem::take(&mut config.rpc_address_map));
    if let Some(tls) = &config.rpc_tls {
        runnel_controller::network::set_tls(tls.clone());
    }
    let node_id = config.node_id;
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create data directory {}", data_dir.display()))?;
    let stored = match read_identity(&data_dir)? {
        Some(identity) if identity.node_id != node_id => bail!(
            "data directory {} belongs to node {} but this is node {node_id}; start with --node-id {} or another data directory",
            data_dir.display(),
            identity.node_id,
            identity.node_id
        ),
        Some(identity) if identity.incarnation.is_some() => identity,
        Some(identity) => {
            let identity = NodeIdentity { format_version: NODE_FILE_FORMAT, incarnation: Some(uuid::Uuid::new_v4().to_string()), ..identity };
            write_identity(&data_dir, &identity)?;
            identity
        }
        None => {
            let identity = NodeIdentity { format_version: NODE_FILE_FORMAT, node_id, cluster_id: None, incarnation: Some(uuid::Uuid::new_v4().to_string()) };
            write_identity(&data_dir, &identity)?;
            identity
        }
    };

    let NodeConfig { roles, broker: broker_config, replica, group, mut quorum, session_timeout, broker_probe_interval, auto_balance, leader_balance, .. } =
        config;
    if let Some(entry) = quorum.get(&node_id)
        && !same_address(entry, &broker_config.rpc_address)
    {
        bail!(
            "controller_quorum says node {node_id} is at {entry}, but this node's gRPC address is {} (rpc_listener, advertised_rpc): its peers would never reach it; make them the same",
            broker_config.rpc_address
        );
    }
    let identity = LocalIdentity::new(node_id, stored.incarnation.clone().unwrap_or_default(), broker_config.rpc_address.clone(), stored.cluster_id.clone());
    let rpc_bound = listeners.rpc.local_addr()?;
    let http_bound = listeners.http.local_addr()?;
    if quorum.is_empty() && roles.controller {
        quorum.insert(node_id, broker_config.rpc_address.clone());
    }

    let (controller, metadata) = if roles.controller {
        let mut controller_config = ControllerConfig::new(node_id, data_dir.join("raft"), quorum.clone());
        controller_config.session_timeout = session_timeout;
        controller_config.probe_interval = broker_probe_interval;
        let controller = Controller::start(controller_config, identity.clone()).await.context("start the controller")?;
        (Some(controller.clone()), Metadata::Local(controller))
    } else {
        (None, Metadata::Remote(RemoteController::new(&quorum, identity.clone())))
    };
    let broker = {
        let metadata = metadata.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| Broker::open(broker_config, replica, group, metadata)))
            .await?
            .context("open the data directory")?
    };
    let shutdown = broker.shutdown.clone();
    let stopped = move || {
        let shutdown = shutdown.clone();
        async move { shutdown.cancelled().await }
    };

    let (rpc_stop_tx, rpc_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let rpc_task = serve_rpc(listeners.rpc, config.rpc_tls.clone(), controller.as_ref(), &broker, rpc_stop_rx)?;

    tracing::info!(?roles, data_dir = %data_dir.display(), voters = ?quorum, "node starting");
    // Lines for people and for test harnesses that started us on port 0.
    if let Some(kafka) = &listeners.kafka {
        println!("runnel: Kafka listener on {}, advertised as {}:{}", kafka.local_addr()?, broker.config.advertised_host, broker.config.advertised_port);
    }
    if let (Some(listener), Some(e)) = (&listeners.external, &broker.config.external) {
        println!("runnel: external Kafka listener on {}, advertised as {}:{}", listener.local_addr()?, e.advertised_host, e.advertised_port);
    }
    println!("runnel: gRPC listener on {rpc_bound}, advertised as {}", broker.config.rpc_address);
    println!("runnel: HTTP listener on {http_bound}");
    if !roles.broker {
        println!("runnel: node {node_id} is serving as a controller only");
    }

    let replicas = broker.replicas.clone();
    let mut tasks: Vec<JoinHandle<()>> =
        vec![tokio::spawn(replicas.clone().run_background().in_current_span()), tokio::spawn(replicas.clone().run_metadata().in_current_span())];
    if let Metadata::Remote(remote) = &metadata {
        tasks.push(tokio::spawn(remote.clone().run(stopped()).in_current_span()));
    }
    if roles.broker {
        tasks.push(tokio::spawn(replicas.membership().clone().run(broker.registration(), session_timeout).in_current_span()));
        tasks.push(tokio::spawn(runnel_replica::fetcher::run(replicas.clone()).in_current_span()));
        tasks.push(tokio::spawn(replicas.clone().run_isr_maintenance().in_current_span()));
        if controller.is_some() {
            tasks.push(tokio::spawn(broker.coordinators.groups.clone().run(stopped()).in_current_span()));
            tasks.push(tokio::spawn(broker.coordinators.transactions.clone().run(stopped()).in_current_span()));
            tasks.push(tokio::spawn(runnel_broker::admin::sample_group_high_watermarks(broker.clone()).in_current_span()));
        }
        let membership = replicas.membership().clone();
        let shutdown = broker.shutdown.clone();
        tokio::spawn(
            async move {
                tokio::select! {
                    _ = async { while !membership.is_registered() { tokio::time::sleep(Duration::from_millis(20)).await } } => {
                        println!("runnel: node {node_id} is registered and serving");
                    }
                    _ = shutdown.cancelled() => {}
                }
            }
            .in_current_span(),
        );
    }
    if let Some(controller) = &controller {
        tasks.push(tokio::spawn(controller.clone().run_liveness(stopped()).in_current_span()));
        tasks.push(tokio::spawn(controller.clone().run_election_gate(stopped()).in_current_span()));
        if !roles.broker {
            // The coordinators run on the leader, and this node has none.
            tasks.push(tokio::spawn(controller.clone().run_leadership_handoff(stopped()).in_current_span()));
        }
        if let Some(auto) = auto_balance.clone() {
            tasks.push(tokio::spawn(controller.clone().run_auto_balance(auto, stopped()).in_current_span()));
        }
        if let Some(every) = leader_balance {
            tasks.push(tokio::spawn(controller.clone().run_leader_balance(every, stopped()).in_current_span()));
        }
        tasks.push(tokio::spawn(controller.clone().run_bootstrap(stopped()).in_current_span()));
    }
    {
        let broker = broker.clone();
        let http = listeners.http;
        let stop = stopped();
        tasks.push(tokio::spawn(
            async move {
                if let Err(e) = crate::http::serve(http, broker, roles.broker, stop).await {
                    tracing::error!(error = %e, "HTTP endpoint failed");
                }
            }
            .in_current_span(),
        ));
    }
    let identity_check = tokio::spawn(keep_cluster_identity(broker.clone(), data_dir.clone()).in_current_span());
    let kafka_server = listeners.kafka.map(|k| tokio::spawn(runnel_broker::server::serve(broker.clone(), k, false).in_current_span()));
    let external_server = listeners.external.map(|k| tokio::spawn(runnel_broker::server::serve(broker.clone(), k, true).in_current_span()));

    let (failure, stop_with_peers) = tokio::select! {
        with_peers = stop => (None, with_peers),
        r = identity_check => match r {
            Ok(Err(e)) => (Some(e), false),
            _ => (None, false),
        },
    };
    // As Kafka: leaderships are handed over while the listeners still
    // serve, so a client's request in that window is answered
    // NOT_LEADER_OR_FOLLOWER naming the new leader (KIP-951) and the client
    // moves there at once, instead of finding its connection closed and
    // waiting for its next metadata refresh.
    if roles.broker && !stop_with_peers {
        replicas.membership().controlled_shutdown().await;
        let replicas = replicas.clone();
        let _ = tokio::task::spawn_blocking(move || replicas.reconcile_now()).await;
    }
    tracing::info!("shutting down: no new connections or requests");
    broker.begin_shutdown();
    for server in kafka_server.into_iter().chain(external_server) {
        if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
            tracing::warn!("connections did not finish within {DRAIN_TIMEOUT:?}; closing them");
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    replicas.close().await.context("flush logs at shutdown")?;
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

/// Serves the node's gRPC services until `stop` fires: Raft and controller
/// (on controllers), replication and admin (on every node); with `tls`,
/// only to clients presenting a certificate the cluster's CA signed.
fn serve_rpc(
    listener: TcpListener,
    tls: Option<crate::config::RpcTls>,
    controller: Option<&Arc<Controller>>,
    broker: &Arc<Broker>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<JoinHandle<Result<(), tonic::transport::Error>>> {
    // Every request's handling carries the node's span (its node_id).
    let span = tracing::Span::current();
    let mut server = tonic::transport::Server::builder().trace_fn(move |_| span.clone());
    // Requests between nodes are checked for the cluster and node they come
    // from before they reach Raft or the replica manager.
    // A new broker, of no cluster yet, may follow the metadata and register
    // (and then fetch); only Raft is closed to nodes this cluster does not know.
    let check = broker.metadata.peer_check();
    let joining = broker.metadata.peer_check_joining();
    let replication = InterceptedService::new(
        ReplicationServer::new(ReplicationService { replicas: broker.replicas.clone() })
            .max_decoding_message_size(FETCH_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(FETCH_MESSAGE_BYTES_MAX),
        joining.clone(),
    );
    let admin = AdminServer::new(AdminService { broker: broker.clone() });
    let coordinator =
        InterceptedService::new(CoordinatorServer::new(CoordinatorService { transactions: broker.coordinators.transactions.clone() }), check.clone());
    let router = match controller {
        Some(controller) => server
            .add_service(InterceptedService::new(
                RaftServer::new(RaftService { controller: controller.clone() })
                    .max_decoding_message_size(MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(MESSAGE_BYTES_MAX),
                check,
            ))
            .add_service(InterceptedService::new(
                ControllerServer::new(ControllerService { controller: controller.clone() })
                    .max_decoding_message_size(MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(MESSAGE_BYTES_MAX),
                joining,
            ))
            .add_service(admin)
            .add_service(replication)
            .add_service(coordinator),
        None => server.add_service(admin).add_service(replication).add_service(coordinator),
    };
    let stopped = async {
        let _ = stop.await;
    };
    // With TLS, the handshakes are done before tonic sees a connection, with
    // the certificate current at that moment (renewals need no restart).
    if let Some(tls) = tls {
        return Ok(tokio::spawn(router.serve_with_incoming_shutdown(tls.incoming(listener), stopped).in_current_span()));
    }
    // Replication and Raft are request/response on long-lived connections:
    // without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms per
    // round trip.
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |stream| {
        stream.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    Ok(tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped).in_current_span()))
}

/// Records the cluster id (which the controller sets once) in `node.json`;
/// a data directory from another cluster is refused. Then follows the
/// finalized feature level, the format stamped on requests to other nodes.
async fn keep_cluster_identity(broker: Arc<Broker>, data_dir: std::path::PathBuf) -> Result<()> {
    let mut changes = broker.metadata.subscribe();
    let cluster_id = tokio::select! {
        state = changes.wait_for(|s| s.image.cluster_id.is_some()) => match state {
            Ok(state) => state.image.cluster_id.clone().unwrap_or_default(),
            Err(_) => return Ok(()),
        },
        _ = broker.shutdown.cancelled() => return Ok(()),
    };
    let identity = read_identity(&data_dir)?.unwrap_or(NodeIdentity {
        format_version: NODE_FILE_FORMAT,
        node_id: broker.config.node_id,
        cluster_id: None,
        incarnation: None,
    });
    match &identity.cluster_id {
        Some(mine) if *mine != cluster_id => bail!(
            "data directory {} belongs to cluster {mine}, but the controller quorum is cluster {cluster_id}; start this node with an empty --data-dir to join it",
            data_dir.display()
        ),
        Some(_) => {}
        None => {
            write_identity(&data_dir, &NodeIdentity { format_version: NODE_FILE_FORMAT, cluster_id: Some(cluster_id.clone()), ..identity })?;
            tracing::info!(%cluster_id, "joined cluster");
        }
    }
    broker.metadata.identity().set_cluster_id(&cluster_id);
    // Nothing changes the id once set; the feature level, which is the
    // format of what this node sends, only goes up.
    loop {
        let level = changes.borrow_and_update().image.finalized_level();
        broker.metadata.identity().set_format(u32::from(level));
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Ok(()) },
            _ = broker.shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Whether two HOST:PORT addresses name the same endpoint: equal as text,
/// or resolving to a common socket address.
fn same_address(a: &str, b: &str) -> bool {
    use std::net::ToSocketAddrs;
    if a == b {
        return true;
    }
    let resolve = |s: &str| s.to_socket_addrs().map(|addrs| addrs.collect::<Vec<_>>()).unwrap_or_default();
    let (a, b) = (resolve(a), resolve(b));
    a.iter().any(|x| b.contains(x))
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
