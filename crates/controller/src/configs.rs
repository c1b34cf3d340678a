//! What the controller validates before a change is applied: topic names,
//! topic configs and group ids. The broker reports the same names and
//! descriptions in DescribeConfigs.

use std::collections::BTreeMap;

use crate::command::{Command, CommandError};

/// Partitions per topic, at most.
pub const PARTITIONS_MAX: i32 = 100_000;

/// Kafka's rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
/// A new topic's name that differs from an existing one's only by '.' and
/// '_' is refused, as Kafka refuses it (the two collide in metric names).
/// Checked by the leader before it proposes a creation, not when entries
/// are applied: a log that already holds two such topics replays as it was.
pub fn check_topic_collision<'a>(name: &str, existing: impl IntoIterator<Item = &'a String>) -> Result<(), CommandError> {
    let folded = |n: &str| n.replace('.', "_");
    let mine = folded(name);
    match existing.into_iter().find(|other| other.as_str() != name && folded(other) == mine) {
        Some(other) => Err(CommandError::InvalidTopicName(format!(
            "topic name {name:?} collides with the existing topic {other:?} ('.' and '_' are the same in metric names)"
        ))),
        None => Ok(()),
    }
}

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
    Double,
    List,
}

/// Topic configs Runnel understands: name, type, and a one-line description.
pub const TOPIC_CONFIGS: &[(&str, ConfigType, &str)] = &[
    (
        "cleanup.policy",
        ConfigType::List,
        "delete (retention removes old segments), compact (the log cleaner keeps the latest record per key; from feature level 8), or compact,delete.",
    ),
    ("retention.ms", ConfigType::Long, "Delete closed segments whose newest record is older than this; -1 keeps forever."),
    ("retention.bytes", ConfigType::Long, "Delete the oldest closed segments while the partition is larger than this; -1 for no limit."),
    ("segment.bytes", ConfigType::Int, "Roll to a new segment file at this size."),
    ("segment.ms", ConfigType::Long, "Roll to a new segment file after this long."),
    ("min.insync.replicas", ConfigType::Int, "Replicas that must have a batch before acks=all succeeds."),
    ("max.message.bytes", ConfigType::Int, "Largest record batch accepted."),
    ("unclean.leader.election.enable", ConfigType::Boolean, "Elect a replica outside the ISR when no ISR member is live (may lose data)."),
];

/// Topic configs Kafka defines that Runnel accepts from feature level 2,
/// some acted on since (compression.type, message.timestamp.*, the
/// compaction settings), the rest not yet: name, type, Kafka's default, and what Runnel does with it. Kafka clients and tools set them when they create topics
/// (compression.type, message.timestamp.type, the compaction settings), and
/// refusing them stopped those tools at the door.
pub const ACCEPTED_CONFIGS: &[(&str, ConfigType, &str, &str)] = &[
    (
        "compression.type",
        ConfigType::String,
        "producer",
        "The codec batches are stored with: producer (as the producer compressed them), uncompressed, gzip, snappy, lz4 or zstd (the leader recompresses each produced batch that differs).",
    ),
    (
        "message.timestamp.type",
        ConfigType::String,
        "CreateTime",
        "CreateTime: records keep the producer's timestamps; LogAppendTime: the leader stamps each batch with the time it appends it.",
    ),
    (
        "message.timestamp.before.max.ms",
        ConfigType::Long,
        "9223372036854775807",
        "With CreateTime, a batch holding a record this much older than the broker's clock is refused (INVALID_TIMESTAMP, the records named).",
    ),
    (
        "message.timestamp.after.max.ms",
        ConfigType::Long,
        "9223372036854775807",
        "With CreateTime, a batch holding a record this much newer than the broker's clock is refused (INVALID_TIMESTAMP, the records named).",
    ),
    (
        "message.timestamp.difference.max.ms",
        ConfigType::Long,
        "9223372036854775807",
        "Deprecated in Kafka: the bound before and after the broker's clock where the two above are not set.",
    ),
    ("delete.retention.ms", ConfigType::Long, "86400000", "Compacted topics: a tombstone is kept this long past the newest record of its segment."),
    ("min.compaction.lag.ms", ConfigType::Long, "0", "Compacted topics: a segment is cleaned only once its newest record is this old."),
    (
        "max.compaction.lag.ms",
        ConfigType::Long,
        "9223372036854775807",
        "Compacted topics: a log whose oldest uncleaned segment is this old is cleaned whatever its dirty ratio.",
    ),
    ("min.cleanable.dirty.ratio", ConfigType::Double, "0.5", "Compacted topics: the share of uncleaned bytes at which the cleaner takes the log."),
    ("file.delete.delay.ms", ConfigType::Long, "60000", "Accepted; deleted segments go at once."),
    ("flush.messages", ConfigType::Long, "9223372036854775807", "Accepted; the node's flush policy decides (fsync before acknowledging by default)."),
    ("flush.ms", ConfigType::Long, "9223372036854775807", "Accepted; the node's flush policy decides (fsync before acknowledging by default)."),
    ("index.interval.bytes", ConfigType::Int, "4096", "Accepted; the node's index interval applies."),
    ("segment.index.bytes", ConfigType::Int, "10485760", "Accepted; indexes grow as needed."),
    ("segment.jitter.ms", ConfigType::Long, "0", "Accepted; not applied."),
    ("preallocate", ConfigType::Boolean, "false", "Accepted; not applied."),
    ("message.downconversion.enable", ConfigType::Boolean, "true", "Accepted; Runnel serves record batch v2 only."),
    ("leader.replication.throttled.replicas", ConfigType::List, "", "Accepted; replication is not throttled yet."),
    ("follower.replication.throttled.replicas", ConfigType::List, "", "Accepted; replication is not throttled yet."),
    ("remote.storage.enable", ConfigType::Boolean, "false", "Accepted; tiered storage does not exist."),
    ("local.retention.ms", ConfigType::Long, "-2", "Accepted; tiered storage does not exist."),
    ("local.retention.bytes", ConfigType::Long, "-2", "Accepted; tiered storage does not exist."),
];

