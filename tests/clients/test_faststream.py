"""FastStream, a Python framework for event-driven services, runs a
consume-transform-publish service against Runnel with both of its Kafka
backends (aiokafka and confluent-kafka): a subscriber in a consumer group
reads an input topic, each handler's return value is published to an output
topic, and every input comes out transformed, once each, with its key."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

faststream = pytest.importorskip("faststream")

from confluent_kafka import Consumer, Producer  # noqa: E402
from faststream import Context  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

MESSAGES = 200
# Bound on one whole service run.
RUN_TIMEOUT_S = 60.0


def _create(bootstrap, *topics):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in topics]).values():
        future.result(20)


def _produce_inputs(bootstrap, topic):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(MESSAGES):
        producer.produce(topic, key=f"k{i % 10}", value=json.dumps({"n": i}))
    assert producer.flush(20) == 0


def _read_outputs(bootstrap, topic, until):
    """Every record of the output topic as (key, value), read until `until`
    records arrived or the run's time is up."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while len(seen) < until and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            seen.append((msg.key().decode() if msg.key() else None, json.loads(msg.value())))
        # A little longer: anything published twice would show up now.
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                seen.append((msg.key().decode() if msg.key() else None, json.loads(msg.value())))
    finally:
        consumer.close()
    return seen


def _broker(backend, bootstrap):
    if backend == "aiokafka":
        from faststream.kafka import KafkaBroker
    else:
        from faststream.confluent import KafkaBroker
    return KafkaBroker(bootstrap)


@pytest.mark.parametrize("backend", ["aiokafka", "confluent"])
def test_a_faststream_service_transforms_every_input_once(bootstrap, backend):
    pytest.importorskip("aiokafka" if backend == "aiokafka" else "confluent_kafka")
    run = uuid.uuid4().hex[:8]
    source, sink = f"fs-in-{run}", f"fs-out-{run}"
    _create(bootstrap, source, sink)
    _produce_inputs(bootstrap, source)

    broker = _broker(backend, bootstrap)
    handled = []

    @broker.subscriber(source, group_id=f"fs-{run}", auto_offset_reset="earliest")
    @broker.publisher(sink)
    async def double(body: dict, msg=Context("message")) -> dict:
        handled.append(body["n"])
        raw = msg.raw_message
        key = raw.key() if backend == "confluent" else raw.key
        return {"n": body["n"], "doubled": body["n"] * 2, "key": key.decode()}

    async def serve():
        await broker.start()
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while len(handled) < MESSAGES and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            await broker.stop()

    asyncio.run(asyncio.wait_for(serve(), RUN_TIMEOUT_S + 15))
    assert sorted(handled) == list(range(MESSAGES)), f"{backend}: the service handled {len(handled)} of {MESSAGES}"

    outputs = _read_outputs(bootstrap, sink, MESSAGES)
    values = sorted(v["n"] for _, v in outputs)
    assert values == list(range(MESSAGES)), f"{backend}: {len(outputs)} outputs for {MESSAGES} inputs"
    assert all(v["doubled"] == 2 * v["n"] and v["key"] == f"k{v['n'] % 10}" for _, v in outputs)
