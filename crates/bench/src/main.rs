//! runnel-bench: load generator modelled on kafka-producer-perf-test and
//! librdkafka's rdkafka_performance.
//!
//! - `produce`: messages as fast as allowed (or at `--rate`); reports msgs/s,
//!   MB/s and acknowledgement latency percentiles.
//! - `consume`: reads a topic from the beginning by assignment; msgs/s, MB/s.
//! - `e2e`: produces at a fixed rate while consuming; produce-to-consume latency.
//! - `rebalance`, `commits`: consumer-group rebalance time and offset-commit rate.
//!
//! A progress line goes to stderr every second, a summary to stdout at the
//! end, or one JSON object with `--json`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use serde::Serialize;

mod groups;

#[derive(Parser)]
#[command(name = "runnel-bench", version, about = "Load generator for Runnel and other Kafka API brokers")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Produce messages and measure throughput and acknowledgement latency.
    Produce(ProduceArgs),
    /// Consume a topic from the beginning and measure throughput.
    Consume(ConsumeArgs),
    /// Produce at a fixed rate while consuming; measure end-to-end latency.
    E2e(E2eArgs),
    /// Time for a consumer group to settle when one member joins.
    Rebalance(groups::RebalanceArgs),
    /// Offset commits per second (each committed through Raft).
    Commits(groups::CommitArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// Broker address list.
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092", env = "RUNNEL_BOOTSTRAP")]
    bootstrap: String,
    #[arg(long, short = 't', default_value = "bench")]
    topic: String,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Extra librdkafka properties, KEY=VALUE, repeatable.
    #[arg(long = "property", short = 'X')]
    properties: Vec<String>,
}

#[derive(Args, Clone)]
struct ProduceArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    messages: u64,
    /// Message value size in bytes.
    #[arg(long, short = 's', default_value_t = 1024)]
    size: usize,
    /// 0, 1 or all.
    #[arg(long, default_value = "1")]
    acks: String,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Replication factor when creating the topic.
    #[arg(long, default_value_t = 1)]
    replication: i32,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Messages per second; 0 for as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Messages sent and acknowledged before measuring (connections,
    /// metadata and producer id are set up by then).
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Produce in transactions of this many messages (a transactional
    /// producer: begin, send, commit); 0 for none.
    #[arg(long, default_value_t = 0)]
    transaction_size: u64,
}

#[derive(Args, Clone)]
struct ConsumeArgs {
    #[command(flatten)]
    common: Common,
    /// Stop after this many messages (or when no message arrives for 5 s).
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    messages: u64,
}

#[derive(Args, Clone)]
struct E2eArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, short = 'n', default_value_t = 100_000)]
    messages: u64,
    #[arg(long, short = 's', default_value_t = 1024)]
    size: usize,
    /// Messages per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    #[arg(long, default_value = "all")]
    acks: String,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    #[arg(long, default_value_t = 1)]
    replication: i32,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Messages sent and acknowledged before measuring.
    #[arg(long, default_value_t = 1000)]
    warmup_messages: u32,
}

#[derive(Serialize, Default)]
struct Summary {
    mode: &'static str,
    messages: u64,
    errors: u64,
    bytes: u64,
    seconds: f64,
    msgs_per_sec: f64,
    mb_per_sec: f64,
    latency_ms_p50: Option<f64>,
    latency_ms_p99: Option<f64>,
    latency_ms_p999: Option<f64>,
    latency_ms_max: Option<f64>,
}

impl Summary {
    fn new(mode: &'static str, messages: u64, errors: u64, bytes: u64, elapsed: Duration, mut latencies_us: Vec<u32>) -> Summary {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        latencies_us.sort_unstable();
        let pct = |q: f64| -> Option<f64> {
            if latencies_us.is_empty() {
                return None;
            }
            let i = ((latencies_us.len() as f64 * q).ceil() as usize).clamp(1, latencies_us.len()) - 1;
            Some(f64::from(latencies_us[i]) / 1000.0)
        };
        Summary {
            mode,
            messages,
            errors,
            bytes,
            seconds,
            msgs_per_sec: messages as f64 / seconds,
            mb_per_sec: bytes as f64 / seconds / 1e6,
            latency_ms_p50: pct(0.50),
            latency_ms_p99: pct(0.99),
            latency_ms_p999: pct(0.999),
            latency_ms_max: pct(1.0),
        }
    }

    fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).expect("summary serializes"));
            return;
        }
        println!(
            "{}: {} messages, {} errors in {:.2} s: {:.0} msgs/s, {:.1} MB/s",
            self.mode, self.messages, self.errors, self.seconds, self.msgs_per_sec, self.mb_per_sec
        );
        if let (Some(p50), Some(p99), Some(p999), Some(max)) = (self.latency_ms_p50, self.latency_ms_p99, self.latency_ms_p999, self.latency_ms_max) {
            println!("latency ms: p50 {p50:.2}  p99 {p99:.2}  p99.9 {p999:.2}  max {max:.2}");
        }
    }
}

