//! Runs one node: opens the broker's data, binds the Kafka listener, serves
//! until SIGTERM or Ctrl-C, then shuts down in order: stop accepting, let
//! connections finish the requests they have read, flush every log.

use std::time::Duration;

use anyhow::{Context, Result};
use runnel_broker::{Broker, BrokerConfig};
use tokio::net::TcpListener;

/// How long open connections get to finish their requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(mut config: BrokerConfig) -> Result<()> {
    let listener = TcpListener::bind(config.kafka_listener)
        .await
        .with_context(|| format!("bind the Kafka listener on {}", config.kafka_listener))?;
    let bound = listener.local_addr().context("read the listener address")?;
    if config.advertised_port == 0 {
        config.advertised_port = bound.port();
    }
    let advertised = format!("{}:{}", config.advertised_host, config.advertised_port);
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .context("open the data directory")?
        .map_err(anyhow::Error::msg)
        .context("open the data directory")?;
    tracing::info!(
        node_id = broker.config.node_id,
        data_dir = %broker.config.data_dir.display(),
        cluster_id = %broker.cluster_id(),
        topics = broker.registry().topics().count(),
        "broker ready"
    );
    // A line for people and for test harnesses that started us on port 0.
    println!("runnel: Kafka listener on {bound}, advertised as {advertised}");

    let background = tokio::spawn(broker.clone().run_background());
    let server = tokio::spawn(runnel_broker::server::serve(broker.clone(), listener));
    wait_for_signal().await?;
    tracing::info!("shutting down: no new connections or requests");
    broker.begin_shutdown();
    if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
        tracing::warn!("connections did not finish within {DRAIN_TIMEOUT:?}; closing them");
    }
    let _ = background.await;
    broker.close().await.context("flush logs at shutdown")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("install the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("wait for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
