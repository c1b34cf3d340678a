//! Consumer groups: the coordinator's errors on the wire, committed offsets
//! through a full cluster restart and `runnelctl group reset-offsets`, and a
//! group that keeps consuming when the controller leader (its coordinator)
//! is SIGKILLed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use runnel_tests::wire::{call, frame, read_frame};
use runnel_tests::{Cluster, Node, runnelctl, temp_dir, wait_for};
use serde_json::Value;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join(group: &str, member: &str, instance: Option<&str>, protocol_type: &str, session_ms: i32) -> RequestKind {
    RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(session_ms)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member))
            .with_group_instance_id(instance.map(s))
            .with_protocol_type(s(protocol_type))
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(Bytes::from_static(b"meta"))]),
    )
}

fn join_call(conn: &mut TcpStream, request: &RequestKind) -> JoinGroupResponse {
    let ResponseKind::JoinGroup(r) = call(conn, ApiKey::JoinGroup, 5, request) else { panic!("not a JoinGroup response") };
    r
}

/// Sends a request without waiting for its answer (JoinGroup and SyncGroup
/// wait for the rest of the group).
fn send(conn: &mut TcpStream, api_key: ApiKey, version: i16, request: &RequestKind) {
    conn.write_all(&frame(api_key, version, 42, request)).expect("send");
}

fn recv(conn: &mut TcpStream, api_key: ApiKey, version: i16) -> ResponseKind {
    let mut body = read_frame(conn).expect("a response");
    ResponseHeader::decode(&mut body, api_key.response_header_version(version)).expect("header");
    ResponseKind::decode(api_key, &mut body, version).expect("body")
}

fn sync_request(group: &str, member: &str, instance: Option<&str>, generation: i32, assignments: &[(&str, &'static [u8])]) -> RequestKind {
    RequestKind::SyncGroup(
        SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_group_instance_id(instance.map(s))
            .with_assignments(
                assignments.iter().map(|(m, a)| SyncGroupRequestAssignment::default().with_member_id(s(m)).with_assignment(Bytes::from_static(a))).collect(),
            ),
    )
}

fn sync(conn: &mut TcpStream, group: &str, member: &str, instance: Option<&str>, generation: i32, assignments: &[(&str, &'static [u8])]) -> SyncGroupResponse {
    let ResponseKind::SyncGroup(r) = call(conn, ApiKey::SyncGroup, 3, &sync_request(group, member, instance, generation, assignments)) else { panic!() };
    r
}

fn heartbeat(conn: &mut TcpStream, group: &str, member: &str, instance: Option<&str>, generation: i32) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_generation_id(generation);
    let ResponseKind::Heartbeat(r) = call(conn, ApiKey::Heartbeat, 3, &RequestKind::Heartbeat(request)) else { panic!() };
    r.error_code
}

fn commit(conn: &mut TcpStream, group: &str, member: &str, generation: i32, topic: &str, offset: i64) -> i16 {
    let request =
        OffsetCommitRequest::default().with_group_id(GroupId(s(group))).with_generation_id_or_member_epoch(generation).with_member_id(s(member)).with_topics(
            vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset)]),
            ],
        );
    let ResponseKind::OffsetCommit(r) = call(conn, ApiKey::OffsetCommit, 8, &RequestKind::OffsetCommit(request)) else { panic!() };
    r.topics[0].partitions[0].error_code
}

fn delete_groups(conn: &mut TcpStream, groups: &[&str]) -> Vec<i16> {
    let request = DeleteGroupsRequest::default().with_groups_names(groups.iter().map(|g| GroupId(s(g))).collect());
    let ResponseKind::DeleteGroups(r) = call(conn, ApiKey::DeleteGroups, 2, &RequestKind::DeleteGroups(request)) else { panic!() };
    r.results.iter().map(|r| r.error_code).collect()
}

/// Static member "instance-1" joins group `group` on `c2` while `m1`, the
/// leader at generation 1, holds it on `c1`: the leader must rejoin before
/// the rebalance completes, and the follower's SyncGroup waits for the
/// leader's assignment ("A" to the leader, "S" to the static member).
/// Returns the static member's id at generation 2.
fn add_static_member(c1: &mut TcpStream, c2: &mut TcpStream, group: &str, m1: &str, session_ms: i32) -> String {
    send(c2, ApiKey::JoinGroup, 5, &join(group, "", Some("instance-1"), "consumer", session_ms));
    // The leader rejoins only once the static member's join is in: a rejoin
    // of a stable group alone would complete a rebalance of one member.
    let mut c3 = TcpStream::connect(c1.peer_addr().expect("coordinator address")).expect("connect to runnel");
    c3.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    wait_for("the static member's join to start a rebalance", Duration::from_secs(10), || {
        let describe = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        let ResponseKind::DescribeGroups(r) = call(&mut c3, ApiKey::DescribeGroups, 5, &RequestKind::DescribeGroups(describe)) else { panic!() };
        (r.groups[0].group_state.to_string() == "PreparingRebalance").then_some(())
    });
    let leader = join_call(c1, &join(group, m1, None, "consumer", session_ms));
    let ResponseKind::JoinGroup(static_join) = recv(c2, ApiKey::JoinGroup, 5) else { panic!() };
    assert_eq!((leader.generation_id, static_join.generation_id, leader.members.len()), (2, 2, 2));
    let s1 = static_join.member_id.to_string();
    send(c2, ApiKey::SyncGroup, 3, &sync_request(group, &s1, Some("instance-1"), 2, &[]));
    assert_eq!(&sync(c1, group, m1, None, 2, &[(m1, b"A"), (&s1, b"S")]).assignment[..], b"A");
    let ResponseKind::SyncGroup(follower) = recv(c2, ApiKey::SyncGroup, 3) else { panic!() };
    assert_eq!(&follower.assignment[..], b"S");
    s1
}

