//! docs/compatibility.md is generated from `versions::SUPPORTED`, the table
//! the broker advertises in ApiVersions, so the two cannot drift: this test
//! fails when they differ. Regenerate with
//! `RUNNEL_WRITE_DOCS=1 cargo test -p runnel-protocol --test compatibility_doc`.

use std::path::PathBuf;

use kafka_protocol::messages::ApiKey;
use runnel_protocol::versions::SUPPORTED;

/// Which suites exercise each API: the real clients of `tests/clients`
/// (kafka-python, confluent-kafka, aiokafka, kcat), the rdkafka crate in
/// `tests/tests`, and raw requests there ("wire").
fn exercised_by(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => {
            "kafka-python, confluent-kafka, aiokafka, kcat, rdkafka, wire (v10: the new leader in NOT_LEADER_OR_FOLLOWER, KIP-951; v12: transaction version 2; v13: topics by id, KIP-516)"
        }
        ApiKey::ApiVersions => "kafka-python, confluent-kafka, aiokafka, kcat, rdkafka, wire (v4: the transaction.version feature)",
        ApiKey::Fetch => {
            "kafka-python, confluent-kafka, aiokafka, kcat, rdkafka, wire (v12: the new leader in NOT_LEADER_OR_FOLLOWER and FENCED_LEADER_EPOCH, KIP-951; v13-v18: topics by id in requests, sessions and responses, KIP-516; v16: the leaders' endpoints)"
        }
        ApiKey::Metadata => "kafka-python, confluent-kafka, aiokafka, kcat, rdkafka, wire (v13: the top-level error code, KIP-1102)",
        ApiKey::ListOffsets => {
            "kafka-python, confluent-kafka, aiokafka, rdkafka, wire (v8-v10: the earliest local and latest tiered offsets as Kafka answers them with tiered storage off)"
        }
        ApiKey::CreateTopics | ApiKey::DeleteTopics => "kafka-python, confluent-kafka, rdkafka, wire",
        ApiKey::CreatePartitions => "kafka-python, confluent-kafka, wire",
        ApiKey::DescribeConfigs => "kafka-python, confluent-kafka",
        ApiKey::AlterConfigs => "confluent-kafka",
        ApiKey::IncrementalAlterConfigs => "confluent-kafka, kafka-python",
        ApiKey::DescribeCluster => "confluent-kafka, kafka-python",
        ApiKey::ElectLeaders => "confluent-kafka, wire",
        ApiKey::AlterPartitionReassignments | ApiKey::ListPartitionReassignments => "kafka-python",
        ApiKey::DescribeUserScramCredentials | ApiKey::AlterUserScramCredentials => "confluent-kafka",
        ApiKey::CreateAcls | ApiKey::DescribeAcls | ApiKey::DeleteAcls => "confluent-kafka, kafka-python, runnelctl",
        ApiKey::DeleteRecords => "confluent-kafka, kafka-python, followers (replica log start)",
        ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => {
            "librdkafka (PLAIN), confluent-kafka and kafka-python (PLAIN, SCRAM, re-authentication), over TLS too"
        }
        ApiKey::DescribeLogDirs => "kafka-python",
        ApiKey::InitProducerId => {
            "kafka-python, confluent-kafka, aiokafka, rdkafka (idempotent and transactional producers), wire (v5: TRANSACTION_ABORTABLE understood)"
        }
        ApiKey::AddPartitionsToTxn => "confluent-kafka, kafka-python, aiokafka (transactional producers)",
        ApiKey::EndTxn => "confluent-kafka, kafka-python, aiokafka (transactional producers), wire (v5: transaction version 2)",
        ApiKey::AddOffsetsToTxn => {
            "confluent-kafka (send_offsets_to_transaction), aiokafka (Faust's exactly-once workers), wire (v4: TRANSACTION_ABORTABLE understood)"
        }
        ApiKey::TxnOffsetCommit => "confluent-kafka (send_offsets_to_transaction), aiokafka (Faust's exactly-once workers), wire (v5: transaction version 2)",
        ApiKey::ListTransactions | ApiKey::DescribeTransactions | ApiKey::WriteTxnMarkers | ApiKey::DescribeProducers => {
            "kafka-python (transactions admin: list, by id pattern, describe, describe producers, abort)"
        }
        ApiKey::DescribeTopicPartitions => "kafka-python (describe_topic_partitions, paged)",
        ApiKey::OffsetForLeaderEpoch => "confluent-kafka, rdkafka (consumers after a leader change)",
        ApiKey::ConsumerGroupHeartbeat => "confluent-kafka (group.protocol=consumer: sharing, leave, regex subscriptions)",
        ApiKey::ConsumerGroupDescribe => "confluent-kafka (describe_consumer_groups; classic groups fall back to DescribeGroups), wire",
        ApiKey::FindCoordinator | ApiKey::JoinGroup | ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => {
            "kafka-python, confluent-kafka, aiokafka, kcat, rdkafka, wire"
        }
        ApiKey::OffsetCommit | ApiKey::OffsetFetch => "kafka-python, confluent-kafka, aiokafka, rdkafka, wire",
        ApiKey::ListGroups | ApiKey::DescribeGroups | ApiKey::DeleteGroups => "kafka-python, confluent-kafka, wire",
        ApiKey::OffsetDelete => "wire",
        _ => "",
    }
}

