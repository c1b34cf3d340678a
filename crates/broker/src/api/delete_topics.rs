//! DeleteTopics through the controller, by name (all versions) or by topic id (v6).

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use runnel_protocol::kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use runnel_controller::Metadata;

use super::{code, str_bytes};
use crate::acl::{Access, Resource, op};
use crate::topics;

pub(crate) async fn handle(access: &Access, metadata: &Metadata, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request.topics.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        request.topic_names.into_iter().map(|n| (Some(n.0.to_string()), Uuid::nil())).collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let result = DeletableTopicResult::default().with_name(name.clone().map(|n| TopicName(str_bytes(n)))).with_topic_id(id);
        let state = metadata.state();
        let image = &state.image;
        let name = match name {
            Some(n) => n,
            None => match image.topics.iter().find(|(_, t)| t.id == id) {
                Some((n, _)) => n.clone(),
                None => {
                    responses
                        .push(result.with_error_code(code(ResponseError::UnknownTopicId)).with_error_message(Some(str_bytes(format!("no topic has id {id}")))));
                    continue;
                }
            },
        };
        let topic_id = image.topics.get(&name).map_or(id, |t| t.id);
        if !access.allowed(Resource::Topic, &name, op::DELETE) {
            let message = format!("{} may not delete topic {name}", access.principal());
            responses.push(result.with_error_code(code(ResponseError::TopicAuthorizationFailed)).with_error_message(Some(str_bytes(message))));
            continue;
        }
        responses.push(match topics::delete_topic(metadata, &name).await {
            Ok(()) => result.with_name(Some(TopicName(str_bytes(name)))).with_topic_id(topic_id),
            Err(e) => result.with_error_code(code(e.code)).with_error_message(Some(str_bytes(e.message))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