/// Static member "instance-1" (now `s1`) restarts: it joins with no member
/// id and gets a new one at the same generation (2), with no rebalance.
fn restart_static_member(node: &Node, group: &str, s1: &str, session_ms: i32) -> (TcpStream, String) {
    let mut conn = node.connect();
    let again = join_call(&mut conn, &join(group, "", Some("instance-1"), "consumer", session_ms));
    assert_eq!((again.error_code, again.generation_id), (0, 2));
    let s2 = again.member_id.to_string();
    assert_ne!(s1, s2);
    (conn, s2)
}

#[test]
fn the_coordinator_answers_group_requests_as_kafka_does() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--group-initial-rebalance-delay-ms", "0"]);
    let mut c1 = node.connect();
    let g = "wire-group";

    create_topic_on(&mut c1, "wire-topic", 1);

    // FindCoordinator, batched (v4): this node, for a group and for a
    // transactional id; an unknown key type is refused.
    let find = |key_type: i8| RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key_type(key_type).with_coordinator_keys(vec![s(g)]));
    let ResponseKind::FindCoordinator(r) = call(&mut c1, ApiKey::FindCoordinator, 4, &find(0)) else { panic!() };
    assert_eq!((r.coordinators[0].error_code, r.coordinators[0].node_id.0, r.coordinators[0].port), (0, 1, i32::from(node.port)));
    let ResponseKind::FindCoordinator(r) = call(&mut c1, ApiKey::FindCoordinator, 4, &find(1)) else { panic!() };
    assert_eq!((r.coordinators[0].error_code, r.coordinators[0].node_id.0), (0, 1));
    let ResponseKind::FindCoordinator(r) = call(&mut c1, ApiKey::FindCoordinator, 4, &find(7)) else { panic!() };
    assert_eq!(r.coordinators[0].error_code, ResponseError::InvalidRequest.code());

    assert_eq!(join_call(&mut c1, &join(g, "", None, "consumer", 1000)).error_code, ResponseError::InvalidSessionTimeout.code());
    // KIP-394: a new member first gets its id, then joins with it.
    let first = join_call(&mut c1, &join(g, "", None, "consumer", 10_000));
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let m1 = first.member_id.to_string();
    let joined = join_call(&mut c1, &join(g, &m1, None, "consumer", 10_000));
    assert_eq!((joined.error_code, joined.generation_id, joined.leader.to_string(), joined.members.len()), (0, 1, m1.clone(), 1));
    assert_eq!(join_call(&mut c1, &join(g, "", None, "connect", 10_000)).error_code, ResponseError::InconsistentGroupProtocol.code());

    assert_eq!(heartbeat(&mut c1, g, &m1, None, 0), ResponseError::IllegalGeneration.code());
    assert_eq!(heartbeat(&mut c1, g, "somebody-else", None, 1), ResponseError::UnknownMemberId.code());
    let synced = sync(&mut c1, g, &m1, None, 1, &[(&m1, b"A")]);
    assert_eq!((synced.error_code, &synced.assignment[..]), (0, &b"A"[..]));
    assert_eq!(heartbeat(&mut c1, g, &m1, None, 1), 0);

    assert_eq!(commit(&mut c1, g, &m1, 1, "wire-topic", 5), 0);
    assert_eq!(commit(&mut c1, g, &m1, 7, "wire-topic", 6), ResponseError::IllegalGeneration.code());
    assert_eq!(commit(&mut c1, g, &m1, 1, "no-such-topic", 6), ResponseError::UnknownTopicOrPartition.code());
    let fetch = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s(g))).with_topics(None),
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("never-used"))).with_topics(None),
    ]);
    let ResponseKind::OffsetFetch(r) = call(&mut c1, ApiKey::OffsetFetch, 8, &RequestKind::OffsetFetch(fetch)) else { panic!() };
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 5);
    assert!(r.groups[1].topics.is_empty());

    assert_eq!(delete_groups(&mut c1, &[g, "never-used"]), vec![ResponseError::NonEmptyGroup.code(), ResponseError::GroupIdNotFound.code()]);

    // A static member joins at generation 2.
    let mut c2 = node.connect();
    let s1 = add_static_member(&mut c1, &mut c2, g, &m1, 10_000);

    // The static member restarts: a new id at the same generation, its
    // assignment kept, no rebalance; its old id is fenced.
    let (mut c3, s2) = restart_static_member(&node, g, &s1, 10_000);
    assert_eq!(&sync(&mut c3, g, &s2, Some("instance-1"), 2, &[]).assignment[..], b"S");
    assert_eq!(heartbeat(&mut c2, g, &s1, Some("instance-1"), 2), ResponseError::FencedInstanceId.code());
    assert_eq!(heartbeat(&mut c1, g, &m1, None, 2), 0);

    // Batched leave (v3+), then the empty group can be deleted.
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(s(g))).with_members(vec![
        MemberIdentity::default().with_member_id(s(&m1)),
        MemberIdentity::default().with_group_instance_id(Some(s("instance-1"))),
        MemberIdentity::default().with_member_id(s("not-a-member")),
    ]);
    let ResponseKind::LeaveGroup(r) = call(&mut c1, ApiKey::LeaveGroup, 3, &RequestKind::LeaveGroup(leave)) else { panic!() };
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![0, 0, ResponseError::UnknownMemberId.code()]);
    wait_for("the group to become empty", Duration::from_secs(5), || (delete_groups(&mut c1, &[g]) == vec![0]).then_some(()));
    let describe = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(g))]);
    let ResponseKind::DescribeGroups(r) = call(&mut c1, ApiKey::DescribeGroups, 5, &RequestKind::DescribeGroups(describe)) else { panic!() };
    assert_eq!(r.groups[0].group_state.to_string(), "Dead");
}

async fn create_topic(bootstrap: &str, name: &str, partitions: i32, factor: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for r in admin.create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(factor))], &opts).await.expect("create") {
        r.expect("created");
    }
}

async fn produce(bootstrap: &str, topic: &str, partitions: i32, count: usize) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("acks", "all").set("enable.idempotence", "true").create().unwrap();
    let sends: Vec<_> = (0..count)
        .map(|i| {
            let value = format!("m{i}");
            let producer = producer.clone();
            let topic = topic.to_string();
            async move {
                producer
                    .send(FutureRecord::<(), _>::to(&topic).partition((i as i32) % partitions).payload(&value), Duration::from_secs(30))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            }
        })
        .collect();
    for r in futures::future::join_all(sends).await {
        r.expect("delivered");
    }
}

