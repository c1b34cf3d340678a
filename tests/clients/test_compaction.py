"""Compacted topics (cleanup.policy=compact) from real clients: the log
cleaner keeps the latest value per key at its offset and drops deleted
keys, in compressed batches too; consumers of three libraries read the
compacted log, gaps in the offsets and all; a record without a key is refused with a per-record
error; the policy is changed at run time and described."""

from __future__ import annotations

import os
import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402
from kafka.structs import TopicPartition as KpTopicPartition  # noqa: E402

KEYS = 200
UPDATES = 20_000
DELETED = range(0, KEYS, 10)  # every tenth key ends with a tombstone


def runnel_extra_args(work_dir):
    # A round over the compacted logs every 200 ms instead of 15 s.
    return ["--log-cleaner-backoff-ms", "200"]


def _compacted_topic(bootstrap, topic, **configs):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"cleanup.policy": "compact", "segment.bytes": "16384", "min.cleanable.dirty.ratio": "0.01", **configs}
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(timeout=20)
    return admin


def _fill(bootstrap, topic, updates=UPDATES, compression="none"):
    """`updates` values over KEYS keys, tombstones for DELETED, then filler
    so the tombstones are in closed segments; returns the expected latest
    value of every key (None: deleted)."""
    # Batches well under segment.bytes, which a batch may not pass.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 4096, "compression.type": compression})
    latest = {}
    for i in range(updates):
        key = f"key-{i % KEYS}"
        value = f"value-{i}"
        producer.produce(topic, key=key, value=value)
        latest[key] = value
        if i % 5000 == 0:
            producer.poll(0)
    for k in DELETED:
        producer.produce(topic, key=f"key-{k}", value=None)
        latest[f"key-{k}"] = None
    # Filler that does not compress away, so that with any codec it fills
    # segments of its own and every keyed record is in a closed one.
    for i in range(2000):
        value = os.urandom(40).hex()
        producer.produce(topic, key=f"filler-{i % 50}", value=value)
        latest[f"filler-{i % 50}"] = value
    assert producer.flush(60) == 0
    return latest


def _read_all(bootstrap, topic):
    """Every record from offset 0 to the high watermark, as confluent-kafka
    reads it: [(offset, key, value)]."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{time.monotonic_ns()}", "enable.auto.commit": False})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        out = []
        deadline = time.monotonic() + 60
        while (not out or out[-1][0] < high - 1) and time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append((msg.offset(), msg.key().decode() if msg.key() else None, msg.value().decode() if msg.value() is not None else None))
        assert out and out[-1][0] == high - 1, f"read up to {out[-1][0] if out else None} of {high}"
        return out
    finally:
        consumer.close()


def _latest(records):
    return {k: v for _, k, v in records}


def test_the_cleaner_keeps_one_latest_value_per_key_and_drops_deleted_keys(bootstrap, topic_name):
    _compacted_topic(bootstrap, topic_name, **{"delete.retention.ms": "0"})
    expected = _fill(bootstrap, topic_name)
    total = UPDATES + len(DELETED) + 2000
    deadline = time.monotonic() + 60
    while True:
        records = _read_all(bootstrap, topic_name)
        if len(records) < total // 10 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(records) < total // 10, f"{len(records)} of {total} records left after a minute of cleaning"
    # Offsets only go up, and the latest value of every live key is there.
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets))
    live = {k: v for k, v in expected.items() if v is not None}
    got = {k: v for k, v in _latest(records).items() if v is not None}
    assert got == live
    # Deleted keys: no value left (their tombstones may still be in the
    # segments the cleaner has not reached).
    for k in DELETED:
        assert _latest(records).get(f"key-{k}") is None
    # The records below the last cleaned one have distinct keys.
    keys = [k for _, k, _ in records if not k.startswith("filler")]
    assert len(keys) <= KEYS, len(keys)

    # kafka-python reads the same compacted log, gaps and all.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    tp = KpTopicPartition(topic_name, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    seen = [(m.offset, m.key.decode(), m.value.decode() if m.value is not None else None) for m in consumer]
    consumer.close()
    assert seen[-1][0] >= records[-1][0], seen[-5:]
    assert {k: v for k, v in _latest(seen).items() if v is not None} == live


@pytest.mark.parametrize("compression", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_are_compacted_too(bootstrap, topic_name, compression):
    """Most producers compress: the cleaner reads the keys inside compressed
    batches and writes back what it keeps with the same codec."""
    _compacted_topic(bootstrap, topic_name, **{"delete.retention.ms": "0"})
    updates = 5000
    expected = _fill(bootstrap, topic_name, updates=updates, compression=compression)
    total = updates + len(DELETED) + 2000
    deadline = time.monotonic() + 60
    while True:
        records = _read_all(bootstrap, topic_name)
        keyed = [k for _, k, _ in records if k.startswith("key-")]
        if len(keyed) <= KEYS or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # Every keyed update is in a closed segment: one record per key is left.
    assert len(keyed) <= KEYS, f"{compression}: {len(keyed)} records of {KEYS} keys left of {total} after a minute of cleaning"
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets))
    live = {k: v for k, v in expected.items() if v is not None}
    assert {k: v for k, v in _latest(records).items() if v is not None} == live


def test_a_record_without_a_key_is_refused_on_a_compacted_topic(bootstrap, topic_name):
    _compacted_topic(bootstrap, topic_name)
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0})
    producer.produce(topic_name, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(20)
    # (In the same batch it would fail with it: the whole batch is refused.)
    producer.produce(topic_name, key=b"k", value=b"keyed", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(20)
    assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors
    assert errors[1] is None, errors


def test_the_policy_changes_at_run_time_and_is_described(bootstrap, topic_name):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(timeout=20)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0})
    producer.produce(topic_name, value=b"no key, fine while delete")
    assert producer.flush(20) == 0

    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    resource.add_incremental_config(ConfigEntry("cleanup.policy", "compact,delete", incremental_operation=AlterConfigOpType.SET))
    admin.incremental_alter_configs([resource])[resource].result(timeout=20)
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic_name)])
    [(_, future)] = described.items()
    assert future.result(timeout=20)["cleanup.policy"].value == "compact,delete"

    errors = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        errors.clear()
        producer.produce(topic_name, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
        producer.flush(20)
        if errors and errors[0] is not None:
            break
        time.sleep(0.2)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors

    bad = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    bad.add_incremental_config(ConfigEntry("cleanup.policy", "compact,shred", incremental_operation=AlterConfigOpType.SET))
    with pytest.raises(confluent_kafka.KafkaException) as e:
        admin.incremental_alter_configs([bad])[bad].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value


def test_configs_below_kafka_s_floors_are_invalid_config_and_change_nothing(bootstrap, topic_name):
    """A negative tombstone lifetime or compaction lag, a zero maximum lag,
    or a negative timestamp bound (which would refuse every produce) is
    INVALID_CONFIG, at creation, by alteration and with validate_only, as
    Kafka answers; the topic keeps what it had."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    bad = {"delete.retention.ms": "-1", "min.compaction.lag.ms": "-1", "max.compaction.lag.ms": "0", "message.timestamp.before.max.ms": "-2"}
    for name, value in bad.items():
        for validate_only in (True, False):
            futures = admin.create_topics([NewTopic(topic_name, 1, 1, config={name: value})], validate_only=validate_only)
            with pytest.raises(confluent_kafka.KafkaException) as e:
                futures[topic_name].result(timeout=20)
            assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, (name, e.value)
    assert topic_name not in admin.list_topics(timeout=10).topics

    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(timeout=20)
    # A name in use is TOPIC_ALREADY_EXISTS first, whatever its configs.
    for validate_only in (True, False):
        futures = admin.create_topics([NewTopic(topic_name, 1, 1, config={"delete.retention.ms": "-1"})], validate_only=validate_only)
        with pytest.raises(confluent_kafka.KafkaException) as e:
            futures[topic_name].result(timeout=20)
        assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, e.value
    for name, value in bad.items():
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
        resource.add_incremental_config(ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET))
        with pytest.raises(confluent_kafka.KafkaException) as e:
            admin.incremental_alter_configs([resource])[resource].result(timeout=20)
        assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, (name, e.value)
        assert "must be an integer from" in str(e.value), e.value
    [(_, future)] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic_name)]).items()
    configs = future.result(timeout=20)
    assert all(configs[name].is_default for name in bad), {name: configs[name].value for name in bad}
    delivered = []
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic_name, key=b"k", value=b"v", on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(20)
    assert delivered == [None]