fn client_config(common: &Common) -> Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &common.bootstrap);
    for p in &common.properties {
        let (k, v) = p.split_once('=').with_context(|| format!("property {p:?} is not KEY=VALUE"))?;
        c.set(k, v);
    }
    Ok(c)
}

fn ensure_topic(common: &Common, partitions: i32, replication: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(common)?.create().context("create admin client")?;
    let topic = NewTopic::new(&common.topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = block_on(admin.create_topics(&[topic], &options)).context("create topic")?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("create topic {t}: {e}"),
        }
    }
    Ok(())
}

/// A minimal executor for the one admin future (rdkafka's admin API is async).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context as TaskContext, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// Records acknowledgement latency of every delivery.
struct LatencyContext {
    latencies_us: Mutex<Vec<u32>>,
    acked: AtomicU64,
    errors: AtomicU64,
}

impl ClientContext for LatencyContext {}

impl ProducerContext for LatencyContext {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                self.latencies_us.lock().expect("latency lock").push(us);
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn producer(common: &Common, acks: &str, linger_ms: u64, compression: &str) -> Result<BaseProducer<LatencyContext>> {
    let mut c = client_config(common)?;
    c.set("acks", acks)
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", compression)
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("batch.size", "1000000");
    let ctx = LatencyContext { latencies_us: Mutex::new(Vec::new()), acked: AtomicU64::new(0), errors: AtomicU64::new(0) };
    c.create_with_context(ctx).context("create producer")
}

/// Sends one message, waiting for queue space when the local queue is full.
fn send(p: &BaseProducer<LatencyContext>, topic: &str, key: &[u8], value: &[u8]) -> Result<()> {
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(Instant::now())).key(key).payload(value);
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                p.poll(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("send: {e}"),
        }
    }
}

struct Progress {
    last: Instant,
    start: Instant,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Progress { last: now, start: now }
    }
    fn tick(&mut self, what: &str, count: u64, total: u64) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            let rate = count as f64 / self.start.elapsed().as_secs_f64();
            eprintln!("{what}: {count}/{total} ({rate:.0} msgs/s)");
        }
    }
}

/// Serves delivery reports until nothing is in flight. The rdkafka crate's
/// flush (which commit_transaction starts with) polls in steps of up to
/// 100 ms, which would put a 100 ms floor under every transaction.
fn drain(p: &BaseProducer<LatencyContext>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.in_flight_count() > 0 && Instant::now() < deadline {
        p.poll(Duration::from_millis(1));
    }
}

/// Waits until message `sent` is due at `rate`, serving delivery reports
/// meanwhile, so an acknowledgement is timed when it arrives, not at the
/// next send.
fn pace(p: &BaseProducer<LatencyContext>, start: Instant, sent: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
    loop {
        let now = Instant::now();
        if due <= now {
            return;
        }
        p.poll(due - now);
    }
}

fn produce(args: &ProduceArgs) -> Result<Summary> {
    ensure_topic(&args.common, args.partitions, args.replication)?;
    let mut common = args.common.clone();
    let transactions = args.transaction_size > 0;
    if transactions {
        common.properties.push(format!("transactional.id=runnel-bench-{}", std::process::id()));
    }
    let p = producer(&common, &args.acks, args.linger_ms, &args.compression)?;
    let timeout = Duration::from_secs(60);
    if transactions {
        p.init_transactions(timeout).context("init_transactions")?;
        p.begin_transaction().context("begin_transaction")?;
    }
    let value = vec![b'r'; args.size];
    if args.warmup > 0 {
        for i in 0..args.warmup {
            send(&p, &args.common.topic, &i.to_be_bytes(), &value)?;
        }
        p.flush(Duration::from_secs(60)).context("flush warm-up messages")?;
        let ctx = p.context();
        ctx.latencies_us.lock().expect("latency lock").clear();
        ctx.acked.store(0, Ordering::Relaxed);
        ctx.errors.store(0, Ordering::Relaxed);
    }
    let mut progress = Progress::new();
    let start = Instant::now();
    for i in 0..args.messages {
        pace(&p, start, i, args.rate);
        send(&p, &args.common.topic, &i.to_be_bytes(), &value)?;
        p.poll(Duration::ZERO);
        if transactions && (i + 1) % args.transaction_size == 0 {
            drain(&p);
            p.commit_transaction(timeout).context("commit_transaction")?;
            p.begin_transaction().context("begin_transaction")?;
        }
        progress.tick("produce", p.context().acked.load(Ordering::Relaxed), args.messages);
    }
    if transactions {
        drain(&p);
        p.commit_transaction(timeout).context("commit_transaction")?;
    }
    p.flush(Duration::from_secs(120)).context("flush producer")?;
    let elapsed = start.elapsed();
    let ctx = p.context();
    let acked = ctx.acked.load(Ordering::Relaxed);
    let latencies = std::mem::take(&mut *ctx.latencies_us.lock().expect("latency lock"));
    Ok(Summary::new("produce", acked, ctx.errors.load(Ordering::Relaxed), acked * args.size as u64, elapsed, latencies))
}

