//! DescribeLogDirs (v1-4): this broker's one log directory, with the size on
//! disk of every partition log it holds (all, or the ones asked for) and,
//! for followers, how far they trail the leader's high watermark. Admin
//! clients ask every broker. The volume's total and usable bytes are
//! reported as unknown (-1, as Kafka does where it cannot tell).

use std::collections::BTreeMap;

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::describe_log_dirs_response::{DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic};
use runnel_protocol::kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use runnel_replica::ReplicaManager;

use super::{code, str_bytes};

pub(crate) fn handle(replicas: &ReplicaManager, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted: Option<BTreeMap<String, Vec<i32>>> = request.topics.map(|topics| topics.into_iter().map(|t| (t.topic.to_string(), t.partitions)).collect());
    let lag: BTreeMap<_, i64> =
        replicas.partitions().iter().filter_map(|p| p.leader_high_watermark().map(|hw| (p.tp().clone(), (hw - p.log().log_end_offset()).max(0)))).collect();
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for (tp, log) in replicas.logs().all() {
        if wanted.as_ref().is_some_and(|w| !w.get(&tp.topic).is_some_and(|ps| ps.contains(&tp.partition))) {
            continue;
        }
        let partition = DescribeLogDirsPartition::default()
            .with_partition_index(tp.partition)
            .with_partition_size(log.size_bytes() as i64)
            .with_offset_lag(lag.get(&tp).copied().unwrap_or(0));
        topics.entry(tp.topic.clone()).or_default().push(partition);
    }
    let failed = replicas.membership().storage_failed();
    let dir = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(replicas.logs().root().display().to_string()))
        .with_error_code(if failed { code(ResponseError::KafkaStorageError) } else { 0 })
        .with_total_bytes(-1)
        .with_usable_bytes(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| DescribeLogDirsTopic::default().with_name(TopicName(str_bytes(name))).with_partitions(partitions))
                .collect(),
        );
    DescribeLogDirsResponse::default().with_results(vec![dir])
}
