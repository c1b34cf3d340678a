//! DeleteTopics, by name (all versions) or by topic id (v6).

use std::sync::Arc;

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use runnel_protocol::kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{code, str_bytes};
use crate::broker::Broker;

pub(crate) fn handle(broker: &Arc<Broker>, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request.topics.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        request.topic_names.into_iter().map(|n| (Some(n.0.to_string()), Uuid::nil())).collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let result = DeletableTopicResult::default().with_name(name.clone().map(|n| TopicName(str_bytes(n)))).with_topic_id(id);
            let name = match name {
                Some(n) => n,
                None => match broker.registry().name_of(id) {
                    Some(n) => n.to_string(),
                    None => {
                        return result
                            .with_error_code(code(ResponseError::UnknownTopicId))
                            .with_error_message(Some(str_bytes(format!("no topic has id {id}"))));
                    }
                },
            };
            match broker.delete_topic(&name) {
                Ok(meta) => result.with_name(Some(TopicName(str_bytes(name)))).with_topic_id(meta.id),
                Err(e) => result.with_error_code(code(e.code)).with_error_message(Some(str_bytes(e.message))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