def test_append_and_subtract_change_the_cleanup_policy_list(bootstrap, topic_name):
    """IncrementalAlterConfigs' APPEND and SUBTRACT on cleanup.policy, as
    kafka-configs --add-config 'cleanup.policy=[compact]' sends them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(timeout=20)

    def alter(op, value, name="cleanup.policy"):
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
        resource.add_incremental_config(ConfigEntry(name, value, incremental_operation=op))
        admin.incremental_alter_configs([resource])[resource].result(timeout=20)
        entries = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic_name)])
        [(_, future)] = entries.items()
        return future.result(timeout=20)["cleanup.policy"].value

    assert alter(AlterConfigOpType.APPEND, "compact") == "delete,compact"
    assert alter(AlterConfigOpType.APPEND, "compact") == "delete,compact", "appending what is there changes nothing"
    assert alter(AlterConfigOpType.SUBTRACT, "delete") == "compact"
    # Nothing left is no policy: refused, and the value stays.
    with pytest.raises(confluent_kafka.KafkaException) as e:
        alter(AlterConfigOpType.SUBTRACT, "compact")
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value
    with pytest.raises(confluent_kafka.KafkaException) as e:
        alter(AlterConfigOpType.APPEND, "1000", name="retention.ms")
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value
    assert "not a list config" in str(e.value)
    assert alter(AlterConfigOpType.SET, "compact,delete") == "compact,delete"


def test_describe_configs_gives_synonyms_when_asked(bootstrap, topic_name):
    """DescribeConfigs with include_synonyms: a topic config lists the
    topic's own value first, then the broker setting it falls back to."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KpConfigResource
    from kafka.admin import ConfigResourceType

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1, config={"retention.ms": "3600000"})])[topic_name].result(timeout=20)
    # confluent-kafka (librdkafka asks for synonyms).
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    entries = admin.describe_configs([resource])[resource].result(timeout=20)
    synonyms = entries["retention.ms"].synonyms
    assert list(synonyms) == ["retention.ms", "log.retention.ms"], synonyms
    assert synonyms["retention.ms"].value == "3600000"
    assert list(entries["segment.bytes"].synonyms) == ["log.segment.bytes"], entries["segment.bytes"].synonyms
    # kafka-python, asking explicitly.
    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        response = kp.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, topic_name)], include_synonyms=True)
        text = repr(response)
        assert "log.retention.ms" in text and "3600000" in text, text[:2000]
    finally:
        kp.close()