/// A group member with librdkafka's classic protocol, or (`kip848`) with
/// `group.protocol=consumer`, whose session and heartbeat the coordinator sets.
fn group_consumer(bootstrap: &str, group: &str, kip848: bool) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("group.id", group).set("enable.auto.commit", "false").set("auto.offset.reset", "earliest");
    if kip848 {
        config.set("group.protocol", "consumer");
    } else {
        config.set("session.timeout.ms", "6000").set("heartbeat.interval.ms", "500");
    }
    config.create().expect("consumer")
}

fn describe_group(rpc: &str, group: &str) -> Option<Value> {
    let (ok, out, _) = runnelctl(rpc, &["group", "describe", group]);
    if !ok {
        return None;
    }
    serde_json::from_str(&out).ok()
}

fn committed(described: &Value) -> BTreeMap<i64, i64> {
    described["offsets"].as_array().unwrap().iter().filter_map(|o| Some((o["partition"].as_i64()?, o["committed"].as_i64()?))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_full_restart_and_reset_offsets_needs_an_empty_group() {
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &["--group-initial-rebalance-delay-ms", "0"]);
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, "kept", 2, 3).await;
    produce(&bootstrap, "kept", 2, 200).await;

    let consumer = group_consumer(&bootstrap, "keeper", false);
    consumer.subscribe(&["kept"]).unwrap();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen < 200 {
        assert!(Instant::now() < deadline, "consumed only {seen} of 200");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m.expect("consume");
            seen += 1;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");

    // While the consumer is a member, offsets cannot be reset.
    let (ok, _, err) = runnelctl(&cluster.nodes[1].rpc, &["group", "reset-offsets", "keeper", "--topic", "kept", "--to-earliest"]);
    assert!(!ok && err.contains("active member"), "reset on an active group must be refused, got: {err}");
    drop(consumer);

    let before =
        wait_for("the group to be empty", Duration::from_secs(20), || describe_group(&cluster.nodes[0].rpc, "keeper").filter(|d| d["state"] == "Empty"));
    assert_eq!(committed(&before), BTreeMap::from([(0, 100), (1, 100)]));

    cluster.restart_all();
    let after = wait_for("the group after a full restart", Duration::from_secs(30), || describe_group(&cluster.nodes[2].rpc, "keeper"));
    assert_eq!(committed(&after), committed(&before), "committed offsets survive a full restart");

    // Right after a restart a leader may not know its high watermark yet
    // (KIP-207): the reset says so and changes nothing; asked again, it goes.
    let out = wait_for("the reset after the restart", Duration::from_secs(30), || {
        let (ok, out, err) =
            runnelctl(&cluster.nodes[2].rpc, &["group", "reset-offsets", "keeper", "--topic", "kept", "--partition", "1", "--to-offset", "40"]);
        assert!(ok || err.contains("did not report its offsets; nothing was changed"), "{err}");
        ok.then_some(out)
    });
    assert!(out.contains("\"committed\":40"), "{out}");
    let reset = describe_group(&cluster.nodes[0].rpc, "keeper").expect("describe");
    assert_eq!(committed(&reset), BTreeMap::from([(0, 100), (1, 40)]));
    assert_eq!(reset["offsets"][1]["lag"], 60);

    // A consumer of the group now resumes partition 1 at offset 40.
    let consumer = group_consumer(&cluster.bootstrap(), "keeper", false);
    consumer.subscribe(&["kept"]).unwrap();
    let first = wait_for("a message after the reset", Duration::from_secs(30), || {
        consumer.poll(Duration::from_millis(200)).map(|m| {
            let m = m.expect("consume");
            (m.partition(), m.offset())
        })
    });
    assert_eq!(first, (1, 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_keeps_consuming_from_committed_offsets_when_its_coordinator_is_killed() {
    keeps_consuming_through_a_coordinator_kill(false).await;
}

/// The same with KIP-848 members: the new coordinator knows them from the
/// metadata (feature level 15) and they carry on at their epochs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kip848_group_keeps_consuming_from_committed_offsets_when_its_coordinator_is_killed() {
    keeps_consuming_through_a_coordinator_kill(true).await;
}

async fn keeps_consuming_through_a_coordinator_kill(kip848: bool) {
    let flags = ["--group-initial-rebalance-delay-ms", "0", "--group-consumer-heartbeat-interval-ms", "500", "--group-consumer-session-timeout-ms", "6000"];
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &flags);
    let bootstrap = cluster.bootstrap();
    const TOTAL: usize = 3000;
    create_topic(&bootstrap, "events", 3, 3).await;
    produce(&bootstrap, "events", 3, TOTAL).await;

    let consumed: Mutex<BTreeMap<i32, BTreeSet<i64>>> = Mutex::new(BTreeMap::new());
    let values: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let done = AtomicBool::new(false);
    let observed: Mutex<Vec<BTreeMap<i32, i64>>> = Mutex::new(Vec::new());
    let coordinator = cluster.leader_seen_by(0).expect("a controller leader");
    let mut killed_at = None;

    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let consumer = group_consumer(&bootstrap, "survivors", kip848);
                consumer.subscribe(&["events"]).unwrap();
                let deadline = Instant::now() + Duration::from_secs(90);
                while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
                    let Ok(m) = m else { continue };
                    consumed.lock().unwrap().entry(m.partition()).or_default().insert(m.offset());
                    let total = {
                        let mut v = values.lock().unwrap();
                        v.insert(String::from_utf8_lossy(m.payload().unwrap()).into_owned());
                        v.len()
                    };
                    // Commit the next offset to read; a commit may fail while
                    // the coordinator moves, and the next one carries it.
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset("events", m.partition(), Offset::Offset(m.offset() + 1)).unwrap();
                    let _ = consumer.commit(&tpl, CommitMode::Sync);
                    if total >= TOTAL {
                        done.store(true, Ordering::Relaxed);
                    }
                    // Keep the kill inside the consumption.
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
        // Watch the committed offsets from outside the group.
        scope.spawn(|| {
            let watcher: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", "survivors").create().unwrap();
            let mut tpl = TopicPartitionList::new();
            for p in 0..3 {
                tpl.add_partition("events", p);
            }
            while !done.load(Ordering::Relaxed) {
                if let Ok(c) = watcher.committed_offsets(tpl.clone(), Duration::from_secs(2)) {
                    let snapshot: BTreeMap<i32, i64> =
                        c.elements().iter().filter_map(|e| e.offset().to_raw().filter(|o| *o >= 0).map(|o| (e.partition(), o))).collect();
                    observed.lock().unwrap().push(snapshot);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        wait_for("a third of the messages consumed", Duration::from_secs(60), || (values.lock().unwrap().len() >= TOTAL / 3).then_some(()));
        killed_at = Some(Instant::now());
        cluster.nodes[coordinator as usize - 1].kill();
        println!("killed node {coordinator}, the controller leader and group coordinator, after {} messages", values.lock().unwrap().len());
    });
    assert!(done.load(Ordering::Relaxed), "the group did not finish consuming after the coordinator was killed");
    println!("the group finished {:?} after the kill", killed_at.unwrap().elapsed());

    // At least once: every message was consumed.
    assert_eq!(values.lock().unwrap().len(), TOTAL);
    // No committed offset ever went backwards.
    let observed = observed.lock().unwrap();
    let mut high: BTreeMap<i32, i64> = BTreeMap::new();
    for snapshot in observed.iter() {
        for (p, o) in snapshot {
            let h = high.entry(*p).or_insert(*o);
            assert!(o >= h, "committed offset of partition {p} went back from {h} to {o}");
            *h = *o;
        }
    }
    assert!(observed.len() > 10, "the committed offsets were watched ({} snapshots)", observed.len());
    // The new coordinator holds the final commits: every partition at its end.
    let live = (0..3).find(|i| *i as u64 + 1 != coordinator).unwrap();
    let d = wait_for("the group on the new coordinator", Duration::from_secs(20), || describe_group(&cluster.nodes[live].rpc, "survivors"));
    assert_eq!(committed(&d), BTreeMap::from([(0, 1000), (1, 1000), (2, 1000)]));
    // Nothing was skipped: each partition's consumed offsets are 0..end without gaps.
    for (p, offsets) in consumed.lock().unwrap().iter() {
        assert_eq!(offsets.len(), 1000, "partition {p}");
    }
}

/// From feature level 15 a KIP-848 group's members, epochs and assignments
/// are in the metadata: when the coordinator is SIGKILLed in the middle of a
/// reconciliation, the new one goes on with each member at its epoch (no
/// UNKNOWN_MEMBER_ID, no join again), and a group whose members all left
/// is still a consumer group with its offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kip848_group_s_members_keep_their_epochs_through_a_coordinator_kill() {
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &["--group-consumer-session-timeout-ms", "30000"]);
    let bootstrap = cluster.bootstrap();
    let (g, emptied, topic) = ("kept-members", "emptied", "kept-members-topic");
    create_topic(&bootstrap, topic, 2, 3).await;
    let coordinator = cluster.leader_seen_by(0).expect("a controller leader");
    let mut conn = cluster.nodes[coordinator as usize - 1].connect();
    let subscribe = |r: ConsumerGroupHeartbeatRequest| r.with_rebalance_timeout_ms(30_000).with_subscribed_topic_names(Some(vec![TopicName(s(topic))]));

    // m1 holds both partitions; m2 joins, and m1 is told to give one up
    // but has not yet.
    let first = cg_heartbeat(&mut conn, 1, subscribe(cg_request(g, "m-one", 0)).with_topic_partitions(Some(vec![])));
    assert_eq!(first.error_code, 0, "{:?}", first.error_message);
    let id = first.assignment.as_ref().expect("an assignment").topic_partitions[0].topic_id;
    let e1 = first.member_epoch;
    assert_eq!(cg_heartbeat(&mut conn, 1, cg_request(g, "m-one", e1).with_topic_partitions(owned(id, &[0, 1]))).error_code, 0);
    let second = cg_heartbeat(&mut conn, 1, subscribe(cg_request(g, "m-two", 0)).with_topic_partitions(Some(vec![])));
    assert_eq!((second.error_code, assigned(&second)), (0, Some(BTreeSet::new())));
    let told = cg_heartbeat(&mut conn, 1, cg_request(g, "m-one", e1));
    assert_eq!(told.member_epoch, e1, "m1 keeps its epoch until it has revoked");
    let keep: Vec<i32> = assigned(&told).expect("m1 is told what to keep").into_iter().collect();
    assert_eq!(keep.len(), 1);

    // Another group commits an offset and its only member leaves.
    let alone = cg_heartbeat(&mut conn, 1, subscribe(cg_request(emptied, "m-alone", 0)).with_topic_partitions(Some(vec![])));
    assert_eq!(alone.error_code, 0);
    assert_eq!(commit_v9(&mut conn, emptied, "m-alone", alone.member_epoch, topic), 0);
    assert_eq!(cg_heartbeat(&mut conn, 1, cg_request(emptied, "m-alone", -1)).error_code, 0);

    let (mut conn, retriable) = kill_the_coordinator(&mut cluster, coordinator);

    // m1 reports the partition revoked at its epoch: the new coordinator
    // knows it and moves it on.
    let revoked = wait_for("the new coordinator to answer m1", Duration::from_secs(30), || {
        let r = cg_heartbeat(&mut conn, 1, cg_request(g, "m-one", e1).with_topic_partitions(owned(id, &keep)));
        (!retriable.contains(&r.error_code)).then_some(r)
    });
    assert_eq!(revoked.error_code, 0, "m1 at epoch {e1}: {:?}", revoked.error_message);
    assert!(revoked.member_epoch > e1, "m1 moves to the new epoch once it has revoked");
    assert_eq!(assigned(&revoked), Some(keep.iter().copied().collect()), "after a load the whole assignment is sent again");
    // m2, at the epoch it joined with, gets the partition m1 released.
    let got = cg_heartbeat(&mut conn, 1, cg_request(g, "m-two", second.member_epoch).with_topic_partitions(Some(vec![])));
    assert_eq!(got.error_code, 0, "{:?}", got.error_message);
    let got = assigned(&got).expect("m2 gets the released partition");
    assert_eq!(got.len(), 1);
    assert!(got.is_disjoint(&keep.iter().copied().collect()));

    // The emptied group is still a consumer group, with its offset.
    let ResponseKind::ListGroups(listed) = call(&mut conn, ApiKey::ListGroups, 5, &RequestKind::ListGroups(ListGroupsRequest::default())) else { panic!() };
    let types: BTreeMap<String, (String, String)> =
        listed.groups.iter().map(|l| (l.group_id.to_string(), (l.group_type.to_string(), l.group_state.to_string()))).collect();
    assert_eq!(types.get(emptied), Some(&("consumer".to_string(), "Empty".to_string())), "{types:?}");
    assert_eq!(types.get(g).map(|(t, _)| t.as_str()), Some("consumer"), "{types:?}");
    assert_eq!(fetch_v9(&mut conn, emptied, "", -1, topic), (0, 1));
}

/// SIGKILLs node `coordinator` (the controller leader) and waits for
/// another to lead: a connection to it, and the errors that mean "ask again".
fn kill_the_coordinator(cluster: &mut Cluster, coordinator: u64) -> (TcpStream, [i16; 3]) {
    cluster.nodes[coordinator as usize - 1].kill();
    let live = (0..3).find(|i| *i as u64 + 1 != coordinator).unwrap();
    let next = wait_for("a new controller leader", Duration::from_secs(30), || cluster.leader_seen_by(live).filter(|l| *l != coordinator));
    println!("killed node {coordinator}, the coordinator; node {next} leads now");
    let retriable = [ResponseError::NotCoordinator.code(), ResponseError::CoordinatorLoadInProgress.code(), ResponseError::CoordinatorNotAvailable.code()];
    (cluster.nodes[next as usize - 1].connect(), retriable)
}

/// One ConsumerGroupHeartbeat (KIP-848) at `version`.
fn cg_heartbeat(conn: &mut TcpStream, version: i16, request: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    let ResponseKind::ConsumerGroupHeartbeat(r) = call(conn, ApiKey::ConsumerGroupHeartbeat, version, &RequestKind::ConsumerGroupHeartbeat(request)) else {
        panic!("not a ConsumerGroupHeartbeat response")
    };
    r
}

fn cg_request(group: &str, member: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default().with_group_id(GroupId(s(group))).with_member_id(s(member)).with_member_epoch(epoch)
}

fn owned(topic: uuid::Uuid, partitions: &[i32]) -> Option<Vec<consumer_group_heartbeat_request::TopicPartitions>> {
    Some(vec![consumer_group_heartbeat_request::TopicPartitions::default().with_topic_id(topic).with_partitions(partitions.to_vec())])
}

fn assigned(r: &ConsumerGroupHeartbeatResponse) -> Option<BTreeSet<i32>> {
    r.assignment.as_ref().map(|a| a.topic_partitions.iter().flat_map(|t| t.partitions.iter().copied()).collect())
}

fn commit_v9(conn: &mut TcpStream, group: &str, member: &str, epoch: i32, topic: &str) -> i16 {
    let request =
        OffsetCommitRequest::default().with_group_id(GroupId(s(group))).with_generation_id_or_member_epoch(epoch).with_member_id(s(member)).with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1)]),
        ]);
    let ResponseKind::OffsetCommit(r) = call(conn, ApiKey::OffsetCommit, 9, &RequestKind::OffsetCommit(request)) else { panic!() };
    r.topics[0].partitions[0].error_code
}

