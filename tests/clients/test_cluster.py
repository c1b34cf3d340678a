"""A three-node cluster (`runnel dev --nodes 3`) seen through kafka-python and kcat.

A topic created with kafka-python's admin client on node 1 is described
identically by all three nodes, and kcat lists three brokers from each.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from conftest import runnel_bin

STARTUP_TIMEOUT_S = 30.0
KCAT = os.environ.get("KCAT_BIN", "kcat")


def _free_base_port() -> int:
    """A port P such that P, P+1, P+2 and the same plus 100 and 200 are all free."""
    for _ in range(200):
        # Below the ephemeral range (32768 up): see conftest.free_ports.
        base = random.randrange(20000, 32768 - 202)
        ports = [base + off for off in (0, 1, 2, 100, 101, 102, 200, 201, 202)]
        socks = []
        try:
            for p in ports:
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports found")


@pytest.fixture(scope="module")
def cluster():
    base = _free_base_port()
    work = Path(tempfile.mkdtemp(prefix="runnel-cluster-"))
    log_path = work / "runnel.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(runnel_bin()), "dev", "--nodes", "3", "--data-dir", str(work / "data"),
         "--kafka-listener", f"127.0.0.1:{base}", "--rpc-listener", f"127.0.0.1:{base + 1}",
         "--http-listener", f"127.0.0.1:{base + 2}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
    )
    ready = []
    done = threading.Event()

    def read():
        for raw in proc.stdout:
            if b"is registered and serving" in raw:
                ready.append(raw)
                if len(ready) == 3:
                    done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait(STARTUP_TIMEOUT_S)
    try:
        if len(ready) < 3:
            pytest.fail(f"the cluster did not start: {len(ready)} of 3 nodes ready\n{log_path.read_text(errors='replace')}", pytrace=False)
        yield [f"127.0.0.1:{base + 100 * i}" for i in range(3)]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(timeout=10)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    assert code == 0, f"the cluster exited with {code} after SIGTERM"


def _describe(bootstrap: str, topic: str) -> list[tuple[int, int, list[int], list[int]]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        (desc,) = admin.describe_topics([topic])
        assert desc["error_code"] == 0, desc
        return sorted((p["partition_index"], p["leader_id"], sorted(p["replica_nodes"]), sorted(p["isr_nodes"])) for p in desc["partitions"])
    finally:
        admin.close()


def test_topic_made_on_node_1_is_described_identically_by_all(cluster):
    admin = KafkaAdminClient(bootstrap_servers=cluster[0], request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic("shared", num_partitions=6, replication_factor=1)], timeout_ms=15000)
    finally:
        admin.close()
    _wait_until_every_node_knows(cluster, "shared")
    views = [_describe(b, "shared") for b in cluster]
    assert len(views[0]) == 6
    assert views[0] == views[1] == views[2]
    assert len({leader for _, leader, _, _ in views[0]}) == 3, f"leaders spread over the brokers: {views[0]}"


def test_kcat_sees_three_brokers_from_every_node(cluster):
    for b in cluster:
        out = subprocess.run([KCAT, "-b", b, "-L", "-J"], capture_output=True, timeout=30, check=True).stdout
        md = json.loads(out)
        assert sorted(br["id"] for br in md["brokers"]) == [1, 2, 3]


def _confluent_configs(bootstrap: str, topic: str, until=None, timeout: float = 15.0) -> dict:
    """The topic's configs as `bootstrap` describes them. With `until`, asks
    again (bounded) until they satisfy it: a change is acknowledged once the
    controller has committed it, and the other nodes apply it a moment later
    (as in Kafka), so the caller's assertions see the settled view."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    deadline = time.monotonic() + timeout
    while True:
        configs = admin.describe_configs([resource], request_timeout=15)[resource].result(timeout=20)
        if until is None or until(configs) or time.monotonic() > deadline:
            return configs
        time.sleep(0.1)


