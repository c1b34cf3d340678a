//! The node's broker state: topic registry, partition logs, and the rules
//! that tie them together (a log exists exactly for each partition of each
//! registered topic; the high watermark moves as the flush policy says).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_storage::{FlushPolicy, LogManager, PartitionLog, StorageError, TopicPartition};
use tokio::sync::{Notify, watch};

use crate::config::BrokerConfig;
use crate::topics::{TopicError, TopicMeta, TopicRegistry, log_config};

pub struct Broker {
    pub config: BrokerConfig,
    pub logs: LogManager,
    registry: Mutex<TopicRegistry>,
    /// Producer ids reserved in the registry and not yet handed out.
    producer_ids: Mutex<std::ops::Range<i64>>,
    /// Woken whenever a high watermark moves, for fetches waiting on data.
    data_arrived: Notify,
    shutdown: watch::Sender<bool>,
}

impl Broker {
    /// Opens the node's data directory: registry, then every log, then makes
    /// the two agree (logs of deleted topics are removed, missing logs created).
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, String> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("create data directory {}: {e}", config.data_dir.display()))?;
        let registry = TopicRegistry::open(&config.data_dir, config.node_id)?;
        let topic_configs: BTreeMap<String, BTreeMap<String, String>> =
            registry.topics().map(|(n, t)| (n.clone(), t.configs.clone())).collect();
        let defaults = config.log.clone();
        let logs = LogManager::open(&config.data_dir.join("logs"), |topic| {
            log_config(&defaults, topic_configs.get(topic).unwrap_or(&BTreeMap::new()))
        })
        .map_err(|e| format!("open logs: {e}"))?;
        for (tp, _) in logs.all() {
            let keep = registry.get(&tp.topic).is_some_and(|t| tp.partition < t.partitions);
            if !keep {
                tracing::info!(partition = %tp, "removing the log of a deleted topic");
                logs.remove(&tp).map_err(|e| format!("remove {tp}: {e}"))?;
            }
        }
        for (name, meta) in registry.topics() {
            for p in 0..meta.partitions {
                logs.get_or_create(&TopicPartition::new(name.clone(), p), log_config(&config.log, &meta.configs))
                    .map_err(|e| format!("open {name}-{p}: {e}"))?;
            }
        }
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(Broker {
            config,
            logs,
            registry: Mutex::new(registry),
            producer_ids: Mutex::new(0..0),
            data_arrived: Notify::new(),
            shutdown,
        }))
    }

    pub fn registry(&self) -> MutexGuard<'_, TopicRegistry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cluster_id(&self) -> String {
        self.registry().cluster_id().to_string()
    }

    pub fn log(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.logs.get(&TopicPartition::new(topic, partition))
    }

    /// Registers a topic and creates its logs.
    pub fn create_topic(&self, name: &str, partitions: i32, configs: BTreeMap<String, String>) -> Result<TopicMeta, TopicError> {
        let mut registry = self.registry();
        let meta = registry.create(name, partitions, configs)?;
        self.open_logs(name, 0..partitions, &meta)?;
        tracing::info!(topic = name, partitions, "created topic");
        Ok(meta)
    }

    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, TopicError> {
        let mut registry = self.registry();
        let meta = registry.delete(name)?;
        for p in 0..meta.partitions {
            if let Err(e) = self.logs.remove(&TopicPartition::new(name, p)) {
                // The registry no longer has the topic; the next start removes
                // what is left of its logs.
                tracing::error!(topic = name, partition = p, error = %e, "could not remove a deleted topic's log");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(meta)
    }

    pub fn add_partitions(&self, name: &str, count: i32) -> Result<TopicMeta, TopicError> {
        let mut registry = self.registry();
        let old = registry.check_partitions(name, count)?.partitions;
        let meta = registry.set_partitions(name, count)?;
        self.open_logs(name, old..count, &meta)?;
        tracing::info!(topic = name, from = old, to = count, "added partitions");
        Ok(meta)
    }

    fn open_logs(&self, name: &str, partitions: std::ops::Range<i32>, meta: &TopicMeta) -> Result<(), TopicError> {
        for p in partitions {
            self.logs
                .get_or_create(&TopicPartition::new(name, p), log_config(&self.config.log, &meta.configs))
                .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, format!("create log {name}-{p}: {e}")))?;
        }
        Ok(())
    }

    /// A producer id never handed out before, for InitProducerId.
    pub fn new_producer_id(&self) -> Result<i64, TopicError> {
        /// Ids reserved per registry write.
        const BLOCK: i64 = 1000;
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.is_empty() {
            *ids = self.registry().allocate_producer_ids(BLOCK)?;
        }
        Ok(ids.next().expect("a fresh block is non-empty"))
    }

    /// Makes appended data up to `end` visible to consumers as the flush
    /// policy says: after an fsync that covers it (`Always`), or at once
    /// (`Interval`). Returns when the high watermark has passed `end`.
    pub async fn commit(&self, log: &PartitionLog, end: i64) -> Result<(), StorageError> {
        let visible = match self.config.log.flush {
            FlushPolicy::Always => log.flush_to(end).await?,
            FlushPolicy::Interval(_) => end,
        };
        if log.advance_high_watermark(visible) {
            self.data_arrived.notify_waiters();
        }
        Ok(())
    }

    /// A future that completes at the next high-watermark move; create it
    /// before checking for data so no wake-up is missed.
    pub fn data_arrived(&self) -> tokio::sync::futures::Notified<'_> {
        self.data_arrived.notified()
    }

    /// Completes once shutdown has begun.
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await.is_ok();
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Asks the listener and every connection to stop taking requests.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.data_arrived.notify_waiters();
    }

    /// Retention on a timer, and the interval flush when that is the policy;
    /// returns at shutdown.
    pub async fn run_background(self: Arc<Self>) {
        let mut retention = tokio::time::interval(self.config.retention_check_interval);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let flush_every = match self.config.log.flush {
            FlushPolicy::Interval(d) => d,
            FlushPolicy::Always => std::time::Duration::from_secs(3600),
        };
        let mut flush = tokio::time::interval(flush_every);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown_requested() => return,
                _ = retention.tick() => {
                    let broker = self.clone();
                    let _ = tokio::task::spawn_blocking(move || broker.logs.enforce_retention()).await;
                }
                _ = flush.tick() => {
                    if let Err(e) = self.logs.flush_all().await {
                        tracing::error!(error = %e, "periodic flush failed");
                    }
                }
            }
        }
    }

    /// Flushes every log; the last step of a clean shutdown.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.logs.flush_all().await
    }
}