/// OffsetFetch v9 of partition 0 of `topic` by a member: (the group's
/// error, the committed offset).
fn fetch_v9(conn: &mut TcpStream, group: &str, member: &str, epoch: i32, topic: &str) -> (i16, i64) {
    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id((!member.is_empty()).then(|| s(member)))
            .with_member_epoch(epoch)
            .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopics::default().with_name(TopicName(s(topic))).with_partition_indexes(vec![0])])),
    ]);
    let ResponseKind::OffsetFetch(r) = call(conn, ApiKey::OffsetFetch, 9, &RequestKind::OffsetFetch(request)) else { panic!() };
    let offset = r.groups[0].topics.first().map_or(-1, |t| t.partitions[0].committed_offset);
    (r.groups[0].error_code, offset)
}

/// KIP-848 on the wire, at both advertised versions: v0 lets the coordinator
/// choose the member id, v1 members bring theirs; a partition moves only
/// after its owner's heartbeat shows it revoked; stale epochs are fenced;
/// offsets commit and are fetched with the member epoch; the group id cannot be used by the
/// classic protocol meanwhile; members leave with epoch -1.
#[test]
fn the_coordinator_answers_consumer_group_heartbeats_as_kafka_does() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let mut conn = node.connect();
    let (g, topic) = ("kip848-group", "kip848-topic");
    let id = create_topic_on(&mut conn, topic, 2);
    let subscribe = |r: ConsumerGroupHeartbeatRequest| r.with_rebalance_timeout_ms(30_000).with_subscribed_topic_names(Some(vec![TopicName(s(topic))]));

    // A join must say what it subscribes to.
    let refused = cg_heartbeat(&mut conn, 1, cg_request(g, "m-one", 0).with_rebalance_timeout_ms(30_000));
    assert_eq!(refused.error_code, ResponseError::InvalidRequest.code());

    // v0: the coordinator names the member; it gets both partitions.
    let first = cg_heartbeat(&mut conn, 0, subscribe(cg_request(g, "", 0)).with_topic_partitions(Some(vec![])));
    assert_eq!(first.error_code, 0, "{:?}", first.error_message);
    let m1 = first.member_id.clone().expect("a member id").to_string();
    assert!(!m1.is_empty() && first.member_epoch > 0 && first.heartbeat_interval_ms > 0);
    assert_eq!(assigned(&first), Some(BTreeSet::from([0, 1])));
    let e1 = first.member_epoch;
    let acked = cg_heartbeat(&mut conn, 0, cg_request(g, &m1, e1).with_topic_partitions(owned(id, &[0, 1])));
    assert_eq!((acked.error_code, acked.member_epoch, assigned(&acked)), (0, e1, None), "nothing new to say");

    // The classic protocol cannot use the group while it has members.
    assert_eq!(join_call(&mut conn, &join(g, "", None, "consumer", 10_000)).error_code, ResponseError::InconsistentGroupProtocol.code());

    // Offsets commit with the member epoch as the generation.
    assert_eq!(commit_v9(&mut conn, g, &m1, e1, topic), 0);
    assert_eq!(commit_v9(&mut conn, g, &m1, e1 + 3, topic), ResponseError::StaleMemberEpoch.code());
    assert_eq!(commit_v9(&mut conn, g, "not-a-member", e1, topic), ResponseError::UnknownMemberId.code());
    // OffsetFetch v9 names the member too: at its current epoch only.
    assert_eq!(fetch_v9(&mut conn, g, &m1, e1, topic), (0, 1));
    assert_eq!(fetch_v9(&mut conn, g, &m1, e1 + 3, topic).0, ResponseError::StaleMemberEpoch.code());
    assert_eq!(fetch_v9(&mut conn, g, "not-a-member", e1, topic).0, ResponseError::UnknownMemberId.code());
    assert_eq!(fetch_v9(&mut conn, g, "", -1, topic), (0, 1), "an admin client names no member");

    // v1: a second member with its own id. It gets nothing until m1 has
    // given a partition up.
    let m2 = "m-two-client-chosen";
    let second = cg_heartbeat(&mut conn, 1, subscribe(cg_request(g, m2, 0)).with_topic_partitions(Some(vec![])));
    assert_eq!((second.error_code, second.member_id.as_ref().map(|m| m.to_string())), (0, Some(m2.to_string())));
    assert_eq!(assigned(&second), Some(BTreeSet::new()));
    let told = cg_heartbeat(&mut conn, 1, cg_request(g, &m1, e1));
    assert_eq!(told.member_epoch, e1, "m1 keeps its epoch until it has revoked");
    let keep = assigned(&told).expect("m1 is told what to keep");
    assert_eq!(keep.len(), 1);
    let waiting = cg_heartbeat(&mut conn, 1, cg_request(g, m2, second.member_epoch));
    assert_eq!(assigned(&waiting), None, "the partition is still m1's");
    let kept: Vec<i32> = keep.iter().copied().collect();
    let revoked = cg_heartbeat(&mut conn, 1, cg_request(g, &m1, e1).with_topic_partitions(owned(id, &kept)));
    assert!(revoked.member_epoch > e1, "m1 moves to the new epoch once it has revoked");
    let got = cg_heartbeat(&mut conn, 1, cg_request(g, m2, second.member_epoch));
    let got_set = assigned(&got).expect("m2 now gets the released partition");
    assert_eq!(got_set.len(), 1);
    assert!(got_set.is_disjoint(&keep));
    let e2 = got.member_epoch;

    // An old epoch is fenced; an unknown member is told so.
    assert_eq!(cg_heartbeat(&mut conn, 1, cg_request(g, m2, e2 + 5)).error_code, ResponseError::FencedMemberEpoch.code());
    assert_eq!(cg_heartbeat(&mut conn, 1, cg_request(g, "nobody", 3)).error_code, ResponseError::UnknownMemberId.code());

    // ListGroups v5 calls it a consumer group; it cannot be deleted while it has members.
    let ResponseKind::ListGroups(listed) = call(&mut conn, ApiKey::ListGroups, 5, &RequestKind::ListGroups(ListGroupsRequest::default())) else { panic!() };
    let ours = listed.groups.iter().find(|l| l.group_id.to_string() == g).expect("listed");
    assert_eq!(ours.group_type.to_string(), "consumer");
    assert_eq!(delete_groups(&mut conn, &[g]), vec![ResponseError::NonEmptyGroup.code()]);

    // ConsumerGroupDescribe: epochs, and each member's assignment and
    // target by topic id and name; any other id is GROUP_ID_NOT_FOUND.
    for version in [0, 1] {
        let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(g)), GroupId(s("never-used"))]);
        let ResponseKind::ConsumerGroupDescribe(r) = call(&mut conn, ApiKey::ConsumerGroupDescribe, version, &RequestKind::ConsumerGroupDescribe(request))
        else {
            panic!()
        };
        let ours = &r.groups[0];
        assert_eq!((ours.error_code, ours.group_epoch, ours.assignment_epoch), (0, e2, e2), "v{version}");
        assert_eq!(ours.members.len(), 2);
        let mut held = BTreeSet::new();
        for m in &ours.members {
            assert_eq!(m.subscribed_topic_names.iter().map(|t| t.to_string()).collect::<Vec<_>>(), vec![topic.to_string()]);
            for t in &m.assignment.topic_partitions {
                assert_eq!((t.topic_id, t.topic_name.to_string()), (id, topic.to_string()));
                held.extend(t.partitions.iter().copied());
            }
        }
        assert_eq!(held, BTreeSet::from([0, 1]), "v{version}: the two members hold both partitions between them");
        assert_eq!(r.groups[1].error_code, ResponseError::GroupIdNotFound.code());
    }

    // Both leave (epoch -1); the empty group can then be deleted.
    for (m, e) in [(m1.as_str(), revoked.member_epoch), (m2, e2)] {
        let left = cg_heartbeat(&mut conn, 1, cg_request(g, m, -1));
        assert_eq!((left.error_code, left.member_epoch), (0, -1), "{m} at epoch {e} leaves");
    }
    assert_eq!(delete_groups(&mut conn, &[g]), vec![0]);
}

