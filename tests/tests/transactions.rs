//! Transactions through failures (issue 15), with librdkafka's transactional
//! producer on a three-node cluster: the transaction coordinator's node (the
//! controller leader) is SIGKILLed in the middle of transactions, and a
//! partition leader is SIGKILLed between AddPartitionsToTxn and EndTxn.
//! Every transaction must end committed or aborted, never half: a
//! read_committed consumer sees all of a transaction's records or none, all
//! of every transaction whose commit was acknowledged, and none of one
//! whose abort was.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use runnel_tests::{Cluster, Node, runnelctl, temp_dir, wait_for};
use serde_json::Value;

const PARTITIONS: i32 = 3;
const PER_TRANSACTION: usize = 9;
const TIMEOUT: Duration = Duration::from_secs(30);

fn create_topic(bootstrap: &str, name: &str) {
    create_topic_with(bootstrap, name, 3);
}

fn create_topic_with(bootstrap: &str, name: &str, factor: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for r in runtime.block_on(admin.create_topics(&[NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(factor))], &opts)).expect("create") {
        r.expect("created");
    }
}

fn transactional_producer(bootstrap: &str, id: &str) -> ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "60000")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    producer.init_transactions(TIMEOUT).expect("init_transactions");
    producer
}

/// How a transaction ended, as the producer was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    Committed,
    Aborted,
    /// The producer could not say (a fatal error: a new instance took over).
    Unknown,
}

/// Runs one transaction of PER_TRANSACTION records spread over the
/// partitions; `before_commit` runs after the records are sent and flushed.
fn one_transaction(producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>, topic: &str, round: usize, before_commit: impl FnOnce()) -> Told {
    if let Err(e) = producer.begin_transaction() {
        panic!("begin_transaction in round {round}: {e}");
    }
    for i in 0..PER_TRANSACTION {
        let value = format!("t{round}-{i}");
        let partition = (i as i32) % PARTITIONS;
        if let Err((e, _)) = producer.send(BaseRecord::<(), str>::to(topic).payload(&value).partition(partition)) {
            panic!("send in round {round}: {e}");
        }
    }
    let _ = producer.flush(TIMEOUT);
    before_commit();
    match producer.commit_transaction(TIMEOUT) {
        Ok(()) => Told::Committed,
        Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => match producer.abort_transaction(TIMEOUT) {
            Ok(()) => Told::Aborted,
            Err(e) => panic!("abort after a failed commit in round {round}: {e}"),
        },
        Err(e) => {
            eprintln!("round {round}: commit failed without a way to abort: {e}");
            Told::Unknown
        }
    }
}

/// Every record a read_committed consumer is given, by transaction round,
/// reading each partition until it reaches the high watermark.
fn read_committed(bootstrap: &str, topic: &str) -> BTreeMap<usize, BTreeSet<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "txn-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut rounds: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let value = String::from_utf8_lossy(m.payload().unwrap()).into_owned();
            let round: usize = value[1..value.find('-').unwrap()].parse().unwrap();
            assert!(rounds.entry(round).or_default().insert(value.clone()), "{value} was read twice");
        }
        // The position moves past markers and aborted records too, up to
        // the last stable offset, which is the high watermark once every
        // transaction has ended.
        let positions = consumer.position().unwrap();
        let done = (0..PARTITIONS).all(|p| match positions.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o >= ends[&p],
            _ => ends[&p] == 0,
        });
        if done {
            return rounds;
        }
        assert!(Instant::now() < deadline, "read_committed did not reach the high watermarks {ends:?}; positions {positions:?}");
    }
}

fn check(told: &BTreeMap<usize, Told>, read: &BTreeMap<usize, BTreeSet<String>>) {
    for (round, values) in read {
        assert_eq!(values.len(), PER_TRANSACTION, "transaction {round} is torn: {values:?}");
        assert_ne!(told.get(round), Some(&Told::Aborted), "transaction {round} was aborted, yet a read_committed consumer sees it");
    }
    for (round, t) in told {
        if *t == Told::Committed {
            assert!(read.contains_key(round), "transaction {round} was committed, yet a read_committed consumer does not see it");
        }
    }
}

