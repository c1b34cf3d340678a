//! IncrementalAlterConfigs (v0-1) for topics and brokers (a broker id, or
//! empty for all): SET and DELETE of single overrides, committed through
//! Raft as one change per resource; validate-only
//! checks without committing. APPEND and SUBTRACT apply to the one list
//! config Runnel honours, a topic's `cleanup.policy`: they add values to,
//! or take them from, its value in force (`delete` when the topic sets
//! none), and the result is SET like any value (so an empty list is
//! refused).

use std::collections::BTreeMap;

use runnel_controller::Metadata;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use runnel_protocol::kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::{code, str_bytes};
use crate::topics::{self, TopicError};

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The list configs APPEND and SUBTRACT apply to, each with its value when
/// a topic sets none.
const LIST_CONFIGS: &[(&str, &str)] = &[("cleanup.policy", "delete")];

/// Resource type TOPIC in the Kafka protocol.
const TOPIC: i8 = 2;

/// The overrides one resource's operations ask for; `current` holds the
/// resource's overrides now, for APPEND and SUBTRACT.
fn changes(
    configs: &[runnel_protocol::kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    current: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Option<String>>, TopicError> {
    let mut out = BTreeMap::new();
    for c in configs {
        let name = c.name.to_string();
        let change = match c.config_operation {
            OP_SET => match &c.value {
                Some(v) => Some(v.to_string()),
                None => return Err(TopicError::new(ResponseError::InvalidConfig, format!("SET of {name} needs a value"))),
            },
            OP_DELETE => None,
            op @ (OP_APPEND | OP_SUBTRACT) => {
                let Some((_, default)) = LIST_CONFIGS.iter().find(|(n, _)| *n == name) else {
                    return Err(TopicError::new(
                        ResponseError::InvalidConfig,
                        format!("{name} is not a list config: APPEND and SUBTRACT apply to a topic's cleanup.policy; SET it instead"),
                    ));
                };
                let Some(value) = &c.value else {
                    return Err(TopicError::new(ResponseError::InvalidConfig, format!("APPEND or SUBTRACT of {name} needs a value")));
                };
                let items = |v: &str| v.split(',').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect::<Vec<_>>();
                let mut list = items(current.get(&name).map_or(*default, String::as_str));
                for item in items(value) {
                    if op == OP_SUBTRACT {
                        list.retain(|x| *x != item);
                    } else if !list.contains(&item) {
                        list.push(item);
                    }
                }
                Some(list.join(","))
            }
            other => return Err(TopicError::new(ResponseError::InvalidRequest, format!("unknown config operation {other} for {name}"))),
        };
        if out.insert(name.clone(), change).is_some() {
            return Err(TopicError::new(ResponseError::InvalidRequest, format!("{name} appears more than once")));
        }
    }
    Ok(out)
}

pub(crate) async fn handle(access: &crate::acl::Access, metadata: &Metadata, request: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        if let Some((e, what)) = super::describe_configs::denied(access, resource.resource_type, &name, crate::acl::op::ALTER_CONFIGS) {
            let message = format!("{} may not alter the configs of {what}", access.principal());
            let response = AlterConfigsResourceResponse::default().with_resource_type(resource.resource_type).with_resource_name(resource.resource_name);
            responses.push(response.with_error_code(code(e)).with_error_message(Some(str_bytes(message))));
            continue;
        }
        let current = match resource.resource_type {
            TOPIC => metadata.state().image.topics.get(&name).map(|t| t.configs.clone()).unwrap_or_default(),
            _ => BTreeMap::new(),
        };
        let outcome = topics::alter_resource(metadata, resource.resource_type, &name, || changes(&resource.configs, &current), request.validate_only).await;
        let response = AlterConfigsResourceResponse::default().with_resource_type(resource.resource_type).with_resource_name(resource.resource_name);
        responses.push(match outcome {
            Ok(()) => response,
            Err(e) => response.with_error_code(code(e.code)).with_error_message(Some(str_bytes(e.message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