/// Creates `topic` with `partitions` (one replica each) over the wire; its id.
fn create_topic_on(conn: &mut TcpStream, topic: &str, partitions: i32) -> uuid::Uuid {
    let create = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default().with_name(TopicName(s(topic))).with_num_partitions(partitions).with_replication_factor(1)])
        .with_timeout_ms(10_000);
    let ResponseKind::CreateTopics(r) = call(conn, ApiKey::CreateTopics, 7, &RequestKind::CreateTopics(create)) else { panic!() };
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    r.topics[0].topic_id
}

/// A classic member joins through KIP-394 (MEMBER_ID_REQUIRED, then its id).
fn join_classic(conn: &mut TcpStream, group: &str) -> JoinGroupResponse {
    let first = join_call(conn, &join(group, "", None, "consumer", 30_000));
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    join_call(conn, &join(group, &first.member_id, None, "consumer", 30_000))
}

/// One group id used by the classic protocol, then by a KIP-848 consumer
/// group, then by the classic protocol again: the second classic group
/// counts its generations on from the first (the metadata refuses a stored
/// generation older than the last), and keeps the committed offsets.
#[test]
fn a_group_id_goes_from_classic_to_consumer_and_back() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--group-initial-rebalance-delay-ms", "0"]);
    let mut conn = node.connect();
    let (g, topic) = ("back-and-forth", "back-and-forth-topic");
    create_topic_on(&mut conn, topic, 1);

    let classic = join_classic(&mut conn, g);
    assert_eq!((classic.error_code, classic.generation_id), (0, 1));
    let m1 = classic.member_id.to_string();
    assert_eq!(sync(&mut conn, g, &m1, None, 1, &[(&m1, b"A")]).error_code, 0);
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(s(g))).with_members(vec![MemberIdentity::default().with_member_id(s(&m1))]);
    let ResponseKind::LeaveGroup(r) = call(&mut conn, ApiKey::LeaveGroup, 3, &RequestKind::LeaveGroup(leave)) else { panic!() };
    assert_eq!(r.members[0].error_code, 0);

    // The empty classic group becomes a consumer group; its member commits and leaves.
    let joined = wait_for("the emptied classic group to take a KIP-848 member", Duration::from_secs(10), || {
        let r = cg_heartbeat(
            &mut conn,
            1,
            cg_request(g, "m-848", 0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName(s(topic))]))
                .with_topic_partitions(Some(vec![])),
        );
        (r.error_code == 0).then_some(r)
    });
    assert_eq!(commit_v9(&mut conn, g, "m-848", joined.member_epoch, topic), 0);
    assert_eq!(cg_heartbeat(&mut conn, 1, cg_request(g, "m-848", -1)).error_code, 0);

    // Classic again: a generation past the stored ones, stored without error.
    let again = join_classic(&mut conn, g);
    assert_eq!(again.error_code, 0);
    assert!(again.generation_id > 2, "generation {} after a stored generation 2", again.generation_id);
    let m2 = again.member_id.to_string();
    let synced = sync(&mut conn, g, &m2, None, again.generation_id, &[(&m2, b"B")]);
    assert_eq!((synced.error_code, &synced.assignment[..]), (0, &b"B"[..]));
    assert_eq!(heartbeat(&mut conn, g, &m2, None, again.generation_id), 0);
    assert_eq!(fetch_v9(&mut conn, g, "", -1, topic), (0, 1), "the consumer group's offset is still there");
}

