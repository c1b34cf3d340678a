//! CreatePartitions through the controller, with validate_only, by count
//! (placed by the controller) or with a replica list per new partition.

use runnel_controller::metadata::Command;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use runnel_protocol::kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use runnel_controller::Metadata;

use super::{code, str_bytes};
use crate::acl::{Access, Resource, op};
use crate::topics::{self, TopicError};

/// `replicas_per_broker_max` as in [`topics::dry_run`].
pub(crate) async fn handle(access: &Access, metadata: &Metadata, request: CreatePartitionsRequest, replicas_per_broker_max: usize) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let outcome: Result<(), TopicError> = async {
            if !access.allowed(Resource::Topic, &name, op::ALTER) {
                return Err(TopicError::new(ResponseError::TopicAuthorizationFailed, format!("{} may not alter topic {name}", access.principal())));
            }
            if let Some(assignments) = &topic.assignments {
                let lists: Vec<Vec<i32>> = assignments.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect();
                return topics::add_partitions_with_replicas(metadata, &name, topic.count, &lists, request.validate_only, replicas_per_broker_max).await;
            }
            if request.validate_only {
                topics::dry_run(metadata, &Command::CreatePartitions { name: name.clone(), count: topic.count }, replicas_per_broker_max)?;
                return Ok(());
            }
            topics::add_partitions(metadata, &name, topic.count, replicas_per_broker_max).await
        }
        .await;
        let result = CreatePartitionsTopicResult::default().with_name(topic.name);
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => result.with_error_code(code(e.code)).with_error_message(Some(str_bytes(e.message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