/// The feature level from which [`ACCEPTED_CONFIGS`] are accepted: a node
/// of an earlier version refuses them, so a cluster that still has one must
/// refuse them too, or its nodes' metadata would differ.
pub const ACCEPTED_CONFIGS_LEVEL: u16 = 2;

/// Checks a value against an accepted config's type.
fn validate_accepted(name: &str, kind: ConfigType, value: &str) -> Result<(), CommandError> {
    let invalid = |what: &str| Err(CommandError::InvalidConfig(format!("{name} must be {what}, got {value:?}")));
    match (name, kind) {
        ("compression.type", _) => match value {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
            _ => invalid("one of producer, uncompressed, gzip, snappy, lz4, zstd"),
        },
        ("message.timestamp.type", _) => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => invalid("CreateTime or LogAppendTime"),
        },
        ("min.cleanable.dirty.ratio", _) => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => invalid("a number from 0 to 1"),
        },
        (_, ConfigType::Boolean) if value == "true" || value == "false" => Ok(()),
        (_, ConfigType::Boolean) => invalid("true or false"),
        (_, ConfigType::Int) => parse_long(name, value, 0, i64::from(i32::MAX)).map(|_| ()),
        (_, ConfigType::Long) => parse_long(name, value, -2, i64::MAX).map(|_| ()),
        (_, ConfigType::Double) => value.trim().parse::<f64>().map(|_| ()).or_else(|_| invalid("a number")),
        (_, ConfigType::String | ConfigType::List) => Ok(()),
    }
}

/// Lower bounds Kafka sets on topic configs that earlier versions of
/// Runnel accepted down to -2. A value below one is meaningless (a negative
/// tombstone lifetime) or harmful (a negative timestamp bound refuses every
/// produce).
const NEW_VALUE_MINIMUMS: &[(&str, i64)] = &[
    ("delete.retention.ms", 0),
    ("min.compaction.lag.ms", 0),
    ("max.compaction.lag.ms", 1),
    ("message.timestamp.before.max.ms", 0),
    ("message.timestamp.after.max.ms", 0),
    ("message.timestamp.difference.max.ms", 0),
    ("file.delete.delay.ms", 0),
    ("flush.messages", 1),
    ("flush.ms", 0),
    ("segment.jitter.ms", 0),
];

