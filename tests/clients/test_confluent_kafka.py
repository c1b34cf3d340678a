"""Runnel with confluent-kafka (librdkafka): admin, producer (acks=all), assigned consumer, offsets."""

from __future__ import annotations

import os
import time
import uuid

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec  # noqa: E402

from expect import (  # noqa: E402
    CONSUME_TIMEOUT_S,
    DELIVERY_TIMEOUT_S,
    MESSAGE_COUNT,
    PARTITIONS,
    POLL_TIMEOUT_S,
    REQUEST_TIMEOUT_S,
    Consumed,
    Delivered,
    check_consumed,
    check_delivered,
    deadline,
    expired,
    messages,
    timestamp_probes,
)

REQUEST_TIMEOUT_MS = int(REQUEST_TIMEOUT_S * 1000)


def _common(bootstrap: str) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": REQUEST_TIMEOUT_MS,
        # Fail fast on a broken broker instead of retrying in the background.
        "reconnect.backoff.max.ms": 1000,
    }


@pytest.fixture(scope="module")
def admin(bootstrap):
    return AdminClient(_common(bootstrap))


def _create_topic(admin: AdminClient, name: str, partitions: int = PARTITIONS, config: dict | None = None) -> None:
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=REQUEST_TIMEOUT_S,
        request_timeout=REQUEST_TIMEOUT_S,
    )
    futures[name].result(timeout=REQUEST_TIMEOUT_S + 5)


def _consumer(bootstrap: str) -> Consumer:
    # confluent-kafka requires a group.id; with manual assignment and no
    # commits it only names the consumer (no group coordination is needed).
    return Consumer(
        {
            **_common(bootstrap),
            "group.id": f"runnel-test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        }
    )


@pytest.fixture(scope="module")
def loaded_topic(bootstrap, admin):
    """A 3-partition topic created with the admin API, holding MESSAGE_COUNT messages.

    Returns (topic, sent messages, delivery reports).
    """
    topic = f"confluent-kafka-{uuid.uuid4().hex[:12]}"
    _create_topic(admin, topic)
    sent = messages(topic)
    producer = Producer(
        {
            **_common(bootstrap),
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
        }
    )
    delivered: list[Delivered] = []
    errors: list[str] = []

    for m in sent:

        def report(err, msg, m=m):
            if err is not None:
                errors.append(f"message {m.index}: {err}")
            else:
                assert msg.topic() == topic
                delivered.append(Delivered(m, msg.partition(), msg.offset()))

        producer.produce(topic, key=m.key, value=m.value, timestamp=m.timestamp_ms, on_delivery=report)
        producer.poll(0)
    remaining = producer.flush(DELIVERY_TIMEOUT_S)
    assert remaining == 0, f"{remaining} messages still undelivered after {DELIVERY_TIMEOUT_S}s"
    assert not errors, f"delivery failures: {errors[:10]}"
    return topic, sent, delivered


def test_created_topic_has_three_partitions(admin, loaded_topic):
    topic, _, _ = loaded_topic
    metadata = admin.list_topics(topic, timeout=REQUEST_TIMEOUT_S)
    t = metadata.topics[topic]
    assert t.error is None, t.error
    assert sorted(t.partitions) == list(range(PARTITIONS))
    for p in t.partitions.values():
        assert p.leader in metadata.brokers, f"partition {p.id} leader {p.leader} is not a known broker"


def test_produce_acks_all_every_message_acknowledged(loaded_topic):
    _, sent, delivered = loaded_topic
    check_delivered(delivered, sent)


def test_consume_from_beginning_by_assignment(bootstrap, loaded_topic):
    topic, _, delivered = loaded_topic
    consumer = _consumer(bootstrap)
    consumed: list[Consumed] = []
    errors: list[str] = []
    at_eof: set[int] = set()
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        until = deadline(CONSUME_TIMEOUT_S)
        # Read until every partition reported end-of-partition after all messages arrived.
        while (len(consumed) < MESSAGE_COUNT or len(at_eof) < PARTITIONS) and not expired(until):
            msg = consumer.poll(POLL_TIMEOUT_S)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                else:
                    errors.append(str(msg.error()))
                continue
            at_eof.discard(msg.partition())
            assert msg.topic() == topic
            ts_type, ts = msg.timestamp()
            consumed.append(Consumed(msg.partition(), msg.offset(), msg.key(), msg.value(), ts))
    finally:
        consumer.close()
    assert not errors, f"consumer errors: {errors[:10]}"
    check_consumed(consumed, delivered)
    assert at_eof == set(range(PARTITIONS)), f"end of partition reported only for {sorted(at_eof)}"


def test_watermark_offsets(bootstrap, loaded_topic):
    topic, sent, delivered = loaded_topic
    groups = check_delivered(delivered, sent)
    consumer = _consumer(bootstrap)
    try:
        marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=REQUEST_TIMEOUT_S, cached=False) for p in range(PARTITIONS)}
    finally:
        consumer.close()
    assert marks == {p: (0, len(ds)) for p, ds in groups.items()}


