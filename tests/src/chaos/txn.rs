//! The transactional workload (issue 15), beside the idempotent one in every
//! local scenario, checked in the style of Jepsen's Kafka queue workload.
//!
//! - The transactor: one transactional producer writes transactions of
//!   `PER_TXN` values spread over every partition of `TOPIC`, one after the
//!   other, and aborts every `ABORT_EVERY`-th on purpose. When its producer
//!   fails in a way it cannot recover from, a new instance with the same
//!   transactional id takes over (which fences the old one and aborts its
//!   open transaction), as an application restarts.
//! - The copier: a consume-transform-produce loop. It reads `TOPIC` with
//!   read_committed and copies each value into `OUT` in transactions that
//!   also commit its input offsets (send_offsets_to_transaction). When a
//!   transaction fails it starts again from the committed offsets, with a new
//!   producer instance when the old one is unusable. After the workloads stop
//!   it drains: it runs until its committed offsets reach the end of `TOPIC`.
//!
//! Both topics are then read to their high watermarks with read_committed.
//! The checker: no aborted read (a transaction the producer was told is
//! aborted is never visible), no torn transaction (all of a transaction's
//! values visible or none), every transaction whose commit was acknowledged
//! visible, no value twice, transactions in order in each partition; and the
//! copy holds every committed input value exactly once and nothing else, so
//! offsets committed inside transactions took effect exactly once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Serialize;

use super::history::{Event, History, Kind, Op};

pub const TOPIC: &str = "chaos-txn";
pub const OUT: &str = "chaos-txn-out";
const PARTITIONS: i32 = 3;
/// Values per transaction, spread round-robin over the partitions.
const PER_TXN: usize = 6;
/// Every this many transactions, one is aborted on purpose.
const ABORT_EVERY: u64 = 5;
/// Between two transactions of the transactor.
const PAUSE: Duration = Duration::from_millis(100);
/// For each transactional call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The copier's drain after the workloads stop.
const DRAIN_WITHIN: Duration = Duration::from_secs(40);

type TxnProducer = ThreadedProducer<DefaultProducerContext>;

/// Creates both topics (3 partitions, RF 3, min.insync.replicas 2) through
/// the admin API at `rpc`.
pub fn create_topics(rpc: &str) {
    for topic in [TOPIC, OUT] {
        let (ok, _, err) = crate::runnelctl(rpc, &["topic", "create", topic, "-p", "3", "-r", "3", "-c", "min.insync.replicas=2"]);
        assert!(ok, "create {topic}: {err}");
    }
}

fn producer(bootstrap: &str, id: &str) -> Result<TxnProducer, String> {
    let producer: TxnProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "20000")
        .set("message.timeout.ms", "10000")
        .set("request.timeout.ms", "3000")
        .set("socket.timeout.ms", "3000")
        .set("linger.ms", "2")
        .create()
        .map_err(|e| e.to_string())?;
    producer.init_transactions(CALL_TIMEOUT).map_err(|e| format!("init_transactions: {e}"))?;
    Ok(producer)
}

/// How a transaction ended, as its producer was told.
enum Ended {
    Committed,
    /// Nothing of it may be visible.
    Aborted(String),
    /// Committed or aborted, whole either way; the producer is not usable.
    Unknown(String),
}

/// Commits the open transaction, retrying what librdkafka says may be
/// retried, and aborts when it says the transaction must be.
fn commit(producer: &TxnProducer) -> Ended {
    for _ in 0..3 {
        match producer.commit_transaction(CALL_TIMEOUT) {
            Ok(()) => return Ended::Committed,
            Err(KafkaError::Transaction(e)) if e.is_retriable() => continue,
            Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => return abort(producer, format!("commit: {e}")),
            Err(e) => return Ended::Unknown(format!("commit: {e}")),
        }
    }
    Ended::Unknown("commit: still retriable after 3 tries".into())
}

fn abort(producer: &TxnProducer, why: String) -> Ended {
    match producer.abort_transaction(CALL_TIMEOUT) {
        Ok(()) => Ended::Aborted(why),
        Err(e) => Ended::Unknown(format!("{why}; abort: {e}")),
    }
}

