//! `runnelctl produce` and `runnelctl consume`: records into and out of a
//! topic over the Kafka protocol (the admin port only tells runnelctl where
//! the Kafka listeners are), with keys, headers, partitions, start by offset
//! or time, and follow, in the spirit of kcat and rpk.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::Output;
use crate::kafka::{EARLIEST, Fetched, KafkaClient, LATEST, Outgoing, PartitionInfo, partition_for_key};

#[derive(clap::Args)]
pub struct ProduceArgs {
    topic: String,
    /// Values to write, one record each; when none are given, every line of
    /// standard input is a record.
    values: Vec<String>,
    /// Write every record to this partition. By default a keyed record goes
    /// where Kafka's default partitioner puts it (murmur2 of the key, as the
    /// Java client and kafka-python do) and records without a key rotate
    /// over the partitions.
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// The key of every record.
    #[arg(long, short = 'k', conflicts_with = "key_separator")]
    key: Option<String>,
    /// Split each line at the first SEP into key and value (kcat's -K);
    /// a line without SEP has no key.
    #[arg(long, short = 'K')]
    key_separator: Option<String>,
    /// A header KEY=VALUE on every record, repeatable.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Each line is a JSON object: {"key": "k", "value": "v",
    /// "headers": {"h": "x"}, "partition": 2}; every field may be left out.
    #[arg(long, conflicts_with_all = ["key", "key_separator"])]
    json_input: bool,
    /// Acknowledgements to wait for: all, 1, or 0 (none; no offsets are printed).
    #[arg(long, default_value = "all", value_parser = ["all", "-1", "1", "0"])]
    acks: String,
}

#[derive(clap::Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Only these partitions (repeatable); every partition when omitted.
    #[arg(long = "partition", short = 'p')]
    partitions: Vec<i32>,
    /// Where to start in each partition: earliest, latest, an offset, or
    /// -N for the last N records.
    #[arg(long, default_value = "earliest", allow_hyphen_values = true)]
    offset: String,
    /// Start at the first record at or after a time: RFC 3339
    /// (2026-11-22T05:00:00Z) or milliseconds since the epoch.
    #[arg(long, conflicts_with = "offset")]
    from_time: Option<String>,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Wait for new records (until Ctrl-C or --count); without it consume
    /// stops at the end each partition had when it started.
    #[arg(long, short = 'f')]
    follow: bool,
    /// How to print a record in table output: %t topic, %p partition,
    /// %o offset, %k key, %v value, %T timestamp (ms), %h headers
    /// (k=v,...), %% a percent sign, \n and \t. With --output json every
    /// record is a JSON object instead.
    #[arg(long, default_value = "%v\\n")]
    format: String,
}

/// Retried after a metadata refresh: the record was not written.
fn not_written(e: ResponseError) -> bool {
    matches!(
        e,
        ResponseError::NotLeaderOrFollower
            | ResponseError::LeaderNotAvailable
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::NotEnoughReplicas
            | ResponseError::FencedLeaderEpoch
    )
}

fn header_pairs(headers: &[String]) -> Result<Vec<(String, Option<Bytes>)>> {
    headers
        .iter()
        .map(|h| h.split_once('=').map(|(k, v)| (k.to_string(), Some(Bytes::from(v.to_string())))).with_context(|| format!("header {h:?} is not KEY=VALUE")))
        .collect()
}

/// One input line as a record, with the partition it names (JSON input only).
fn parse_line(args: &ProduceArgs, fixed_headers: &[(String, Option<Bytes>)], line: &str) -> Result<(Option<i32>, Outgoing)> {
    if args.json_input {
        let v: Value = serde_json::from_str(line).with_context(|| format!("input line {line:?} is not a JSON object"))?;
        let obj = v.as_object().with_context(|| format!("input line {line:?} is not a JSON object"))?;
        let text = |field: &str| -> Result<Option<Bytes>> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(Bytes::from(s.clone()))),
                Some(other) => Ok(Some(Bytes::from(other.to_string()))),
            }
        };
        let mut headers = fixed_headers.to_vec();
        if let Some(h) = obj.get("headers") {
            let h = h.as_object().with_context(|| format!("\"headers\" in {line:?} is not an object"))?;
            for (k, v) in h {
                headers.push((k.clone(), v.as_str().map(|s| Bytes::from(s.to_string())).or_else(|| (!v.is_null()).then(|| Bytes::from(v.to_string())))));
            }
        }
        let partition = match obj.get("partition") {
            None | Some(Value::Null) => None,
            Some(p) => Some(p.as_i64().and_then(|p| i32::try_from(p).ok()).with_context(|| format!("\"partition\" in {line:?} is not a partition number"))?),
        };
        return Ok((partition, Outgoing { key: text("key")?, value: text("value")?, headers }));
    }
    let (key, value) = match (&args.key_separator, &args.key) {
        (Some(sep), _) => match line.split_once(sep.as_str()) {
            Some((k, v)) => (Some(Bytes::from(k.to_string())), v),
            None => (None, line),
        },
        (None, Some(k)) => (Some(Bytes::from(k.clone())), line),
        (None, None) => (None, line),
    };
    Ok((None, Outgoing { key, value: Some(Bytes::from(value.to_string())), headers: fixed_headers.to_vec() }))
}

