"""Runnel with kafka-python: admin, producer (acks=all), assigned consumer, offsets."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

kafka = pytest.importorskip("kafka")

import kafka.errors as Errors  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic  # noqa: E402

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
        "bootstrap_servers": bootstrap,
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "bootstrap_timeout_ms": REQUEST_TIMEOUT_MS,
    }


@pytest.fixture(scope="module")
def admin(bootstrap):
    client = KafkaAdminClient(**_common(bootstrap))
    yield client
    client.close()


def _producer(bootstrap: str, **overrides) -> KafkaProducer:
    config = {
        **_common(bootstrap),
        "acks": "all",
        "linger_ms": 5,
        "max_block_ms": REQUEST_TIMEOUT_MS,
        "delivery_timeout_ms": int(DELIVERY_TIMEOUT_S * 1000),
    }
    config.update(overrides)
    return KafkaProducer(**config)


def _consumer(bootstrap: str) -> KafkaConsumer:
    return KafkaConsumer(
        **_common(bootstrap),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )


@pytest.fixture(scope="module")
def loaded_topic(bootstrap, admin):
    """A 3-partition topic created with the admin API, holding MESSAGE_COUNT messages.

    Returns (topic, sent messages, delivery reports).
    """
    topic = f"kafka-python-{uuid.uuid4().hex[:12]}"
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    sent = messages(topic)
    producer = _producer(bootstrap)
    try:
        futures = [(m, producer.send(topic, key=m.key, value=m.value, timestamp_ms=m.timestamp_ms)) for m in sent]
        producer.flush(timeout=DELIVERY_TIMEOUT_S)
        delivered = []
        for m, future in futures:
            md = future.get(timeout=DELIVERY_TIMEOUT_S)
            assert md.topic == topic
            delivered.append(Delivered(m, md.partition, md.offset))
    finally:
        producer.close(timeout=REQUEST_TIMEOUT_S)
    return topic, sent, delivered


def test_created_topic_has_three_partitions(bootstrap, admin, loaded_topic):
    topic, _, _ = loaded_topic
    [described] = admin.describe_topics([topic])
    assert described["error_code"] == 0, described
    assert sorted(p["partition_index"] for p in described["partitions"]) == list(range(PARTITIONS))


def test_produce_acks_all_every_message_acknowledged(loaded_topic):
    _, sent, delivered = loaded_topic
    check_delivered(delivered, sent)


def test_consume_from_beginning_by_assignment(bootstrap, loaded_topic):
    topic, _, delivered = loaded_topic
    consumer = _consumer(bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        consumed: list[Consumed] = []
        until = deadline(CONSUME_TIMEOUT_S)
        while len(consumed) < MESSAGE_COUNT and not expired(until):
            batches = consumer.poll(timeout_ms=int(POLL_TIMEOUT_S * 1000))
            for tp, records in batches.items():
                assert tp.topic == topic
                for r in records:
                    consumed.append(Consumed(r.partition, r.offset, r.key, r.value, r.timestamp))
        # One more short poll: nothing beyond what was produced may arrive.
        for tp, records in consumer.poll(timeout_ms=int(POLL_TIMEOUT_S * 1000)).items():
            consumed.extend(Consumed(r.partition, r.offset, r.key, r.value, r.timestamp) for r in records)
    finally:
        consumer.close()
    check_consumed(consumed, delivered)


def test_consumer_fetches_through_an_incremental_session(bootstrap, admin, topic_name, caplog):
    """kafka-python opens a fetch session (KIP-227), accepts every full and
    incremental answer as valid, and receives everything, including
    records produced after it caught up, when its requests stop naming
    the partitions."""
    admin.create_topics([NewTopic(topic_name, num_partitions=PARTITIONS, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    caplog.set_level(logging.DEBUG, logger="kafka.consumer.fetcher")
    consumer = _consumer(bootstrap)
    producer = _producer(bootstrap)
    consumed: list[tuple[int, bytes]] = []

    def send(values: list[tuple[int, bytes]]) -> None:
        futures = [producer.send(topic_name, partition=p, value=v) for p, v in values]
        producer.flush(timeout=DELIVERY_TIMEOUT_S)
        for f in futures:
            f.get(timeout=DELIVERY_TIMEOUT_S)

    def poll_until(count: int) -> None:
        until = deadline(CONSUME_TIMEOUT_S)
        while len(consumed) < count and not expired(until):
            for records in consumer.poll(timeout_ms=int(POLL_TIMEOUT_S * 1000)).values():
                consumed.extend((r.partition, r.value) for r in records)

    try:
        first = [(p, f"first-{p}-{i}".encode()) for p in range(PARTITIONS) for i in range(20)]
        send(first)
        partitions = [TopicPartition(topic_name, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        poll_until(len(first))
        # Idle rounds of the session, then new records on every partition.
        consumer.poll(timeout_ms=500)
        later = [(p, f"later-{p}-{i}".encode()) for p in range(PARTITIONS) for i in range(10)]
        send(later)
        poll_until(len(first) + len(later))
    finally:
        consumer.close()
        producer.close(timeout=REQUEST_TIMEOUT_S)
    assert sorted(consumed) == sorted(first + later)
    log = "\n".join(r.getMessage() for r in caplog.records if r.name == "kafka.consumer.fetcher")
    assert "created a new incremental fetch session" in log, log[-3000:]
    assert "sent an incremental fetch response for session" in log, log[-3000:]
    assert "invalid" not in log and "unable to process" not in log, log[-3000:]


def test_describe_topic_partitions_pages_with_a_cursor(admin, topic_name):
    """DescribeTopicPartitions (KIP-966): a page of at most the limit, a
    cursor to the rest, every partition once; an unknown topic is named
    with its error; asked for every topic, the new one is among them."""
    admin.create_topics([NewTopic(topic_name, num_partitions=5, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    seen = []
    pages = 0
    cursor = None
    while True:
        page = admin.describe_topic_partitions([topic_name], response_partition_limit=2, cursor=cursor)
        pages += 1
        [topic] = page["topics"]
        assert (topic["name"], topic["error_code"]) == (topic_name, 0), topic
        assert topic["topic_authorized_operations"] > 0, topic
        for p in topic["partitions"]:
            assert p["error_code"] == 0 and p["leader_id"] >= 0 and len(p["replica_nodes"]) == 1, p
            seen.append(p["partition_index"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor["topic_name"] == topic_name and pages < 10, cursor
    assert seen == [0, 1, 2, 3, 4] and pages == 3
    missing = f"{topic_name}-missing"
    both = admin.describe_topic_partitions([missing, topic_name])
    by_name = {t["name"]: t for t in both["topics"]}
    assert by_name[missing]["error_code"] == Errors.UnknownTopicOrPartitionError.errno
    assert len(by_name[topic_name]["partitions"]) == 5 and both["next_cursor"] is None
    everything = admin.describe_topic_partitions([])
    assert topic_name in {t["name"] for t in everything["topics"]}


def test_list_offsets_earliest_and_latest(bootstrap, loaded_topic):
    topic, sent, delivered = loaded_topic
    groups = check_delivered(delivered, sent)
    consumer = _consumer(bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        earliest = consumer.beginning_offsets(partitions, timeout_ms=REQUEST_TIMEOUT_MS)
        latest = consumer.end_offsets(partitions, timeout_ms=REQUEST_TIMEOUT_MS)
    finally:
        consumer.close()
    assert {tp.partition: o for tp, o in earliest.items()} == {p: 0 for p in range(PARTITIONS)}
    assert {tp.partition: o for tp, o in latest.items()} == {p: len(ds) for p, ds in groups.items()}
    assert sum(latest.values()) == MESSAGE_COUNT


def test_offsets_for_times(bootstrap, loaded_topic):
    topic, sent, delivered = loaded_topic
    groups = check_delivered(delivered, sent)
    consumer = _consumer(bootstrap)
    try:
        for case, probes in timestamp_probes(groups).items():
            query = {TopicPartition(topic, p): ts for p, (ts, _) in probes.items()}
            answer = consumer.offsets_for_times(query, timeout_ms=REQUEST_TIMEOUT_MS)
            got = {tp.partition: (None if oat is None else oat.offset) for tp, oat in answer.items()}
            want = {p: expected for p, (_, expected) in probes.items()}
            assert got == want, f"offsets_for_times ({case}): got {got}, want {want}"
            for tp, oat in answer.items():
                if oat is not None:
                    message = next(d.message for d in groups[tp.partition] if d.offset == oat.offset)
                    assert oat.timestamp == message.timestamp_ms, f"({case}) partition {tp.partition}: timestamp {oat.timestamp}, want {message.timestamp_ms}"
    finally:
        consumer.close()


def test_describe_configs_returns_retention_ms(admin, topic_name):
    admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic_name)], config_filter="all")
    configs = result["topic"][topic_name]
    assert "retention.ms" in configs, f"no retention.ms in {sorted(configs)}"
    assert int(configs["retention.ms"]["value"]) == 7 * 24 * 3600 * 1000  # runnel dev's default


def test_describe_configs_reports_topic_override(admin, topic_name):
    admin.create_topics(
        [NewTopic(topic_name, num_partitions=1, replication_factor=1, topic_configs={"retention.ms": "3600000"})],
        timeout_ms=REQUEST_TIMEOUT_MS,
    )
    # The default filter ("modified") keeps only values that differ from the defaults.
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic_name)])
    configs = result["topic"][topic_name]
    assert configs["retention.ms"]["value"] == "3600000"
    assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"


def test_create_existing_topic_raises_topic_already_exists(admin, topic_name):
    admin.create_topics([NewTopic(topic_name, num_partitions=PARTITIONS, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    with pytest.raises(Errors.TopicAlreadyExistsError):
        admin.create_topics([NewTopic(topic_name, num_partitions=PARTITIONS, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)


@pytest.mark.parametrize("bad_name", ["bad name!", "a" * 250, "..", "."], ids=["space-and-bang", "too-long", "dotdot", "dot"])
def test_invalid_topic_name_is_refused(admin, bad_name):
    with pytest.raises(Errors.InvalidTopicError):
        admin.create_topics([NewTopic(bad_name, num_partitions=1, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    assert bad_name not in admin.list_topics()


def test_default_idempotent_producer(bootstrap, admin, topic_name):
    admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    producer = KafkaProducer(**_common(bootstrap), max_block_ms=REQUEST_TIMEOUT_MS, delivery_timeout_ms=int(DELIVERY_TIMEOUT_S * 1000))
    try:
        md = producer.send(topic_name, key=b"k", value=b"v").get(timeout=DELIVERY_TIMEOUT_S)
        assert (md.partition, md.offset) == (0, 0)
    finally:
        producer.close(timeout=REQUEST_TIMEOUT_S)


def test_fetch_returns_a_batch_larger_than_the_fetch_limits(bootstrap, admin, topic_name):
    """KIP-74: the first batch comes back even when it exceeds max_partition_fetch_bytes/fetch_max_bytes."""
    admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    producer = _producer(bootstrap, compression_type="gzip", max_request_size=2_000_000)
    values = [bytes([65 + i]) * 300_000 for i in range(4)]
    try:
        futures = [producer.send(topic_name, key=f"k{i}".encode(), value=v) for i, v in enumerate(values)]
        producer.flush(timeout=DELIVERY_TIMEOUT_S)
        assert [f.get(timeout=DELIVERY_TIMEOUT_S).offset for f in futures] == [0, 1, 2, 3]
    finally:
        producer.close(timeout=REQUEST_TIMEOUT_S)
    consumer = KafkaConsumer(
        **_common(bootstrap),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=1024,
        fetch_max_bytes=2048,
    )
    got = []
    try:
        tp = TopicPartition(topic_name, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        until = deadline(CONSUME_TIMEOUT_S)
        while len(got) < len(values) and not expired(until):
            for records in consumer.poll(timeout_ms=int(POLL_TIMEOUT_S * 1000)).values():
                got.extend((r.offset, r.value) for r in records)
    finally:
        consumer.close()
    assert got == list(enumerate(values))


def test_fetch_waits_for_new_data(bootstrap, admin, topic_name):
    """A consumer at the end of the log receives a record produced while its fetch waits.

    The fetch may wait up to FETCH_WAIT_MS for data; the broker must answer as
    soon as the record arrives, not when the wait runs out.
    """
    admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    fetch_wait_ms = 5000
    consumer = KafkaConsumer(**_common(bootstrap), group_id=None, enable_auto_commit=False, fetch_max_wait_ms=fetch_wait_ms)
    producer = _producer(bootstrap)
    try:
        tp = TopicPartition(topic_name, 0)
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        assert consumer.position(tp, timeout_ms=REQUEST_TIMEOUT_MS) == 0
        assert consumer.poll(timeout_ms=300) == {}
        producer.send(topic_name, key=b"k", value=b"late").get(timeout=DELIVERY_TIMEOUT_S)
        sent_at = time.monotonic()
        got = []
        until = deadline(CONSUME_TIMEOUT_S)
        while not got and not expired(until):
            for records in consumer.poll(timeout_ms=int(POLL_TIMEOUT_S * 1000)).values():
                got.extend((r.offset, r.key, r.value) for r in records)
        waited = time.monotonic() - sent_at
        assert got == [(0, b"k", b"late")]
        assert waited < fetch_wait_ms / 1000 / 2, f"record arrived {waited:.2f}s after it was produced; the fetch was not woken up"
    finally:
        producer.close(timeout=REQUEST_TIMEOUT_S)
        consumer.close()


def test_batch_over_max_message_bytes_is_refused(bootstrap, admin, topic_name):
    """A batch over the broker's max.message.bytes (1048588) fails with MESSAGE_TOO_LARGE; the next one works."""
    admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    # The client's own limits are raised so that the broker is the one refusing.
    producer = _producer(bootstrap, max_request_size=3_000_000, batch_size=3_000_000, retries=0)
    try:
        with pytest.raises(Errors.MessageSizeTooLargeError):
            producer.send(topic_name, value=b"x" * 1_500_000).get(timeout=DELIVERY_TIMEOUT_S)
        md = producer.send(topic_name, value=b"small").get(timeout=DELIVERY_TIMEOUT_S)
        assert (md.partition, md.offset) == (0, 0)
    finally:
        producer.close(timeout=REQUEST_TIMEOUT_S)