fn assigned_consumer(common: &Common, from_end: bool) -> Result<BaseConsumer> {
    let mut c = client_config(common)?;
    c.set("group.id", "runnel-bench").set("enable.auto.commit", "false").set("fetch.wait.max.ms", "100");
    let consumer: BaseConsumer = c.create().context("create consumer")?;
    let metadata = consumer.fetch_metadata(Some(&common.topic), Duration::from_secs(10)).context("fetch metadata")?;
    let topic = metadata.topics().first().context("topic missing from metadata")?;
    if topic.partitions().is_empty() {
        bail!("topic {} has no partitions", common.topic);
    }
    let mut tpl = TopicPartitionList::new();
    for p in topic.partitions() {
        let offset = if from_end {
            let (_, high) = consumer.fetch_watermarks(&common.topic, p.id(), Duration::from_secs(10)).context("fetch watermarks")?;
            Offset::Offset(high)
        } else {
            Offset::Beginning
        };
        tpl.add_partition_offset(&common.topic, p.id(), offset)?;
    }
    consumer.assign(&tpl).context("assign")?;
    Ok(consumer)
}

fn consume(args: &ConsumeArgs) -> Result<Summary> {
    let consumer = assigned_consumer(&args.common, false)?;
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut start = None;
    let mut last_message = Instant::now();
    let mut progress = Progress::new();
    while count < args.messages && last_message.elapsed() < Duration::from_secs(5) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                start.get_or_insert_with(Instant::now);
                count += 1;
                bytes += m.payload_len() as u64;
                last_message = Instant::now();
            }
            Some(Err(e)) => bail!("consume: {e}"),
            None => {}
        }
        progress.tick("consume", count, args.messages);
    }
    let elapsed = start.map_or(Duration::ZERO, |s| s.elapsed());
    Ok(Summary::new("consume", count, 0, bytes, elapsed, Vec::new()))
}

fn e2e(args: &E2eArgs) -> Result<Summary> {
    ensure_topic(&args.common, args.partitions, args.replication)?;
    let p = producer(&args.common, &args.acks, args.linger_ms, "none")?;
    // Warm up: leaders elected, followers fetching, client metadata fresh.
    // Latency is measured from the first message after this.
    let warmup = vec![0u8; args.size.max(8)];
    for i in 0..u64::from(args.warmup_messages) {
        send(&p, &args.common.topic, &i.to_be_bytes(), &warmup)?;
    }
    p.flush(Duration::from_secs(60)).context("flush warm-up messages")?;
    p.context().latencies_us.lock().expect("latency lock").clear();
    p.context().acked.store(0, Ordering::Relaxed);
    let consumer = assigned_consumer(&args.common, true)?;
    let base = Instant::now();
    let total = args.messages;
    let size = args.size.max(8);
    let topic = args.common.topic.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || -> Result<(u64, Vec<u32>)> {
        let mut latencies = Vec::with_capacity(total as usize);
        let mut idle = Instant::now();
        while (latencies.len() as u64) < total && idle.elapsed() < Duration::from_secs(10) {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let payload = m.payload().unwrap_or_default();
                    if payload.len() >= 8 {
                        let sent_us = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
                        let now_us = base.elapsed().as_micros() as u64;
                        latencies.push(now_us.saturating_sub(sent_us).min(u64::from(u32::MAX)) as u32);
                    }
                    idle = Instant::now();
                }
                Some(Err(e)) => bail!("consume: {e}"),
                None => {}
            }
        }
        let _ = done_tx.send(());
        Ok((latencies.len() as u64, latencies))
    });
    let start = Instant::now();
    let mut value = vec![b'e'; size];
    let mut progress = Progress::new();
    for i in 0..total {
        pace(&p, start, i, args.rate);
        value[..8].copy_from_slice(&(base.elapsed().as_micros() as u64).to_be_bytes());
        send(&p, &topic, &i.to_be_bytes(), &value)?;
        p.poll(Duration::ZERO);
        progress.tick("e2e", p.context().acked.load(Ordering::Relaxed), total);
    }
    p.flush(Duration::from_secs(60)).context("flush producer")?;
    let _ = done_rx.recv_timeout(Duration::from_secs(30));
    let (received, latencies) = reader.join().map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    let elapsed = start.elapsed();
    let errors = p.context().errors.load(Ordering::Relaxed) + total.saturating_sub(received);
    Ok(Summary::new("e2e", received, errors, received * size as u64, elapsed, latencies))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (result, json) = match &cli.command {
        Cmd::Produce(a) => (produce(a), a.common.json),
        Cmd::Consume(a) => (consume(a), a.common.json),
        Cmd::E2e(a) => (e2e(a), a.common.json),
        Cmd::Rebalance(a) => (groups::rebalance(a), a.common.json),
        Cmd::Commits(a) => (groups::commits(a), a.common.json),
    };
    match result {
        Ok(summary) => {
            summary.print(json);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("runnel-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
