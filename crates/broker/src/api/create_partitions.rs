//! CreatePartitions: grow a topic's partition count, with validate_only.

use std::sync::Arc;

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use runnel_protocol::kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::topics::TopicError;

pub(crate) fn handle(broker: &Arc<Broker>, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let outcome = (|| -> Result<(), TopicError> {
                if let Some(assignments) = &topic.assignments {
                    let node = broker.config.node_id;
                    if assignments.iter().any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node) {
                        return Err(TopicError::new(ResponseError::InvalidReplicaAssignment, format!("new partitions must be assigned to broker {node} only")));
                    }
                }
                if request.validate_only {
                    broker.registry().check_partitions(&name, topic.count).map(|_| ())
                } else {
                    broker.add_partitions(&name, topic.count).map(|_| ())
                }
            })();
            let result = CreatePartitionsTopicResult::default().with_name(topic.name);
            match outcome {
                Ok(()) => result,
                Err(e) => result.with_error_code(code(e.code)).with_error_message(Some(str_bytes(e.message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
