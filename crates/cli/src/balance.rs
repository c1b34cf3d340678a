//! `runnelctl cluster rebalance` and `runnelctl broker decommission`: ask a
//! node for a plan (which partitions to move where), show it, and carry it
//! out through partition reassignment a few moves at a time, moving
//! leadership to each moved partition's preferred replica after its batch.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use runnel_rpc::admin::admin_client::AdminClient;
use runnel_rpc::admin::{BrokerLoad, ElectLeaderRequest, Empty, PlanRebalanceRequest, ReassignPartitionRequest, RebalancePlan};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::{Output, list, table};

/// How a plan is carried out.
#[derive(clap::Args)]
pub struct Execution {
    /// Show the plan; move nothing.
    #[arg(long)]
    dry_run: bool,
    /// Carry out every move, a batch at a time, and return when done;
    /// without it only the first batch is started.
    #[arg(long)]
    wait: bool,
    /// Partitions moving at once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    max_moves: u32,
    /// Give up waiting for a batch after this many seconds.
    #[arg(long, default_value_t = 600)]
    batch_timeout_secs: u64,
}

impl Execution {
    /// Whether every move is carried out before returning.
    pub fn waits(&self) -> bool {
        self.wait && !self.dry_run
    }
}

fn loads_json(loads: &[BrokerLoad]) -> Value {
    Value::Array(loads.iter().map(|l| json!({"node_id": l.node_id, "replicas": l.replicas, "leaders": l.leaders, "bytes": l.bytes})).collect())
}

/// Bytes in the largest binary unit that keeps a number of at least 1.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn print_plan(plan: &RebalancePlan, output: Output) {
    if output == Output::Json {
        let moves: Vec<Value> = plan.moves.iter().map(|m| json!({"topic": m.topic, "partition": m.partition, "from": m.from, "to": m.to})).collect();
        outln!("{}", json!({"moves": moves, "before": loads_json(&plan.before), "after": loads_json(&plan.after)}));
        return;
    }
    let rows = plan.before.iter().map(|b| {
        let a = plan.after.iter().find(|a| a.node_id == b.node_id).cloned().unwrap_or_default();
        vec![
            b.node_id.to_string(),
            format!("{} -> {}", b.replicas, a.replicas),
            format!("{} -> {}", b.leaders, a.leaders),
            format!("{} -> {}", human_bytes(b.bytes), human_bytes(a.bytes)),
        ]
    });
    table(&["BROKER", "REPLICAS", "PREFERRED-LEADERS", "BYTES"], rows.collect());
    if plan.moves.is_empty() {
        outln!("nothing to move");
        return;
    }
    outln!("");
    table(
        &["TOPIC", "PARTITION", "FROM", "TO"],
        plan.moves.iter().map(|m| vec![m.topic.clone(), m.partition.to_string(), list(&m.from), list(&m.to)]).collect(),
    );
}

/// Plans (taking every replica off `exclude`), shows the plan, and carries it out.
pub async fn run(
    client: &mut AdminClient<Channel>,
    exclude: Vec<u64>,
    how: Execution,
    output: Output,
    err: impl Fn(tonic::Status) -> anyhow::Error,
) -> Result<()> {
    let plan = client.plan_rebalance(PlanRebalanceRequest { exclude: exclude.clone() }).await.map_err(&err)?.into_inner();
    print_plan(&plan, output);
    // A broker being emptied must end empty: refuse, before moving anything,
    // a plan that would leave some of its replicas where they are.
    let (brokers, open) = if exclude.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let brokers = client.list_brokers(Empty {}).await.map_err(&err)?.into_inner().brokers;
        (brokers, client.list_reassignments(Empty {}).await.map_err(&err)?.into_inner().reassignments)
    };
    for id in &exclude {
        let held = brokers.iter().find(|b| b.node_id == *id).map_or(0, |b| b.replicas as usize);
        // Moves already under way (an earlier run's batch) leave with the
        // plan's own; the plan skips those partitions.
        let moving_off = open.iter().filter(|r| r.removing.contains(id)).count();
        let leaving = moving_off + plan.moves.iter().filter(|m| m.from.contains(id) && !m.to.contains(id)).count();
        if held > leaving {
            bail!(
                "broker {id} would still hold {} of its {held} replicas: no other live broker can take them (a partition's replication factor is more than the other brokers, or their racks are taken), or they are moving or wait for a stopped broker; add a broker or lower those topics' replication factor, then run again; nothing was moved",
                held - leaving
            );
        }
    }
    if how.dry_run || plan.moves.is_empty() {
        return Ok(());
    }
    let total = plan.moves.len();
    let mut done = 0;
    for batch in plan.moves.chunks(how.max_moves as usize) {
        for m in batch {
            let request = ReassignPartitionRequest { topic: m.topic.clone(), partition: m.partition, replicas: m.to.clone(), cancel: false };
            client.reassign_partition(request).await.map_err(|e| anyhow::anyhow!("moving {}-{}: {}", m.topic, m.partition, err(e)))?;
        }
        if !how.wait {
            eprintln!("started {} of {total} moves; `runnelctl partition reassignments` shows them; run again (or with --wait) for the rest", batch.len());
            return Ok(());
        }
        let moving: BTreeSet<(String, i32)> = batch.iter().map(|m| (m.topic.clone(), m.partition)).collect();
        let deadline = Instant::now() + Duration::from_secs(how.batch_timeout_secs);
        loop {
            let open = client.list_reassignments(Empty {}).await.map_err(&err)?.into_inner().reassignments;
            let left = open.iter().filter(|r| moving.contains(&(r.topic.clone(), r.partition))).count();
            if left == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("{left} moves of this batch did not finish within {} s; they go on (see `runnelctl partition reassignments`)", how.batch_timeout_secs);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Leadership to each moved partition's new first replica.
        for m in batch {
            let request = ElectLeaderRequest { topic: m.topic.clone(), partition: m.partition };
            if let Err(e) = client.elect_leader(request).await {
                eprintln!("runnelctl: {}-{} keeps its leader for now: {}", m.topic, m.partition, e.message());
            }
        }
        done += batch.len();
        eprintln!("moved {done} of {total}");
    }
    Ok(())
}