/// Records how transaction `value` ended; returns whether the producer is
/// still usable.
fn record(history: &History, process: &str, value: &str, ended: Ended) -> bool {
    match ended {
        Ended::Committed => {
            history.record(Event::new(process, Kind::Ok, Op::Txn).value(value));
            true
        }
        Ended::Aborted(why) => {
            history.record(Event::new(process, Kind::Fail, Op::Txn).value(value).error(why));
            true
        }
        Ended::Unknown(why) => {
            history.record(Event::new(process, Kind::Info, Op::Txn).value(value).error(why));
            false
        }
    }
}

/// The transactor, until `stop`.
fn transactor(bootstrap: &str, history: &History, stop: &AtomicBool) {
    let name = "transactor";
    let mut current: Option<TxnProducer> = None;
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let Some(p) = current.take().or_else(|| producer(bootstrap, "chaos-transactor").ok()) else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let value = format!("x{round}");
        round += 1;
        if p.begin_transaction().is_err() {
            // Nothing was written; start over with a new instance.
            continue;
        }
        history.record(Event::new(name, Kind::Invoke, Op::Txn).value(&value));
        let mut failed = None;
        for i in 0..PER_TXN {
            let v = format!("{value}-{i}");
            if let Err((e, _)) = p.send(BaseRecord::<(), str>::to(TOPIC).payload(&v).partition(i as i32 % PARTITIONS)) {
                failed = Some(format!("send: {e}"));
                break;
            }
        }
        let ended = match failed {
            Some(why) => abort(&p, why),
            None if round.is_multiple_of(ABORT_EVERY) => abort(&p, "aborted on purpose".into()),
            None => commit(&p),
        };
        if record(history, name, &value, ended) {
            current = Some(p);
        }
        std::thread::sleep(PAUSE);
    }
}

fn copier_consumer(bootstrap: &str) -> Result<BaseConsumer, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "chaos-copier")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("socket.timeout.ms", "3000")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Stored).map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    Ok(consumer)
}

