//! `runnelctl broker throttle` (issue 17): the catch-up replication limit
//! (Kafka's dynamic broker config follower.replication.throttled.rate) set
//! at run time for every broker and for one, the broker's own value winning,
//! each removal falling back a level, and the node applying each change
//! without a restart (its /metrics gauge).

use std::time::Duration;

use runnel_tests::{Node, runnelctl, temp_dir, wait_for};

fn limit(node: &Node) -> Option<i64> {
    node.http_get("/metrics").1.lines().find_map(|l| l.strip_prefix("runnel_replica_catch_up_max_bytes_per_sec ")).and_then(|v| v.trim().parse().ok())
}

#[test]
fn the_catch_up_throttle_is_set_for_every_broker_and_for_one_at_run_time() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let throttle = |args: &[&str]| {
        let mut all = vec!["broker", "throttle", "--kafka", node.bootstrap.as_str()];
        all.extend_from_slice(args);
        runnelctl(&node.rpc, &all)
    };
    let applied = |rate: i64| wait_for(&format!("a limit of {rate}"), Duration::from_secs(10), || (limit(&node) == Some(rate)).then_some(()));
    applied(0);
    for (args, expected) in [
        (vec!["--rate", "2097152"], 2_097_152),
        (vec!["--broker", "1", "--rate", "3145728"], 3_145_728),
        (vec!["--broker", "1", "--remove"], 2_097_152),
        (vec!["--remove"], 0),
    ] {
        let (ok, _, err) = throttle(&args);
        assert!(ok, "{args:?}: {err}");
        applied(expected);
    }
    let (ok, _, err) = throttle(&["--rate", "10"]);
    assert!(!ok && err.contains("at least 1048576"), "{err}");
    let (ok, _, err) = throttle(&["--broker", "9", "--rate", "2097152"]);
    assert!(!ok, "an unknown broker is refused: {err}");
}

/// leader.replication.throttled.rate (`runnelctl broker throttle
/// --leader`): a follower back from a SIGKILL copies its backlog from a
/// leader limited to 1 MiB/s no faster than that (a lower bound, which
/// load on the machine cannot break), and rejoins the ISR once it has it;
/// the node's gauge shows the limit, and removing it lifts it.
#[test]
fn a_leader_sends_a_catching_up_follower_its_backlog_at_the_leader_rate() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    use runnel_tests::Cluster;

    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &["--replica-lag-time-max-ms", "2000"]);
    let rpc = cluster.nodes[0].rpc.clone();
    let (ok, _, err) = runnelctl(&rpc, &["topic", "create", "moved", "-p", "1", "-r", "3"]);
    assert!(ok, "{err}");
    let describe = |rpc: &str| -> serde_json::Value {
        let (ok, out, err) = runnelctl(rpc, &["topic", "describe", "moved"]);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["partitions"][0].clone()
    };
    let leader = wait_for("a leader", Duration::from_secs(10), || describe(&rpc)["leader"].as_u64());
    let follower = (1..=3u64).find(|n| *n != leader).unwrap();
    let via = cluster.nodes[(leader - 1) as usize].rpc.clone();
    cluster.nodes[(follower - 1) as usize].kill();
    wait_for("the follower out of the ISR", Duration::from_secs(20), || {
        (!describe(&via)["isr"].as_array().unwrap().iter().any(|n| n.as_u64() == Some(follower))).then_some(())
    });

    // 6 MiB the follower has to copy when it is back.
    let bootstrap = cluster.nodes[(leader - 1) as usize].bootstrap.clone();
    let producer: ThreadedProducer<_> = ClientConfig::new().set("bootstrap.servers", &bootstrap).set("acks", "1").create().expect("producer");
    let value = vec![7u8; 1024];
    for _ in 0..6 * 1024 {
        let mut record = BaseRecord::<(), [u8]>::to("moved").payload(&value[..]);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flushed");

    let leader_node = &cluster.nodes[(leader - 1) as usize];
    let (ok, _, err) =
        runnelctl(&leader_node.rpc, &["broker", "throttle", "--leader", "--broker", &leader.to_string(), "--rate", "1048576", "--kafka", &bootstrap]);
    assert!(ok, "{err}");
    let gauge = |node: &Node| -> Option<i64> {
        node.http_get("/metrics")
            .1
            .lines()
            .find_map(|l| l.strip_prefix("runnel_replica_leader_catch_up_max_bytes_per_sec "))
            .and_then(|v| v.trim().parse().ok())
    };
    wait_for("the leader limit applied", Duration::from_secs(10), || (gauge(leader_node) == Some(1_048_576)).then_some(()));

    let started = std::time::Instant::now();
    cluster.nodes[(follower - 1) as usize].restart();
    wait_for("the follower back in the ISR", Duration::from_secs(60), || {
        describe(&via)["isr"].as_array().unwrap().iter().any(|n| n.as_u64() == Some(follower)).then_some(())
    });
    let took = started.elapsed();
    eprintln!("6 MiB of backlog copied at a 1 MiB/s leader limit in {took:?}");
    assert!(took >= Duration::from_secs(4), "the backlog came faster than the leader's limit allows: {took:?}");

    let leader_node = &cluster.nodes[(leader - 1) as usize];
    let (ok, _, err) = runnelctl(&leader_node.rpc, &["broker", "throttle", "--leader", "--broker", &leader.to_string(), "--remove", "--kafka", &bootstrap]);
    assert!(ok, "{err}");
    wait_for("the leader limit lifted", Duration::from_secs(10), || (gauge(leader_node) == Some(0)).then_some(()));
}

