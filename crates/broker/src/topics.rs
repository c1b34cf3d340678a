//! Topic errors with the Kafka codes clients expect, and the mapping from
//! topic configs to log settings.

use std::collections::BTreeMap;

use runnel_controller::ProposeError;
use runnel_controller::metadata::CommandError;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_storage::LogConfig;

/// A topic-level failure with the Kafka error code a client expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError {
    pub code: ResponseError,
    pub message: String,
}

impl TopicError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        TopicError { code, message: message.into() }
    }
}

impl From<CommandError> for TopicError {
    fn from(e: CommandError) -> Self {
        let code = match &e {
            CommandError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            CommandError::UnknownTopic(_) | CommandError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
            CommandError::InvalidTopicName(_) => ResponseError::InvalidTopicException,
            CommandError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            CommandError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            CommandError::InvalidConfig(_) => ResponseError::InvalidConfig,
            CommandError::UnknownBroker(_) => ResponseError::BrokerNotAvailable,
            CommandError::StaleEpoch(_) => ResponseError::FencedLeaderEpoch,
            CommandError::UnknownGroup(_) => ResponseError::GroupIdNotFound,
            CommandError::ClusterAlreadyInitialized(_) | CommandError::InvalidRequest(_) => ResponseError::InvalidRequest,
        };
        TopicError::new(code, e.to_string())
    }
}

impl From<ProposeError> for TopicError {
    fn from(e: ProposeError) -> Self {
        // Kafka answers REQUEST_TIMED_OUT when the controller cannot commit in
        // time; clients retry it.
        TopicError::new(ResponseError::RequestTimedOut, e.to_string())
    }
}

/// The log settings of a topic: the broker defaults with its overrides applied.
/// The overrides have passed the controller's validation.
pub fn log_config(defaults: &LogConfig, configs: &BTreeMap<String, String>) -> LogConfig {
    let mut c = defaults.clone();
    let long = |k: &str| configs.get(k).and_then(|v| v.trim().parse::<i64>().ok());
    if let Some(v) = long("retention.ms") {
        c.retention_ms = v;
    }
    if let Some(v) = long("retention.bytes") {
        c.retention_bytes = v;
    }
    if let Some(v) = long("segment.bytes") {
        c.segment_bytes = v as u64;
    }
    if let Some(v) = long("segment.ms") {
        c.segment_ms = v;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_map_onto_log_settings() {
        let c = BTreeMap::from([("retention.ms".to_string(), "1000".to_string()), ("segment.bytes".to_string(), "4096".to_string())]);
        let lc = log_config(&LogConfig::default(), &c);
        assert_eq!((lc.retention_ms, lc.segment_bytes), (1000, 4096));
        assert_eq!(log_config(&LogConfig::default(), &BTreeMap::new()), LogConfig::default());
    }

    #[test]
    fn controller_errors_map_to_kafka_codes() {
        let e: TopicError = CommandError::TopicAlreadyExists("t".into()).into();
        assert_eq!(e.code, ResponseError::TopicAlreadyExists);
        let e: TopicError = CommandError::InvalidReplicationFactor("x".into()).into();
        assert_eq!(e.code, ResponseError::InvalidReplicationFactor);
        let e: TopicError = ProposeError::NoQuorum.into();
        assert_eq!(e.code, ResponseError::RequestTimedOut);
        assert!(e.message.contains("majority"));
    }
}
