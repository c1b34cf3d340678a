//! The node's HTTP endpoint: `/healthz` (the process is alive), `/readyz`
//! (the node has joined its cluster and serves what its roles say) and
//! `/metrics` (Prometheus text format); under `runnel dev --nodes N` also
//! `GET /dev/nodes` and `POST /dev/nodes/{id}/stop|start` (see `dev.rs`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use runnel_broker::Broker;

/// Whether the node is ready, and why not.
pub fn readiness(broker: &Broker, serves_kafka: bool) -> Result<(), String> {
    let state = broker.metadata.state();
    if state.image.cluster_id.is_none() {
        return Err("metadata not caught up: no cluster id seen yet".into());
    }
    if broker.metadata.leader().0.is_none() && broker.metadata.local().is_some() {
        return Err("no controller leader".into());
    }
    if serves_kafka && !broker.replicas.membership().is_registered() {
        return Err("broker not registered with the controller yet".into());
    }
    Ok(())
}

#[derive(Clone)]
struct Http {
    broker: Arc<Broker>,
    serves_kafka: bool,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(http): State<Http>) -> (StatusCode, String) {
    match readiness(&http.broker, http.serves_kafka) {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

async fn metrics(State(http): State<Http>) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    let b = &http.broker;
    b.metrics.request_bytes_queued(b.request_memory.in_use());
    let body = b.metrics.render(&b.replicas, &b.coordinators, &b.metadata);
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

/// `PUT /failpoints/NAME` with the value as body (failpoints builds only).
#[cfg(feature = "failpoints")]
async fn failpoint(axum::extract::Path(name): axum::extract::Path<String>, body: String) -> (StatusCode, String) {
    match runnel_storage::failpoints::set(&name, &body) {
        Ok(()) => (StatusCode::OK, format!("{name} = {body}\n")),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// `GET /dev/nodes`: each node of this process and its state.
async fn dev_nodes() -> (StatusCode, String) {
    match crate::dev::nodes() {
        Some(nodes) => (StatusCode::OK, nodes.list().iter().map(|(id, state)| format!("node {id} {state}\n")).collect()),
        None => (StatusCode::NOT_FOUND, "this process runs one node; node control is for `runnel dev --nodes N`\n".into()),
    }
}

/// `POST /dev/nodes/{id}/stop` or `/start`.
async fn dev_node(axum::extract::Path((id, action)): axum::extract::Path<(String, String)>) -> (StatusCode, String) {
    let Some(nodes) = crate::dev::nodes() else {
        return (StatusCode::NOT_FOUND, "this process runs one node; node control is for `runnel dev --nodes N`\n".into());
    };
    let Ok(id) = id.parse::<u64>() else { return (StatusCode::BAD_REQUEST, format!("{id:?} is not a node id\n")) };
    let outcome = match action.as_str() {
        "stop" => nodes.stop(id),
        "start" => nodes.start(id),
        other => return (StatusCode::NOT_FOUND, format!("no action {other:?}: use stop or start\n")),
    };
    match outcome {
        Ok(done) => (StatusCode::ACCEPTED, format!("{done}\n")),
        Err(why) => (StatusCode::CONFLICT, format!("{why}\n")),
    }
}

/// Serves until `stop` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    serves_kafka: bool,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new();
    #[cfg(feature = "failpoints")]
    let app = app.route("/failpoints/{name}", axum::routing::put(failpoint));
    let app = app.route("/dev/nodes", get(dev_nodes)).route("/dev/nodes/{id}/{action}", axum::routing::post(dev_node));
    let app = app.route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics)).with_state(Http { broker, serves_kafka });
    axum::serve(listener, app).with_graceful_shutdown(stop).await
}

/// `runnel healthcheck`: one GET of /readyz (or /healthz) on the local
/// node, with a plain socket (the image has no curl).
pub fn healthcheck(args: &crate::config::HealthcheckArgs) -> std::process::ExitCode {
    use std::io::{Read, Write};
    let path = if args.live { "/healthz" } else { "/readyz" };
    let addr = args.http_listener.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
    let result = (|| -> std::io::Result<String> {
        let target = std::net::ToSocketAddrs::to_socket_addrs(&addr)?.next().ok_or_else(|| std::io::Error::other("no address"))?;
        let mut stream = std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_secs(3))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(3)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })();
    match result {
        Ok(r) if r.starts_with("HTTP/1.1 200") => std::process::ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("runnel: {path} on {addr}: {}", r.lines().last().unwrap_or_default());
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("runnel: {path} on {addr}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
