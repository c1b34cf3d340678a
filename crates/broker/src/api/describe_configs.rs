//! DescribeConfigs for topics (every config Runnel understands, with its
//! source) and for the broker (its main settings).

use std::collections::BTreeMap;

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym};
use runnel_protocol::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use runnel_storage::FlushPolicy;

use runnel_controller::Metadata;
use runnel_controller::metadata::{
    ACCEPTED_CONFIGS, ConfigType, DYNAMIC_BROKER_CONFIGS, LOG_DEFAULT_CONFIGS, MetadataImage, NodeId, TOPIC_CONFIGS, broker_config_type,
};
use runnel_replica::engine::default_min_insync;
use runnel_storage::LogConfig;

use super::{code, str_bytes};
use crate::acl::{Access, Resource, op};
use crate::config::BrokerConfig;
use crate::topics::{RESOURCE_BROKER, RESOURCE_TOPIC};

const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// A log setting as a topic config's value, from `log` (the broker's).
fn log_setting(log: &LogConfig, topic_name: &str) -> Option<String> {
    Some(match topic_name {
        "cleanup.policy" => match (log.compact, log.delete) {
            (true, true) => "compact,delete".to_string(),
            (true, false) => "compact".to_string(),
            _ => "delete".to_string(),
        },
        "retention.ms" => log.retention_ms.to_string(),
        "retention.bytes" => log.retention_bytes.to_string(),
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.ms" => log.segment_ms.to_string(),
        "delete.retention.ms" => log.delete_retention_ms.to_string(),
        "min.compaction.lag.ms" => log.min_compaction_lag_ms.to_string(),
        "max.compaction.lag.ms" => log.max_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => log.min_cleanable_dirty_ratio.to_string(),
        _ => return None,
    })
}

/// What a topic config is without a topic's or a dynamic broker value: the
/// static broker setting, else Kafka's default (for `min.insync.replicas`,
/// the one enforced for a topic of `replication_factor` replicas).
fn topic_default(name: &str, config: &BrokerConfig, log: &LogConfig, replication_factor: usize) -> String {
    match name {
        "min.insync.replicas" => default_min_insync(replication_factor).to_string(),
        "max.message.bytes" => config.message_max_bytes.to_string(),
        "unclean.leader.election.enable" => "false".to_string(),
        other => log_setting(log, other)
            .or_else(|| ACCEPTED_CONFIGS.iter().find(|(n, ..)| *n == other).map(|(_, _, default, _)| default.to_string()))
            .unwrap_or_default(),
    }
}

/// Every topic config with its value: the topic's override, the dynamic
/// broker default (levels 10 to 12), or [`topic_default`].
pub(crate) fn topic_entries(
    config: &BrokerConfig,
    log: &LogConfig,
    image: &MetadataImage,
    overrides: &BTreeMap<String, String>,
    replication_factor: usize,
) -> Vec<DescribeConfigsResourceResult> {
    let dynamic = image.log_defaults(config.node_id);
    let value = |name: &str, default: String| match (overrides.get(name), dynamic.get(name)) {
        (Some(v), _) => (v.clone(), SOURCE_DYNAMIC_TOPIC),
        (None, Some((v, true))) => (v.to_string(), SOURCE_DYNAMIC_BROKER),
        (None, Some((v, false))) => (v.to_string(), SOURCE_DYNAMIC_DEFAULT_BROKER),
        (None, None) => (default, SOURCE_DEFAULT),
    };
    TOPIC_CONFIGS
        .iter()
        .map(|&(name, kind, doc)| (name, kind, doc))
        // The configs Kafka defines beyond those: listed too, as tools
        // expect every one.
        .chain(ACCEPTED_CONFIGS.iter().map(|&(name, kind, _, doc)| (name, kind, doc)))
        .map(|(name, kind, doc)| {
            let (value, source) = value(name, topic_default(name, config, log, replication_factor));
            entry(name, value, source, kind, doc)
        })
        .collect()
}

/// The static broker setting a topic config falls back to, with this
/// node's value.
fn broker_synonym(name: &str, config: &BrokerConfig, log: &LogConfig) -> Option<(&'static str, String)> {
    if name == "max.message.bytes" {
        return Some(("message.max.bytes", config.message_max_bytes.to_string()));
    }
    let (broker_name, _) = LOG_DEFAULT_CONFIGS.iter().find(|(_, t)| *t == name)?;
    Some((broker_name, log_setting(log, name)?))
}

