//! runnel-chaos: runs fault scenarios against a three-node cluster of real
//! `runnel` processes and checks the history (see `runnel_tests::chaos`).
//!
//!   RUNNEL_BIN=target/chaos/release/runnel runnel-chaos --scenario all
//!   runnel-chaos --scenario pause-leader --seed 42 --duration 10
//!   runnel-chaos --scenario docker     # the docker-compose cluster (just image first)
//!
//! The `runnel` binary must be a failpoints build for `slow-disk`,
//! `full-disk` and the self-test (`just chaos` builds one). Exits 1 if any
//! scenario has a violation (for the self-test: if the checker misses the
//! lost writes it is built to cause).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use runnel_tests::chaos::{self, Options, Outcome};

#[derive(Parser)]
#[command(name = "runnel-chaos", about = "Fault scenarios with a checker that no acknowledged write is lost")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// A scenario, `all`, `smoke` (the CI subset plus the self-test),
    /// `self-test`, or `docker` (the Docker tier: every docker-* scenario).
    #[arg(long, default_value = "smoke")]
    scenario: String,
    /// Seed for the nemesis' choices; random when not given (it is printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds each fault lasts.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Where histories, logs of failed runs and results.json go.
    #[arg(long, default_value = "target/chaos-results")]
    out: PathBuf,
    /// The consumer-group members' protocol: `classic`, or `consumer`
    /// (KIP-848, librdkafka's `group.protocol=consumer`).
    #[arg(long, default_value = "classic", value_parser = ["classic", "consumer"])]
    group_protocol: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// One consumer-group member (started by the harness).
    Member {
        #[arg(long)]
        name: String,
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        group: String,
        #[arg(long)]
        start_unix_ns: u128,
        #[arg(long)]
        out: PathBuf,
        /// Join with KIP-848 (`group.protocol=consumer`).
        #[arg(long)]
        kip848: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Cmd::Member { name, bootstrap, topic, group, start_unix_ns, out, kip848 }) = &cli.command {
        chaos::member::run_member(name, bootstrap, topic, group, *start_unix_ns, out, *kip848);
        return std::process::ExitCode::SUCCESS;
    }
    let seed = cli.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64 % 1_000_000));
    let scenarios: Vec<&str> = match cli.scenario.as_str() {
        "all" => chaos::SCENARIOS.iter().copied().chain([chaos::SELF_TEST]).collect(),
        "smoke" => chaos::SMOKE.iter().copied().chain([chaos::SELF_TEST]).collect(),
        "self-test" => vec![chaos::SELF_TEST],
        "docker" => chaos::DOCKER_SCENARIOS.to_vec(),
        one => vec![one],
    };
    if scenarios.iter().any(|s| chaos::DOCKER_SCENARIOS.contains(s))
        && let Some(why) = chaos::docker::unavailable()
    {
        eprintln!("runnel-chaos: the Docker tier cannot run here: {why}");
        return std::process::ExitCode::FAILURE;
    }
    println!("runnel-chaos: seed {seed} (replay with --seed {seed}); scenarios {scenarios:?}");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut outcomes: Vec<Outcome> = Vec::new();
    for (k, scenario) in scenarios.iter().enumerate() {
        let opts = Options {
            scenario: scenario.to_string(),
            seed: seed + k as u64,
            fault_duration: Duration::from_secs(cli.duration),
            out_dir: cli.out.clone(),
            kip848: cli.group_protocol == "consumer",
        };
        let mut outcome = runtime.block_on(chaos::run(&opts));
        if *scenario == chaos::SELF_TEST {
            // The failpoint acknowledges writes the isolated leader then
            // loses: the checker must say so.
            outcome.violations = if outcome.report.lost.is_empty() {
                vec!["self-test: the checker found no lost writes although leaders acknowledged before replicating".to_string()]
            } else {
                println!("chaos: self-test: the checker caught {} lost writes, as it must", outcome.report.lost.len());
                Vec::new()
            };
        }
        println!("chaos: {} -> {}", scenario, if outcome.violations.is_empty() { "PASS".to_string() } else { outcome.violations.join("; ") });
        outcomes.push(outcome);
    }
    chaos::print_table(&outcomes);
    let _ = std::fs::create_dir_all(&cli.out);
    let _ = std::fs::write(cli.out.join("results.json"), serde_json::to_string_pretty(&outcomes).unwrap_or_default());
    if outcomes.iter().all(|o| o.violations.is_empty()) { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}