/// Next offsets to read, where the consumer knows them.
fn positions(consumer: &BaseConsumer) -> BTreeMap<i32, i64> {
    let Ok(tpl) = consumer.position() else { return BTreeMap::new() };
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Both workloads, each on a thread of its own.
pub struct Workload {
    bootstrap: String,
    history: History,
    drain: Arc<AtomicBool>,
    transactor: mpsc::Receiver<()>,
    copier: Copier,
}

/// One copier instance: its result, and the flag that retires it.
struct Copier {
    done: mpsc::Receiver<bool>,
    retired: Arc<AtomicBool>,
}

fn spawn_copier(bootstrap: &str, history: &History, drain: &Arc<AtomicBool>) -> Copier {
    let (tx, done) = mpsc::channel();
    let retired = Arc::new(AtomicBool::new(false));
    let (b, h, d, r) = (bootstrap.to_string(), history.clone(), drain.clone(), retired.clone());
    std::thread::spawn(move || {
        let _ = tx.send(copier(&b, &h, &d, &r));
    });
    Copier { done, retired }
}

/// A client call may block past its timeout: librdkafka's
/// send_offsets_to_transaction waits for the group coordinator it cached to
/// come back, and when that broker left the metadata (fenced, or gone)
/// nothing wakes it until another broker's connection changes state, here
/// the broker closing an idle connection after 10 minutes
/// (confluentinc/librdkafka#5456 and #5511). Seen in kill-controller and
/// full-disk.
const STUCK: &str = "stuck in a client call";

impl Workload {
    pub fn start(bootstrap: &str, history: &History, stop: &Arc<AtomicBool>) -> Workload {
        let (tx, stopped) = mpsc::channel();
        let (b, h, s) = (bootstrap.to_string(), history.clone(), stop.clone());
        std::thread::spawn(move || {
            transactor(&b, &h, &s);
            let _ = tx.send(());
        });
        let drain = Arc::new(AtomicBool::new(false));
        let copier = spawn_copier(bootstrap, history, &drain);
        Workload { bootstrap: bootstrap.to_string(), history: history.clone(), drain, transactor: stopped, copier }
    }

    /// After the stop: waits for the transactor, then lets the copier drain.
    /// A copier instance still blocked in a client call when its drain
    /// should have ended is retired and replaced by a new one, as an
    /// application's watchdog would; the new instance fences the old one
    /// (same transactional id) and finishes the drain from the committed
    /// offsets. Returns whether the copy drained.
    pub fn finish(self) -> bool {
        if self.transactor.recv_timeout(Duration::from_secs(60)).is_err() {
            self.history.record(Event::new("transactor", Kind::Info, Op::Txn).error(format!("{STUCK} 60 s after the stop; left behind")));
        }
        self.drain.store(true, Ordering::SeqCst);
        let limit = DRAIN_WITHIN + Duration::from_secs(5);
        match self.copier.done.recv_timeout(limit) {
            Ok(drained) => drained,
            Err(_) => {
                self.copier.retired.store(true, Ordering::SeqCst);
                self.history.record(Event::new("copier", Kind::Info, Op::Txn).error(format!("{STUCK} at the end of the drain; a new instance takes over")));
                spawn_copier(&self.bootstrap, &self.history, &self.drain).done.recv_timeout(limit).unwrap_or(false)
            }
        }
    }
}

/// The copier, until `drain` is set and it has copied everything up to the
/// end of `TOPIC` (or `DRAIN_WITHIN` passed), or until it is retired.
/// Returns whether it drained.
fn copier(bootstrap: &str, history: &History, drain: &AtomicBool, retired: &AtomicBool) -> bool {
    let name = "copier";
    let mut client: Option<(BaseConsumer, TxnProducer)> = None;
    // Offsets committed by this copier's last transaction.
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    let mut ends: Option<BTreeMap<i32, i64>> = None;
    let mut drain_started: Option<Instant> = None;
    let mut round = 0u64;
    loop {
        if retired.load(Ordering::SeqCst) {
            return false;
        }
        if drain.load(Ordering::SeqCst) {
            let started = *drain_started.get_or_insert_with(Instant::now);
            if let Some(ends) = &ends
                && ends.iter().all(|(p, end)| committed.get(p).copied().unwrap_or(0) >= *end)
            {
                return true;
            }
            if started.elapsed() > DRAIN_WITHIN {
                history.record(Event::new(name, Kind::Info, Op::Txn).error(format!("did not drain within {DRAIN_WITHIN:?}: at {committed:?}, ends {ends:?}")));
                return false;
            }
        }
        let (consumer, producer) = match client.take() {
            Some(c) => c,
            None => match (copier_consumer(bootstrap), producer(bootstrap, "chaos-copier")) {
                (Ok(c), Ok(p)) => {
                    // A new instance starts from the committed offsets, which
                    // the previous instance's transactions may have moved.
                    committed.clear();
                    (c, p)
                }
                _ => {
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            },
        };
        if ends.is_none() && drain.load(Ordering::SeqCst) {
            // The transactor has stopped and every transaction has ended.
            let mut e = BTreeMap::new();
            for p in 0..PARTITIONS {
                if let Ok((_, high)) = consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(5)) {
                    e.insert(p, high);
                }
            }
            if e.len() == PARTITIONS as usize {
                ends = Some(e);
            }
        }
        let mut batch = Vec::new();
        let polled = Instant::now();
        while batch.len() < 50 && polled.elapsed() < Duration::from_millis(200) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                batch.push((m.partition(), String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()));
            }
        }
        let at = positions(&consumer);
        if batch.is_empty() && (at.is_empty() || at == committed) {
            client = Some((consumer, producer));
            continue;
        }
        let value = format!("c{round}");
        round += 1;
        if producer.begin_transaction().is_err() {
            continue;
        }
        history.record(Event::new(name, Kind::Invoke, Op::Txn).value(&value));
        let mut failed = None;
        for (p, v) in &batch {
            if let Err((e, _)) = producer.send(BaseRecord::<(), str>::to(OUT).payload(v).partition(*p)) {
                failed = Some(format!("send: {e}"));
                break;
            }
        }
        if failed.is_none() {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &at {
                let _ = tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o));
            }
            let sent = match consumer.group_metadata() {
                Some(group) => producer.send_offsets_to_transaction(&tpl, &group, CALL_TIMEOUT).map_err(|e| format!("send_offsets_to_transaction: {e}")),
                None => Err("no group metadata".to_string()),
            };
            failed = sent.err();
        }
        let ended = match failed {
            Some(why) => abort(&producer, why),
            None => commit(&producer),
        };
        let committed_now = matches!(ended, Ended::Committed);
        let usable = record(history, name, &value, ended);
        if committed_now {
            committed = at;
            client = Some((consumer, producer));
        } else if usable {
            // Aborted: the copies are gone, so read again from the offsets
            // committed last (a new consumer starts there).
            drop(consumer);
            match copier_consumer(bootstrap) {
                Ok(c) => client = Some((c, producer)),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
}

/// What a read_committed consumer was given, in order: (partition, value).
pub type Values = Vec<(i32, String)>;

/// Both topics read with read_committed up to their high watermarks.
pub struct FinalRead {
    pub input: Values,
    pub output: Values,
    /// Whether both reads reached the ends.
    pub complete: bool,
}

pub fn final_read(bootstrap: &str) -> FinalRead {
    let (input, a) = read_committed(bootstrap, TOPIC);
    let (output, b) = read_committed(bootstrap, OUT);
    FinalRead { input, output, complete: a && b }
}

fn read_committed(bootstrap: &str, topic: &str) -> (Values, bool) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "chaos-txn-final")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("final reader");
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in 0..PARTITIONS {
        let high = loop {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                Ok((_, high)) => break high,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
                Err(_) => return (Vec::new(), false),
            }
        };
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    let mut read = Vec::new();
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            read.push((m.partition(), String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()));
        }
        // A read_committed position moves past markers and aborted records,
        // up to the last stable offset: the high watermark once every
        // transaction has ended.
        let at = positions(&consumer);
        if (0..PARTITIONS).all(|p| at.get(&p).copied().unwrap_or(0) >= ends[&p]) {
            return (read, true);
        }
    }
    (read, false)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TxnReport {
    pub committed: usize,
    pub aborted: usize,
    pub indeterminate: usize,
    /// Transactions the transactor was told were aborted, yet visible.
    pub aborted_read: Vec<String>,
    /// Transactions of which some values are visible and others not.
    pub torn: Vec<String>,
    /// Transactions whose commit was acknowledged, not visible.
    pub lost: Vec<String>,
    /// Values visible more than once in the input.
    pub duplicated: Vec<String>,
    /// (partition, earlier transaction, later transaction) seen in the wrong order.
    pub reordered: Vec<(i32, String, String)>,
    /// Values in the copy.
    pub copied: usize,
    /// Committed input values missing from the copy.
    pub copy_missing: Vec<String>,
    /// Values in the copy more than once.
    pub copy_duplicated: Vec<String>,
    /// Values in the copy that are not committed input values.
    pub copy_unknown: Vec<String>,
    pub final_read_complete: bool,
    pub drained: bool,
    /// Client calls that blocked past their timeout (see `STUCK`).
    pub stuck_calls: usize,
}