/// The synonyms of a topic config (DescribeConfigs v1+ with
/// include_synonyms), in Kafka's order of precedence: the topic's own
/// value, then the broker settings it falls back to, else the default.
fn topic_synonyms(
    entry: &DescribeConfigsResourceResult,
    overrides: &BTreeMap<String, String>,
    image: &MetadataImage,
    config: &BrokerConfig,
    log: &LogConfig,
    replication_factor: usize,
) -> Vec<DescribeConfigsSynonym> {
    let name = entry.name.to_string();
    let synonym = |name: &str, value: String, source: i8| {
        DescribeConfigsSynonym::default().with_name(str_bytes(name)).with_value(Some(str_bytes(value))).with_source(source)
    };
    let mut out = Vec::new();
    if let Some(v) = overrides.get(&name) {
        out.push(synonym(&name, v.clone(), SOURCE_DYNAMIC_TOPIC));
    }
    if let Some((broker_name, _)) = LOG_DEFAULT_CONFIGS.iter().find(|(_, t)| *t == name) {
        if let Some((v, _)) = image.broker_config(config.node_id, broker_name).filter(|(_, own)| *own) {
            out.push(synonym(broker_name, v.to_string(), SOURCE_DYNAMIC_BROKER));
        }
        if let Some(v) = image.broker_configs.get(&None).and_then(|c| c.get(*broker_name)) {
            out.push(synonym(broker_name, v.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER));
        }
    }
    match broker_synonym(&name, config, log) {
        Some((broker_name, value)) => out.push(synonym(broker_name, value, SOURCE_STATIC_BROKER)),
        None => out.push(synonym(&name, topic_default(&name, config, log, replication_factor), SOURCE_DEFAULT)),
    }
    out
}

/// A config source as runnelctl shows it.
pub(crate) fn source_name(source: i8) -> &'static str {
    match source {
        SOURCE_DYNAMIC_TOPIC => "topic",
        SOURCE_DYNAMIC_BROKER => "broker (dynamic)",
        SOURCE_DYNAMIC_DEFAULT_BROKER => "all brokers (dynamic)",
        SOURCE_STATIC_BROKER => "broker",
        _ => "default",
    }
}

/// Kafka's DescribeConfigs (v3+) code for a config's type.
fn config_type_code(kind: ConfigType) -> i8 {
    match kind {
        ConfigType::Boolean => 1,
        ConfigType::String => 2,
        ConfigType::Int => 3,
        ConfigType::Long => 5,
        ConfigType::Double => 6,
        ConfigType::List => 7,
    }
}

fn entry(name: &str, value: String, source: i8, kind: ConfigType, doc: &str) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_read_only(false)
        .with_config_source(source)
        .with_config_type(config_type_code(kind))
        .with_documentation(Some(str_bytes(doc)))
}

/// The dynamic broker configs (level 6) as they apply to `broker`: its
/// own value, the cluster-wide default, or the static setting.
fn dynamic_broker_entries(
    image: &MetadataImage,
    broker: Option<NodeId>,
    config: &BrokerConfig,
    log: &LogConfig,
    catch_up_static: Option<u64>,
    cleaner_static: Option<u64>,
) -> Vec<DescribeConfigsResourceResult> {
    DYNAMIC_BROKER_CONFIGS
        .iter()
        .map(|(name, doc)| {
            let own = broker.and_then(|b| image.broker_configs.get(&Some(b))).and_then(|c| c.get(*name));
            let default = image.broker_configs.get(&None).and_then(|c| c.get(*name));
            let static_value = match *name {
                "follower.replication.throttled.rate" => catch_up_static.map(|r| r.to_string()),
                "log.cleaner.io.max.bytes.per.second" => cleaner_static.map(|r| r.to_string()),
                "message.max.bytes" => Some(config.message_max_bytes.to_string()),
                other => LOG_DEFAULT_CONFIGS.iter().find(|(b, _)| *b == other).and_then(|(_, t)| log_setting(log, t)),
            };
            // Kafka's default of the topic config it stands for, if any.
            let kafka_default = || {
                let (_, topic_name) = LOG_DEFAULT_CONFIGS.iter().find(|(b, _)| b == name)?;
                if *topic_name == "unclean.leader.election.enable" {
                    return Some("false".to_string());
                }
                ACCEPTED_CONFIGS.iter().find(|(n, ..)| n == topic_name).map(|(_, _, default, _)| default.to_string())
            };
            let (value, source) = match (own, default, static_value) {
                (Some(v), ..) => (v.clone(), SOURCE_DYNAMIC_BROKER),
                (None, Some(v), _) => (v.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER),
                (None, None, Some(v)) => (v, SOURCE_STATIC_BROKER),
                (None, None, None) => (kafka_default().unwrap_or_default(), SOURCE_DEFAULT),
            };
            entry(name, value, source, broker_config_type(name), doc)
        })
        .collect()
}

