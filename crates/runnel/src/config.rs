//! Configuration: command-line flags, then `RUNNEL_*` environment variables,
//! then the TOML file given with `--config`, then defaults. Every setting has
//! the same name in all three places (`--segment-bytes`, `RUNNEL_SEGMENT_BYTES`,
//! `segment_bytes = ...`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use runnel_broker::BrokerConfig;
use runnel_storage::FlushPolicy;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(name = "runnel", version, about = "Runnel: a Kafka-compatible streaming log")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start one node with every default for trying Runnel out: data in
    /// ./runnel-data, Kafka on 127.0.0.1:9092, topics created on first use.
    Dev(Settings),
    /// Start a node from a TOML file, flags and RUNNEL_* variables.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below, by their snake_case names.
    #[arg(long, env = "RUNNEL_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

/// Every node setting. Unset values fall through to the next source.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// This node's id [default: 1].
    #[arg(long, env = "RUNNEL_NODE_ID")]
    pub node_id: Option<i32>,
    /// Directory for topic metadata and partition logs [default: ./runnel-data].
    #[arg(long, env = "RUNNEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds, HOST:PORT; port 0 picks a free port [default: 127.0.0.1:9092].
    #[arg(long, env = "RUNNEL_KAFKA_LISTENER")]
    pub kafka_listener: Option<String>,
    /// HOST:PORT clients are told to connect to [default: the listener address].
    #[arg(long, env = "RUNNEL_ADVERTISED_KAFKA")]
    pub advertised_kafka: Option<String>,
    /// Rack of this node, reported in metadata.
    #[arg(long, env = "RUNNEL_RACK")]
    pub rack: Option<String>,
    /// Create unknown topics when a client asks for their metadata [default: true for dev, false for serve].
    #[arg(long, env = "RUNNEL_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long, env = "RUNNEL_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// When appends are fsynced: "always" (before acknowledging, with group commit) or "interval" [default: always].
    #[arg(long, env = "RUNNEL_FLUSH_POLICY")]
    pub flush_policy: Option<String>,
    /// With flush_policy = "interval": milliseconds between fsyncs [default: 1000].
    #[arg(long, env = "RUNNEL_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Default segment.bytes of topics [default: 1073741824].
    #[arg(long, env = "RUNNEL_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Default segment.ms of topics [default: 604800000].
    #[arg(long, env = "RUNNEL_SEGMENT_MS")]
    pub segment_ms: Option<i64>,
    /// Default retention.ms of topics; -1 keeps forever [default: 604800000].
    #[arg(long, env = "RUNNEL_RETENTION_MS")]
    pub retention_ms: Option<i64>,
    /// Default retention.bytes of topics; -1 for no limit [default: -1].
    #[arg(long, env = "RUNNEL_RETENTION_BYTES")]
    pub retention_bytes: Option<i64>,
    /// How often retention runs [default: 60000].
    #[arg(long, env = "RUNNEL_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Largest record batch accepted [default: 1048588].
    #[arg(long, env = "RUNNEL_MESSAGE_MAX_BYTES")]
    pub message_max_bytes: Option<usize>,
    /// Largest request; larger ones close the connection [default: 104857600].
    #[arg(long, env = "RUNNEL_FRAME_BYTES_MAX")]
    pub frame_bytes_max: Option<usize>,
    /// Most client connections at once [default: 10000].
    #[arg(long, env = "RUNNEL_CONNECTIONS_MAX")]
    pub connections_max: Option<usize>,
    /// Requests read ahead of their responses per connection [default: 64].
    #[arg(long, env = "RUNNEL_INFLIGHT_REQUESTS_MAX")]
    pub inflight_requests_max: Option<usize>,
}

impl Settings {
    /// Fills every unset value from `fallback`.
    fn or(self, fallback: Settings) -> Settings {
        Settings {
            node_id: self.node_id.or(fallback.node_id),
            data_dir: self.data_dir.or(fallback.data_dir),
            kafka_listener: self.kafka_listener.or(fallback.kafka_listener),
            advertised_kafka: self.advertised_kafka.or(fallback.advertised_kafka),
            rack: self.rack.or(fallback.rack),
            auto_create_topics: self.auto_create_topics.or(fallback.auto_create_topics),
            default_partitions: self.default_partitions.or(fallback.default_partitions),
            flush_policy: self.flush_policy.or(fallback.flush_policy),
            flush_interval_ms: self.flush_interval_ms.or(fallback.flush_interval_ms),
            segment_bytes: self.segment_bytes.or(fallback.segment_bytes),
            segment_ms: self.segment_ms.or(fallback.segment_ms),
            retention_ms: self.retention_ms.or(fallback.retention_ms),
            retention_bytes: self.retention_bytes.or(fallback.retention_bytes),
            retention_check_interval_ms: self.retention_check_interval_ms.or(fallback.retention_check_interval_ms),
            message_max_bytes: self.message_max_bytes.or(fallback.message_max_bytes),
            frame_bytes_max: self.frame_bytes_max.or(fallback.frame_bytes_max),
            connections_max: self.connections_max.or(fallback.connections_max),
            inflight_requests_max: self.inflight_requests_max.or(fallback.inflight_requests_max),
        }
    }

