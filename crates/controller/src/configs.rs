//! What the controller validates before a change is applied: topic names,
//! topic configs and group ids. The broker reports the same names and
//! descriptions in DescribeConfigs.

use std::collections::BTreeMap;

use crate::command::CommandError;

/// Partitions per topic, at most.
pub const PARTITIONS_MAX: i32 = 100_000;

/// Kafka's rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), CommandError> {
    let invalid = |why: &str| Err(CommandError::InvalidTopicName(format!("topic name {name:?} {why}")));
    if name.is_empty() {
        return invalid("is empty");
    }
    if name.len() > 249 {
        return invalid("is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return invalid("is not allowed");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return invalid("may only contain ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// The type of a topic config's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
}

/// Topic configs Runnel understands: name, type, and a one-line description.
pub const TOPIC_CONFIGS: &[(&str, ConfigType, &str)] = &[
    ("cleanup.policy", ConfigType::String, "How old segments are discarded; only \"delete\" is supported."),
    ("retention.ms", ConfigType::Long, "Delete closed segments whose newest record is older than this; -1 keeps forever."),
    ("retention.bytes", ConfigType::Long, "Delete the oldest closed segments while the partition is larger than this; -1 for no limit."),
    ("segment.bytes", ConfigType::Int, "Roll to a new segment file at this size."),
    ("segment.ms", ConfigType::Long, "Roll to a new segment file after this long."),
    ("min.insync.replicas", ConfigType::Int, "Replicas that must have a batch before acks=all succeeds."),
    ("max.message.bytes", ConfigType::Int, "Largest record batch accepted."),
    ("unclean.leader.election.enable", ConfigType::Boolean, "Elect a replica outside the ISR when no ISR member is live (may lose data)."),
];

/// Segment size bounds, as the storage crate enforces them.
const SEGMENT_BYTES_MIN: i64 = 1024;
const SEGMENT_BYTES_MAX: i64 = i32::MAX as i64;

fn parse_long(name: &str, value: &str, min: i64, max: i64) -> Result<i64, CommandError> {
    match value.trim().parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(CommandError::InvalidConfig(format!("{name} must be an integer from {min} to {max}, got {value:?}"))),
    }
}

/// Checks one override: known name, valid value.
pub fn validate_config(name: &str, value: &str) -> Result<(), CommandError> {
    match name {
        "cleanup.policy" if value == "delete" => Ok(()),
        "cleanup.policy" => Err(CommandError::InvalidConfig(format!("cleanup.policy {value:?} is not supported; Runnel supports \"delete\""))),
        "retention.ms" | "retention.bytes" => parse_long(name, value, -1, i64::MAX).map(|_| ()),
        "segment.bytes" => parse_long(name, value, SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX).map(|_| ()),
        "segment.ms" => parse_long(name, value, 1, i64::MAX).map(|_| ()),
        "min.insync.replicas" => parse_long(name, value, 1, i64::from(i16::MAX)).map(|_| ()),
        "max.message.bytes" => parse_long(name, value, 0, i64::from(i32::MAX)).map(|_| ()),
        "unclean.leader.election.enable" if value == "true" || value == "false" => Ok(()),
        "unclean.leader.election.enable" => Err(CommandError::InvalidConfig(format!("unclean.leader.election.enable must be true or false, got {value:?}"))),
        other => Err(CommandError::InvalidConfig(format!("unknown topic config {other:?}"))),
    }
}

pub fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), CommandError> {
    configs.iter().try_for_each(|(k, v)| validate_config(k, v))
}

/// Group ids: non-empty, at most this long.
pub const GROUP_ID_MAX_CHARS: usize = 255;

pub fn validate_group_id(group: &str) -> Result<(), CommandError> {
    if group.is_empty() || group.chars().count() > GROUP_ID_MAX_CHARS {
        return Err(CommandError::InvalidRequest(format!("group id must have 1 to {GROUP_ID_MAX_CHARS} characters")));
    }
    Ok(())
}