fn broker_entries(c: &BrokerConfig, log: &LogConfig) -> Vec<DescribeConfigsResourceResult> {
    let flush = match log.flush {
        FlushPolicy::Always => "always".to_string(),
        FlushPolicy::Interval(d) => format!("interval:{}", d.as_millis()),
    };
    [
        ("node.id", c.node_id.to_string(), ConfigType::Int, "This node's id."),
        ("num.partitions", c.default_partitions.to_string(), ConfigType::Int, "Partitions of auto-created topics."),
        ("auto.create.topics.enable", c.auto_create_topics.to_string(), ConfigType::Boolean, "Create unknown topics on metadata requests."),
        ("message.max.bytes", c.message_max_bytes.to_string(), ConfigType::Int, "Largest record batch accepted."),
        ("log.retention.ms", log.retention_ms.to_string(), ConfigType::Long, "Default retention.ms of topics."),
        ("log.retention.bytes", log.retention_bytes.to_string(), ConfigType::Long, "Default retention.bytes of topics."),
        ("log.segment.bytes", log.segment_bytes.to_string(), ConfigType::Int, "Default segment.bytes of topics."),
        ("log.flush.policy", flush, ConfigType::String, "When appends are fsynced: always (before acknowledging) or interval:<ms>."),
    ]
    .into_iter()
    // Those that can change at run time are listed with the dynamic ones.
    .filter(|(name, ..)| !DYNAMIC_BROKER_CONFIGS.iter().any(|(d, _)| d == name))
    .map(|(name, value, kind, doc)| entry(name, value, SOURCE_STATIC_BROKER, kind, doc))
    .collect()
}

/// The error for a config resource (a topic, or a broker: the cluster
/// resource) that `access` may not perform `operation` on, and what to call
/// the resource.
pub(crate) fn denied(access: &Access, resource_type: i8, name: &str, operation: i8) -> Option<(ResponseError, String)> {
    match resource_type {
        RESOURCE_TOPIC if !access.allowed(Resource::Topic, name, operation) => Some((ResponseError::TopicAuthorizationFailed, format!("topic {name}"))),
        RESOURCE_BROKER if !access.cluster(operation) => Some((ResponseError::ClusterAuthorizationFailed, format!("broker {name}"))),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn handle(
    access: &Access,
    config: &BrokerConfig,
    log: &LogConfig,
    catch_up_static: Option<u64>,
    cleaner_static: Option<u64>,
    metadata: &Metadata,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default().with_resource_type(resource.resource_type).with_resource_name(resource.resource_name.clone());
            if let Some((e, what)) = denied(access, resource.resource_type, &resource.resource_name, op::DESCRIBE_CONFIGS) {
                let message = format!("{} may not describe the configs of {what}", access.principal());
                return result.with_error_code(code(e)).with_error_message(Some(str_bytes(message)));
            }
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => {
                    let name = resource.resource_name.to_string();
                    let state = metadata.state();
                    match state.image.topics.get(&name) {
                        Some(t) => {
                            let replication_factor = t.partitions.first().map_or(1, |p| p.replicas.len());
                            let entries = topic_entries(config, log, &state.image, &t.configs, replication_factor);
                            if request.include_synonyms && version >= 1 {
                                entries
                                    .into_iter()
                                    .map(|e| {
                                        let synonyms = topic_synonyms(&e, &t.configs, &state.image, config, log, replication_factor);
                                        e.with_synonyms(synonyms)
                                    })
                                    .collect()
                            } else {
                                entries
                            }
                        }
                        None => {
                            return result
                                .with_error_code(code(ResponseError::UnknownTopicOrPartition))
                                .with_error_message(Some(str_bytes(format!("topic {name:?} does not exist"))));
                        }
                    }
                }
                RESOURCE_BROKER => {
                    // A broker's static values are its own: another broker's
                    // are asked of it, as Kafka requires.
                    let broker = match crate::topics::broker_resource(&resource.resource_name) {
                        Ok(Some(id)) if id != config.node_id => Err(format!(
                            "unexpected broker id {id}: this is broker {}; ask a broker for its own configs, or give the empty name for every broker's default",
                            config.node_id
                        )),
                        Ok(broker) => Ok(broker),
                        Err(e) => Err(e.message),
                    };
                    let broker = match broker {
                        Ok(broker) => broker,
                        Err(message) => return result.with_error_code(code(ResponseError::InvalidRequest)).with_error_message(Some(str_bytes(message))),
                    };
                    let mut entries = broker_entries(config, log);
                    entries.extend(dynamic_broker_entries(&metadata.state().image, broker, config, log, catch_up_static, cleaner_static));
                    if request.include_synonyms && version >= 1 {
                        // A broker setting is its own only synonym here.
                        for e in &mut entries {
                            let own = DescribeConfigsSynonym::default().with_name(e.name.clone()).with_value(e.value.clone()).with_source(e.config_source);
                            e.synonyms = vec![own];
                        }
                    }
                    entries
                }
                other => {
                    return result
                        .with_error_code(code(ResponseError::InvalidRequest))
                        .with_error_message(Some(str_bytes(format!("resource type {other} is not supported; use 2 (topic) or 4 (broker)"))));
                }
            };
            let entries = entries
                .into_iter()
                .filter(|e| resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k == &e.name)))
                .map(|e| if version >= 3 { e } else { e.with_documentation(None) })
                .collect();
            result.with_configs(entries)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