/// KIP-345: a static member that restarts gets a new member id with no
/// rebalance. The group is stored with that id before the member is
/// answered, so when the coordinator is SIGKILLed the next one knows the
/// running member by it (not FENCED_INSTANCE_ID) and fences the old id.
#[test]
fn a_restarted_static_member_keeps_its_new_id_through_a_coordinator_kill() {
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 2000, &["--group-initial-rebalance-delay-ms", "0"]);
    let g = "static-through-kill";
    let coordinator = cluster.leader_seen_by(0).expect("a controller leader");
    let node = &cluster.nodes[coordinator as usize - 1];
    let (mut c1, mut c2) = (node.connect(), node.connect());

    let leader = join_classic(&mut c1, g);
    assert_eq!((leader.error_code, leader.generation_id), (0, 1));
    let m1 = leader.member_id.to_string();
    assert_eq!(sync(&mut c1, g, &m1, None, 1, &[(&m1, b"A")]).error_code, 0);
    let s1 = add_static_member(&mut c1, &mut c2, g, &m1, 30_000);

    // The static member restarts: a new id, generation 2, no rebalance.
    let (_, s2) = restart_static_member(node, g, &s1, 30_000);
    // Then twice at once (two instances racing, or a retry): each JoinGroup
    // stores the group with its id; the one the coordinator took last is
    // the member, and the stores must end with it.
    let (mut c3, mut c4) = (node.connect(), node.connect());
    send(&mut c3, ApiKey::JoinGroup, 5, &join(g, "", Some("instance-1"), "consumer", 30_000));
    send(&mut c4, ApiKey::JoinGroup, 5, &join(g, "", Some("instance-1"), "consumer", 30_000));
    let mut racing = Vec::new();
    for conn in [&mut c3, &mut c4] {
        let ResponseKind::JoinGroup(r) = recv(conn, ApiKey::JoinGroup, 5) else { panic!() };
        assert_eq!((r.error_code, r.generation_id), (0, 2));
        racing.push(r.member_id.to_string());
    }
    let codes: Vec<i16> = racing.iter().map(|id| heartbeat(&mut c1, g, id, Some("instance-1"), 2)).collect();
    let latest = match codes[..] {
        [0, fenced] | [fenced, 0] if fenced == ResponseError::FencedInstanceId.code() => racing[codes.iter().position(|c| *c == 0).unwrap()].clone(),
        _ => panic!("one of the racing ids is the member, the other fenced: {codes:?}"),
    };

    let (mut conn, retriable) = kill_the_coordinator(&mut cluster, coordinator);
    let answer = wait_for("the new coordinator to answer the static member", Duration::from_secs(30), || {
        let code = heartbeat(&mut conn, g, &latest, Some("instance-1"), 2);
        (!retriable.contains(&code)).then_some(code)
    });
    assert_eq!(answer, 0, "the restarted static member's heartbeat after the failover (FENCED_INSTANCE_ID is {})", ResponseError::FencedInstanceId.code());
    assert_eq!(&sync(&mut conn, g, &latest, Some("instance-1"), 2, &[]).assignment[..], b"S", "its assignment is kept");
    for old in [&s1, &s2].into_iter().chain(racing.iter().filter(|id| **id != latest)) {
        assert_eq!(heartbeat(&mut conn, g, old, Some("instance-1"), 2), ResponseError::FencedInstanceId.code(), "{old} is fenced");
    }
    assert_eq!(heartbeat(&mut conn, g, &m1, None, 2), 0);
}