    /// Turns settings into a validated broker configuration.
    pub fn into_broker_config(self, auto_create_default: bool) -> Result<BrokerConfig> {
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("./runnel-data"));
        let mut c = BrokerConfig::new(data_dir);
        if let Some(v) = self.node_id {
            c.node_id = v;
        }
        let listener = self.kafka_listener.unwrap_or_else(|| "127.0.0.1:9092".into());
        c.kafka_listener = resolve(&listener).context("kafka_listener")?;
        match self.advertised_kafka {
            Some(a) => {
                let (host, port) = split_host_port(&a).context("advertised_kafka")?;
                c.advertised_host = host;
                c.advertised_port = port;
            }
            None => {
                if c.kafka_listener.ip().is_unspecified() {
                    bail!("kafka_listener {listener} binds every interface, so clients need an address to connect to: set advertised_kafka");
                }
                c.advertised_host = c.kafka_listener.ip().to_string();
                c.advertised_port = c.kafka_listener.port();
            }
        }
        c.rack = self.rack;
        c.auto_create_topics = self.auto_create_topics.unwrap_or(auto_create_default);
        if let Some(v) = self.default_partitions {
            c.default_partitions = v;
        }
        c.log.flush = match self.flush_policy.as_deref().unwrap_or("always") {
            "always" => FlushPolicy::Always,
            "interval" => {
                let ms = self.flush_interval_ms.unwrap_or(1000);
                if ms == 0 {
                    bail!("flush_interval_ms must be at least 1");
                }
                FlushPolicy::Interval(Duration::from_millis(ms))
            }
            other => bail!("flush_policy must be \"always\" or \"interval\", got {other:?}"),
        };
        if let Some(v) = self.segment_bytes {
            c.log.segment_bytes = v;
        }
        if let Some(v) = self.segment_ms {
            c.log.segment_ms = v;
        }
        if let Some(v) = self.retention_ms {
            c.log.retention_ms = v;
        }
        if let Some(v) = self.retention_bytes {
            c.log.retention_bytes = v;
        }
        if let Some(v) = self.retention_check_interval_ms {
            if v == 0 {
                bail!("retention_check_interval_ms must be at least 1");
            }
            c.retention_check_interval = Duration::from_millis(v);
        }
        if let Some(v) = self.message_max_bytes {
            c.message_max_bytes = v;
        }
        if let Some(v) = self.frame_bytes_max {
            if v > i32::MAX as usize {
                bail!("frame_bytes_max must be at most {}", i32::MAX);
            }
            c.frame_bytes_max = v;
        }
        if let Some(v) = self.connections_max {
            c.connections_max = v;
        }
        if let Some(v) = self.inflight_requests_max {
            c.inflight_requests_max = v;
        }
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

fn split_host_port(s: &str) -> Result<(String, u16)> {
    let (host, port) = s.rsplit_once(':').with_context(|| format!("{s:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().with_context(|| format!("{s:?} has an invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("{s:?} has no host");
    }
    Ok((host.to_string(), port))
}

fn resolve(s: &str) -> Result<SocketAddr> {
    split_host_port(s)?;
    s.to_socket_addrs()
        .with_context(|| format!("cannot resolve {s:?}"))?
        .next()
        .with_context(|| format!("{s:?} resolves to no address"))
}

fn read_file(path: &Path) -> Result<Settings> {
    let raw = std::fs::read_to_string(path).with_context(|| format!("read config file {}", path.display()))?;
    toml::from_str(&raw).with_context(|| format!("parse config file {}", path.display()))
}

pub fn dev_config(settings: &Settings) -> Result<BrokerConfig> {
    settings.clone().into_broker_config(true)
}

pub fn serve_config(args: &ServeArgs) -> Result<BrokerConfig> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => Settings::default(),
    };
    args.settings.clone().or(file).into_broker_config(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runnel.toml");
        std::fs::write(&file, "node_id = 7\nsegment_bytes = 65536\nkafka_listener = \"127.0.0.1:19092\"\n").unwrap();
        let args = ServeArgs { config: Some(file), settings: Settings { node_id: Some(9), ..Settings::default() } };
        let c = serve_config(&args).unwrap();
        assert_eq!(c.node_id, 9);
        assert_eq!(c.log.segment_bytes, 65536);
        assert_eq!(c.kafka_listener.port(), 19092);
        assert_eq!((c.advertised_host.as_str(), c.advertised_port), ("127.0.0.1", 19092));
        assert!(!c.auto_create_topics);
        assert_eq!(c.log.flush, FlushPolicy::Always);
    }

    #[test]
    fn bad_settings_get_clear_errors() {
        let err = |s: Settings| format!("{:#}", s.into_broker_config(false).unwrap_err());
        assert!(err(Settings { kafka_listener: Some("nope".into()), ..Default::default() }).contains("not HOST:PORT"));
        assert!(err(Settings { kafka_listener: Some("0.0.0.0:9092".into()), ..Default::default() }).contains("advertised_kafka"));
        assert!(err(Settings { flush_policy: Some("sometimes".into()), ..Default::default() }).contains("flush_policy"));
        assert!(err(Settings { segment_bytes: Some(10), ..Default::default() }).contains("segment.bytes"));
        assert!(err(Settings { default_partitions: Some(0), ..Default::default() }).contains("partitions"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "segmnet_bytes = 1\n").unwrap();
        let e = serve_config(&ServeArgs { config: Some(file), settings: Settings::default() }).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
    }
}