def test_offsets_for_times(bootstrap, loaded_topic):
    topic, sent, delivered = loaded_topic
    groups = check_delivered(delivered, sent)
    consumer = _consumer(bootstrap)
    try:
        for case, probes in timestamp_probes(groups).items():
            answer = consumer.offsets_for_times([TopicPartition(topic, p, ts) for p, (ts, _) in probes.items()], timeout=REQUEST_TIMEOUT_S)
            for tp in answer:
                assert tp.error is None, f"({case}) partition {tp.partition}: {tp.error}"
            got = {tp.partition: tp.offset for tp in answer}
            # librdkafka reports "no such offset" as -1 (OFFSET_END).
            want = {p: (-1 if expected is None else expected) for p, (_, expected) in probes.items()}
            assert got == want, f"offsets_for_times ({case}): got {got}, want {want}"
    finally:
        consumer.close()


def test_admin_list_offsets(admin, loaded_topic):
    topic, sent, delivered = loaded_topic
    groups = check_delivered(delivered, sent)
    specs = {
        "earliest": (OffsetSpec.earliest(), {p: 0 for p in groups}),
        "latest": (OffsetSpec.latest(), {p: len(ds) for p, ds in groups.items()}),
        # Timestamps grow with offsets, so the newest record is the last one.
        "max_timestamp": (OffsetSpec.max_timestamp(), {p: len(ds) - 1 for p, ds in groups.items()}),
    }
    for case, (spec, want) in specs.items():
        futures = admin.list_offsets({TopicPartition(topic, p): spec for p in range(PARTITIONS)}, request_timeout=REQUEST_TIMEOUT_S)
        got = {tp.partition: f.result(timeout=REQUEST_TIMEOUT_S + 5).offset for tp, f in futures.items()}
        assert got == want, f"list_offsets {case}: got {got}, want {want}"
    for case, probes in timestamp_probes(groups).items():
        futures = admin.list_offsets(
            {TopicPartition(topic, p): OffsetSpec.for_timestamp(ts) for p, (ts, _) in probes.items()}, request_timeout=REQUEST_TIMEOUT_S
        )
        got = {tp.partition: f.result(timeout=REQUEST_TIMEOUT_S + 5).offset for tp, f in futures.items()}
        want = {p: (-1 if expected is None else expected) for p, (_, expected) in probes.items()}
        assert got == want, f"list_offsets for_timestamp ({case}): got {got}, want {want}"


def test_describe_configs_returns_retention_ms(admin, topic_name):
    _create_topic(admin, topic_name, partitions=1)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    futures = admin.describe_configs([resource], request_timeout=REQUEST_TIMEOUT_S)
    configs = futures[resource].result(timeout=REQUEST_TIMEOUT_S + 5)
    assert "retention.ms" in configs, f"no retention.ms in {sorted(configs)}"
    assert configs["retention.ms"].value == str(7 * 24 * 3600 * 1000)


def test_create_existing_topic_fails_with_topic_already_exists(admin, topic_name):
    _create_topic(admin, topic_name)
    with pytest.raises(KafkaException) as raised:
        _create_topic(admin, topic_name)
    assert raised.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, raised.value


def test_invalid_topic_name_is_refused(admin):
    with pytest.raises(KafkaException) as raised:
        _create_topic(admin, "bad name!", partitions=1)
    assert raised.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, raised.value


def _consume_partition(bootstrap: str, topic: str, partition: int, count: int, start: int = OFFSET_BEGINNING) -> list:
    """Up to `count` messages of one partition from `start`, stopping at end of partition."""
    consumer = _consumer(bootstrap)
    out, errors = [], []
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        until = deadline(CONSUME_TIMEOUT_S)
        while not expired(until):
            msg = consumer.poll(POLL_TIMEOUT_S)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    if len(out) >= count:
                        break
                else:
                    errors.append(str(msg.error()))
                continue
            out.append(msg)
    finally:
        consumer.close()
    assert not errors, f"consumer errors: {errors[:10]}"
    return out