def test_confluent_incremental_and_legacy_alter_configs_on_a_cluster(cluster):
    """Issue 16: IncrementalAlterConfigs and AlterConfigs change a topic's
    configs through the controller; every node describes the change."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource
    from confluent_kafka.admin import NewTopic as CNewTopic

    admin = AdminClient({"bootstrap.servers": cluster[0]})
    topic = "alter-configs"
    admin.create_topics([CNewTopic(topic, num_partitions=3, replication_factor=3)], request_timeout=15)[topic].result(timeout=20)

    def incremental(*entries, validate_only=False):
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=list(entries))
        return admin.incremental_alter_configs([resource], request_timeout=15, validate_only=validate_only)[resource].result(timeout=20)

    incremental(
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
    )
    for b in cluster:
        configs = _confluent_configs(b, topic, until=lambda c: c["segment.bytes"].value == "1048576")
        assert configs["retention.ms"].value == "3600000", b
        assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, b
        assert configs["segment.bytes"].value == "1048576", b

    # A value the topic cannot take: INVALID_CONFIG, nothing changed.
    with pytest.raises(KafkaException) as raised:
        incremental(ConfigEntry("segment.bytes", "1", incremental_operation=AlterConfigOpType.SET))
    assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG, raised.value
    # Validate-only: checked, not applied.
    incremental(ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET), validate_only=True)
    assert _confluent_configs(cluster[1], topic)["retention.ms"].value == "3600000"

    # DELETE goes back to the default.
    incremental(ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE))
    configs = _confluent_configs(cluster[2], topic, until=lambda c: c["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value)
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["segment.bytes"].value == "1048576"

    # AlterConfigs replaces the whole set: segment.bytes, left out, goes.
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"max.message.bytes": "2000000"})
    admin.alter_configs([resource], request_timeout=15)[resource].result(timeout=20)
    configs = _confluent_configs(cluster[1], topic, until=lambda c: c["max.message.bytes"].value == "2000000")
    assert configs["max.message.bytes"].value == "2000000"
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value

    # A topic that does not exist, and a broker's static configs: refused.
    missing = ConfigResource(ConfigResource.Type.TOPIC, "no-such-topic",
                             incremental_configs=[ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as raised:
        admin.incremental_alter_configs([missing], request_timeout=15)[missing].result(timeout=20)
    assert raised.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, raised.value


def _wait_until_every_node_knows(cluster, topic: str, timeout: float = 15.0) -> None:
    """CreateTopics answers once the controller has committed the topic; the
    other nodes learn it a moment later (as in Kafka). A client that asks
    another node at once can be told it does not exist: wait, as careful
    clients do."""
    deadline = time.monotonic() + timeout
    for b in cluster:
        while True:
            out = subprocess.run([KCAT, "-b", b, "-L", "-J", "-t", topic], capture_output=True, timeout=30).stdout
            topics = json.loads(out or b"{}").get("topics", [])
            if any(t.get("topic") == topic and not t.get("err") and t.get("partitions") for t in topics):
                break
            assert time.monotonic() < deadline, f"node {b} does not know {topic} after {timeout} s: {topics}"
            time.sleep(0.1)


def test_kafka_python_alter_configs_on_a_cluster(cluster):
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=cluster[1], request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic("py-alter-configs", num_partitions=1, replication_factor=3)], timeout_ms=15000)
        # kafka-python 3 describes the topic's configs on any node before it
        # alters them, and takes an unknown topic for an unknown config.
        _wait_until_every_node_knows(cluster, "py-alter-configs")
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "py-alter-configs", configs={"retention.ms": "7200000"})])
        # AlterConfigs answers once the controller has committed the change;
        # kafka-python describes on any node, which may not have applied it
        # yet, and (3.0.12 on) lists only modified configs by default.
        deadline = time.monotonic() + 15
        while True:
            result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "py-alter-configs")], config_filter="all")
            configs = result["topic"]["py-alter-configs"]
            if configs["retention.ms"]["config_source"] != "DEFAULT_CONFIG" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert configs["retention.ms"]["value"] == "7200000", configs["retention.ms"]
        assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    finally:
        admin.close()
    configs = _confluent_configs(cluster[2], "py-alter-configs", until=lambda c: c["retention.ms"].value == "7200000")
    assert configs["retention.ms"].value == "7200000"


def test_describe_cluster_elect_leaders_and_describe_log_dirs(cluster):
    """Issue 16: DescribeCluster, ElectLeaders and DescribeLogDirs as
    confluent-kafka's and kafka-python's admin clients call them."""
    from confluent_kafka import KafkaError, Producer
    from confluent_kafka import TopicPartition as CTopicPartition
    from confluent_kafka import ElectionType
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin import NewTopic as CNewTopic

    admin = AdminClient({"bootstrap.servers": cluster[0]})
    described = admin.describe_cluster(request_timeout=15).result(timeout=20)
    assert sorted(n.id for n in described.nodes) == [1, 2, 3], described
    assert described.cluster_id and described.controller.id in (1, 2, 3), described
    py = KafkaAdminClient(bootstrap_servers=cluster[1], request_timeout_ms=15000)
    try:
        info = py.describe_cluster()
        assert info["cluster_id"] == described.cluster_id, info
        assert sorted(b["broker_id"] for b in info["brokers"]) == [1, 2, 3], info

        topic = "elect-and-dirs"
        admin.create_topics([CNewTopic(topic, num_partitions=3, replication_factor=3)], request_timeout=15)[topic].result(timeout=20)
        producer = Producer({"bootstrap.servers": cluster[0], "acks": "all"})
        for i in range(300):
            producer.produce(topic, value=b"x" * 100, partition=i % 3)
        assert producer.flush(30) == 0

        # Every preferred replica leads a new topic: nothing to elect.
        partitions = [CTopicPartition(topic, p) for p in range(3)] + [CTopicPartition(topic, 7)]
        results = admin.elect_leaders(ElectionType.PREFERRED, partitions).result(timeout=20)
        codes = {tp.partition: (err.code() if err is not None else None) for tp, err in results.items()}
        assert codes == {0: KafkaError.ELECTION_NOT_NEEDED, 1: KafkaError.ELECTION_NOT_NEEDED, 2: KafkaError.ELECTION_NOT_NEEDED,
                         7: KafkaError.UNKNOWN_TOPIC_OR_PART}, codes

        # Every broker reports the three replicas it holds, with their sizes.
        dirs = py.describe_log_dirs(topic_partitions=[topic])
        sizes = {}
        for broker in dirs:
            for result in broker["log_dirs"]:
                for t in result["topics"]:
                    for p in t["partitions"]:
                        sizes.setdefault(p["partition_index"], []).append(p["partition_size"])
        assert sorted(sizes) == [0, 1, 2], dirs
        assert all(len(s) == 3 and min(s) > 100 * 100 for s in sizes.values()), sizes
    finally:
        py.close()


def test_create_partitions_with_replica_assignments(cluster):
    """Issue 16: CreatePartitions with a replica list per new partition, as
    Kafka accepts it from confluent-kafka and kafka-python: the new
    partitions live on the brokers named, led by the first, and take
    acks=all writes; a wrong number of lists, an unknown broker, a broker
    named twice or another replication factor is INVALID_REPLICA_ASSIGNMENT
    with nothing added, and validate_only adds nothing."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewPartitions
    from confluent_kafka.admin import NewTopic as CNewTopic
    from kafka import errors as Errors

    topic = "placed-partitions"
    admin = AdminClient({"bootstrap.servers": cluster[0]})
    admin.create_topics([CNewTopic(topic, num_partitions=1, replication_factor=2)], request_timeout=15)[topic].result(timeout=20)
    admin.create_partitions([NewPartitions(topic, 3, replica_assignment=[[2, 3], [3, 1]])], request_timeout=15)[topic].result(timeout=20)

    deadline = time.monotonic() + 15
    while True:
        views = [_describe(b, topic) for b in cluster]
        if all(len(v) == 3 for v in views) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert views[0] == views[1] == views[2], views
    (_, _, replicas0, _), (_, leader1, replicas1, _), (_, leader2, replicas2, _) = views[0]
    assert (leader1, replicas1, leader2, replicas2) == (2, [2, 3], 3, [1, 3]), views[0]
    assert len(replicas0) == 2

    producer = Producer({"bootstrap.servers": cluster[0], "acks": "all"})
    for p in (1, 2):
        producer.produce(topic, value=b"on the named brokers", partition=p)
    assert producer.flush(30) == 0

    py = KafkaAdminClient(bootstrap_servers=cluster[1], request_timeout_ms=15000)
    try:
        refused = [
            [[1, 2], [2, 3]],  # two lists for one new partition
            [[1, 9]],  # no broker 9
            [[1, 1]],  # broker 1 twice
            [[1]],  # the topic's replication factor is 2
        ]
        for assignments in refused:
            with pytest.raises(Errors.InvalidReplicationAssignmentError):
                py.create_partitions({topic: {"count": 4, "assignments": assignments}})
        py.create_partitions({topic: {"count": 4, "assignments": [[1, 2]]}}, validate_only=True)
        assert len(_describe(cluster[1], topic)) == 3, "nothing was added by refused or validate-only requests"
        py.create_partitions({topic: {"count": 4, "assignments": [[1, 2]]}})
    finally:
        py.close()
    deadline = time.monotonic() + 15
    while len(_describe(cluster[2], topic)) != 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _describe(cluster[2], topic)[3][1:3] == (1, [1, 2])
