"""Dynamic broker configs (issues 16 and 17): follower.replication.throttled.rate
and the log defaults of topics (log.retention.ms, log.roll.ms, ...) changed
at run time with the admin clients' IncrementalAlterConfigs and AlterConfigs
on a BROKER resource, reported by DescribeConfigs with their source, and
applied by the node."""

from __future__ import annotations

import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, ResourceType  # noqa: E402
from kafka.admin import ConfigResource as KpConfigResource  # noqa: E402
from kafka.admin import ConfigResourceType, KafkaAdminClient  # noqa: E402

RATE = "follower.replication.throttled.rate"


def runnel_extra_args(work_dir):
    # Retention runs often, so a retention change shows within the test.
    return ["--retention-check-interval-ms", "200"]


def _set(admin, broker, value, op=AlterConfigOpType.SET):
    resource = ConfigResource(ResourceType.BROKER, broker, incremental_configs=[ConfigEntry(RATE, value, incremental_operation=op)])
    return admin.incremental_alter_configs([resource])[resource].result(timeout=20)


def _described(admin, broker="1", name=RATE):
    resource = ConfigResource(ResourceType.BROKER, broker)
    entry = admin.describe_configs([resource])[resource].result(timeout=20)[name]
    return entry.value, entry.source


def _wait_for_log(node, text):
    deadline = time.monotonic() + 10
    while text not in node.log():
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.1)


def test_the_catch_up_throttle_changes_at_run_time_per_broker_and_by_default(bootstrap, runnel_node):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    value, source = _described(admin)
    assert source == ConfigSource.DEFAULT_CONFIG.value, (value, source)

    _set(admin, "1", "2097152")
    assert _described(admin) == ("2097152", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    _wait_for_log(runnel_node, "catch-up throttle changed bytes_per_sec=2097152")

    # kafka-python too; removing the value goes back to the static setting
    # (none here). (The default for every broker, the empty resource name,
    # only the Java tools send: both Python clients refuse an empty name.)
    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        kp.alter_configs([KpConfigResource(ConfigResourceType.BROKER, "1", configs={RATE: "4194304"})])
    finally:
        kp.close()
    assert _described(admin) == ("4194304", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    _wait_for_log(runnel_node, "catch-up throttle changed bytes_per_sec=4194304")
    _set(admin, "1", None, AlterConfigOpType.DELETE)
    assert _described(admin)[1] == ConfigSource.DEFAULT_CONFIG.value
    _wait_for_log(runnel_node, "catch-up throttle changed bytes_per_sec=0")


@pytest.mark.parametrize(
    ("name", "value", "expect"),
    [
        (RATE, "1000", "at least 1048576"),
        ("log.dirs", "/tmp/elsewhere", "cannot be changed at run time"),
        ("message.max.bytes", "-5", "message.max.bytes"),
        ("compression.type", "brotli", "compression.type"),
        ("log.segment.bytes", "12", "log.segment.bytes"),
        ("log.cleanup.policy", "shred", "log.cleanup.policy"),
    ],
)
def test_a_broker_config_that_cannot_change_is_refused_by_name(bootstrap, name, value, expect):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        admin.incremental_alter_configs([resource])[resource].result(timeout=20)
    assert expect in str(e.value), e.value


def _set_many(admin, broker, entries):
    configs = [
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET) for name, value in entries
    ]
    resource = ConfigResource(ResourceType.BROKER, broker, incremental_configs=configs)
    return admin.incremental_alter_configs([resource])[resource].result(timeout=20)


def _topic_config(admin, topic, name):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entry = admin.describe_configs([resource])[resource].result(timeout=20)[name]
    return entry.value, entry.source


def test_log_defaults_change_at_run_time_and_reach_topics_without_their_own(bootstrap, runnel_node, topic_name):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    own = f"{topic_name}-own"
    for name, config in [(topic_name, {}), (own, {"retention.ms": "86400000"})]:
        admin.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(timeout=20)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})

    def produce(count):
        for i in range(count):
            for name in (topic_name, own):
                producer.produce(name, value=f"m-{i}".encode())
        assert producer.flush(20) == 0

    produce(20)
    assert _topic_config(admin, topic_name, "retention.ms")[1] == ConfigSource.DEFAULT_CONFIG.value

    # Broker 1 is this node (both Python clients refuse the empty name that
    # sets the default for every broker).
    _set_many(admin, "1", [("log.retention.ms", "1000"), ("log.roll.ms", "100"), ("log.cleaner.io.max.bytes.per.second", "5242880")])
    assert _topic_config(admin, topic_name, "retention.ms") == ("1000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert _topic_config(admin, topic_name, "segment.ms") == ("100", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert _topic_config(admin, own, "retention.ms") == ("86400000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert _described(admin, name="log.retention.ms") == ("1000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    _wait_for_log(runnel_node, "log cleaner throughput limit changed bytes_per_sec=5242880")

    # Once the records are older than a second, the next append rolls the
    # segment (log.roll.ms) and retention removes it from the topic without
    # its own retention.ms, without a restart; the other keeps everything.
    time.sleep(1.5)
    produce(1)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic_name}-watermarks"})
    try:
        deadline = time.monotonic() + 20
        while consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)[0] < 20:
            assert time.monotonic() < deadline, "retention from the dynamic log.retention.ms never ran"
            time.sleep(0.2)
        assert consumer.get_watermark_offsets(TopicPartition(own, 0), timeout=10) == (0, 21)
    finally:
        consumer.close()

    _set_many(admin, "1", [("log.retention.ms", None), ("log.roll.ms", None), ("log.cleaner.io.max.bytes.per.second", None)])
    assert _topic_config(admin, topic_name, "retention.ms")[1] == ConfigSource.DEFAULT_CONFIG.value
    _wait_for_log(runnel_node, "log cleaner throughput limit changed bytes_per_sec=0")