/// Checks the configs a new proposal sets against [`NEW_VALUE_MINIMUMS`].
/// The leader checks this before it proposes (and validate_only with it),
/// not when entries are applied: a log that already holds such a value
/// replays as it was, on every version.
pub fn check_new_configs(command: &Command) -> Result<(), CommandError> {
    let set: Vec<(&String, &String)> = match command {
        Command::CreateTopic { configs, .. } | Command::CreateTopicWithReplicas { configs, .. } => configs.iter().collect(),
        Command::AlterTopicConfig { configs, .. } => configs.iter().filter_map(|(k, v)| Some((k, v.as_ref()?))).collect(),
        _ => return Ok(()),
    };
    for (name, value) in set {
        if let Some((_, min)) = NEW_VALUE_MINIMUMS.iter().find(|(n, _)| n == name) {
            parse_long(name, value, *min, i64::MAX)?;
        }
    }
    Ok(())
}

/// Segment size bounds, as the storage crate enforces them.
const SEGMENT_BYTES_MIN: i64 = 1024;
const SEGMENT_BYTES_MAX: i64 = i32::MAX as i64;

fn parse_long(name: &str, value: &str, min: i64, max: i64) -> Result<i64, CommandError> {
    match value.trim().parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(CommandError::InvalidConfig(format!("{name} must be an integer from {min} to {max}, got {value:?}"))),
    }
}

/// Checks one override, in a cluster at feature level `level`: known name,
/// valid value.
pub fn validate_config(name: &str, value: &str, level: u16) -> Result<(), CommandError> {
    if let Some((_, kind, _, _)) = ACCEPTED_CONFIGS.iter().find(|(n, ..)| *n == name) {
        if level < ACCEPTED_CONFIGS_LEVEL {
            return Err(CommandError::InvalidConfig(format!(
                "{name} is accepted from feature level {ACCEPTED_CONFIGS_LEVEL}, and this cluster is at level {level}: finish the upgrade with runnelctl cluster upgrade"
            )));
        }
        return validate_accepted(name, *kind, value);
    }
    match name {
        "cleanup.policy" => validate_cleanup_policy(value, level),
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

/// `delete`, `compact`, or both (a list), compaction from
/// [`crate::features::COMPACTION_LEVEL`].
fn validate_cleanup_policy(value: &str, level: u16) -> Result<(), CommandError> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    let known = parts.iter().all(|p| *p == "delete" || *p == "compact");
    let repeated = parts.iter().enumerate().any(|(i, p)| parts[..i].contains(p));
    if !known || repeated {
        return Err(CommandError::InvalidConfig(format!("cleanup.policy must be delete, compact or compact,delete, got {value:?}")));
    }
    let compaction = crate::features::COMPACTION_LEVEL;
    if parts.contains(&"compact") && level < compaction {
        return Err(CommandError::InvalidConfig(format!(
            "cleanup.policy compact is accepted from feature level {compaction}, and this cluster is at level {level}: finish the upgrade with runnelctl cluster upgrade"
        )));
    }
    Ok(())
}

pub fn validate_configs(configs: &BTreeMap<String, String>, level: u16) -> Result<(), CommandError> {
    configs.iter().try_for_each(|(k, v)| validate_config(k, v, level))
}

/// Group ids: non-empty, at most this long.
pub const GROUP_ID_MAX_CHARS: usize = 255;

pub fn validate_group_id(group: &str) -> Result<(), CommandError> {
    if group.is_empty() || group.chars().count() > GROUP_ID_MAX_CHARS {
        return Err(CommandError::InvalidRequest(format!("group id must have 1 to {GROUP_ID_MAX_CHARS} characters")));
    }
    Ok(())
}

/// Broker configs that can be changed at run time (level 6), cluster-wide
/// or per broker, with what they mean in Runnel.
pub const DYNAMIC_BROKER_CONFIGS: &[(&str, &str)] = &[
    (
        "follower.replication.throttled.rate",
        "Bytes per second this broker's followers copy for partitions catching up (its catching-up fetch lane, over all leaders); at least 1048576. Removing it goes back to --replica-catch-up-max-bytes-per-sec.",
    ),
    (
        "leader.replication.throttled.rate",
        "Bytes per second this broker, as a leader, sends to followers outside the ISR (catching up), over all its partitions; at least 1048576. Removing it lifts the limit.",
    ),
    ("log.retention.ms", "retention.ms of topics without their own (level 10); removing it goes back to --retention-ms."),
    ("log.retention.bytes", "retention.bytes of topics without their own (level 10); removing it goes back to --retention-bytes."),
    ("log.segment.bytes", "segment.bytes of topics without their own (level 10); new segments take it. Removing it goes back to --segment-bytes."),
    ("log.roll.ms", "segment.ms of topics without their own (level 10)."),
    (
        "log.cleanup.policy",
        "cleanup.policy of topics without their own (level 10): delete, compact or compact,delete. Compaction refuses records without keys.",
    ),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms of compacted topics without their own (level 10)."),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms of compacted topics without their own (level 10)."),
    ("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms of compacted topics without their own (level 10)."),
    ("log.cleaner.min.cleanable.ratio", "min.cleanable.dirty.ratio of compacted topics without their own (level 10)."),
    (
        "log.cleaner.io.max.bytes.per.second",
        "Bytes per second the log cleaner reads and writes, at most (level 10); removing it goes back to --log-cleaner-io-max-bytes-per-second.",
    ),
    ("min.insync.replicas", "min.insync.replicas of topics without their own (level 11); without it, a majority of the replicas (2 of 3)."),
    ("message.max.bytes", "max.message.bytes of topics without their own (level 11); removing it goes back to --message-max-bytes."),
    ("compression.type", "compression.type of topics without their own (level 11); without it, producer (batches kept as produced)."),
    ("log.message.timestamp.type", "message.timestamp.type of topics without their own (level 11): CreateTime or LogAppendTime."),
    ("log.message.timestamp.before.max.ms", "message.timestamp.before.max.ms of topics without their own (level 11)."),
    ("log.message.timestamp.after.max.ms", "message.timestamp.after.max.ms of topics without their own (level 11)."),
    (
        "unclean.leader.election.enable",
        "unclean.leader.election.enable of topics without their own (level 12); for every broker only, as the controller elects leaders.",
    ),
];

