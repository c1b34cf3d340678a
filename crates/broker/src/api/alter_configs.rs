//! AlterConfigs (v0-2) for topics and brokers: the request is the
//! resource's whole set of overrides, so overrides it leaves out are
//! removed, as Kafka does.
//! Committed through Raft as one change per topic; validate-only checks
//! without committing.

use std::collections::BTreeMap;

use runnel_controller::Metadata;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use runnel_protocol::kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::{code, str_bytes};
use crate::topics::{self, TopicError};

/// The change that makes `wanted` the resource's whole set of overrides
/// (a topic's, or a broker's dynamic configs).
fn replace_all(metadata: &Metadata, resource_type: i8, name: &str, wanted: BTreeMap<String, String>) -> Result<BTreeMap<String, Option<String>>, TopicError> {
    let state = metadata.state();
    let current: Vec<String> = if resource_type == topics::RESOURCE_BROKER {
        let broker = topics::broker_resource(name)?;
        state.image.broker_configs.get(&broker).map(|c| c.keys().cloned().collect()).unwrap_or_default()
    } else {
        let Some(topic) = state.image.topics.get(name) else {
            return Err(TopicError::new(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist")));
        };
        topic.configs.keys().cloned().collect()
    };
    let mut configs: BTreeMap<String, Option<String>> = current.into_iter().map(|k| (k, None)).collect();
    configs.extend(wanted.into_iter().map(|(k, v)| (k, Some(v))));
    Ok(configs)
}

pub(crate) async fn handle(access: &crate::acl::Access, metadata: &Metadata, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        if let Some((e, what)) = super::describe_configs::denied(access, resource.resource_type, &name, crate::acl::op::ALTER_CONFIGS) {
            let message = format!("{} may not alter the configs of {what}", access.principal());
            let response = AlterConfigsResourceResponse::default().with_resource_type(resource.resource_type).with_resource_name(resource.resource_name);
            responses.push(response.with_error_code(code(e)).with_error_message(Some(str_bytes(message))));
            continue;
        }
        let wanted = || {
            let mut wanted = BTreeMap::new();
            for c in &resource.configs {
                let Some(v) = &c.value else {
                    return Err(TopicError::new(ResponseError::InvalidConfig, format!("{} has no value; leave it out to remove it", c.name)));
                };
                wanted.insert(c.name.to_string(), v.to_string());
            }
            replace_all(metadata, resource.resource_type, &name, wanted)
        };
        let outcome = topics::alter_resource(metadata, resource.resource_type, &name, wanted, request.validate_only).await;
        let response = AlterConfigsResourceResponse::default().with_resource_type(resource.resource_type).with_resource_name(resource.resource_name);
        responses.push(match outcome {
            Ok(()) => response,
            Err(e) => response.with_error_code(code(e.code)).with_error_message(Some(str_bytes(e.message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}