def test_produce_defaults_change_at_run_time_and_reach_topics_without_their_own(bootstrap, topic_name):
    """min.insync.replicas, message.max.bytes, compression.type and
    log.message.timestamp.type as dynamic broker configs (feature level 11):
    a topic without its own value is served with them at once, one with its
    own keeps it, and removing them goes back to the static settings."""
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka.admin import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    own = f"{topic_name}-own"
    own_configs = {"min.insync.replicas": "1", "max.message.bytes": "1048576", "message.timestamp.type": "CreateTime"}
    for name, config in [(topic_name, {}), (own, own_configs)]:
        admin.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(timeout=20)

    # An hour old: older than the leader's clock, within retention.
    created = int(time.time() * 1000) - 3_600_000

    def produce(topic, size, acks="all"):
        """The delivery error code of one record of `size` bytes, without
        retries, so the broker's answer is what the callback sees."""
        producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "retries": 0, "enable.idempotence": False, "message.timeout.ms": 10000})
        errors = []
        producer.produce(topic, value=b"x" * size, timestamp=created, on_delivery=lambda err, _msg: errors.append(err))
        assert producer.flush(20) == 0
        return errors[0].code() if errors[0] else None

    for topic in (topic_name, own):
        assert produce(topic, 4096) is None

    _set_many(
        admin,
        "1",
        [
            ("min.insync.replicas", "2"),
            ("message.max.bytes", "2048"),
            ("compression.type", "zstd"),
            ("log.message.timestamp.type", "LogAppendTime"),
        ],
    )
    assert _topic_config(admin, topic_name, "min.insync.replicas") == ("2", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert _topic_config(admin, topic_name, "max.message.bytes") == ("2048", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert _topic_config(admin, topic_name, "compression.type") == ("zstd", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert _topic_config(admin, own, "max.message.bytes") == ("1048576", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert _described(admin, name="message.max.bytes") == ("2048", ConfigSource.DYNAMIC_BROKER_CONFIG.value)

    # The topic without its own values: acks=all has too few in-sync
    # replicas (one of the two now required), and a 4 KiB record is too
    # large (as produced: that zstd would store it in less is no matter).
    assert produce(topic_name, 100) == KafkaError.NOT_ENOUGH_REPLICAS
    assert produce(topic_name, 4096, acks="1") == KafkaError.MSG_SIZE_TOO_LARGE
    # The topic with its own values takes both, and keeps its CreateTime.
    assert produce(own, 4096) is None

    def timestamps(topic, count):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-read", "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        seen = []
        try:
            deadline = time.monotonic() + 20
            while len(seen) < count:
                assert time.monotonic() < deadline, f"read {seen} of {topic}"
                msg = consumer.poll(0.5)
                if msg is not None and not msg.error():
                    seen.append(msg.timestamp())
        finally:
            consumer.close()
        return seen

    assert timestamps(own, 2) == [(confluent_kafka.TIMESTAMP_CREATE_TIME, created)] * 2

    # Without the size and replica defaults, the topic takes records again,
    # and the leader stamps them with the time it appends them.
    _set_many(admin, "1", [("min.insync.replicas", None), ("message.max.bytes", None)])
    assert _topic_config(admin, topic_name, "max.message.bytes")[1] == ConfigSource.DEFAULT_CONFIG.value
    assert produce(topic_name, 4096) is None
    # And without the rest, the producer's CreateTime again.
    _set_many(admin, "1", [("compression.type", None), ("log.message.timestamp.type", None)])
    assert _topic_config(admin, topic_name, "compression.type") == ("producer", ConfigSource.DEFAULT_CONFIG.value)
    assert produce(topic_name, 100) is None
    (kind0, ts0), (kind1, ts1), (kind2, ts2) = timestamps(topic_name, 3)
    assert (kind0, ts0) == (confluent_kafka.TIMESTAMP_CREATE_TIME, created)
    assert kind1 == confluent_kafka.TIMESTAMP_LOG_APPEND_TIME and ts1 > created + 3_000_000, (kind1, ts1)
    assert (kind2, ts2) == (confluent_kafka.TIMESTAMP_CREATE_TIME, created)