/// Dynamic broker configs that set a topic config for the topics without
/// their own value: broker name, topic config name. The log settings are
/// level 10's, the produce settings ([`TOPIC_DEFAULT_CONFIGS`]) level 11's.
pub const LOG_DEFAULT_CONFIGS: &[(&str, &str)] = &[
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("log.cleanup.policy", "cleanup.policy"),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    ("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms"),
    ("log.cleaner.min.cleanable.ratio", "min.cleanable.dirty.ratio"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("message.max.bytes", "max.message.bytes"),
    ("compression.type", "compression.type"),
    ("log.message.timestamp.type", "message.timestamp.type"),
    ("log.message.timestamp.before.max.ms", "message.timestamp.before.max.ms"),
    ("log.message.timestamp.after.max.ms", "message.timestamp.after.max.ms"),
    ("unclean.leader.election.enable", "unclean.leader.election.enable"),
];

/// The dynamic broker config that lets the controller elect a replica
/// outside the ISR of a topic without its own setting (level 12). The
/// controller elects for the whole cluster, so it is set for every broker
/// only (Kafka's empty resource name), never per broker.
pub const UNCLEAN_ELECTION: &str = "unclean.leader.election.enable";

/// The broker names in [`LOG_DEFAULT_CONFIGS`] accepted from
/// [`crate::features::TOPIC_DEFAULTS_LEVEL`]: what a partition leader
/// checks and does with a produced batch.
pub const TOPIC_DEFAULT_CONFIGS: &[&str] = &[
    "min.insync.replicas",
    "message.max.bytes",
    "compression.type",
    "log.message.timestamp.type",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms",
];

/// The type of a dynamic broker config's value.
pub fn broker_config_type(name: &str) -> ConfigType {
    let topic_name = LOG_DEFAULT_CONFIGS.iter().find(|(b, _)| *b == name).map(|(_, t)| *t);
    let topic_type = topic_name.and_then(|t| {
        TOPIC_CONFIGS.iter().find(|(n, ..)| *n == t).map(|(_, k, _)| *k).or_else(|| ACCEPTED_CONFIGS.iter().find(|(n, ..)| *n == t).map(|(_, k, ..)| *k))
    });
    match (topic_type, name) {
        (Some(kind), _) => kind,
        (None, "log.cleaner.io.max.bytes.per.second") => ConfigType::Double,
        (None, _) => ConfigType::Long,
    }
}

/// Checks one dynamic broker config (`None`: its removal).
pub fn validate_broker_config(name: &str, value: Option<&str>, level: u16) -> Result<(), CommandError> {
    if !DYNAMIC_BROKER_CONFIGS.iter().any(|(n, _)| *n == name) {
        let known: Vec<&str> = DYNAMIC_BROKER_CONFIGS.iter().map(|(n, _)| *n).collect();
        return Err(CommandError::InvalidConfig(format!(
            "{name} cannot be changed at run time; the broker configs that can are {}; set the others with flags, RUNNEL_* variables or the config file",
            known.join(", ")
        )));
    }
    // A node of an earlier version refuses this name, so a cluster that may
    // still have one refuses it too, or their metadata would differ.
    let leader_level = crate::features::LEADER_THROTTLE_LEVEL;
    let needs = match name {
        "leader.replication.throttled.rate" => leader_level,
        "follower.replication.throttled.rate" => crate::features::BROKER_CONFIGS_LEVEL,
        _ if TOPIC_DEFAULT_CONFIGS.contains(&name) => crate::features::TOPIC_DEFAULTS_LEVEL,
        UNCLEAN_ELECTION => crate::features::UNCLEAN_DEFAULT_LEVEL,
        _ => crate::features::LOG_DEFAULTS_LEVEL,
    };
    if level < needs {
        return Err(CommandError::InvalidConfig(format!(
            "{name} is accepted from feature level {needs}, and this cluster is at level {level}: finish the upgrade with runnelctl cluster upgrade"
        )));
    }
    if let Some((_, topic_name)) = LOG_DEFAULT_CONFIGS.iter().find(|(b, _)| *b == name) {
        // The same values the topic config takes.
        return match value {
            None => Ok(()),
            Some(v) => validate_config(topic_name, v, level).map_err(|e| match e {
                CommandError::InvalidConfig(why) => CommandError::InvalidConfig(format!("{name}: {why}")),
                other => other,
            }),
        };
    }
    if name == "log.cleaner.io.max.bytes.per.second" {
        return match value.map(|v| v.trim().parse::<f64>()) {
            None => Ok(()),
            Some(Ok(rate)) if rate.is_finite() && rate >= 1.0 => Ok(()),
            Some(_) => Err(CommandError::InvalidConfig(format!("{name} is a byte rate of at least 1, got {:?}", value.unwrap_or_default()))),
        };
    }
    match value.map(str::parse::<u64>) {
        None => Ok(()),
        Some(Ok(rate)) if rate >= 1024 * 1024 => Ok(()),
        Some(_) => Err(CommandError::InvalidConfig(format!("{name} is a byte rate of at least 1048576 (1 MiB/s), got {:?}", value.unwrap_or_default()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_differ_only_by_dot_and_underscore_collide() {
        let existing: Vec<String> = vec!["col.a".into(), "orders".into()];
        assert!(matches!(check_topic_collision("col_a", &existing), Err(CommandError::InvalidTopicName(m)) if m.contains("\"col.a\"")));
        assert!(check_topic_collision("col.a", &existing).is_ok(), "the same name is left to the already-exists check");
        assert!(check_topic_collision("col-a", &existing).is_ok());
        assert!(check_topic_collision("orders_2", &existing).is_ok());
        let mixed: Vec<String> = vec!["a.b_c".into()];
        assert!(check_topic_collision("a_b.c", &mixed).is_err());
    }

    #[test]
    fn new_values_below_kafka_s_floors_are_refused_and_what_applies_stays_as_it_was() {
        let create = |k: &str, v: &str| Command::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::nil(),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::from([(k.to_string(), v.to_string())]),
        };
        let alter =
            |k: &str, v: Option<&str>| Command::AlterTopicConfig { name: "t".into(), configs: BTreeMap::from([(k.to_string(), v.map(str::to_string))]) };
        for (name, floor) in NEW_VALUE_MINIMUMS {
            let below = (floor - 1).to_string();
            let refused = check_new_configs(&create(name, &below));
            assert!(matches!(&refused, Err(CommandError::InvalidConfig(m)) if m.contains(&format!("from {floor} to"))), "{name}={below}: {refused:?}");
            assert!(check_new_configs(&alter(name, Some(&below))).is_err(), "{name}={below} by alter");
            assert!(check_new_configs(&create(name, &floor.to_string())).is_ok(), "{name}={floor}");
            assert!(check_new_configs(&alter(name, None)).is_ok(), "removing {name}");
            // Entries committed before the floors still apply on replay.
            assert!(validate_config(name, "-1", u16::MAX).is_ok(), "{name}=-1 applies");
        }
        assert!(check_new_configs(&create("retention.ms", "-1")).is_ok(), "retention.ms -1 is unlimited");
    }
}
