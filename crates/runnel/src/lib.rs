//! The `runnel` node binary: parse configuration, wire the broker, run until
//! a signal. Everything else lives in the library crates.
//!
//! # Layout
//! - [`config`]: the command line, `RUNNEL_*` variables and the TOML file,
//!   merged and validated into a `BrokerConfig`.
//! - [`node`]: start the listener and background work; shut down cleanly.

pub mod config;
pub mod node;

use std::process::ExitCode;

use clap::Parser;

use crate::config::{Cli, Command};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let broker_config = match &cli.command {
        Command::Dev(args) => config::dev_config(args),
        Command::Serve(args) => config::serve_config(args),
    };
    let broker_config = match broker_config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("runnel: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runnel: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(node::run(broker_config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runnel: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