impl TxnReport {
    /// Safety and liveness failures of the transactional workload.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let few = |xs: &[String]| xs.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        for (what, xs) in [
            ("aborted transactions visible to read_committed", &self.aborted_read),
            ("torn transactions", &self.torn),
            ("committed transactions not visible", &self.lost),
            ("transactional values visible twice", &self.duplicated),
            ("committed input values missing from the copy", &self.copy_missing),
            ("values copied more than once", &self.copy_duplicated),
            ("copied values that are not committed input", &self.copy_unknown),
        ] {
            if !xs.is_empty() {
                v.push(format!("{} {what}: {}", xs.len(), few(xs)));
            }
        }
        if let Some(first) = self.reordered.first() {
            v.push(format!("{} transactions out of order in a partition, first {first:?}", self.reordered.len()));
        }
        if !self.final_read_complete {
            v.push("liveness: the read_committed final read of the transactional topics did not reach their ends".into());
        }
        if !self.drained {
            v.push(format!("liveness: the copier did not copy everything within {DRAIN_WITHIN:?} of the workloads' stop"));
        }
        if self.committed == 0 {
            v.push("progress: no transaction committed".into());
        }
        v
    }
}

/// The transaction a value of the transactor belongs to ("x12-3" -> "x12").
fn txn_of(value: &str) -> &str {
    value.rsplit_once('-').map_or(value, |(t, _)| t)
}

