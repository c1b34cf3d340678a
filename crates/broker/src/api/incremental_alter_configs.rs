//! IncrementalAlterConfigs (v0-1) for topics and brokers (a broker id, or
//! empty for all): SET and DELETE of single overrides, committed through
//! Raft as one change per resource; validate-only
//! checks without committing. APPEND and SUBTRACT (of list configs) are
//! refused: the one list config Runnel honours, `cleanup.policy`, is SET
//! whole (`compact,delete`).

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

/// The overrides one resource's operations ask for.
fn changes(
    configs: &[runnel_protocol::kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
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
            OP_APPEND | OP_SUBTRACT => {
                return Err(TopicError::new(
                    ResponseError::InvalidConfig,
                    format!("APPEND and SUBTRACT are not supported for {name}: SET the whole value (for cleanup.policy, delete, compact or compact,delete)"),
                ));
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
        let outcome = topics::alter_resource(metadata, resource.resource_type, &name, || changes(&resource.configs), request.validate_only).await;
        let response = AlterConfigsResourceResponse::default().with_resource_type(resource.resource_type).with_resource_name(resource.resource_name);
        responses.push(match outcome {
            Ok(()) => response,
            Err(e) => response.with_error_code(code(e.code)).with_error_message(Some(str_bytes(e.message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