fn describe(cluster: &Cluster, via: usize, topic: &str) -> Value {
    let (ok, out, err) = runnelctl(&cluster.nodes[via].rpc, &["topic", "describe", topic]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).expect("json")
}

#[test]
fn transactions_end_whole_when_the_coordinator_is_sigkilled() {
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &["--replica-lag-time-max-ms", "3000"]);
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, "txn-coordinator");
    let mut producer = transactional_producer(&bootstrap, "txn-coordinator-app");
    let mut told = BTreeMap::new();
    let mut killed = None;
    for round in 0..10 {
        let t = one_transaction(&producer, "txn-coordinator", round, || {
            if round == 4 {
                let leader = wait_for("a controller leader", Duration::from_secs(10), || cluster.leader_seen_by(0));
                let index = (leader - 1) as usize;
                eprintln!("SIGKILL of node {leader}, the controller leader and transaction coordinator");
                cluster.nodes[index].kill();
                killed = Some(index);
            }
        });
        told.insert(round, t);
        if t == Told::Unknown {
            // A fatal error: a new instance takes over the transactional id.
            producer = transactional_producer(&bootstrap, "txn-coordinator-app");
        }
    }
    eprintln!("told: {told:?}");
    assert!(told.values().filter(|t| **t == Told::Committed).count() >= 5, "most transactions commit around one failover: {told:?}");
    drop(producer);
    if let Some(index) = killed {
        cluster.nodes[index].restart();
    }
    let read = read_committed(&bootstrap, "txn-coordinator");
    check(&told, &read);
}

#[test]
fn markers_reach_a_new_partition_leader() {
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &["--replica-lag-time-max-ms", "3000"]);
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, "txn-leaders");
    let producer = transactional_producer(&bootstrap, "txn-leaders-app");
    let mut told = BTreeMap::new();
    told.insert(0, one_transaction(&producer, "txn-leaders", 0, || {}));
    // Kill a partition leader that is not the coordinator, after the
    // transaction has written to its partition and before EndTxn.
    let coordinator = wait_for("a controller leader", Duration::from_secs(10), || cluster.leader_seen_by(0));
    let victim = (0..PARTITIONS as usize)
        .filter_map(|p| describe(&cluster, 0, "txn-leaders")["partitions"][p]["leader"].as_u64())
        .find(|l| *l != coordinator)
        .expect("a partition led by a node other than the coordinator");
    let mut killed = false;
    told.insert(
        1,
        one_transaction(&producer, "txn-leaders", 1, || {
            eprintln!("SIGKILL of node {victim}, a partition leader");
            cluster.nodes[(victim - 1) as usize].kill();
            killed = true;
        }),
    );
    assert!(killed);
    told.insert(2, one_transaction(&producer, "txn-leaders", 2, || {}));
    eprintln!("told: {told:?}");
    assert_eq!(told[&1], Told::Committed, "the coordinator writes the marker to the partition's new leader");
    drop(producer);
    cluster.nodes[(victim - 1) as usize].restart();
    let read = read_committed(&bootstrap, "txn-leaders");
    check(&told, &read);
    assert_eq!(read.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
    // The coordinator counted them, and nothing holds back read_committed.
    let metrics = cluster.nodes[(coordinator - 1) as usize].http_get("/metrics").1;
    let value = |name: &str| metrics.lines().filter_map(|l| l.strip_prefix(name)).filter_map(|v| v.trim().parse::<f64>().ok()).sum::<f64>();
    assert!(value("runnel_transactions_ended_total{result=\"commit\"} ") >= 3.0, "{metrics}");
    assert_eq!(value("runnel_transactions_open "), 0.0);
    assert_eq!(value("runnel_last_stable_offset_lag{"), 0.0, "{metrics}");
}