pub fn check(events: &[Event], input: &[(i32, String)], output: &[(i32, String)], final_read_complete: bool, drained: bool) -> TxnReport {
    let mut r = TxnReport { final_read_complete, drained, copied: output.len(), ..Default::default() };
    let mut told: HashMap<&str, Kind> = HashMap::new();
    for e in events.iter().filter(|e| e.f == Op::Txn && e.process == "transactor" && e.kind != Kind::Invoke) {
        if let Some(v) = e.value.as_deref() {
            told.insert(v, e.kind);
        }
    }
    r.committed = told.values().filter(|k| **k == Kind::Ok).count();
    r.aborted = told.values().filter(|k| **k == Kind::Fail).count();
    r.indeterminate = told.values().filter(|k| **k == Kind::Info).count();
    r.stuck_calls = events.iter().filter(|e| e.f == Op::Txn && e.error.as_deref().is_some_and(|e| e.starts_with(STUCK))).count();

    let mut visible: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut last_in_partition: HashMap<i32, (u64, &str)> = HashMap::new();
    for (p, v) in input {
        if !seen.insert(v.as_str()) {
            r.duplicated.push(v.clone());
        }
        let t = txn_of(v);
        visible.entry(t).or_default().insert(v.as_str());
        let number: u64 = t.trim_start_matches('x').parse().unwrap_or(0);
        if let Some((last, last_t)) = last_in_partition.get(p)
            && number < *last
        {
            r.reordered.push((*p, t.to_string(), last_t.to_string()));
        }
        last_in_partition.insert(*p, (number, t));
    }
    for (t, values) in &visible {
        if told.get(t) == Some(&Kind::Fail) {
            r.aborted_read.push(t.to_string());
        }
        if values.len() != PER_TXN {
            r.torn.push(format!("{t} ({} of {PER_TXN} values)", values.len()));
        }
    }
    for (t, kind) in &told {
        if *kind == Kind::Ok && !visible.contains_key(t) {
            r.lost.push(t.to_string());
        }
    }

    let mut copies: HashMap<&str, usize> = HashMap::new();
    for (_, v) in output {
        *copies.entry(v.as_str()).or_default() += 1;
    }
    for (v, n) in &copies {
        if *n > 1 {
            r.copy_duplicated.push(v.to_string());
        }
        if !seen.contains(v) {
            r.copy_unknown.push(v.to_string());
        }
    }
    if drained {
        r.copy_missing = seen.iter().filter(|v| !copies.contains_key(*v)).map(|v| v.to_string()).collect();
    }
    for xs in [&mut r.torn, &mut r.lost, &mut r.aborted_read, &mut r.duplicated, &mut r.copy_missing, &mut r.copy_duplicated, &mut r.copy_unknown] {
        xs.sort();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(kind: Kind, t: &str) -> Event {
        Event::new("transactor", kind, Op::Txn).value(t)
    }

    fn whole(t: &str) -> Vec<(i32, String)> {
        (0..PER_TXN).map(|i| (i as i32 % PARTITIONS, format!("{t}-{i}"))).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let events = vec![told(Kind::Ok, "x0"), told(Kind::Fail, "x1"), told(Kind::Info, "x2"), told(Kind::Ok, "x3")];
        let input: Vec<_> = [whole("x0"), whole("x2"), whole("x3")].concat();
        let output = input.clone();
        let r = check(&events, &input, &output, true, true);
        assert!(r.violations().is_empty(), "{:?}", r.violations());
        assert_eq!((r.committed, r.aborted, r.indeterminate, r.copied), (2, 1, 1, 18));
    }

    #[test]
    fn each_anomaly_is_caught() {
        let events = vec![told(Kind::Ok, "x0"), told(Kind::Fail, "x1"), told(Kind::Ok, "x2"), told(Kind::Ok, "x3")];
        // x1 aborted yet visible; x2 torn; x3 lost; x0's first value twice;
        // x1 before x0 in partition 0.
        let mut input = whole("x1");
        input.extend(whole("x0"));
        input.push((0, "x0-0".into()));
        input.extend(whole("x2").into_iter().take(4));
        // The copy misses x0-1, has x0-2 twice and a value never committed.
        let mut output: Vec<_> = input.iter().filter(|(_, v)| v != "x0-1").cloned().collect();
        output.push((2, "x0-2".into()));
        output.push((1, "x9-1".into()));
        let r = check(&events, &input, &output, true, true);
        assert_eq!(r.aborted_read, ["x1"]);
        assert_eq!(r.torn, ["x2 (4 of 6 values)"]);
        assert_eq!(r.lost, ["x3"]);
        assert_eq!(r.duplicated, ["x0-0"]);
        assert!(r.reordered.contains(&(0, "x0".to_string(), "x1".to_string())), "{:?}", r.reordered);
        assert_eq!(r.copy_missing, ["x0-1"]);
        assert_eq!(r.copy_duplicated, ["x0-0", "x0-2"]);
        assert_eq!(r.copy_unknown, ["x9-1"]);
        assert_eq!(r.violations().len(), 8);
    }
}
