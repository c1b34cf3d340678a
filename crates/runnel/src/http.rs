//! The node's HTTP endpoint: `/healthz` (the process is alive), `/readyz`
//! (the node has joined its cluster and serves what its roles say) and
//! `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use runnel_broker::Broker;

/// Whether the node is ready, and why not.
pub fn readiness(broker: &Broker, serves_kafka: bool) -> Result<(), String> {
    let state = broker.state();
    if state.image.cluster_id.is_none() {
        return Err("metadata not caught up: no cluster id seen yet".into());
    }
    if broker.metadata.leader().0.is_none() && broker.metadata.local().is_some() {
        return Err("no controller leader".into());
    }
    if serves_kafka && !broker.is_registered() {
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
    let body = http.broker.metrics.render(&http.broker);
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

/// Serves until `stop` completes.
pub async fn serve(listener: tokio::net::TcpListener, broker: Arc<Broker>, serves_kafka: bool, stop: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let app = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics)).with_state(Http { broker, serves_kafka });
    axum::serve(listener, app).with_graceful_shutdown(stop).await
}
