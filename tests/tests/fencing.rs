//! Leaders that may have been fenced stop serving. Found by the chaos
//! harness (pause-leader, isolate-leader): a leader cut off from the
//! controller quorum, or frozen and resumed, kept answering as leader from
//! its stale metadata, acknowledging acks=1 writes that the new leader's log
//! then truncated. A broker now holds a lease (the session timeout from the
//! send of its last accepted heartbeat) and serves as leader only within it.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, MetadataRequest, ProduceRequest, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_tests::chaos::cluster::ChaosCluster;

fn produce_acks_1(node: &runnel_tests::Node, partition: i32, value: &[u8]) -> i16 {
    let batch = runnel_storage::batch::build_batch(runnel_tests::now_ms(), &[value]);
    let request = ProduceRequest::default().with_acks(1).with_timeout_ms(3000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("chaos")))
            .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(bytes::Bytes::from(batch)))]),
    ]);
    let mut s = node.connect();
    let ResponseKind::Produce(r) = runnel_tests::wire::call(&mut s, ApiKey::Produce, 9, &RequestKind::Produce(request)) else { panic!() };
    r.responses[0].partition_responses[0].error_code
}

/// How many partitions of the chaos topic `node` names itself leader of.
fn partitions_claimed(node: &runnel_tests::Node, node_id: i32) -> usize {
    let mut s = node.connect();
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("chaos"))))]));
    let ResponseKind::Metadata(m) = runnel_tests::wire::call(&mut s, ApiKey::Metadata, 9, &RequestKind::Metadata(request)) else { panic!() };
    m.topics[0].partitions.iter().filter(|p| p.leader_id.0 == node_id).count()
}

/// Cuts node index `isolated`, the leader of `partition`, off from its
/// peers (clients still reach it) and checks that after its session timeout
/// it neither acknowledges a write there nor names itself leader.
async fn isolated_leader_stops_serving(cluster: &ChaosCluster, isolated: usize, partition: i32) {
    assert_eq!(produce_acks_1(&cluster.nodes[isolated], partition, b"before"), 0);
    cluster.isolate(isolated);
    // Past its session timeout (1.5 s) the controller may have fenced it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let code = tokio::task::block_in_place(|| produce_acks_1(&cluster.nodes[isolated], partition, b"zombie"));
    // Nor does it tell clients it leads: they look for the leader elsewhere.
    let claimed = tokio::task::block_in_place(|| partitions_claimed(&cluster.nodes[isolated], isolated as i32 + 1));
    cluster.heal_network();
    assert_eq!(code, ResponseError::NotLeaderOrFollower.code(), "an isolated leader acknowledged a write after its lease ran out");
    assert_eq!(claimed, 0, "an isolated leader still named itself leader in Metadata");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_quorum_stops_serving_after_its_session_timeout() {
    let cluster = ChaosCluster::start(1500, &[]).await;
    let leader = cluster.view.leader_of(0).await.expect("a leader");
    isolated_leader_stops_serving(&cluster, leader, 0).await;
}

/// Found by the split-controller-minority scenario: when the isolated node
/// was the controller (Raft) leader, its broker heartbeated to its own
/// controller, which still believed it led and accepted the heartbeats, so
/// the broker's lease never ran out. Its partition stalled for the whole
/// fault: clients kept sending to it, and the majority's new leader got
/// nothing. A heartbeat is now accepted only once a quorum has confirmed
/// the controller's leadership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_leader_that_is_also_the_isolated_controller_leader_stops_serving() {
    let cluster = ChaosCluster::start(1500, &[]).await;
    let controller = runnel_tests::wait_for("a controller leader", Duration::from_secs(10), || cluster.view.controller_leader());
    let mut partition = None;
    for p in 0..cluster.view.partitions {
        if cluster.view.leader_of(p as usize).await == Some(controller) {
            partition = Some(p);
        }
    }
    let partition = partition.expect("every node leads one of the three partitions");
    isolated_leader_stops_serving(&cluster, controller, partition).await;
}

/// Raft's pre-vote. A controller voter cut off from its peers used to
/// campaign at every election timeout while it was away, each time at a
/// higher term; when it came back, its term reached the leader in a reply
/// to its entries and unseated it, and the quorum went through an election
/// (metadata writes, group coordination and transactions waiting) for
/// nothing. Now a voter campaigns only when a majority would vote for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_back_from_a_partition_does_not_unseat_the_controller_leader() {
    let cluster = ChaosCluster::start(1500, &[]).await;
    let leader = runnel_tests::wait_for("a controller leader", Duration::from_secs(10), || cluster.view.controller_leader());
    let (_, term) = cluster.view.raft_seen_by(leader).expect("the leader's status");
    let away = (0..3).find(|i| *i != leader).expect("a follower");
    cluster.isolate(away);
    // A lease of 1.2 s and election timeouts of 0.6 to 1.2 s: room for
    // several campaigns.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = cluster.view.raft_seen_by(leader);
    cluster.heal_network();
    // It follows the leader again once its entries reach it.
    let leader_id = leader as u64 + 1;
    runnel_tests::wait_for("the returning voter to follow the leader", Duration::from_secs(15), || {
        cluster.view.raft_seen_by(away).filter(|(l, _)| *l == Some(leader_id)).map(|_| ())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = cluster.view.raft_seen_by(leader);
    assert_eq!(during, Some((Some(leader_id), term)), "the majority's leader changed while node {} was away", away + 1);
    assert_eq!(after, Some((Some(leader_id), term)), "node {} unseated the controller leader (node {leader_id}, term {term}) when it returned", away + 1);
}
