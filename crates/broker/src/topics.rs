//! The topic registry of a single node: names, ids, partition counts and
//! config overrides, persisted in `<data_dir>/topics.json`.
//!
//! Each change is written to a temporary file, fsynced, and renamed over the
//! old one, so a crash leaves either the old or the new registry. A later
//! change moves this state into the Raft controller; the handlers only see the
//! methods below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_storage::LogConfig;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
    /// Overrides of the broker's defaults, by Kafka config name.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RegistryFile {
    cluster_id: String,
    node_id: i32,
    topics: BTreeMap<String, TopicMeta>,
    /// Producer ids below this have been handed out.
    #[serde(default)]
    next_producer_id: i64,
}

pub struct TopicRegistry {
    path: PathBuf,
    file: RegistryFile,
}

/// The Kafka config type codes DescribeConfigs v3+ reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    String = 2,
    Int = 3,
    Long = 5,
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
];

/// Kafka's rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |why: &str| Err(TopicError::new(ResponseError::InvalidTopicException, format!("topic name {name:?} {why}")));
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

fn parse_long(name: &str, value: &str, min: i64) -> Result<i64, TopicError> {
    match value.trim().parse::<i64>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(TopicError::new(ResponseError::InvalidConfig, format!("{name} must be an integer of at least {min}, got {value:?}"))),
    }
}

/// Checks every override: known name, valid value.
pub fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    for (name, value) in configs {
        match name.as_str() {
            "cleanup.policy" => {
                if value != "delete" {
                    return Err(TopicError::new(ResponseError::InvalidConfig, format!("cleanup.policy {value:?} is not supported; Runnel supports \"delete\"")));
                }
            }
            "retention.ms" | "retention.bytes" => {
                parse_long(name, value, -1)?;
            }
            "segment.bytes" => {
                let v = parse_long(name, value, runnel_storage::config::SEGMENT_BYTES_MIN as i64)?;
                if v as u64 > runnel_storage::config::SEGMENT_BYTES_MAX {
                    return Err(TopicError::new(ResponseError::InvalidConfig, format!("segment.bytes must be at most {}", runnel_storage::config::SEGMENT_BYTES_MAX)));
                }
            }
            "segment.ms" | "min.insync.replicas" => {
                parse_long(name, value, 1)?;
            }
            "max.message.bytes" => {
                parse_long(name, value, 0)?;
            }
            other => return Err(TopicError::new(ResponseError::InvalidConfig, format!("unknown topic config {other:?}"))),
        }
    }
    Ok(())
}

/// The log settings of a topic: the broker defaults with its overrides applied.
/// The overrides must have passed [`validate_configs`].
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

impl TopicRegistry {
    /// Opens the registry in `data_dir`, creating it (with a new cluster id)
    /// on first start. Refuses a data directory that belongs to another node.
    pub fn open(data_dir: &Path, node_id: i32) -> Result<TopicRegistry, String> {
        let path = data_dir.join("topics.json");
        let file = match std::fs::read(&path) {
            Ok(raw) => {
                let file: RegistryFile = serde_json::from_slice(&raw).map_err(|e| format!("read {}: {e}", path.display()))?;
                if file.node_id != node_id {
                    return Err(format!(
                        "data directory {} belongs to node {} but this is node {node_id}; start with --node-id {} or another data directory",
                        data_dir.display(),
                        file.node_id,
                        file.node_id
                    ));
                }
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                RegistryFile { cluster_id: new_cluster_id(), node_id, topics: BTreeMap::new(), next_producer_id: 0 }
            }
            Err(e) => return Err(format!("read {}: {e}", path.display())),
        };
        let registry = TopicRegistry { path, file };
        registry.persist().map_err(|e| format!("write {}: {e}", registry.path.display()))?;
        Ok(registry)
    }

