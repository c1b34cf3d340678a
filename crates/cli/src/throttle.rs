//! `runnelctl broker throttle`: the limits on catch-up replication (Kafka's
//! dynamic broker configs `follower.replication.throttled.rate` and, with
//! `--leader`, `leader.replication.throttled.rate`) for one broker or every
//! broker, set at run time through the Kafka listener's
//! IncrementalAlterConfigs, so it authenticates like `runnelctl acl`.

use anyhow::{Result, bail};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{ApiKey, IncrementalAlterConfigsRequest, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use crate::kafka::KafkaClient;
use crate::{KafkaArgs, Output};

const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
const LEADER_RATE: &str = "leader.replication.throttled.rate";
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

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
    // Kafka's name for the default of every broker is the empty one.
    let name = args.broker.map(|b| b.to_string()).unwrap_or_default();
    let rate_name = if args.leader { LEADER_RATE } else { FOLLOWER_RATE };
    let (operation, value) = match args.rate {
        Some(rate) => (OP_SET, Some(StrBytes::from_string(rate.to_string()))),
        None => (OP_DELETE, None),
    };
    let config = AlterableConfig::default().with_name(StrBytes::from_static_str(rate_name)).with_config_operation(operation).with_value(value);
    let resource =
        AlterConfigsResource::default().with_resource_type(RESOURCE_BROKER).with_resource_name(StrBytes::from_string(name)).with_configs(vec![config]);
    let request = RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default().with_resources(vec![resource]));
    let ResponseKind::IncrementalAlterConfigs(r) = client.admin(ApiKey::IncrementalAlterConfigs, 1, request).await? else {
        bail!("an IncrementalAlterConfigs request was answered with another response");
    };
    for response in &r.responses {
        if let Some(e) = ResponseError::try_from_code(response.error_code) {
            bail!("{e}: {}", response.error_message.as_deref().unwrap_or_default());
        }
    }
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