#[test]
fn runnelctl_lists_and_describes_transactions() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    create_topic_with(&node.bootstrap, "cli-txn", 1);
    let producer = transactional_producer(&node.bootstrap, "cli-app");
    producer.begin_transaction().unwrap();
    producer.send(BaseRecord::<(), str>::to("cli-txn").payload("v").partition(2)).map_err(|(e, _)| e).unwrap();
    producer.flush(TIMEOUT).unwrap();

    let (ok, out, err) = runnelctl(&node.rpc, &["txn", "list"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert!(listed.as_array().unwrap().iter().any(|t| t["transactional_id"] == "cli-app" && t["state"] == "Ongoing"), "{listed}");
    let (ok, out, err) = runnelctl(&node.rpc, &["txn", "list", "--state", "CompleteCommit"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), serde_json::json!([]));
    let (ok, out, err) = runnelctl(&node.rpc, &["txn", "describe", "cli-app"]);
    assert!(ok, "{err}");
    let described: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((described["state"].as_str(), described["partitions"].clone()), (Some("Ongoing"), serde_json::json!(["cli-txn-2"])), "{described}");
    assert!(described["start_time_ms"].as_i64().unwrap() > 0);

    producer.commit_transaction(TIMEOUT).unwrap();
    let (ok, out, err) = runnelctl(&node.rpc, &["txn", "describe", "cli-app"]);
    assert!(ok, "{err}");
    let described: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(described["state"], "CompleteCommit", "{described}");
    let (ok, _, err) = runnelctl(&node.rpc, &["txn", "describe", "no-such-app"]);
    assert!(!ok && err.contains("no transactional id"), "{err}");
}

/// An idle transactional id is forgotten after
/// transactional.id.expiration.ms (1 s here); one in a transaction is not,
/// and a forgotten id that comes back starts again with a new producer id.
#[test]
fn idle_transactional_ids_are_forgotten_after_their_expiration() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--transactional-id-expiration-ms", "1000"]);
    create_topic_with(&node.bootstrap, "expiry", 1);
    let listed = || -> Vec<String> {
        let (ok, out, err) = runnelctl(&node.rpc, &["txn", "list"]);
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v.as_array().unwrap().iter().map(|t| t["transactional_id"].as_str().unwrap().to_string()).collect()
    };
    let producer_id = |id: &str| -> i64 {
        let (ok, out, err) = runnelctl(&node.rpc, &["txn", "describe", id]);
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()["producer_id"].as_i64().unwrap()
    };
    let done = transactional_producer(&node.bootstrap, "idle-app");
    done.begin_transaction().unwrap();
    done.send(BaseRecord::<(), str>::to("expiry").payload("v").partition(0)).map_err(|(e, _)| e).unwrap();
    done.commit_transaction(TIMEOUT).unwrap();
    let first = producer_id("idle-app");
    drop(done);
    // Another stays in a transaction (its timeout is a minute) all along.
    let busy = transactional_producer(&node.bootstrap, "busy-app");
    busy.begin_transaction().unwrap();
    busy.send(BaseRecord::<(), str>::to("expiry").payload("w").partition(0)).map_err(|(e, _)| e).unwrap();
    busy.flush(TIMEOUT).unwrap();
    wait_for("the idle id forgotten", Duration::from_secs(20), || (!listed().contains(&"idle-app".to_string())).then_some(()));
    assert!(listed().contains(&"busy-app".to_string()), "an id in a transaction is kept");
    busy.commit_transaction(TIMEOUT).unwrap();

    let again = transactional_producer(&node.bootstrap, "idle-app");
    again.begin_transaction().unwrap();
    again.send(BaseRecord::<(), str>::to("expiry").payload("x").partition(0)).map_err(|(e, _)| e).unwrap();
    again.commit_transaction(TIMEOUT).unwrap();
    assert_ne!(producer_id("idle-app"), first, "a forgotten id starts again with a new producer id");
}