@pytest.mark.parametrize("compression", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_with_headers(bootstrap, admin, topic_name, compression):
    """Compressed batches round-trip, and a timestamp lookup finds a record inside one."""
    _create_topic(admin, topic_name, partitions=1)
    count = 100
    base = int(time.time() * 1000) - 60_000
    producer = Producer({**_common(bootstrap), "acks": "all", "compression.type": compression, "linger.ms": 100, "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000)})
    errors: list[str] = []
    for i in range(count):
        producer.produce(
            topic_name,
            key=f"k{i}".encode(),
            value=(f"v{i}-" + "x" * 200).encode(),
            timestamp=base + 10 * i,
            headers=[("index", str(i).encode()), ("codec", compression.encode())],
            on_delivery=lambda err, msg: err is not None and errors.append(str(err)),
        )
    assert producer.flush(DELIVERY_TIMEOUT_S) == 0
    assert not errors, errors[:10]
    got = _consume_partition(bootstrap, topic_name, 0, count)
    assert [m.offset() for m in got] == list(range(count))
    for i, m in enumerate(got):
        assert (m.key(), m.value()) == (f"k{i}".encode(), (f"v{i}-" + "x" * 200).encode())
        assert m.headers() == [("index", str(i).encode()), ("codec", compression.encode())]
        assert m.timestamp() == (confluent_kafka.TIMESTAMP_CREATE_TIME, base + 10 * i)
    consumer = _consumer(bootstrap)
    try:
        # 10*37+5 lies between records 37 and 38, which share a compressed batch.
        [tp] = consumer.offsets_for_times([TopicPartition(topic_name, 0, base + 10 * 37 + 5)], timeout=REQUEST_TIMEOUT_S)
    finally:
        consumer.close()
    assert (tp.error, tp.offset) == (None, 38)
    # A fetch starting inside a compressed batch yields records from that offset on.
    tail = _consume_partition(bootstrap, topic_name, 0, count - 50, start=50)
    assert [m.offset() for m in tail] == list(range(50, count))


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_null_and_empty_keys_and_values(bootstrap, admin, topic_name, acks):
    _create_topic(admin, topic_name, partitions=1)
    records = [(None, None), (b"", b""), (b"k", None), (None, b"v"), (b"big", b"b" * 500_000)]
    producer = Producer({**_common(bootstrap), "acks": acks, "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000)})
    errors: list[str] = []
    for key, value in records:
        producer.produce(topic_name, key=key, value=value, on_delivery=lambda err, msg: err is not None and errors.append(str(err)))
        # One batch per record, so acks=0 (no response, no retries) cannot reorder.
        producer.flush(DELIVERY_TIMEOUT_S)
    assert producer.flush(DELIVERY_TIMEOUT_S) == 0
    assert not errors, errors
    got = _consume_partition(bootstrap, topic_name, 0, len(records))
    assert [(m.offset(), m.key(), m.value()) for m in got] == [(i, k, v) for i, (k, v) in enumerate(records)]


def test_a_batch_larger_than_a_segment_is_record_list_too_large(bootstrap, admin, topic_name):
    """Within max.message.bytes but past segment.bytes: no segment can hold
    the batch, and Kafka answers RECORD_LIST_TOO_LARGE; smaller batches go on."""
    _create_topic(admin, topic_name, partitions=1, config={"segment.bytes": "16384"})
    producer = Producer({**_common(bootstrap), "acks": "1", "compression.type": "none", "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000)})
    errors: list = []
    for value in (os.urandom(20_000), b"small"):
        producer.produce(topic_name, value=value, on_delivery=lambda err, msg: errors.append(err))
        producer.flush(DELIVERY_TIMEOUT_S)
    assert [e and e.code() for e in errors] == [KafkaError.RECORD_LIST_TOO_LARGE, None], errors
    got = _consume_partition(bootstrap, topic_name, 0, 1)
    assert [(m.offset(), m.value()) for m in got] == [(0, b"small")]


def test_consumer_metadata_does_not_auto_create(bootstrap, topic_name):
    """Consumers send allow_auto_topic_creation=false (allow.auto.create.topics defaults to false)."""
    consumer = _consumer(bootstrap)
    try:
        metadata = consumer.list_topics(topic_name, timeout=REQUEST_TIMEOUT_S)
        t = metadata.topics[topic_name]
        assert t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, t.error
        assert topic_name not in consumer.list_topics(timeout=REQUEST_TIMEOUT_S).topics
    finally:
        consumer.close()


def test_describe_configs_of_missing_topic_fails(admin, topic_name):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    futures = admin.describe_configs([resource], request_timeout=REQUEST_TIMEOUT_S)
    with pytest.raises(KafkaException) as raised:
        futures[resource].result(timeout=REQUEST_TIMEOUT_S + 5)
    assert raised.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, raised.value
