//! runnelctl as a user meets it (issue 13): bad counts and counts past the
//! per-broker replica limit refused (over Kafka's CreateTopics too), a closed
//! pipe ends it quietly, a Kafka address gets a hint instead of "transport
//! error".

use std::process::Command;
use std::time::Duration;

use runnel_tests::{Node, runnelctl, runnelctl_bin, temp_dir};

#[test]
fn zero_partitions_or_replicas_are_refused_and_nothing_is_created() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "zp", "-p", "0"]);
    assert!(!ok && err.contains("partitions"), "{err}");
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "zp", "-r", "0"]);
    assert!(!ok && err.contains("replication factor"), "{err}");
    let (ok, out, _) = runnelctl(&node.rpc, &["topic", "list"]);
    assert!(ok && !out.contains("\"zp\""), "{out}");
    // Without a count, the node's defaults.
    let (ok, out, err) = runnelctl(&node.rpc, &["topic", "create", "zp"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["partitions"].as_array().map(Vec::len), Some(1));
}

/// Names that differ only by '.' and '_' collide in Kafka's metric names,
/// and Kafka refuses the second; the first stays, and re-creating it still
/// says it exists.
#[test]
fn a_topic_name_colliding_with_another_by_dot_and_underscore_is_refused() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "col.a"]);
    assert!(ok, "{err}");
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "col_a"]);
    assert!(!ok && err.contains("collides") && err.contains("col.a"), "{err}");
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "col.a"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    // Over Kafka's CreateTopics too, validate_only included, as Kafka checks.
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new().set("bootstrap.servers", &node.bootstrap).create().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for validate_only in [true, false] {
        let options = AdminOptions::new().validate_only(validate_only);
        let results = runtime.block_on(admin.create_topics(&[NewTopic::new("col_a", 1, TopicReplication::Fixed(1))], &options)).unwrap();
        assert!(matches!(&results[0], Err((_, rdkafka::types::RDKafkaErrorCode::InvalidTopic))), "validate_only {validate_only}: {results:?}");
    }
    let (ok, out, _) = runnelctl(&node.rpc, &["topic", "list"]);
    assert!(ok && out.contains("\"col.a\"") && !out.contains("\"col_a\""), "{out}");
}

#[test]
fn a_closed_pipe_ends_runnelctl_quietly() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "wide", "-p", "3000"]);
    assert!(ok, "{err}");
    // More output than a pipe holds, read one line: runnelctl gets EPIPE.
    let script = format!("set -o pipefail; {} -b {} topic describe wide | head -1 >/dev/null", runnelctl_bin().display(), node.rpc);
    let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status.code());
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_kafka_address_given_to_runnelctl_gets_a_hint() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let out = Command::new(runnelctl_bin()).args(["-b", &node.bootstrap, "cluster", "status"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is a Kafka listener") && stderr.contains("9093"), "{stderr}");
}

#[test]
fn a_creation_past_the_replica_limit_is_refused_with_nothing_created() {
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use runnel_tests::wire::call;

    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--replicas-per-broker-max", "10"]);
    // runnelctl: eleven replicas on one broker are refused, with the reason.
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "wide", "-p", "11"]);
    assert!(!ok && err.contains("limit of 10") && err.contains("replicas_per_broker_max"), "{err}");
    let (ok, out, _) = runnelctl(&node.rpc, &["topic", "list"]);
    assert!(ok && !out.contains("\"wide\""), "{out}");
    // Ten fit.
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "wide", "-p", "10"]);
    assert!(ok, "{err}");

    // A Kafka client: CreateTopics gets POLICY_VIOLATION with the message, in
    // a validate-only request too; CreatePartitions past the limit as well.
    let mut conn = node.connect();
    for validate_only in [true, false] {
        let create = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default().with_name(TopicName(StrBytes::from_static_str("more"))).with_num_partitions(1).with_replication_factor(1),
            ])
            .with_timeout_ms(10_000)
            .with_validate_only(validate_only);
        let ResponseKind::CreateTopics(r) = call(&mut conn, ApiKey::CreateTopics, 5, &RequestKind::CreateTopics(create)) else { panic!() };
        assert_eq!(r.topics[0].error_code, ResponseError::PolicyViolation.code(), "validate_only {validate_only}");
        assert!(r.topics[0].error_message.as_ref().is_some_and(|m| m.contains("limit of 10")), "{:?}", r.topics[0].error_message);
    }
    let grow = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default().with_name(TopicName(StrBytes::from_static_str("wide"))).with_count(12).with_assignments(None)])
        .with_timeout_ms(10_000);
    let ResponseKind::CreatePartitions(r) = call(&mut conn, ApiKey::CreatePartitions, 3, &RequestKind::CreatePartitions(grow)) else { panic!() };
    assert_eq!(r.results[0].error_code, ResponseError::PolicyViolation.code());
    let (ok, out, _) = runnelctl(&node.rpc, &["topic", "describe", "wide"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok && v["partitions"].as_array().map(Vec::len) == Some(10), "{out}");
    let (ok, out, _) = runnelctl(&node.rpc, &["topic", "list"]);
    assert!(ok && !out.contains("\"more\""), "{out}");
}