fn render() -> String {
    let mut out = String::from(
        "# Kafka API compatibility\n\n\
         Generated from `crates/protocol/src/versions.rs` (what every node advertises in\n\
         ApiVersions) by `crates/protocol/tests/compatibility_doc.rs`, which fails when\n\
         this file and the code differ. A client negotiates each API down to these\n\
         versions; another API or version closes the connection (ApiVersions answers\n\
         a newer version with the KIP-511 fallback).\n\n\
         | API | key | versions | exercised by |\n|---|---|---|---|\n",
    );
    for r in SUPPORTED {
        out.push_str(&format!("| {:?} | {} | {}-{} | {} |\n", r.key, r.key as i16, r.min, r.max, exercised_by(r.key)));
    }
    out
}

#[test]
fn docs_compatibility_md_is_the_code_s_version_table() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/compatibility.md");
    let wanted = render();
    if std::env::var_os("RUNNEL_WRITE_DOCS").is_some() {
        std::fs::write(&path, &wanted).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(SUPPORTED.iter().all(|r| !exercised_by(r.key).is_empty()), "every served API names the suites that exercise it");
    assert_eq!(have, wanted, "docs/compatibility.md differs from versions::SUPPORTED; regenerate it (see this file's header)");
}

/// README.md's "What works" table names versions too; a row that says less
/// or more than the nodes advertise misleads a user choosing a client, so
/// every API that table names must show the advertised range.
#[test]
fn readme_s_api_table_shows_the_advertised_versions() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let table = readme.split("| Kafka API | Versions | Notes |").nth(1).expect("README.md has the API table");
    let mut checked = 0;
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
        let (names, ranges) = (cells[0].split(" / ").collect::<Vec<_>>(), cells[1].split(" / ").collect::<Vec<_>>());
        assert_eq!(names.len(), ranges.len(), "README row {row:?}: one version range per API");
        for (name, range) in names.iter().zip(ranges) {
            let served = SUPPORTED.iter().find(|r| format!("{:?}", r.key) == *name).unwrap_or_else(|| panic!("README names {name}, which no node serves"));
            let advertised = if served.min == served.max { served.min.to_string() } else { format!("{}-{}", served.min, served.max) };
            assert_eq!(range, advertised, "README.md shows {name} at {range}; the nodes advertise {advertised}");
            checked += 1;
        }
    }
    assert!(checked >= 30, "the README table was read ({checked} APIs)");
}
