//! The `runnel` node binary: parse configuration, wire the broker, run until
//! a signal. Everything else lives in the library crates.
//!
//! # Layout
//! - [`config`]: the command line, `RUNNEL_*` variables and the TOML file,
//!   merged and validated into a `NodeConfig` per node.
//! - [`dev`]: stopping and starting single nodes of `runnel dev --nodes N`.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics` and the `/dev/nodes` control.
//! - [`node`]: start the controller, broker, gRPC and Kafka listeners; shut down cleanly.

pub mod config;
pub mod dev;
pub mod http;
pub mod node;

use std::process::ExitCode;

use crate::config::Command;

pub fn main() -> ExitCode {
    let cli = config::parse();
    if let Command::Healthcheck(args) = &cli.command {
        return http::healthcheck(args);
    }
    #[cfg(feature = "failpoints")]
    if let Ok(spec) = std::env::var("RUNNEL_FAILPOINTS")
        && let Err(e) = runnel_storage::failpoints::set_all(&spec)
    {
        eprintln!("runnel: RUNNEL_FAILPOINTS: {e}");
        return ExitCode::from(2);
    }
    let nodes = match &cli.command {
        Command::Dev(args) => config::dev_configs(args),
        Command::Serve(args) => config::serve_config(args).map(|n| vec![n]),
        Command::Healthcheck(_) => unreachable!("answered above"),
    };
    let mut nodes = match nodes {
        Ok(c) => c,
        Err(e) => {
            eprintln!("runnel: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_tracing(nodes.first().map_or(config::LogFormat::Text, |n| n.log_format));
    // Many partitions need many files: the soft limit goes up to the hard
    // one, and the nodes of this process share what their segment files may use.
    if let Some(limit) = runnel_storage::files::raise_open_files_limit() {
        let share = runnel_replica::ReplicaConfig::open_files_for_limit(limit) / nodes.len().max(1);
        for n in &mut nodes {
            n.replica.open_files_max = share.max(runnel_storage::files::OPEN_FILES_MIN);
        }
        tracing::info!(open_files_limit = limit, segment_files_per_node = share, "open-files limit");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runnel: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(node::run_all(nodes)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runnel: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, at `RUST_LOG` levels (info by default; openraft's own
/// logs only at error). Text has colours only on a terminal.
fn init_tracing(format: config::LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        config::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        config::LogFormat::Json => builder.json().init(),
    }
}
