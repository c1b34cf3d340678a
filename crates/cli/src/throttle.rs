//! `runnelctl broker throttle`: the limits on catch-up replication (Kafka's
//! dynamic broker configs `follower.replication.throttled.rate` and, with
//! `--leader`, `leader.replication.throttled.rate`) for one broker or every
//! broker, set at run time through the Kafka listener's
//! IncrementalAlterConfigs, so it authenticates like `runnelctl acl`.

use anyhow::Result;
use serde_json::json;

use crate::kafka::KafkaClient;
use crate::{KafkaArgs, Output};

const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
const LEADER_RATE: &str = "leader.replication.throttled.rate";

#[derive(clap::Args)]
pub struct ThrottleArgs {
    /// Bytes per second the followers may copy for partitions catching up
    /// (at least 1048576).
    #[arg(long, required_unless_present = "remove", conflicts_with = "remove")]
    rate: Option<u64>,
    /// Remove the limit set at run time: back to the default for every
    /// broker, or for that, to each node's --replica-catch-up-max-bytes-per-sec.
    #[arg(long)]
    remove: bool,
    /// One broker [default: every broker].
    #[arg(long)]
    broker: Option<u64>,
    /// Limit what the broker sends, as a partition leader, to followers
    /// outside the ISR (leader.replication.throttled.rate) instead of what
    /// its followers copy.
    #[arg(long)]
    leader: bool,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

pub async fn run(mut client: KafkaClient, args: ThrottleArgs, output: Output) -> Result<()> {
    let rate_name = if args.leader { LEADER_RATE } else { FOLLOWER_RATE };
    crate::broker_config::alter(&mut client, args.broker, &[(rate_name.to_string(), args.rate.map(|r| r.to_string()))]).await?;
    let target = args.broker.map_or_else(|| "every broker".to_string(), |b| format!("broker {b}"));
    match output {
        Output::Json => crate::emit(&json!({ "broker": args.broker, rate_name: args.rate }).to_string()),
        Output::Table => match args.rate {
            Some(rate) => crate::emit(&format!("{rate_name} of {target}: {rate} bytes/s")),
            None => crate::emit(&format!("{rate_name} of {target}: removed")),
        },
    }
    Ok(())
}
