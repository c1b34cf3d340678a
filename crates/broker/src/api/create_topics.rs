//! CreateTopics, with validate_only, configs, and Kafka's error codes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use runnel_protocol::kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::topics::TopicError;

/// Replicas a single-node cluster can place.
const LIVE_BROKERS: i16 = 1;

pub(crate) fn handle(broker: &Arc<Broker>, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> =
        request.topics.iter().map(|t| t.name.0.to_string()).filter(|n| !seen.insert(n.clone())).collect();
    let results = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let mut result = CreatableTopicResult::default().with_name(topic.name.clone()).with_num_partitions(-1).with_replication_factor(-1);
            let outcome = (|| -> Result<_, TopicError> {
                if duplicates.contains(&name) {
                    return Err(TopicError::new(ResponseError::InvalidRequest, format!("topic {name:?} appears more than once in the request")));
                }
                let configs: BTreeMap<String, String> = topic
                    .configs
                    .iter()
                    .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                    .collect();
                let partitions = if !topic.assignments.is_empty() {
                    if topic.num_partitions != -1 || topic.replication_factor != -1 {
                        return Err(TopicError::new(ResponseError::InvalidRequest, "give either replica assignments or partitions and replication factor, not both"));
                    }
                    for a in &topic.assignments {
                        if a.broker_ids.len() != 1 || a.broker_ids[0].0 != broker.config.node_id {
                            return Err(TopicError::new(ResponseError::InvalidReplicaAssignment, format!("partition {} must be assigned to broker {} only", a.partition_index, broker.config.node_id)));
                        }
                    }
                    topic.assignments.len() as i32
                } else if topic.num_partitions == -1 {
                    broker.config.default_partitions
                } else {
                    topic.num_partitions
                };
                let factor = if topic.replication_factor == -1 { 1 } else { topic.replication_factor };
                if factor < 1 || factor > LIVE_BROKERS {
                    return Err(TopicError::new(
                        ResponseError::InvalidReplicationFactor,
                        format!("replication factor {factor} is invalid: it must be between 1 and the {LIVE_BROKERS} live broker(s)"),
                    ));
                }
                if request.validate_only {
                    broker.registry().check_create(&name, partitions, &configs)?;
                } else {
                    broker.create_topic(&name, partitions, configs.clone())?;
                }
                Ok((partitions, factor, configs))
            })();
            match outcome {
                Ok((partitions, factor, configs)) => {
                    if let Some(meta) = broker.registry().get(&name) {
                        result.topic_id = meta.id;
                    }
                    result.num_partitions = partitions;
                    result.replication_factor = factor;
                    if version >= 5 {
                        result.configs = Some(
                            super::describe_configs::topic_entries(broker, &configs)
                                .into_iter()
                                .map(|e| {
                                    CreatableTopicConfigs::default()
                                        .with_name(e.name)
                                        .with_value(e.value)
                                        .with_config_source(e.config_source)
                                        .with_read_only(false)
                                })
                                .collect(),
                        );
                    }
                }
                Err(e) => {
                    result.error_code = code(e.code);
                    result.error_message = Some(str_bytes(e.message));
                }
            }
            result
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}