struct Producer<'a> {
    client: KafkaClient,
    args: &'a ProduceArgs,
    acks: i16,
    partitions: Vec<PartitionInfo>,
    headers: Vec<(String, Option<Bytes>)>,
    /// The next partition for a record without key.
    round_robin: usize,
    output: Output,
    written: u64,
}

impl Producer<'_> {
    async fn send_lines(&mut self, lines: Vec<String>) -> Result<()> {
        let count = self.partitions.len();
        // Records by partition, each with its place in the input.
        let mut by_partition: BTreeMap<i32, (Vec<usize>, Vec<Outgoing>)> = BTreeMap::new();
        for (i, line) in lines.iter().enumerate() {
            let (named, record) = parse_line(self.args, &self.headers, line)?;
            let partition = match (self.args.partition.or(named), &record.key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, count),
                (None, None) => {
                    self.round_robin = (self.round_robin + 1) % count;
                    self.round_robin as i32
                }
            };
            if partition < 0 || partition as usize >= count {
                bail!("topic {:?} has partitions 0-{}; there is no partition {partition}", self.args.topic, count - 1);
            }
            let entry = by_partition.entry(partition).or_default();
            entry.0.push(i);
            entry.1.push(record);
        }
        let mut placed = vec![(0, 0); lines.len()];
        for (partition, (places, records)) in by_partition {
            let base = self.write(partition, &records).await?;
            self.written += records.len() as u64;
            for (n, i) in places.into_iter().enumerate() {
                placed[i] = (partition, base + n as i64);
            }
        }
        if self.acks == 0 {
            return Ok(());
        }
        // In the order of the input.
        for (partition, offset) in placed {
            if self.output == Output::Json {
                outln!("{}", json!({"topic": self.args.topic, "partition": partition, "offset": offset}));
            } else {
                outln!("produced to {}-{partition} at offset {offset}", self.args.topic);
            }
        }
        Ok(())
    }

    /// Writes one partition's records, refreshing leaders and trying again
    /// (a few times) when the broker answers that nothing was written.
    async fn write(&mut self, partition: i32, records: &[Outgoing]) -> Result<i64> {
        let topic = self.args.topic.clone();
        for attempt in 0.. {
            let info = self.partitions[partition as usize].clone();
            match self.client.produce(&topic, &info, records, self.acks).await? {
                Ok(base) => return Ok(base),
                Err((e, _)) if not_written(e) && attempt < 10 => {
                    tokio::time::sleep(Duration::from_millis(200 * (attempt + 1).min(5))).await;
                    self.partitions = self.client.partitions(&topic).await?;
                }
                Err((e, None)) => bail!("writing to {topic}-{partition}: {e}"),
                Err((e, Some(why))) => bail!("writing to {topic}-{partition}: {e}: {why}"),
            }
        }
        unreachable!("the loop returns")
    }
}

pub async fn produce(mut client: KafkaClient, args: ProduceArgs, output: Output) -> Result<()> {
    let acks = match args.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        _ => 0,
    };
    let partitions = client.partitions(&args.topic).await?;
    if partitions.is_empty() {
        bail!("topic {:?} has no partitions", args.topic);
    }
    let headers = header_pairs(&args.headers)?;
    let round_robin = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as usize) % partitions.len();
    let mut producer = Producer { client, args: &args, acks, partitions, headers, round_robin, output, written: 0 };
    if !args.values.is_empty() {
        producer.send_lines(args.values.clone()).await?;
        return Ok(());
    }
    // Lines that arrive together go out as one batch per partition; a line
    // typed alone goes out at once.
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let Some(first) = lines.next_line().await.context("read standard input")? else { break };
        let mut chunk = vec![first];
        let mut end = false;
        while chunk.len() < 1000 {
            match tokio::time::timeout(Duration::from_millis(5), lines.next_line()).await {
                Ok(Ok(Some(line))) => chunk.push(line),
                Ok(Ok(None)) => {
                    end = true;
                    break;
                }
                Ok(Err(e)) => return Err(e).context("read standard input"),
                Err(_) => break,
            }
        }
        producer.send_lines(chunk).await?;
        if end {
            break;
        }
    }
    if producer.written == 0 {
        eprintln!("runnelctl: no records given (pass values, or lines on standard input)");
    }
    Ok(())
}