#[test]
fn add_partitions_describe_config_and_shell_completion() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "grow", "-p", "2", "--config", "retention.ms=3600000"]);
    assert!(ok, "{err}");

    // add-partitions sets the total, as kafka-topics --alter --partitions does.
    let (ok, out, err) = runnelctl(&node.rpc, &["topic", "add-partitions", "grow", "--total", "4"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["partitions"].as_array().map(Vec::len), Some(4), "{out}");
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "add-partitions", "grow", "--total", "3"]);
    assert!(!ok && err.contains("partition"), "fewer partitions are refused: {err}");

    // describe-config: every config with its value and source.
    let (ok, out, err) = runnelctl(&node.rpc, &["topic", "describe-config", "grow"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entry = |name: &str| v["configs"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or_else(|| panic!("{name} missing: {out}"));
    assert_eq!((entry("retention.ms")["value"].clone(), entry("retention.ms")["source"].clone()), ("3600000".into(), "topic".into()));
    assert_eq!(entry("segment.bytes")["source"], "default");
    assert_eq!(entry("compression.type")["value"], "producer");

    // Completion scripts, without a cluster; a closed pipe ends it quietly.
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(runnelctl_bin()).args(["completion", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("add-partitions"), "{shell}");
    }
    let script = format!("set -o pipefail; {} completion zsh | head -1 >/dev/null", runnelctl_bin().display());
    let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs runnelctl with `stdin` fed to it; (exit ok, stdout, stderr).
fn runnelctl_with_input(rpc: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(runnelctl_bin())
        .args(["--bootstrap", rpc, "--output", "json"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run runnelctl");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("runnelctl output");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect()
}

#[test]
fn runnelctl_produce_writes_what_a_kafka_client_reads_back() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "events", "-p", "3"]);
    assert!(ok, "{err}");
    // Lines of standard input, keys split at ':', a header on each.
    let (ok, out, err) = runnelctl_with_input(&node.rpc, &["produce", "events", "-K", ":", "-H", "source=cli"], "user-1:a\nuser-2:b\nuser-1:c\nnokey\n");
    assert!(ok, "{err}");
    let acks = json_lines(&out);
    assert_eq!(acks.len(), 4, "{out}");
    // JSON input naming a partition, and values given as arguments.
    let (ok, out, err) = runnelctl_with_input(
        &node.rpc,
        &["produce", "events", "--json-input"],
        "{\"key\":\"k9\",\"value\":\"v9\",\"headers\":{\"h\":\"x\"},\"partition\":1}\n",
    );
    assert!(ok, "{err}");
    assert_eq!(json_lines(&out)[0]["partition"], 1, "{out}");
    let (ok, out, err) = runnelctl(&node.rpc, &["produce", "events", "-p", "0", "first", "second"]);
    assert!(ok, "{err}");
    let acks_args = json_lines(&out);
    let second = acks_args[1]["offset"].as_i64().unwrap();
    assert_eq!(
        acks_args.iter().map(|a| (a["partition"].as_i64(), a["offset"].as_i64())).collect::<Vec<_>>(),
        vec![(Some(0), Some(second - 1)), (Some(0), Some(second))],
        "in input order, one after the other"
    );

    // librdkafka reads back every record where runnelctl said it went.
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &node.bootstrap).set("group.id", "assign-only").create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("events", p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut got = std::collections::HashMap::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while got.len() < 7 {
        assert!(std::time::Instant::now() < deadline, "read {} of 7 records", got.len());
        if let Some(m) = consumer.poll(std::time::Duration::from_millis(200)) {
            let m = m.expect("consume");
            let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
            let headers: Vec<(String, Option<String>)> =
                m.headers().map(|h| h.iter().map(|h| (h.key.to_string(), text(h.value))).collect()).unwrap_or_default();
            got.insert((m.partition(), m.offset()), (text(m.key()), text(m.payload()), headers));
        }
    }
    let source = vec![("source".to_string(), Some("cli".to_string()))];
    let expected = [("user-1", "a"), ("user-2", "b"), ("user-1", "c")];
    for (ack, (key, value)) in acks.iter().zip(expected) {
        let at = (ack["partition"].as_i64().unwrap() as i32, ack["offset"].as_i64().unwrap());
        assert_eq!(got[&at], (Some(key.to_string()), Some(value.to_string()), source.clone()), "record at {at:?}");
    }
    assert_eq!(acks[0]["partition"], acks[2]["partition"], "one key, one partition");
    let nokey = (acks[3]["partition"].as_i64().unwrap() as i32, acks[3]["offset"].as_i64().unwrap());
    assert_eq!(got[&nokey], (None, Some("nokey".to_string()), source.clone()));
    assert_eq!(got[&(0, second)].1.as_deref(), Some("second"));

    // Errors name what is wrong; nothing is written.
    let (ok, _, err) = runnelctl(&node.rpc, &["produce", "events", "-p", "7", "x"]);
    assert!(!ok && err.contains("no partition 7"), "{err}");
    let (ok, _, err) = runnelctl(&node.rpc, &["produce", "nosuch", "x"]);
    assert!(!ok && err.contains("\"nosuch\" does not exist"), "{err}");
    let (ok, _, err) = runnelctl_with_input(&node.rpc, &["produce", "events", "--json-input"], "not json\n");
    assert!(!ok && err.contains("not a JSON object"), "{err}");
    // A refusal carries the broker's reason, not only its code.
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "compacted", "--config", "cleanup.policy=compact"]);
    assert!(ok, "{err}");
    let (ok, _, err) = runnelctl(&node.rpc, &["produce", "compacted", "nokey"]);
    assert!(!ok && err.contains("records without a key cannot be compacted"), "{err}");
}