/// The group ids ListGroups names.
fn listed_groups(conn: &mut TcpStream) -> BTreeSet<String> {
    let ResponseKind::ListGroups(listed) = call(conn, ApiKey::ListGroups, 5, &RequestKind::ListGroups(ListGroupsRequest::default())) else { panic!() };
    listed.groups.iter().map(|l| l.group_id.to_string()).collect()
}

/// One node whose committed offsets expire 3 s after they may, checked
/// every 300 ms.
fn node_with_short_offset_retention() -> (tempfile::TempDir, Node, TcpStream) {
    let dir = temp_dir();
    let flags = ["--group-initial-rebalance-delay-ms", "0", "--offsets-retention-ms", "3000", "--offsets-retention-check-interval-ms", "300"];
    let node = Node::start(&dir.path().join("node"), &flags);
    let conn = node.connect();
    (dir, node, conn)
}

/// offsets.retention.minutes (here `--offsets-retention-ms`): the offsets of
/// a group without members expire and the group goes; a group with a member
/// keeps its offsets however old, until the member leaves and the retention
/// has passed again.
#[test]
fn offsets_of_groups_without_members_expire_after_the_retention() {
    let (_dir, _node, mut conn) = node_with_short_offset_retention();
    let topic = "expiring-topic";
    create_topic_on(&mut conn, topic, 1);

    // A standalone consumer's offsets (no members ever), and a group with a member.
    assert_eq!(commit(&mut conn, "standalone", "", -1, topic, 4), 0);
    let joined = join_classic(&mut conn, "busy");
    let member = joined.member_id.to_string();
    assert_eq!(sync(&mut conn, "busy", &member, None, 1, &[(&member, b"A")]).error_code, 0);
    assert_eq!(commit(&mut conn, "busy", &member, 1, topic, 9), 0);
    assert_eq!(fetch_v9(&mut conn, "standalone", "", -1, topic), (0, 4), "kept at first");

    wait_for("the standalone group's offsets to expire", Duration::from_secs(30), || {
        (fetch_v9(&mut conn, "standalone", "", -1, topic) == (0, -1)).then_some(())
    });
    assert!(!listed_groups(&mut conn).contains("standalone"), "the expired empty group is gone");
    // Older than the retention too, but its group has a member.
    assert_eq!(heartbeat(&mut conn, "busy", &member, None, 1), 0);
    assert_eq!(fetch_v9(&mut conn, "busy", "", -1, topic), (0, 9), "a group with a member keeps its offsets");

    let leave = LeaveGroupRequest::default().with_group_id(GroupId(s("busy"))).with_members(vec![MemberIdentity::default().with_member_id(s(&member))]);
    let ResponseKind::LeaveGroup(r) = call(&mut conn, ApiKey::LeaveGroup, 3, &RequestKind::LeaveGroup(leave)) else { panic!() };
    assert_eq!(r.members[0].error_code, 0);
    assert_eq!(fetch_v9(&mut conn, "busy", "", -1, topic), (0, 9), "kept for the retention after the group empties");
    wait_for("the emptied group's offsets to expire", Duration::from_secs(30), || (fetch_v9(&mut conn, "busy", "", -1, topic) == (0, -1)).then_some(()));
    assert!(!listed_groups(&mut conn).contains("busy"));
    // The id can be used again from the start.
    let again = join_classic(&mut conn, "busy");
    assert_eq!((again.error_code, again.generation_id), (0, 1));
}

