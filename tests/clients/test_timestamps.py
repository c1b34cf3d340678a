"""Topic timestamp configs (issue 16), as Kafka applies them and clients
see them: message.timestamp.type=LogAppendTime stamps each batch with the
time the leader appended it (consumers report the log append time type),
and message.timestamp.before.max.ms / .after.max.ms refuse records whose
CreateTime is too far from the broker's clock with INVALID_TIMESTAMP."""

from __future__ import annotations

import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # noqa: E402

HOUR_MS = 3_600_000


def _create(bootstrap, name, configs):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1, config=configs)])[name].result(timeout=20)


def _produce(bootstrap, topic, timestamps):
    """Sends one record per timestamp (0: the client's clock); returns each
    delivery's error (None when acknowledged)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "message.timeout.ms": 20000, "retries": 0})
    results = {}
    for i, ts in enumerate(timestamps):
        def report(err, _msg, i=i):
            results[i] = err
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i, timestamp=ts, on_delivery=report)
        producer.flush(20)
    assert len(results) == len(timestamps), results
    return [results[i] for i in range(len(timestamps))]


def _consume(bootstrap, topic, count):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ts-{topic}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < count:
            assert time.monotonic() < deadline, f"consumed {len(got)} of {count}"
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got.append((msg.value(), msg.timestamp()))
    finally:
        consumer.close()
    return got


def test_log_append_time_replaces_the_producers_timestamps(bootstrap, topic_name):
    _create(bootstrap, topic_name, {"message.timestamp.type": "LogAppendTime"})
    a_day_ago = int(time.time() * 1000) - 24 * HOUR_MS
    before = int(time.time() * 1000)
    assert _produce(bootstrap, topic_name, [a_day_ago, a_day_ago + 1]) == [None, None]
    after = int(time.time() * 1000)
    for value, (kind, ts) in _consume(bootstrap, topic_name, 2):
        assert kind == TIMESTAMP_LOG_APPEND_TIME, (value, kind)
        assert before - 1000 <= ts <= after + 1000, f"{value}: {ts} is not the append time (between {before} and {after})"


def test_lookups_by_time_use_the_log_append_time(bootstrap, topic_name):
    # The records keep the producer's create time inside their batch; a
    # lookup by time, like a consumer, must see the append time (Kafka's
    # offsetsForTimes and max timestamp on a LogAppendTime topic).
    _create(bootstrap, topic_name, {"message.timestamp.type": "LogAppendTime"})
    hours_ago = int(time.time() * 1000) - 3 * HOUR_MS
    before = int(time.time() * 1000)
    assert _produce(bootstrap, topic_name, [hours_ago + 2 * HOUR_MS, hours_ago + HOUR_MS, hours_ago]) == [None, None, None]
    after = int(time.time() * 1000)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lookup-{topic_name}"})
    try:
        [found] = consumer.offsets_for_times([TopicPartition(topic_name, 0, before - 1000)], timeout=10)
        assert (found.error, found.offset) == (None, 0), f"every record was appended after {before - 1000}: {found}"
        [found] = consumer.offsets_for_times([TopicPartition(topic_name, 0, after + 60_000)], timeout=10)
        assert found.offset == -1, f"nothing was appended after {after + 60_000}: {found}"
    finally:
        consumer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_offsets({TopicPartition(topic_name, 0): OffsetSpec.max_timestamp()}, request_timeout=20)
    [info] = [f.result(timeout=25) for f in result.values()]
    assert before - 1000 <= info.timestamp <= after + 1000, f"max timestamp {info.timestamp} is not an append time (between {before} and {after})"
    assert 0 <= info.offset <= 2, info.offset
    appended = dict((i, ts) for i, (_, (_, ts)) in enumerate(_consume(bootstrap, topic_name, 3)))
    assert appended[info.offset] == info.timestamp == max(appended.values()), (info.offset, info.timestamp, appended)
    assert min(o for o, ts in appended.items() if ts == info.timestamp) == info.offset, "the first record of the largest time"


def test_create_time_is_kept_by_default(bootstrap, topic_name):
    _create(bootstrap, topic_name, {})
    a_day_ago = int(time.time() * 1000) - 24 * HOUR_MS
    assert _produce(bootstrap, topic_name, [a_day_ago]) == [None]
    [(value, (kind, ts))] = _consume(bootstrap, topic_name, 1)
    assert (kind, ts) == (TIMESTAMP_CREATE_TIME, a_day_ago), value


def test_create_times_too_far_from_the_broker_clock_are_refused(bootstrap, topic_name):
    _create(bootstrap, topic_name, {"message.timestamp.before.max.ms": str(HOUR_MS), "message.timestamp.after.max.ms": "60000"})
    now = int(time.time() * 1000)
    errors = _produce(bootstrap, topic_name, [now, now - 2 * HOUR_MS, now + 10 * 60000, now - HOUR_MS // 2])
    assert errors[0] is None and errors[3] is None, errors
    for err in (errors[1], errors[2]):
        assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, errors
    # Only the two in range were stored.
    values = sorted(v for v, _ in _consume(bootstrap, topic_name, 2))
    assert values == [b"v0", b"v3"]