#[test]
fn runnelctl_consume_reads_from_offsets_times_and_follows() {
    use rdkafka::ClientConfig;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "log", "-p", "2"]);
    assert!(ok, "{err}");
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &node.bootstrap).set("linger.ms", "0").create().expect("producer");
    let send = |partition: i32, n: usize| {
        for i in 0..n {
            let value = format!("p{partition}-{i}");
            let headers = OwnedHeaders::new().insert(Header { key: "n", value: Some(&i.to_string()) });
            producer.send(BaseRecord::to("log").partition(partition).key("k").payload(&value).headers(headers)).expect("queue");
        }
        producer.flush(std::time::Duration::from_secs(30)).expect("flush");
    };
    send(0, 5);
    send(1, 3);
    let middle = runnel_tests::now_ms();
    std::thread::sleep(std::time::Duration::from_millis(20));
    send(1, 2); // p1-0 and p1-1 again, at offsets 3 and 4

    // Everything, to the end each partition had, then it stops.
    let (ok, out, err) = runnelctl(&node.rpc, &["consume", "log"]);
    assert!(ok, "{err}");
    let all = json_lines(&out);
    assert_eq!(all.len(), 10, "{out}");
    let first = all.iter().find(|r| r["partition"] == 0 && r["offset"] == 2).expect("p0@2");
    assert_eq!((&first["key"], &first["value"], &first["headers"]["n"]), (&serde_json::json!("k"), &serde_json::json!("p0-2"), &serde_json::json!("2")));
    // One partition, from an offset, the last N, a count, a time.
    let values = |args: &[&str]| -> Vec<String> {
        let (ok, out, err) = runnelctl(&node.rpc, args);
        assert!(ok, "{args:?}: {err}");
        json_lines(&out).iter().map(|r| r["value"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(values(&["consume", "log", "-p", "0", "--offset", "3"]), ["p0-3", "p0-4"]);
    assert_eq!(values(&["consume", "log", "-p", "1", "--offset", "-2"]), ["p1-0", "p1-1"]);
    assert_eq!(values(&["consume", "log", "-p", "0", "-n", "2"]), ["p0-0", "p0-1"]);
    assert_eq!(values(&["consume", "log", "-p", "1", "--from-time", &middle.to_string()]), ["p1-0", "p1-1"]);
    assert!(values(&["consume", "log", "--offset", "latest"]).is_empty());
    // The --format template, in table output.
    let out = Command::new(runnelctl_bin())
        .args(["-b", &node.rpc, "consume", "log", "-p", "0", "--offset", "4", "--format", "%t/%p/%o %k=%v %h\\n"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "log/0/4 k=p0-4 n=4\n");
    // --follow waits for what comes next.
    let mut follower = Command::new(runnelctl_bin())
        .args(["-b", &node.rpc, "-o", "json", "consume", "log", "-p", "1", "--offset", "latest", "--follow", "-n", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once it says where it follows from, what is sent next is what it prints.
    let stderr = follower.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stderr = std::io::BufReader::new(stderr);
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut stderr, &mut line);
        let _ = tx.send(line);
        // Read on to the end: a closed pipe would fail runnelctl's next notice.
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
    });
    let notice = rx.recv_timeout(Duration::from_secs(30)).expect("runnelctl's notice of where it follows from");
    assert_eq!(notice.trim_end(), "following log from partition@offset 1@5");
    send(1, 1);
    let out = wait_bounded(follower, Duration::from_secs(30));
    let got = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!((got.len(), &got[0]["offset"]), (1, &serde_json::json!(5)), "{got:?}");
    let (ok, _, err) = runnelctl(&node.rpc, &["consume", "log", "-p", "9"]);
    assert!(!ok && err.contains("no partition 9"), "{err}");
}

#[test]
fn reset_offsets_shifts_every_topic_of_a_group_and_shows_before_and_after() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    for (topic, partitions) in [("a", "2"), ("b", "1"), ("c", "1")] {
        let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", topic, "-p", partitions]);
        assert!(ok, "{err}");
    }
    let ten: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    for (topic, partition) in [("a", "0"), ("a", "1"), ("b", "0"), ("c", "0")] {
        let args: Vec<&str> = ["produce", topic, "-p", partition].into_iter().chain(ten.iter().map(String::as_str)).collect();
        let (ok, _, err) = runnelctl(&node.rpc, &args);
        assert!(ok, "{err}");
    }
    // The group commits a-0 at 5, a-1 at 8, b-0 at 3 (nothing for c).
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &node.bootstrap).set("group.id", "g").create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("a", 0, Offset::Offset(5)).unwrap();
    tpl.add_partition_offset("a", 1, Offset::Offset(8)).unwrap();
    tpl.add_partition_offset("b", 0, Offset::Offset(3)).unwrap();
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(consumer);

    let committed = || -> Vec<(String, i64, i64)> {
        let (ok, out, err) = runnelctl(&node.rpc, &["group", "describe", "g"]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["topic"].as_str().unwrap().to_string(), o["partition"].as_i64().unwrap(), o["committed"].as_i64().unwrap()))
            .collect()
    };
    let moved = |out: &str| -> Vec<(String, i64, i64, i64)> {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        v["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (o["topic"].as_str().unwrap().to_string(), o["partition"].as_i64().unwrap(), o["previous"].as_i64().unwrap(), o["committed"].as_i64().unwrap())
            })
            .collect()
    };
    let start = vec![("a".to_string(), 0, 5), ("a".to_string(), 1, 8), ("b".to_string(), 0, 3)];
    assert_eq!(committed(), start);

    // A dry run shows before and after and commits nothing.
    let (ok, out, err) = runnelctl(&node.rpc, &["group", "reset-offsets", "g", "--all-topics", "--shift-by", "-2", "--dry-run"]);
    assert!(ok, "{err}");
    assert_eq!(moved(&out), vec![("a".into(), 0, 5, 3), ("a".into(), 1, 8, 6), ("b".into(), 0, 3, 1)]);
    assert_eq!(committed(), start);
    // For real; the table shows both columns.
    let table = Command::new(runnelctl_bin()).args(["-b", &node.rpc, "group", "reset-offsets", "g", "--all-topics", "--shift-by", "-2"]).output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success() && text.contains("BEFORE") && text.contains("AFTER"), "{text}");
    assert_eq!(committed(), vec![("a".to_string(), 0, 3), ("a".to_string(), 1, 6), ("b".to_string(), 0, 1)]);
    // Past the end (or the start) is clamped; one topic leaves the others alone.
    let (ok, out, err) = runnelctl(&node.rpc, &["group", "reset-offsets", "g", "--topic", "a", "--shift-by", "100"]);
    assert!(ok, "{err}");
    assert_eq!(moved(&out), vec![("a".into(), 0, 3, 10), ("a".into(), 1, 6, 10)]);
    assert_eq!(committed(), vec![("a".to_string(), 0, 10), ("a".to_string(), 1, 10), ("b".to_string(), 0, 1)]);
    // A shift needs a committed offset to shift from; nothing changes.
    let (ok, _, err) = runnelctl(&node.rpc, &["group", "reset-offsets", "g", "--topic", "c", "--shift-by", "1"]);
    assert!(!ok && err.contains("c-0") && err.contains("no committed offset"), "{err}");
    let (ok, _, err) = runnelctl(&node.rpc, &["group", "reset-offsets", "g", "--topic", "a", "--all-topics", "--to-earliest"]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    assert_eq!(committed(), vec![("a".to_string(), 0, 10), ("a".to_string(), 1, 10), ("b".to_string(), 0, 1)]);
}

#[test]
fn runnel_bootstrap_names_the_default_cluster() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    // No --bootstrap: the environment names the node, as a profile would.
    let out = Command::new(runnelctl_bin()).env("RUNNEL_BOOTSTRAP", &node.rpc).args(["-o", "json", "cluster", "status"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(1), "{status}");
    // A flag wins over the environment.
    let out = Command::new(runnelctl_bin()).env("RUNNEL_BOOTSTRAP", "127.0.0.1:1").args(["-b", &node.rpc, "-o", "json", "cluster", "status"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(runnelctl_bin()).env("RUNNEL_BOOTSTRAP", "127.0.0.1:1").args(["--timeout-secs", "3", "cluster", "status"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));
}

/// Waits for `child` to exit; kills it and fails after `limit`.
fn wait_bounded(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("runnelctl's status").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("runnelctl still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("runnelctl's output")
}