/// KIP-496: a group whose members no longer subscribe to a topic loses that
/// topic's offsets the retention after their commit, while it keeps running
/// and keeps the offsets of the topics it reads; with librdkafka's classic
/// protocol and with KIP-848.
#[test]
fn offsets_of_topics_a_running_group_no_longer_reads_expire() {
    let (_dir, node, mut conn) = node_with_short_offset_retention();
    let (read, dropped) = ("still-read", "no-longer-read");
    create_topic_on(&mut conn, read, 1);
    create_topic_on(&mut conn, dropped, 1);

    for (group, kip848) in [("unsubscribed-classic", false), ("unsubscribed-848", true)] {
        let consumer = group_consumer(&node.bootstrap, group, kip848);
        consumer.subscribe(&[read]).unwrap();
        wait_for("the partition to be assigned", Duration::from_secs(30), || {
            let _ = consumer.poll(Duration::from_millis(100));
            (consumer.assignment().ok()?.count() == 1).then_some(())
        });
        // Offsets of the topic it read before its subscription changed, and of the one it reads.
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(dropped, 0, Offset::Offset(7)).unwrap();
        offsets.add_partition_offset(read, 0, Offset::Offset(5)).unwrap();
        consumer.commit(&offsets, CommitMode::Sync).expect("commit");
        assert_eq!(fetch_v9(&mut conn, group, "", -1, dropped), (0, 7), "{group}: kept at first");

        wait_for("the unsubscribed topic's offsets to expire", Duration::from_secs(30), || {
            let _ = consumer.poll(Duration::from_millis(100));
            (fetch_v9(&mut conn, group, "", -1, dropped) == (0, -1)).then_some(())
        });
        assert_eq!(fetch_v9(&mut conn, group, "", -1, read), (0, 5), "{group}: the subscribed topic's offsets stay");
        assert_eq!(consumer.assignment().unwrap().count(), 1, "{group}: the member is still in the group");
        assert!(listed_groups(&mut conn).contains(group), "{group}: the running group is kept");
    }
}
