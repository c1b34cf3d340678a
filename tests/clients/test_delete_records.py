"""DeleteRecords (KIP-107) from confluent-kafka and kafka-python: the
partition's log start offset moves up to the offset asked (never past the
high watermark, never backward), consumers reading from the beginning
start there, and the earliest offset reports it."""

from __future__ import annotations

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # noqa: E402
from kafka import KafkaAdminClient  # noqa: E402
from kafka.structs import TopicPartition as KpTopicPartition  # noqa: E402


def _topic_with(bootstrap, topic, count):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=20)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode())
    assert producer.flush(30) == 0
    return admin


def _values_from_beginning(bootstrap, topic, expect):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    try:
        while len(got) < expect:
            msg = consumer.poll(10)
            assert msg is not None, f"only {got} arrived"
            assert msg.error() is None, msg.error()
            got.append((msg.offset(), msg.value().decode()))
    finally:
        consumer.close()
    return got


def test_confluent_kafka_deletes_records_below_an_offset(bootstrap, topic_name):
    admin = _topic_with(bootstrap, topic_name, 10)
    done = admin.delete_records([TopicPartition(topic_name, 0, 4)])
    [(tp, future)] = done.items()
    assert future.result(timeout=20).low_watermark == 4, "the new low watermark"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    assert consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10) == (4, 10)
    consumer.close()
    assert _values_from_beginning(bootstrap, topic_name, 6) == [(i, f"v{i}") for i in range(4, 10)]

    # Never backward; not past the high watermark; -1 is the high watermark.
    assert admin.delete_records([TopicPartition(topic_name, 0, 2)])[TopicPartition(topic_name, 0, 2)].result(timeout=20).low_watermark == 4
    beyond = TopicPartition(topic_name, 0, 11)
    with pytest.raises(KafkaException) as e:
        admin.delete_records([beyond])[beyond].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE, e.value
    everything = TopicPartition(topic_name, 0, OFFSET_END)
    assert admin.delete_records([everything])[everything].result(timeout=20).low_watermark == 10


def test_kafka_python_deletes_records_and_an_unknown_partition_is_refused(bootstrap, topic_name):
    _topic_with(bootstrap, topic_name, 5)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        result = admin.delete_records({KpTopicPartition(topic_name, 0): 3})
        assert result[KpTopicPartition(topic_name, 0)]["low_watermark"] == 3, result
        with pytest.raises(Exception) as e:
            admin.delete_records({KpTopicPartition(topic_name, 7): 1})
        assert "UnknownTopicOrPartition" in repr(e.value) or "NotLeader" in repr(e.value) or "LeaderNotAvailable" in repr(e.value), repr(e.value)
    finally:
        admin.close()
    assert _values_from_beginning(bootstrap, topic_name, 2) == [(3, "v3"), (4, "v4")]


def test_a_lookup_by_time_never_answers_below_the_log_start(bootstrap, topic_name):
    # Kafka searches from the log start: a consumer seeking by time after a
    # purge (Kafka Streams does on its repartition topics) must not be sent
    # below it, where it would get OFFSET_OUT_OF_RANGE and reset.
    admin = _topic_with(bootstrap, topic_name, 10)
    done = admin.delete_records([TopicPartition(topic_name, 0, 4)])
    assert next(iter(done.values())).result(timeout=20).low_watermark == 4
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "by-time"})
    try:
        [found] = consumer.offsets_for_times([TopicPartition(topic_name, 0, 0)], timeout=10)
        assert found.error is None, found.error
        assert found.offset == 4, f"a lookup by time answered {found.offset}, below the log start 4"
    finally:
        consumer.close()


def test_the_max_timestamp_is_never_below_the_log_start(bootstrap, topic_name):
    # One batch of ten records whose largest timestamp is at offset 2; a
    # purge to offset 5 cuts through the batch. The record of the largest
    # time among those left is what ListOffsets(MAX_TIMESTAMP) names.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(timeout=20)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 500, "batch.num.messages": 100})
    base = 1_700_000_000_000
    times = [base + (1_000_000 if i == 2 else 1_000 * i) for i in range(10)]
    for i, ts in enumerate(times):
        producer.produce(topic_name, value=f"v{i}".encode(), timestamp=ts)
    assert producer.flush(30) == 0
    done = admin.delete_records([TopicPartition(topic_name, 0, 5)])
    assert next(iter(done.values())).result(timeout=20).low_watermark == 5
    result = admin.list_offsets({TopicPartition(topic_name, 0): OffsetSpec.max_timestamp()}, request_timeout=20)
    [info] = [f.result(timeout=25) for f in result.values()]
    assert (info.offset, info.timestamp) == (9, times[9]), f"max timestamp answered offset {info.offset} ({info.timestamp}); the log starts at 5"
