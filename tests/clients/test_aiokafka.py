"""Runnel with aiokafka: admin, producer (acks=all), assigned consumer, offsets.

pytest-asyncio is not required: each test runs its coroutine with
asyncio.run under an overall asyncio timeout.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

aiokafka = pytest.importorskip("aiokafka")

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType  # noqa: E402

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
# Bound on one whole test coroutine.
TEST_TIMEOUT_S = 45.0

# Kafka error codes.
NONE = 0
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36


def run(coro):
    async def bounded():
        return await asyncio.wait_for(coro, TEST_TIMEOUT_S)

    return asyncio.run(bounded())


async def _create_topics(bootstrap: str, topics: list[NewTopic]) -> dict[str, tuple[int, str | None]]:
    """Create topics; return {name: (error code, error message)} from the response."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    await admin.start()
    try:
        response = await admin.create_topics(topics, timeout_ms=REQUEST_TIMEOUT_MS)
    finally:
        await admin.close()
    result = {}
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        result[name] = (code, message)
    return result


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        fetch_max_wait_ms=100,
    )


async def _load_topic(bootstrap: str, topic: str) -> tuple[list, list[Delivered]]:
    created = await _create_topics(bootstrap, [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    assert created[topic][0] == NONE, created
    sent = messages(topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    await producer.start()
    try:
        futures = [(m, await producer.send(topic, key=m.key, value=m.value, timestamp_ms=m.timestamp_ms)) for m in sent]
        results = await asyncio.wait_for(asyncio.gather(*(f for _, f in futures)), DELIVERY_TIMEOUT_S)
    finally:
        await producer.stop()
    delivered = []
    for (m, _), md in zip(futures, results):
        assert md.topic == topic
        delivered.append(Delivered(m, md.partition, md.offset))
    return sent, delivered


@pytest.fixture(scope="module")
def loaded_topic(bootstrap):
    """A 3-partition topic created with the admin API, holding MESSAGE_COUNT messages.

    Returns (topic, sent messages, delivery reports).
    """
    topic = f"aiokafka-{uuid.uuid4().hex[:12]}"
    sent, delivered = run(_load_topic(bootstrap, topic))
    return topic, sent, delivered


def test_created_topic_has_three_partitions(bootstrap, loaded_topic):
    topic, _, _ = loaded_topic

    async def describe():
        # Asked through the admin client: an AIOKafkaConsumer stopped right
        # after start() can raise CancelledError from its own NoGroupCoordinator
        # (an aiokafka race unrelated to the broker).
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
        await admin.start()
        try:
            return await admin.describe_topics([topic])
        finally:
            await admin.close()

    [described] = run(describe())
    assert described["error_code"] == NONE, described
    assert described["topic"] == topic, described
    assert sorted(p["partition"] for p in described["partitions"]) == list(range(PARTITIONS)), described


def test_produce_acks_all_every_message_acknowledged(loaded_topic):
    _, sent, delivered = loaded_topic
    check_delivered(delivered, sent)


def test_consume_from_beginning_by_assignment(bootstrap, loaded_topic):
    topic, _, delivered = loaded_topic

    async def consume() -> list[Consumed]:
        consumer = _consumer(bootstrap)
        await consumer.start()
        consumed: list[Consumed] = []
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            until = deadline(CONSUME_TIMEOUT_S)
            while len(consumed) < MESSAGE_COUNT and not expired(until):
                batches = await consumer.getmany(timeout_ms=int(POLL_TIMEOUT_S * 1000))
                for tp, records in batches.items():
                    assert tp.topic == topic
                    consumed.extend(Consumed(r.partition, r.offset, r.key, r.value, r.timestamp) for r in records)
            # One more short poll: nothing beyond what was produced may arrive.
            for tp, records in (await consumer.getmany(timeout_ms=int(POLL_TIMEOUT_S * 1000))).items():
                consumed.extend(Consumed(r.partition, r.offset, r.key, r.value, r.timestamp) for r in records)
        finally:
            await consumer.stop()
        return consumed

    check_consumed(run(consume()), delivered)


def test_list_offsets_earliest_and_latest(bootstrap, loaded_topic):
    topic, sent, delivered = loaded_topic
    groups = check_delivered(delivered, sent)

    async def offsets():
        consumer = _consumer(bootstrap)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            return await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()

    earliest, latest = run(offsets())
    assert {tp.partition: o for tp, o in earliest.items()} == {p: 0 for p in range(PARTITIONS)}
    assert {tp.partition: o for tp, o in latest.items()} == {p: len(ds) for p, ds in groups.items()}


def test_offsets_for_times(bootstrap, loaded_topic):
    topic, sent, delivered = loaded_topic
    groups = check_delivered(delivered, sent)
    probes_by_case = timestamp_probes(groups)

    async def lookups():
        consumer = _consumer(bootstrap)
        await consumer.start()
        try:
            answers = {}
            for case, probes in probes_by_case.items():
                answers[case] = await consumer.offsets_for_times({TopicPartition(topic, p): ts for p, (ts, _) in probes.items()})
            return answers
        finally:
            await consumer.stop()

    for case, answer in run(lookups()).items():
        got = {tp.partition: (None if oat is None else oat.offset) for tp, oat in answer.items()}
        want = {p: expected for p, (_, expected) in probes_by_case[case].items()}
        assert got == want, f"offsets_for_times ({case}): got {got}, want {want}"
        for tp, oat in answer.items():
            if oat is not None:
                message = next(d.message for d in groups[tp.partition] if d.offset == oat.offset)
                assert oat.timestamp == message.timestamp_ms, f"({case}) partition {tp.partition}: timestamp {oat.timestamp}, want {message.timestamp_ms}"


def test_describe_configs_returns_retention_ms(bootstrap, topic_name):
    async def describe():
        created = await _create_topics(bootstrap, [NewTopic(topic_name, num_partitions=1, replication_factor=1)])
        assert created[topic_name][0] == NONE, created
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
        await admin.start()
        try:
            return await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic_name)])
        finally:
            await admin.close()

    [response] = run(describe())
    [resource] = response.resources
    error_code, _error_message, _type, name, entries = resource[:5]
    assert (error_code, name) == (NONE, topic_name), resource
    configs = {entry[0]: entry[1] for entry in entries}
    assert configs.get("retention.ms") == str(7 * 24 * 3600 * 1000), configs


def test_create_existing_topic_fails_with_topic_already_exists(bootstrap, topic_name):
    async def twice():
        first = await _create_topics(bootstrap, [NewTopic(topic_name, num_partitions=PARTITIONS, replication_factor=1)])
        second = await _create_topics(bootstrap, [NewTopic(topic_name, num_partitions=PARTITIONS, replication_factor=1)])
        return first, second

    first, second = run(twice())
    assert first[topic_name][0] == NONE, first
    assert second[topic_name][0] == TOPIC_ALREADY_EXISTS, second


def test_invalid_topic_name_is_refused(bootstrap):
    result = run(_create_topics(bootstrap, [NewTopic("bad name!", num_partitions=1, replication_factor=1)]))
    assert result["bad name!"][0] == INVALID_TOPIC_EXCEPTION, result