/// `runnelctl broker config`: dynamic broker configs set for every broker
/// (Kafka's empty resource name, which the Python admin clients cannot
/// send) and for one, shown with their sources, and applied to a topic
/// without its own value at once; removing them goes back a level.
#[test]
fn broker_configs_are_set_for_every_broker_and_for_one_with_runnelctl() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let config = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["broker", "config", "--kafka", node.bootstrap.as_str()];
        all.extend_from_slice(args);
        let (ok, out, err) = runnelctl(&node.rpc, &all);
        assert!(ok, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let entry = |described: &serde_json::Value, name: &str| -> (String, String) {
        let c = described["configs"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} in {described}"));
        (c["value"].as_str().unwrap().to_string(), c["source"].as_str().unwrap().to_string())
    };
    let (ok, _, err) = runnelctl(&node.rpc, &["topic", "create", "small", "-p", "1"]);
    assert!(ok, "{err}");
    let big = "x".repeat(300);
    let produce = || runnelctl(&node.rpc, &["produce", "small", "--acks", "1", big.as_str()]);
    assert!(produce().0, "a 300-byte record before any limit");

    let all = config(&["--set", "message.max.bytes=200", "--set", "log.retention.ms=3600000"]);
    assert_eq!(entry(&all, "message.max.bytes"), ("200".into(), "all brokers (dynamic)".into()));
    let (ok, _, err) = produce();
    assert!(!ok && err.contains("MessageTooLarge"), "the limit for every broker reaches the topic: {err}");

    let one = config(&["--broker", "1", "--set", "message.max.bytes=100000"]);
    assert_eq!(entry(&one, "message.max.bytes"), ("100000".into(), "broker (dynamic)".into()));
    assert_eq!(entry(&one, "log.retention.ms"), ("3600000".into(), "all brokers (dynamic)".into()));
    assert!(produce().0, "broker 1's own value wins");

    let one = config(&["--broker", "1", "--delete", "message.max.bytes"]);
    assert_eq!(entry(&one, "message.max.bytes"), ("200".into(), "all brokers (dynamic)".into()));
    let all = config(&["--delete", "message.max.bytes", "--delete", "log.retention.ms"]);
    assert_eq!(entry(&all, "message.max.bytes").1, "broker", "back to the node's setting");
    assert!(produce().0);

    // Unclean elections: the controller's, so for every broker only.
    let all = config(&["--set", "unclean.leader.election.enable=true"]);
    assert_eq!(entry(&all, "unclean.leader.election.enable"), ("true".into(), "all brokers (dynamic)".into()));
    let (ok, out, err) = runnelctl(&node.rpc, &["topic", "describe-config", "small"]);
    assert!(ok, "{err}");
    let described: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(entry(&described, "unclean.leader.election.enable"), ("true".into(), "all brokers (dynamic)".into()), "the topic without its own value");
    let (ok, _, err) =
        runnelctl(&node.rpc, &["broker", "config", "--kafka", node.bootstrap.as_str(), "--broker", "1", "--set", "unclean.leader.election.enable=true"]);
    assert!(!ok && err.contains("for every broker only"), "{err}");

    let mut refused = vec!["broker", "config", "--kafka", node.bootstrap.as_str(), "--set", "log.dirs=/elsewhere"];
    let (ok, _, err) = runnelctl(&node.rpc, &refused);
    assert!(!ok && err.contains("cannot be changed at run time"), "{err}");
    refused.truncate(4);
    refused.extend(["--set", "compression.type"]);
    let (ok, _, err) = runnelctl(&node.rpc, &refused);
    assert!(!ok && err.contains("is not KEY=VALUE"), "{err}");
}

/// A broker's static values are its own: `runnelctl broker config --broker
/// N` asks broker N (node.id N, whichever node runnelctl reached first),
/// names a broker that does not exist, and a DescribeConfigs for another
/// broker's id is INVALID_REQUEST, as Kafka answers it.
#[test]
fn the_configs_of_a_broker_come_from_that_broker() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, RequestKind, ResponseKind};
    use kafka_protocol::protocol::StrBytes;

    let cluster = runnel_tests::Cluster::start(3, 2000);
    let rpc = &cluster.nodes[0].rpc;
    for id in ["1", "2", "3"] {
        let (ok, out, err) = runnelctl(rpc, &["broker", "config", "--broker", id]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let node_id = v["configs"].as_array().expect("configs").iter().find(|c| c["name"] == "node.id").map(|c| c["value"].clone());
        assert_eq!(node_id, Some(serde_json::json!(id)), "{out}");
    }
    let (ok, _, err) = runnelctl(rpc, &["broker", "config", "--broker", "9"]);
    assert!(!ok && err.contains("broker 9 is not a live broker"), "{err}");

    let ask = |name: &str| {
        let resource = DescribeConfigsResource::default().with_resource_type(4).with_resource_name(StrBytes::from_string(name.to_string()));
        let request = RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![resource]));
        let ResponseKind::DescribeConfigs(r) = runnel_tests::wire::call(&mut cluster.nodes[0].connect(), ApiKey::DescribeConfigs, 1, &request) else {
            panic!("not a DescribeConfigs response")
        };
        (r.results[0].error_code, r.results[0].error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
    };
    assert_eq!(ask("1").0, 0);
    assert_eq!(ask("").0, 0, "the empty name is every broker's default");
    let (code, message) = ask("2");
    assert_eq!(code, kafka_protocol::error::ResponseError::InvalidRequest.code(), "{message}");
    assert!(message.contains("unexpected broker id 2"), "{message}");
    assert_eq!(ask("two").0, kafka_protocol::error::ResponseError::InvalidRequest.code());
}