def test_runnelctl_produce_partitions_keys_like_kafka_python(bootstrap, admin, topic_name):
    """`runnelctl produce` puts a keyed record where kafka-python's default
    partitioner (murmur2, the Java client's) puts the same key."""
    import json
    import subprocess

    from conftest import runnel_bin

    admin.create_topics([NewTopic(topic_name, num_partitions=7, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    keys = [f"customer-{i}" for i in range(40)]
    producer = _producer(bootstrap)
    ours = {k: producer.send(topic_name, key=k.encode(), value=b"py").get(timeout=DELIVERY_TIMEOUT_S).partition for k in keys}
    producer.close()
    runnelctl = runnel_bin().with_name("runnelctl")
    out = subprocess.run(
        [str(runnelctl), "-o", "json", "produce", topic_name, "--kafka", bootstrap, "-K", "="],
        input="".join(f"{k}=ctl\n" for k in keys),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    theirs = {k: json.loads(line)["partition"] for k, line in zip(keys, out.splitlines())}
    assert theirs == ours
    assert len(set(ours.values())) > 3, "forty keys spread over the partitions"


def test_partition_reassignment_apis(admin, topic_name):
    """AlterPartitionReassignments and ListPartitionReassignments as
    kafka-python sends them: a move onto the replicas a partition has
    completes at once, an unknown broker is an invalid assignment, a cancel
    with nothing in progress says so, and nothing is left listed."""
    admin.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)], timeout_ms=REQUEST_TIMEOUT_MS)
    broker = admin.describe_cluster()["brokers"][0]["broker_id"]
    tp0, tp1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)
    result = admin.alter_partition_reassignments({tp0: [broker], tp1: [broker, broker + 100]})
    assert result[tp0] is None
    assert result[tp1] is Errors.InvalidReplicationAssignmentError
    result = admin.alter_partition_reassignments({tp0: None})
    assert result[tp0] is Errors.NoReassignmentInProgressError
    assert admin.list_partition_reassignments() == {}
    assert admin.list_partition_reassignments([tp0, tp1]) == {}


def test_create_topics_with_explicit_replica_assignments(admin, topic_name):
    """CreateTopics with `replica_assignments` instead of counts, as Kafka
    accepts it; an unknown broker is an invalid assignment."""
    broker = admin.describe_cluster()["brokers"][0]["broker_id"]
    admin.create_topics(
        [NewTopic(topic_name, num_partitions=-1, replication_factor=-1, replica_assignments={0: [broker], 1: [broker], 2: [broker]})],
        timeout_ms=REQUEST_TIMEOUT_MS,
    )
    described = admin.describe_topics([topic_name])[0]
    assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2]
    assert all(p["replica_nodes"] == [broker] and p["leader_id"] == broker for p in described["partitions"]), described
    with pytest.raises(Errors.InvalidReplicationAssignmentError):
        admin.create_topics(
            [NewTopic(topic_name + "-x", num_partitions=-1, replication_factor=-1, replica_assignments={0: [broker, broker + 100]})],
            timeout_ms=REQUEST_TIMEOUT_MS,
        )