mod wire {
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        AddPartitionsToTxnRequest, ApiKey, CreateTopicsRequest, EndTxnRequest, InitProducerIdRequest, ProduceRequest, ProducerId, RequestKind, ResponseKind,
        TopicName, TransactionalId,
    };
    use kafka_protocol::protocol::StrBytes;
    use runnel_storage::batch::{TRANSACTIONAL, build_batch, set_attributes, set_producer};
    use runnel_tests::Node;
    use runnel_tests::wire::call;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    fn produce(stream: &mut std::net::TcpStream, producer: (i64, i16), sequence: i32) -> i16 {
        let mut batch = build_batch(1, &[b"v"]);
        set_attributes(&mut batch, TRANSACTIONAL);
        set_producer(&mut batch, producer.0, producer.1, sequence);
        let request =
            ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_transactional_id(Some(TransactionalId(s("wire-tx")))).with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(s("wire-txn")))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch.into()))]),
            ]);
        let ResponseKind::Produce(r) = call(stream, ApiKey::Produce, 9, &RequestKind::Produce(request)) else { panic!() };
        r.responses[0].partition_responses[0].error_code
    }

    /// KIP-890 part 1: a transactional batch opens a transaction in a
    /// partition only once AddPartitionsToTxn has added the partition; a
    /// late batch after the transaction ended is refused, so it cannot
    /// open a transaction no coordinator will end.
    #[test]
    fn a_transactional_batch_needs_its_partition_added_to_an_ongoing_transaction() {
        let dir = runnel_tests::temp_dir();
        let node = Node::start(&dir.path().join("node"), &[]);
        let mut c = node.connect();
        let create = CreateTopicsRequest::default()
            .with_topics(vec![
                kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(s("wire-txn")))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(10_000);
        let ResponseKind::CreateTopics(r) = call(&mut c, ApiKey::CreateTopics, 5, &RequestKind::CreateTopics(create)) else { panic!() };
        assert_eq!(r.topics[0].error_code, 0);
        let init = InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(s("wire-tx")))).with_transaction_timeout_ms(60_000);
        let ResponseKind::InitProducerId(r) = call(&mut c, ApiKey::InitProducerId, 4, &RequestKind::InitProducerId(init)) else { panic!() };
        assert_eq!(r.error_code, 0);
        let producer = (r.producer_id.0, r.producer_epoch);

        assert_eq!(produce(&mut c, producer, 0), ResponseError::InvalidTxnState.code(), "the partition was never added");
        let add = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s("wire-tx")))
            .with_v3_and_below_producer_id(ProducerId(producer.0))
            .with_v3_and_below_producer_epoch(producer.1)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default().with_name(TopicName(s("wire-txn"))).with_partitions(vec![0])]);
        let ResponseKind::AddPartitionsToTxn(r) = call(&mut c, ApiKey::AddPartitionsToTxn, 3, &RequestKind::AddPartitionsToTxn(add)) else { panic!() };
        assert_eq!(r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code, 0);
        assert_eq!(produce(&mut c, producer, 0), 0, "added: the batch opens the transaction");
        assert_eq!(produce(&mut c, producer, 1), 0, "the transaction is open in the partition");
        let end = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s("wire-tx")))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_committed(true);
        let ResponseKind::EndTxn(r) = call(&mut c, ApiKey::EndTxn, 3, &RequestKind::EndTxn(end)) else { panic!() };
        assert_eq!(r.error_code, 0);
        assert_eq!(produce(&mut c, producer, 2), ResponseError::InvalidTxnState.code(), "a late batch after the commit");

        // A new instance fences this one: a batch of the old epoch is told it
        // is fenced (Kafka's PRODUCER_FENCED from the coordinator, given to
        // a producer as INVALID_PRODUCER_EPOCH), not that its state is wrong.
        let init = InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(s("wire-tx")))).with_transaction_timeout_ms(60_000);
        let ResponseKind::InitProducerId(r) = call(&mut c, ApiKey::InitProducerId, 4, &RequestKind::InitProducerId(init)) else { panic!() };
        assert_eq!((r.error_code, r.producer_id.0), (0, producer.0));
        assert!(r.producer_epoch > producer.1, "{} after {}", r.producer_epoch, producer.1);
        assert_eq!(produce(&mut c, producer, 2), ResponseError::InvalidProducerEpoch.code(), "a batch of the fenced epoch");
    }

    fn connect(address: &str) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
        stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
        stream
    }

    /// A Produce v12 of one transactional record, as a Kafka 4 producer
    /// under transaction version 2 sends it (no AddPartitionsToTxn first).
    fn produce_v12(stream: &mut std::net::TcpStream, id: &str, topic: &str, partition: i32, producer: (i64, i16), sequence: i32, value: &str) -> i16 {
        let mut batch = build_batch(runnel_tests::now_ms(), &[value.as_bytes()]);
        set_attributes(&mut batch, TRANSACTIONAL);
        set_producer(&mut batch, producer.0, producer.1, sequence);
        let request =
            ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_transactional_id(Some(TransactionalId(s(id)))).with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(batch.into()))]),
            ]);
        let ResponseKind::Produce(r) = call(stream, ApiKey::Produce, 12, &RequestKind::Produce(request)) else { panic!() };
        r.responses[0].partition_responses[0].error_code
    }

    /// A TxnOffsetCommit of `offset` for partition 0 of `topic`, outside
    /// any group generation.
    fn txn_offset_commit(id: &str, group: &str, producer: (i64, i16), topic: &str, offset: i64) -> kafka_protocol::messages::TxnOffsetCommitRequest {
        use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
        kafka_protocol::messages::TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_group_id(kafka_protocol::messages::GroupId(s(group)))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_generation_id(-1)
            .with_topics(vec![
                TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset)]),
            ])
    }

    fn end_v5(stream: &mut std::net::TcpStream, id: &str, producer: (i64, i16), commit: bool) -> (i16, (i64, i16)) {
        let end = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_committed(commit);
        let ResponseKind::EndTxn(r) = call(stream, ApiKey::EndTxn, 5, &RequestKind::EndTxn(end)) else { panic!() };
        (r.error_code, (r.producer_id.0, r.producer_epoch))
    }

    /// Transaction version 2 (KIP-890 part 2), as Kafka 4's producers use
    /// it: ApiVersions finalizes `transaction.version` 2; the producer sends
    /// no AddPartitionsToTxn (each partition's leader adds it, through the
    /// coordinator on another node for some) nor AddOffsetsToTxn; every
    /// EndTxn bumps the epoch and answers with it, so a batch of the ended
    /// transaction that arrives late is fenced, and the next transaction
    /// starts at the new epoch. A read_committed consumer sees the
    /// committed transaction whole and nothing of the aborted one, and the
    /// offsets committed inside the transaction take effect with it.
    #[test]
    fn transaction_version_2_bumps_the_epoch_at_every_end_and_leaders_add_partitions() {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        use kafka_protocol::messages::{ApiVersionsRequest, FindCoordinatorRequest, GroupId, MetadataRequest, OffsetFetchRequest};
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

        let cluster = runnel_tests::Cluster::start(3, 6000);
        let (id, topic, group) = ("tv2-app", "tv2", "tv2-group");
        super::create_topic(&cluster.bootstrap(), topic);
        let mut c = connect(&cluster.nodes[0].bootstrap);

        // The feature, as Kafka 4 clients read it.
        let ResponseKind::ApiVersions(v) = call(&mut c, ApiKey::ApiVersions, 4, &RequestKind::ApiVersions(ApiVersionsRequest::default())) else { panic!() };
        let finalized: Vec<(String, i16)> = v.finalized_features.iter().map(|f| (f.name.to_string(), f.max_version_level)).collect();
        assert_eq!(finalized, vec![("transaction.version".to_string(), 2)], "{v:?}");
        let supported: Vec<(String, i16, i16)> = v.supported_features.iter().map(|f| (f.name.to_string(), f.min_version, f.max_version)).collect();
        assert_eq!(supported, vec![("transaction.version".to_string(), 0, 2)]);
        let max = |key: ApiKey| v.api_keys.iter().find(|k| k.api_key == key as i16).map(|k| k.max_version);
        assert_eq!((max(ApiKey::Produce), max(ApiKey::EndTxn), max(ApiKey::TxnOffsetCommit)), (Some(13), Some(5), Some(5)));
        let ResponseKind::ApiVersions(v3) = call(&mut c, ApiKey::ApiVersions, 3, &RequestKind::ApiVersions(ApiVersionsRequest::default())) else { panic!() };
        assert!(v3.supported_features.is_empty(), "v3 leaves out features whose minimum is 0, as Kafka does");
        assert_eq!(v3.finalized_features.len(), 1);

        // Where the coordinator and the partitions' leaders are.
        let find = FindCoordinatorRequest::default().with_key(s(id)).with_key_type(1);
        let ResponseKind::FindCoordinator(f) = call(&mut c, ApiKey::FindCoordinator, 3, &RequestKind::FindCoordinator(find)) else { panic!() };
        assert_eq!(f.error_code, 0);
        let coordinator_id = f.node_id.0;
        let mut coordinator = connect(&format!("{}:{}", f.host, f.port));
        let metadata = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))))]));
        let ResponseKind::Metadata(m) = call(&mut c, ApiKey::Metadata, 9, &RequestKind::Metadata(metadata)) else { panic!() };
        let address = |node: i32| m.brokers.iter().find(|b| b.node_id.0 == node).map(|b| format!("{}:{}", b.host, b.port)).expect("leader listed");
        let mut leaders: Vec<(i32, i32, std::net::TcpStream)> =
            m.topics[0].partitions.iter().map(|p| (p.partition_index, p.leader_id.0, connect(&address(p.leader_id.0)))).collect();
        leaders.sort_by_key(|(p, _, _)| *p);
        assert!(
            leaders.iter().any(|(_, leader, _)| *leader != coordinator_id),
            "some partition is led away from the coordinator (node {coordinator_id}), so its add goes over gRPC: {:?}",
            leaders.iter().map(|(p, l, _)| (*p, *l)).collect::<Vec<_>>()
        );

        let init = InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(s(id)))).with_transaction_timeout_ms(60_000);
        let ResponseKind::InitProducerId(r) = call(&mut coordinator, ApiKey::InitProducerId, 4, &RequestKind::InitProducerId(init)) else { panic!() };
        assert_eq!(r.error_code, 0);
        let first = (r.producer_id.0, r.producer_epoch);

        // Transaction 1: a record in every partition and an offset, committed.
        for (partition, _, stream) in leaders.iter_mut() {
            let code = produce_v12(stream, id, topic, *partition, first, 0, &format!("committed-{partition}"));
            assert_eq!(code, 0, "partition {partition}: its leader adds it to the transaction");
        }
        let commit = txn_offset_commit(id, group, first, topic, 5);
        let ResponseKind::TxnOffsetCommit(r) = call(&mut coordinator, ApiKey::TxnOffsetCommit, 5, &RequestKind::TxnOffsetCommit(commit)) else { panic!() };
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "no AddOffsetsToTxn first: the commit opens it");
        let (code, second) = end_v5(&mut coordinator, id, first, true);
        assert_eq!((code, second), (0, (first.0, first.1 + 1)), "the commit bumps the epoch and says so");
        assert_eq!(end_v5(&mut coordinator, id, first, true), (0, second), "a retry of the commit gets the same answer");

        // A batch of the ended transaction, late: fenced.
        let (_, _, late) = &mut leaders[0];
        assert_eq!(produce_v12(late, id, topic, 0, first, 1, "late"), ResponseError::InvalidProducerEpoch.code());

        // Transaction 2, at the new epoch from sequence 0: aborted.
        let (_, _, stream) = &mut leaders[1];
        assert_eq!(produce_v12(stream, id, topic, 1, second, 0, "aborted-1"), 0);
        let (code, third) = end_v5(&mut coordinator, id, second, false);
        assert_eq!((code, third), (0, (first.0, first.1 + 2)));
        // Aborting again with nothing open moves the epoch on too.
        let (code, fourth) = end_v5(&mut coordinator, id, third, false);
        assert_eq!((code, fourth), (0, (first.0, first.1 + 3)));

        let fetch = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(TopicName(s(topic))).with_partition_indexes(vec![0])]));
        let ResponseKind::OffsetFetch(r) = call(&mut coordinator, ApiKey::OffsetFetch, 5, &RequestKind::OffsetFetch(fetch)) else { panic!() };
        assert_eq!(r.topics[0].partitions[0].committed_offset, 5, "the offset committed with the transaction");

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap())
            .set("group.id", "tv2-reader")
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for p in 0..super::PARTITIONS {
            assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let mut deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut settling = false;
        while std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(std::time::Duration::from_millis(200)) {
                seen.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
            }
            // Anything after the committed records would show up within 2 s more.
            if seen.len() >= 3 && !settling {
                settling = true;
                deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            }
        }
        let expected: std::collections::BTreeSet<String> = (0..super::PARTITIONS).map(|p| format!("committed-{p}")).collect();
        assert_eq!(seen, expected, "the committed transaction whole, nothing aborted or late");
    }

    /// The versions with which a client says it handles
    /// TRANSACTION_ABORTABLE (KIP-890; Kafka 3.8 and later send them):
    /// InitProducerId v5 and AddOffsetsToTxn v4, with EndTxn v4 and
    /// TxnOffsetCommit v4 of transaction version 1. A whole transaction at
    /// those versions commits its offset.
    #[test]
    fn a_transaction_at_the_transaction_abortable_versions_commits() {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        use kafka_protocol::messages::{AddOffsetsToTxnRequest, GroupId, OffsetFetchRequest};
        let dir = runnel_tests::temp_dir();
        let node = Node::start(&dir.path().join("node"), &[]);
        let mut c = node.connect();
        let (id, group, topic) = ("abortable-tx", "abortable-group", "abortable-in");
        let create = CreateTopicsRequest::default()
            .with_topics(vec![
                kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(10_000);
        let ResponseKind::CreateTopics(r) = call(&mut c, ApiKey::CreateTopics, 5, &RequestKind::CreateTopics(create)) else { panic!() };
        assert_eq!(r.topics[0].error_code, 0);

        let init = InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(s(id)))).with_transaction_timeout_ms(60_000);
        let ResponseKind::InitProducerId(r) = call(&mut c, ApiKey::InitProducerId, 5, &RequestKind::InitProducerId(init)) else { panic!() };
        assert_eq!(r.error_code, 0, "{r:?}");
        let producer = (r.producer_id.0, r.producer_epoch);
        let add = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_group_id(GroupId(s(group)));
        let ResponseKind::AddOffsetsToTxn(r) = call(&mut c, ApiKey::AddOffsetsToTxn, 4, &RequestKind::AddOffsetsToTxn(add)) else { panic!() };
        assert_eq!(r.error_code, 0, "{r:?}");
        let commit = txn_offset_commit(id, group, producer, topic, 7);
        let ResponseKind::TxnOffsetCommit(r) = call(&mut c, ApiKey::TxnOffsetCommit, 4, &RequestKind::TxnOffsetCommit(commit)) else { panic!() };
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "{r:?}");
        let end = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_committed(true);
        let ResponseKind::EndTxn(r) = call(&mut c, ApiKey::EndTxn, 4, &RequestKind::EndTxn(end)) else { panic!() };
        assert_eq!(r.error_code, 0, "{r:?}");

        let fetch = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(TopicName(s(topic))).with_partition_indexes(vec![0])]));
        let ResponseKind::OffsetFetch(r) = call(&mut c, ApiKey::OffsetFetch, 5, &RequestKind::OffsetFetch(fetch)) else { panic!() };
        assert_eq!(r.topics[0].partitions[0].committed_offset, 7, "the offset committed with the transaction: {r:?}");
    }

    /// The transaction coordinator of `id` as the broker at `via` names it,
    /// once it names one other than `not`: its node id and a connection.
    fn coordinator_of(via: &str, id: &str, not: Option<i32>) -> (i32, std::net::TcpStream) {
        use kafka_protocol::messages::FindCoordinatorRequest;
        let mut c = connect(via);
        let (node, address) = runnel_tests::wait_for("a transaction coordinator", std::time::Duration::from_secs(30), || {
            let find = FindCoordinatorRequest::default().with_key(s(id)).with_key_type(1);
            let ResponseKind::FindCoordinator(f) = call(&mut c, ApiKey::FindCoordinator, 3, &RequestKind::FindCoordinator(find)) else { panic!() };
            (f.error_code == 0 && Some(f.node_id.0) != not).then(|| (f.node_id.0, format!("{}:{}", f.host, f.port)))
        });
        (node, connect(&address))
    }

    /// InitProducerId v4 for transactional id `id`, naming `producer` (or
    /// (-1, -1)), asked again while the coordinator is still loading:
    /// (error, the producer id and epoch answered).
    fn init_v4(stream: &mut std::net::TcpStream, id: &str, producer: (i64, i16)) -> (i16, (i64, i16)) {
        let transient = [ResponseError::CoordinatorLoadInProgress.code(), ResponseError::NotCoordinator.code(), ResponseError::CoordinatorNotAvailable.code()];
        runnel_tests::wait_for("an InitProducerId answer", std::time::Duration::from_secs(30), || {
            let init = InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s(id))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1);
            let ResponseKind::InitProducerId(r) = call(stream, ApiKey::InitProducerId, 4, &RequestKind::InitProducerId(init)) else { panic!() };
            (!transient.contains(&r.error_code)).then_some((r.error_code, (r.producer_id.0, r.producer_epoch)))
        })
    }

    /// KIP-360: a producer that recovers its transactional id by naming its
    /// own (id, epoch), and loses the answer, asks again, here of the next
    /// coordinator after the first was SIGKILLed: it is told the epoch it
    /// was bumped to instead of being fenced. Once a new instance has
    /// initialised the id, the same request is fenced.
    #[test]
    fn an_init_producer_id_retried_after_a_lost_answer_is_not_fenced_through_a_coordinator_kill() {
        let mut cluster = runnel_tests::Cluster::start(3, 2000);
        let id = "kip360-app";
        let (coordinator, mut c) = coordinator_of(&cluster.nodes[0].bootstrap, id, None);
        let (code, first) = init_v4(&mut c, id, (-1, -1));
        assert_eq!(code, 0);
        let (code, bumped) = init_v4(&mut c, id, first);
        assert_eq!((code, bumped), (0, (first.0, first.1 + 1)), "the producer recovers its own id at the next epoch");

        // The answer was lost, and the coordinator dies before the retry.
        let index = usize::try_from(coordinator - 1).unwrap();
        cluster.nodes[index].kill();
        let survivor = cluster.nodes[(index + 1) % 3].bootstrap.clone();
        let (_, mut c) = coordinator_of(&survivor, id, Some(coordinator));
        assert_eq!(init_v4(&mut c, id, first), (0, bumped), "the retry is told the epoch it was bumped to");
        assert_eq!(init_v4(&mut c, id, first), (0, bumped), "and again");

        // A new instance takes the id over: the old instance's requests are fenced.
        let (code, taken) = init_v4(&mut c, id, (-1, -1));
        assert_eq!((code, taken), (0, (first.0, first.1 + 2)));
        assert_eq!(init_v4(&mut c, id, first).0, ResponseError::InvalidProducerEpoch.code(), "a retry after a new instance");
        assert_eq!(init_v4(&mut c, id, bumped).0, ResponseError::InvalidProducerEpoch.code());
    }
}
