//! `runnelctl broker config`: a broker's configs as DescribeConfigs answers
//! them (value and source), and the dynamic ones set or removed at run time
//! with IncrementalAlterConfigs, for one broker or for every broker (Kafka's
//! empty resource name, which the Python admin clients cannot send), through
//! the Kafka listener, so it authenticates like `runnelctl acl`.

use anyhow::{Context, Result, bail};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, IncrementalAlterConfigsRequest, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use crate::kafka::KafkaClient;
use crate::{KafkaArgs, Output, table};

const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

#[derive(clap::Args)]
pub struct ConfigArgs {
    /// One broker [default: every broker, the default each broker's own
    /// value overrides].
    #[arg(long)]
    broker: Option<u64>,
    /// KEY=VALUE to set, repeatable.
    #[arg(long = "set")]
    set: Vec<String>,
    /// KEY to remove (back to the default for every broker, then the
    /// node's own setting), repeatable.
    #[arg(long = "delete")]
    delete: Vec<String>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Kafka's resource name of `broker`: its id, or the empty name for the
/// default of every broker.
fn resource_name(broker: Option<u64>) -> StrBytes {
    StrBytes::from_string(broker.map(|b| b.to_string()).unwrap_or_default())
}

/// Sets (`Some`) or removes (`None`) dynamic configs of `broker` (every
/// broker when `None`) through IncrementalAlterConfigs.
pub(crate) async fn alter(client: &mut KafkaClient, broker: Option<u64>, configs: &[(String, Option<String>)]) -> Result<()> {
    let configs = configs
        .iter()
        .map(|(name, value)| {
            let operation = if value.is_some() { OP_SET } else { OP_DELETE };
            AlterableConfig::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_config_operation(operation)
                .with_value(value.clone().map(StrBytes::from_string))
        })
        .collect();
    let resource = AlterConfigsResource::default().with_resource_type(RESOURCE_BROKER).with_resource_name(resource_name(broker)).with_configs(configs);
    let request = RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default().with_resources(vec![resource]));
    let ResponseKind::IncrementalAlterConfigs(r) = client.admin(ApiKey::IncrementalAlterConfigs, 1, request).await? else {
        bail!("an IncrementalAlterConfigs request was answered with another response");
    };
    for response in &r.responses {
        if let Some(e) = ResponseError::try_from_code(response.error_code) {
            bail!("{e}: {}", response.error_message.as_deref().unwrap_or_default());
        }
    }
    Ok(())
}

/// A config source as DescribeConfigs codes it.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "broker (dynamic)",
        3 => "all brokers (dynamic)",
        4 => "broker",
        _ => "default",
    }
}

pub async fn run(mut client: KafkaClient, args: ConfigArgs, output: Output) -> Result<()> {
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    for pair in &args.set {
        let (k, v) = pair.split_once('=').with_context(|| format!("{pair:?} is not KEY=VALUE"))?;
        changes.push((k.to_string(), Some(v.to_string())));
    }
    changes.extend(args.delete.iter().map(|k| (k.clone(), None)));
    if !changes.is_empty() {
        alter(&mut client, args.broker, &changes).await?;
    }
    // What is in force now, as DescribeConfigs answers.
    let resource =
        DescribeConfigsResource::default().with_resource_type(RESOURCE_BROKER).with_resource_name(resource_name(args.broker)).with_configuration_keys(None);
    let request = RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![resource]));
    // A broker answers for its own static values only: ask the one named.
    let node = match args.broker {
        None => -1,
        Some(id) => {
            let mut known = client.broker_ids().await?;
            known.sort_unstable();
            match i32::try_from(id).ok().filter(|id| known.contains(id)) {
                Some(node) => node,
                None => bail!("broker {id} is not a live broker (the brokers are {known:?})"),
            }
        }
    };
    let ResponseKind::DescribeConfigs(r) = client.call_node(node, ApiKey::DescribeConfigs, 1, request).await? else {
        bail!("a DescribeConfigs request was answered with another response");
    };
    let Some(result) = r.results.first() else { bail!("DescribeConfigs answered no result") };
    if let Some(e) = ResponseError::try_from_code(result.error_code) {
        bail!("{e}: {}", result.error_message.as_deref().unwrap_or_default());
    }
    let entries: Vec<(String, String, &str)> = result
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(), source_name(c.config_source)))
        .collect();
    match output {
        Output::Json => {
            let configs: Vec<_> = entries.iter().map(|(name, value, source)| json!({ "name": name, "value": value, "source": source })).collect();
            crate::emit(&json!({ "broker": args.broker, "configs": configs }).to_string());
        }
        Output::Table => table(&["NAME", "VALUE", "SOURCE"], entries.into_iter().map(|(n, v, s)| vec![n, v, s.to_string()]).collect()),
    }
    Ok(())
}
