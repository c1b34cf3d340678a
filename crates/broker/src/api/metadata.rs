//! Metadata: brokers, controller, topics and partition leadership. Unknown
//! topics are created here when auto-creation is on and the client allows it.

use std::collections::BTreeMap;
use std::sync::Arc;

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use runnel_protocol::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::topics::{TopicMeta, validate_topic_name};

pub(crate) fn handle(broker: &Arc<Broker>, request: MetadataRequest, version: i16) -> MetadataResponse {
    let node = broker.config.node_id;
    let brokers = vec![
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(broker.config.advertised_host.clone()))
            .with_port(i32::from(broker.config.advertised_port))
            .with_rack(broker.config.rack.clone().map(str_bytes)),
    ];
    // Before v4 a client could not opt out of auto-creation.
    let may_create = broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    // v0 asks for every topic with an empty list; later versions with null.
    let wanted: Option<Vec<(Option<String>, Uuid)>> = match request.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()),
    };
    let topics = match wanted {
        None => {
            let registry = broker.registry();
            registry.topics().map(|(name, meta)| topic(node, name, meta)).collect()
        }
        Some(wanted) => wanted
            .into_iter()
            .map(|(name, id)| {
                let name = match name {
                    Some(n) => n,
                    None => match broker.registry().name_of(id) {
                        Some(n) => n.to_string(),
                        None => {
                            return MetadataResponseTopic::default()
                                .with_topic_id(id)
                                .with_error_code(code(ResponseError::UnknownTopicId));
                        }
                    },
                };
                lookup_or_create(broker, node, &name, may_create)
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(broker.cluster_id())))
        .with_controller_id(BrokerId(node))
        .with_topics(topics)
}

fn lookup_or_create(broker: &Broker, node: i32, name: &str, may_create: bool) -> MetadataResponseTopic {
    let error = |e: ResponseError| MetadataResponseTopic::default().with_name(Some(TopicName(str_bytes(name)))).with_error_code(code(e));
    if let Some(meta) = broker.registry().get(name).cloned() {
        return topic(node, name, &meta);
    }
    if let Err(e) = validate_topic_name(name) {
        return error(e.code);
    }
    if !may_create {
        return error(ResponseError::UnknownTopicOrPartition);
    }
    match broker.create_topic(name, broker.config.default_partitions, BTreeMap::new()) {
        Ok(meta) => topic(node, name, &meta),
        // Created by a concurrent request in between: describe it.
        Err(e) if e.code == ResponseError::TopicAlreadyExists => match broker.registry().get(name).cloned() {
            Some(meta) => topic(node, name, &meta),
            None => error(ResponseError::UnknownTopicOrPartition),
        },
        Err(e) => {
            tracing::warn!(topic = name, error = %e.message, "auto-creation failed");
            error(e.code)
        }
    }
}

fn topic(node: i32, name: &str, meta: &TopicMeta) -> MetadataResponseTopic {
    let partitions = (0..meta.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(node))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(node)])
                .with_isr_nodes(vec![BrokerId(node)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(name))))
        .with_topic_id(meta.id)
        .with_partitions(partitions)
}