fn lossy(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// A record through the --format template.
fn render(template: &str, topic: &str, r: &Fetched) -> String {
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t') => out.push_str(topic),
                Some('p') => out.push_str(&r.partition.to_string()),
                Some('o') => out.push_str(&r.offset.to_string()),
                Some('k') => out.push_str(&lossy(&r.key).unwrap_or_default()),
                Some('v') => out.push_str(&lossy(&r.value).unwrap_or_default()),
                Some('T') => out.push_str(&r.timestamp.to_string()),
                Some('h') => out.push_str(&r.headers.iter().map(|(k, v)| format!("{k}={}", lossy(v).unwrap_or_default())).collect::<Vec<_>>().join(",")),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

fn record_json(topic: &str, r: &Fetched) -> Value {
    json!({
        "topic": topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": lossy(&r.key),
        "value": lossy(&r.value),
        "headers": r.headers.iter().map(|(k, v)| (k.clone(), json!(lossy(v)))).collect::<serde_json::Map<String, Value>>(),
    })
}

/// Where each partition starts, from --offset or --from-time.
async fn start_positions(client: &mut KafkaClient, args: &ConsumeArgs, partitions: &[PartitionInfo]) -> Result<HashMap<i32, i64>> {
    let earliest = client.offsets(&args.topic, partitions, EARLIEST).await?;
    let latest = client.offsets(&args.topic, partitions, LATEST).await?;
    if let Some(t) = &args.from_time {
        let ms = crate::groups::parse_datetime(t)?;
        let at = client.offsets(&args.topic, partitions, ms).await?;
        return Ok(at.into_iter().map(|(p, o)| (p, if o < 0 { latest[&p] } else { o })).collect());
    }
    let clamp = |p: i32, o: i64| o.clamp(earliest[&p], latest[&p]);
    Ok(match args.offset.as_str() {
        "earliest" | "beginning" | "start" => earliest,
        "latest" | "end" => latest,
        s => match s.parse::<i64>() {
            Ok(n) if n < 0 => latest.iter().map(|(&p, &end)| (p, clamp(p, end + n))).collect(),
            Ok(n) => partitions.iter().map(|p| (p.index, clamp(p.index, n))).collect(),
            Err(_) => bail!("--offset {s:?}: use earliest, latest, an offset, or -N for the last N records"),
        },
    })
}

pub async fn consume(mut client: KafkaClient, args: ConsumeArgs, output: Output) -> Result<()> {
    let all = client.partitions(&args.topic).await?;
    let mut chosen: Vec<PartitionInfo> = Vec::new();
    if args.partitions.is_empty() {
        chosen = all.clone();
    } else {
        for &p in &args.partitions {
            let info = all.iter().find(|i| i.index == p).with_context(|| format!("topic {:?} has no partition {p} (it has {})", args.topic, all.len()))?;
            chosen.push(info.clone());
        }
    }
    let mut positions = start_positions(&mut client, &args, &chosen).await?;
    // Without --follow, each partition is read up to the end it had now.
    let ends = if args.follow { HashMap::new() } else { client.offsets(&args.topic, &chosen, LATEST).await? };
    if args.follow {
        // On stderr, as kcat's notices: whoever reads stdout sees only records.
        let from: Vec<String> = chosen.iter().map(|p| format!("{}@{}", p.index, positions[&p.index])).collect();
        eprintln!("following {} from partition@offset {}", args.topic, from.join(" "));
    }
    let mut printed = 0u64;
    let done = |p: i32, positions: &HashMap<i32, i64>| !args.follow && positions[&p] >= ends[&p];
    loop {
        if args.count.is_some_and(|n| printed >= n) {
            return Ok(());
        }
        let active: Vec<&PartitionInfo> = chosen.iter().filter(|p| !done(p.index, &positions)).collect();
        if active.is_empty() {
            return Ok(());
        }
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for p in active {
            by_leader.entry(p.leader).or_default().push((p.index, positions[&p.index]));
        }
        let mut refresh = false;
        for (leader, wanted) in by_leader {
            if leader < 0 {
                refresh = true;
                continue;
            }
            let wait = if args.follow { Duration::from_millis(500) } else { Duration::from_millis(100) };
            let fetched = match client.fetch(leader, &args.topic, &wanted, wait).await {
                Ok(f) => f,
                Err(e) => {
                    // The leader may be gone: ask again who leads.
                    eprintln!("runnelctl: {e:#}; refreshing metadata");
                    refresh = true;
                    continue;
                }
            };
            for part in fetched {
                match part.error {
                    None => {}
                    Some(ResponseError::OffsetOutOfRange) => {
                        let info: Vec<PartitionInfo> = chosen.iter().filter(|i| i.index == part.partition).cloned().collect();
                        let earliest = client.offsets(&args.topic, &info, EARLIEST).await?[&part.partition];
                        eprintln!(
                            "runnelctl: offset {} of {}-{} is no longer in the log; going on from the log start {earliest}",
                            positions[&part.partition], args.topic, part.partition
                        );
                        positions.insert(part.partition, earliest);
                        continue;
                    }
                    Some(e) if e.is_retriable() || e == ResponseError::FencedLeaderEpoch => {
                        refresh = true;
                        continue;
                    }
                    Some(e) => bail!("reading {}-{}: {e}", args.topic, part.partition),
                }
                for r in &part.records {
                    if args.count.is_some_and(|n| printed >= n) || (!args.follow && r.offset >= ends[&part.partition]) {
                        break;
                    }
                    if output == Output::Json {
                        outln!("{}", record_json(&args.topic, r));
                    } else {
                        crate::emit_raw(&render(&args.format, &args.topic, r));
                    }
                    printed += 1;
                }
                if let Some(next) = part.next_offset {
                    positions.insert(part.partition, next.max(positions[&part.partition]));
                }
            }
        }
        if refresh {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let fresh = client.partitions(&args.topic).await?;
            for c in &mut chosen {
                if let Some(f) = fresh.iter().find(|f| f.index == c.index) {
                    *c = f.clone();
                }
            }
        }
    }
}

/// The Kafka addresses to start from: --kafka, or the listeners of the
/// brokers the admin API lists.
pub fn bootstrap_from(explicit: Option<&str>, brokers: &[runnel_rpc::admin::Broker]) -> Result<Vec<String>> {
    if let Some(list) = explicit {
        return Ok(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect());
    }
    let live: Vec<String> = brokers.iter().filter(|b| !b.fenced && !b.kafka_address.is_empty()).map(|b| b.kafka_address.clone()).collect();
    if live.is_empty() {
        return Err(anyhow!("the cluster lists no live broker to read from or write to; pass its Kafka address with --kafka HOST:PORT"));
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Fetched {
        Fetched {
            partition: 2,
            offset: 41,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k1")),
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![("source".into(), Some(Bytes::from_static(b"web"))), ("trace".into(), None)],
        }
    }

    #[test]
    fn templates_name_every_field() {
        let r = record();
        assert_eq!(render("%v\\n", "orders", &r), "hello\n");
        assert_eq!(render("%t-%p@%o %k=%v %T [%h] 100%%\\t|", "orders", &r), "orders-2@41 k1=hello 1700000000000 [source=web,trace=] 100%\t|");
        assert_eq!(render("%x %", "orders", &r), "%x %");
    }

    fn produce_args(extra: &[&str]) -> ProduceArgs {
        use clap::FromArgMatches;
        let cmd = <ProduceArgs as clap::Args>::augment_args(clap::Command::new("produce"));
        let m = cmd.try_get_matches_from([&["produce", "orders"], extra].concat()).unwrap();
        ProduceArgs::from_arg_matches(&m).unwrap()
    }

    #[test]
    fn lines_become_keys_values_and_headers() {
        let args = produce_args(&["-K", ":", "-H", "a=1"]);
        let headers = header_pairs(&args.headers).unwrap();
        let (p, r) = parse_line(&args, &headers, "user-7:clicked:twice").unwrap();
        assert_eq!((p, r.key.as_deref(), r.value.as_deref()), (None, Some(&b"user-7"[..]), Some(&b"clicked:twice"[..])));
        assert_eq!(r.headers, vec![("a".to_string(), Some(Bytes::from_static(b"1")))]);
        let (_, r) = parse_line(&args, &headers, "no separator").unwrap();
        assert_eq!(r.key, None);

        let json_args = produce_args(&["--json-input"]);
        let (p, r) = parse_line(&json_args, &[], r#"{"key":"k","value":null,"headers":{"h":"x"},"partition":3}"#).unwrap();
        assert_eq!((p, r.key.as_deref(), r.value), (Some(3), Some(&b"k"[..]), None));
        assert!(parse_line(&json_args, &[], "not json").unwrap_err().to_string().contains("not a JSON object"));
        assert!(parse_line(&json_args, &[], r#"{"partition":"x"}"#).is_err());
        assert!(header_pairs(&["novalue".into()]).is_err());
    }
}