    fn persist(&self) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = self.path.with_extension("json.tmp");
        let raw = serde_json::to_vec_pretty(&self.file).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&raw)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn persist_or_error(&self) -> Result<(), TopicError> {
        self.persist().map_err(|e| TopicError::new(ResponseError::KafkaStorageError, format!("persist topic registry: {e}")))
    }

    pub fn cluster_id(&self) -> &str {
        &self.file.cluster_id
    }

    pub fn get(&self, name: &str) -> Option<&TopicMeta> {
        self.file.topics.get(name)
    }

    pub fn name_of(&self, id: Uuid) -> Option<&str> {
        self.file.topics.iter().find(|(_, t)| t.id == id).map(|(n, _)| n.as_str())
    }

    pub fn topics(&self) -> impl Iterator<Item = (&String, &TopicMeta)> {
        self.file.topics.iter()
    }

    /// Checks a creation without making it.
    pub fn check_create(&self, name: &str, partitions: i32, configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
        validate_topic_name(name)?;
        if self.file.topics.contains_key(name) {
            return Err(TopicError::new(ResponseError::TopicAlreadyExists, format!("topic {name:?} already exists")));
        }
        if partitions < 1 {
            return Err(TopicError::new(ResponseError::InvalidPartitions, format!("number of partitions must be at least 1, got {partitions}")));
        }
        if partitions > 100_000 {
            return Err(TopicError::new(ResponseError::InvalidPartitions, format!("number of partitions must be at most 100000, got {partitions}")));
        }
        validate_configs(configs)
    }

    pub fn create(&mut self, name: &str, partitions: i32, configs: BTreeMap<String, String>) -> Result<TopicMeta, TopicError> {
        self.check_create(name, partitions, &configs)?;
        let meta = TopicMeta { id: Uuid::new_v4(), partitions, configs };
        self.file.topics.insert(name.to_string(), meta.clone());
        if let Err(e) = self.persist_or_error() {
            self.file.topics.remove(name);
            return Err(e);
        }
        Ok(meta)
    }

    pub fn delete(&mut self, name: &str) -> Result<TopicMeta, TopicError> {
        let Some(meta) = self.file.topics.remove(name) else {
            return Err(TopicError::new(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist")));
        };
        if let Err(e) = self.persist_or_error() {
            self.file.topics.insert(name.to_string(), meta);
            return Err(e);
        }
        Ok(meta)
    }

    /// Checks an increase of a topic's partition count without making it.
    pub fn check_partitions(&self, name: &str, count: i32) -> Result<&TopicMeta, TopicError> {
        let Some(meta) = self.file.topics.get(name) else {
            return Err(TopicError::new(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist")));
        };
        if count <= meta.partitions {
            return Err(TopicError::new(
                ResponseError::InvalidPartitions,
                format!("topic {name:?} has {} partitions; the new count must be larger, got {count}", meta.partitions),
            ));
        }
        if count > 100_000 {
            return Err(TopicError::new(ResponseError::InvalidPartitions, format!("number of partitions must be at most 100000, got {count}")));
        }
        Ok(meta)
    }

    /// Reserves `count` producer ids, durably, so none is handed out twice
    /// even across restarts.
    pub fn allocate_producer_ids(&mut self, count: i64) -> Result<std::ops::Range<i64>, TopicError> {
        let start = self.file.next_producer_id;
        self.file.next_producer_id = start + count;
        if let Err(e) = self.persist_or_error() {
            self.file.next_producer_id = start;
            return Err(e);
        }
        Ok(start..start + count)
    }

    pub fn set_partitions(&mut self, name: &str, count: i32) -> Result<TopicMeta, TopicError> {
        let old = self.check_partitions(name, count)?.partitions;
        let meta = self.file.topics.get_mut(name).expect("checked above");
        meta.partitions = count;
        let meta = meta.clone();
        if let Err(e) = self.persist_or_error() {
            self.file.topics.get_mut(name).expect("present").partitions = old;
            return Err(e);
        }
        Ok(meta)
    }
}

fn new_cluster_id() -> String {
    // Kafka cluster ids are 22-character URL-safe base64 of a UUID; a plain
    // UUID without dashes is just as unique and easier to read.
    Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "orders.v1", "A_b-c", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "has space", "sl/ash", "ünï", &"x".repeat(250)] {
            assert_eq!(validate_topic_name(bad).unwrap_err().code, ResponseError::InvalidTopicException, "{bad}");
        }
    }

    #[test]
    fn configs_are_checked_and_applied() {
        let mut c = BTreeMap::new();
        c.insert("retention.ms".to_string(), "1000".to_string());
        c.insert("segment.bytes".to_string(), "4096".to_string());
        validate_configs(&c).unwrap();
        let lc = log_config(&LogConfig::default(), &c);
        assert_eq!((lc.retention_ms, lc.segment_bytes), (1000, 4096));
        for (k, v) in [("retention.ms", "-2"), ("segment.bytes", "10"), ("cleanup.policy", "compact"), ("no.such", "1"), ("min.insync.replicas", "x")] {
            let one = BTreeMap::from([(k.to_string(), v.to_string())]);
            assert_eq!(validate_configs(&one).unwrap_err().code, ResponseError::InvalidConfig, "{k}={v}");
        }
    }

    #[test]
    fn registry_persists_and_refuses_another_node() {
        let dir = tempfile::tempdir().unwrap();
        let cluster_id = {
            let mut r = TopicRegistry::open(dir.path(), 1).unwrap();
            r.create("t", 3, BTreeMap::new()).unwrap();
            assert_eq!(r.create("t", 1, BTreeMap::new()).unwrap_err().code, ResponseError::TopicAlreadyExists);
            assert_eq!(r.create("u", 0, BTreeMap::new()).unwrap_err().code, ResponseError::InvalidPartitions);
            r.set_partitions("t", 5).unwrap();
            assert_eq!(r.set_partitions("t", 5).unwrap_err().code, ResponseError::InvalidPartitions);
            r.cluster_id().to_string()
        };
        let mut r = TopicRegistry::open(dir.path(), 1).unwrap();
        assert_eq!(r.cluster_id(), cluster_id);
        assert_eq!(r.allocate_producer_ids(10).unwrap(), 0..10);
        drop(r);
        let mut r = TopicRegistry::open(dir.path(), 1).unwrap();
        assert_eq!(r.allocate_producer_ids(10).unwrap(), 10..20, "ids are never handed out twice");
        assert_eq!(r.get("t").unwrap().partitions, 5);
        let err = TopicRegistry::open(dir.path(), 2).err().unwrap();
        assert!(err.contains("belongs to node 1"), "{err}");
    }
}
