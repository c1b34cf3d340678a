//! CreateTopics through the controller, with validate_only (checked against a
//! copy of the metadata, so nothing is proposed) and Kafka's error codes.

use std::collections::{BTreeMap, HashSet};

use runnel_controller::metadata::{Command, NodeId};
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use runnel_protocol::kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use uuid::Uuid;

use runnel_controller::Metadata;
use runnel_storage::LogConfig;

use super::{code, str_bytes};
use crate::acl::{Access, Resource, op};
use crate::config::BrokerConfig;
use crate::topics::{self, TopicError};

pub(crate) async fn handle(
    access: &Access,
    config: &BrokerConfig,
    log: &LogConfig,
    metadata: &Metadata,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let cluster_create = access.decide(Resource::Cluster, crate::acl::CLUSTER, op::CREATE);
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = request.topics.iter().map(|t| t.name.0.to_string()).filter(|n| !seen.insert(n.clone())).collect();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone()).with_num_partitions(-1).with_replication_factor(-1);
        let configs: BTreeMap<String, String> = topic.configs.iter().filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string()))).collect();
        let outcome: Result<(i32, i32, Uuid), TopicError> = async {
            if duplicates.contains(&name) {
                return Err(TopicError::new(ResponseError::InvalidRequest, format!("topic {name:?} appears more than once in the request")));
            }
            if !cluster_create && !access.allowed(Resource::Topic, &name, op::CREATE) {
                return Err(TopicError::new(ResponseError::TopicAuthorizationFailed, format!("{} may not create topic {name}", access.principal())));
            }
            let (partitions, factor) = if !topic.assignments.is_empty() {
                if topic.num_partitions != -1 || topic.replication_factor != -1 {
                    return Err(TopicError::new(
                        ResponseError::InvalidRequest,
                        "give either replica assignments or partitions and replication factor, not both",
                    ));
                }
                // Partitions 0..n, each named once, in any order.
                let mut by_index: BTreeMap<i32, Vec<NodeId>> = BTreeMap::new();
                for a in &topic.assignments {
                    let ids = a.broker_ids.iter().map(|b| NodeId(b.0.max(0) as u64)).collect();
                    if a.broker_ids.iter().any(|b| b.0 < 0) || by_index.insert(a.partition_index, ids).is_some() {
                        return Err(TopicError::new(
                            ResponseError::InvalidReplicaAssignment,
                            format!("partition {} is assigned twice, or to a negative broker id", a.partition_index),
                        ));
                    }
                }
                if by_index.keys().copied().ne(0..by_index.len() as i32) {
                    return Err(TopicError::new(ResponseError::InvalidReplicaAssignment, "replica assignments must name partitions 0, 1, ... without gaps"));
                }
                let replicas: Vec<Vec<NodeId>> = by_index.into_values().collect();
                let (partitions, factor) = (replicas.len() as i32, replicas[0].len() as i32);
                let command = Command::CreateTopicWithReplicas { name: name.clone(), id: Uuid::new_v4(), replicas, configs: configs.clone() };
                let as_assignment = topics::as_assignment_error;
                topics::dry_run(metadata, &command, config.replicas_per_broker_max).map_err(as_assignment)?;
                if request.validate_only {
                    return Ok((partitions, factor, Uuid::nil()));
                }
                let id = match topics::propose(metadata, command).await.map_err(as_assignment)? {
                    runnel_controller::metadata::CommandOk::TopicCreated { id } => id,
                    other => return Err(TopicError::new(ResponseError::UnknownServerError, format!("unexpected controller answer {other:?}"))),
                };
                return Ok((partitions, factor, id));
            } else {
                let partitions = if topic.num_partitions == -1 { config.default_partitions } else { topic.num_partitions };
                let factor = if topic.replication_factor == -1 { 1 } else { i32::from(topic.replication_factor) };
                (partitions, factor)
            };
            if request.validate_only {
                // A dry run against a copy of the metadata: the same checks the
                // controller makes, with nothing proposed.
                let id = Uuid::new_v4();
                let command = Command::CreateTopic { name: name.clone(), id, partitions, replication_factor: factor, configs: configs.clone() };
                topics::dry_run(metadata, &command, config.replicas_per_broker_max)?;
                return Ok((partitions, factor, id));
            }
            let id = topics::create_topic(metadata, &name, partitions, factor, configs.clone(), config.replicas_per_broker_max).await?;
            Ok((partitions, factor, id))
        }
        .await;
        match outcome {
            Ok((partitions, factor, id)) => {
                result.topic_id = if request.validate_only { Uuid::nil() } else { id };
                result.num_partitions = partitions;
                result.replication_factor = factor as i16;
                if version >= 5 {
                    result.configs = Some(
                        super::describe_configs::topic_entries(config, log, &metadata.state().image, &configs, factor as usize)
                            .into_iter()
                            .map(|e| {
                                CreatableTopicConfigs::default().with_name(e.name).with_value(e.value).with_config_source(e.config_source).with_read_only(false)
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
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}
