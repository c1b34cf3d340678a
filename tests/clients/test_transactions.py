"""Transactions (issue 15) with real transactional producers: confluent-kafka
(librdkafka), kafka-python and aiokafka commit and abort; read_committed
consumers see exactly the committed records, in order, and never an aborted
one; a new instance with the same transactional id fences the old one and
aborts what it left open; a transaction past its timeout is aborted by the
coordinator; and a consume-transform-produce loop SIGKILLed in the middle
and restarted produces every output exactly once."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def _create(bootstrap: str, topic: str, partitions: int = 2) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=20)


def _read(bootstrap: str, topic: str, isolation: str, expect: int, partitions: int = 2, settle: float = 1.0) -> list[tuple[int, int, str]]:
    """(partition, offset, value) of every record the consumer is given,
    waiting for at least `expect` and then `settle` seconds for any extra."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}", "isolation.level": isolation, "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[tuple[int, int, str]] = []
    deadline = time.monotonic() + 30
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append((msg.partition(), msg.offset(), msg.value().decode()))
            if len(got) >= expect:
                quiet_until = quiet_until or time.monotonic() + settle
                if time.monotonic() >= quiet_until:
                    break
    finally:
        consumer.close()
    return got


def _values(records) -> list[str]:
    return sorted(v for _, _, v in records)


def test_confluent_commit_and_abort_are_what_read_committed_sees(bootstrap, topic_name):
    _create(bootstrap, topic_name)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"tx-{topic_name}"})
    producer.init_transactions(20)
    producer.begin_transaction()
    for i in range(6):
        producer.produce(topic_name, value=f"c1-{i}".encode(), partition=i % 2)
    producer.commit_transaction(20)
    producer.begin_transaction()
    for i in range(6):
        producer.produce(topic_name, value=f"a-{i}".encode(), partition=i % 2)
    producer.flush(20)
    producer.abort_transaction(20)
    producer.begin_transaction()
    for i in range(4):
        producer.produce(topic_name, value=f"c2-{i}".encode(), partition=i % 2)
    producer.commit_transaction(20)

    committed = _read(bootstrap, topic_name, "read_committed", expect=10)
    assert _values(committed) == sorted([f"c1-{i}" for i in range(6)] + [f"c2-{i}" for i in range(4)])
    # In order within each partition: the first transaction before the second.
    for p in range(2):
        in_partition = [v for part, _, v in sorted(committed) if part == p]
        assert in_partition == sorted(in_partition, key=lambda v: (v.split("-")[0], int(v.split("-")[1])))
    everything = _read(bootstrap, topic_name, "read_uncommitted", expect=16)
    assert len(everything) == 16, "read_uncommitted sees the aborted records too"


def test_a_new_instance_fences_the_old_one_and_aborts_what_it_left_open(bootstrap, topic_name):
    _create(bootstrap, topic_name)
    txid = f"tx-{topic_name}"
    old = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid})
    old.init_transactions(20)
    old.begin_transaction()
    for i in range(4):
        old.produce(topic_name, value=f"zombie-{i}".encode(), partition=i % 2)
    old.flush(20)
    # The old instance "crashes" here; a new one takes its transactional id.
    new = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid})
    new.init_transactions(20)
    new.begin_transaction()
    for i in range(4):
        new.produce(topic_name, value=f"new-{i}".encode(), partition=i % 2)
    new.commit_transaction(20)
    # The old instance is fenced: its commit fails and nothing of it shows.
    with pytest.raises(KafkaException):
        old.commit_transaction(20)
    committed = _read(bootstrap, topic_name, "read_committed", expect=4)
    assert _values(committed) == [f"new-{i}" for i in range(4)]


def test_a_transaction_past_its_timeout_is_aborted_by_the_coordinator(bootstrap, topic_name):
    _create(bootstrap, topic_name, partitions=1)
    slow = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"slow-{topic_name}", "transaction.timeout.ms": 2000})
    slow.init_transactions(20)
    slow.begin_transaction()
    slow.produce(topic_name, value=b"too-slow", partition=0)
    slow.flush(20)
    # While it is open, committed data after it stays below the LSO...
    other = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"other-{topic_name}"})
    other.init_transactions(20)
    other.begin_transaction()
    other.produce(topic_name, value=b"after", partition=0)
    other.commit_transaction(20)
    # ...until the coordinator aborts the slow one (2 s, checked every second).
    committed = _read(bootstrap, topic_name, "read_committed", expect=1, partitions=1, settle=0.5)
    assert _values(committed) == ["after"]
    with pytest.raises(KafkaException):
        slow.commit_transaction(20)


def test_offsets_sent_in_an_open_transaction_are_unstable_until_it_commits(bootstrap, topic_name):
    """KIP-447: a read_committed consumer asks for stable offsets; while a
    transaction holds offsets of its group it gets UNSTABLE_OFFSET_COMMIT
    (and retries), so it never starts from an offset that may be undone."""
    _create(bootstrap, topic_name, partitions=1)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic_name}", "isolation.level": "read_committed", "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"offsets-{topic_name}"})
    try:
        producer.init_transactions(20)
        producer.begin_transaction()
        producer.produce(topic_name, value=b"x", partition=0)
        producer.send_offsets_to_transaction([TopicPartition(topic_name, 0, 42)], consumer.consumer_group_metadata(), 20)
        with pytest.raises(KafkaException):
            consumer.committed([TopicPartition(topic_name, 0)], timeout=3)
        producer.commit_transaction(20)
        (committed,) = consumer.committed([TopicPartition(topic_name, 0)], timeout=10)
        assert committed.offset == 42
    finally:
        consumer.close()


def _joined(bootstrap, topic, group):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2)
    assert consumer.assignment(), "the consumer joined no group"
    return consumer


def test_offsets_from_a_consumer_that_left_its_group_are_refused(bootstrap, topic_name):
    """KIP-447 zombie fencing: offsets sent with the group metadata of a
    consumer that has left the group (an old generation, an unknown
    member) are refused, so a zombie instance cannot commit offsets for
    partitions assigned elsewhere; the live member's offsets go through."""
    _create(bootstrap, topic_name, partitions=1)
    group = f"g-{topic_name}"
    zombie = _joined(bootstrap, topic_name, group)
    stale = zombie.consumer_group_metadata()
    zombie.close()
    live = _joined(bootstrap, topic_name, group)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"zombie-{topic_name}"})
    try:
        producer.init_transactions(20)
        producer.begin_transaction()
        producer.produce(topic_name, value=b"x", partition=0)
        with pytest.raises(KafkaException) as refused:
            producer.send_offsets_to_transaction([TopicPartition(topic_name, 0, 7)], stale, 20)
        error = refused.value.args[0]
        assert error.code() in (confluent_kafka.KafkaError.UNKNOWN_MEMBER_ID, confluent_kafka.KafkaError.ILLEGAL_GENERATION), error
        producer.abort_transaction(20)
        producer.begin_transaction()
        producer.produce(topic_name, value=b"y", partition=0)
        producer.send_offsets_to_transaction([TopicPartition(topic_name, 0, 9)], live.consumer_group_metadata(), 20)
        producer.commit_transaction(20)
        (committed,) = live.committed([TopicPartition(topic_name, 0)], timeout=10)
        assert committed.offset == 9
    finally:
        live.close()


def test_kafka_python_lists_describes_and_aborts_a_transaction(bootstrap, topic_name):
    """KIP-664's admin tools from kafka-python: ListTransactions (merged over
    every broker), DescribeTransactions at the coordinator, and the abort of
    a transaction through WriteTxnMarkers at the partition leader (found
    with DescribeProducers there), after
    which the records are never visible and the LSO moves on."""
    pytest.importorskip("kafka")
    from kafka.errors import KafkaError
    from kafka.admin import AbortTransactionSpec, KafkaAdminClient, TransactionState
    from kafka.structs import TopicPartition as KpTopicPartition

    _create(bootstrap, topic_name, partitions=1)
    txid = f"hung-{topic_name}"
    hung = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid})
    hung.init_transactions(20)
    hung.begin_transaction()
    hung.produce(topic_name, value=b"never-visible", partition=0)
    hung.flush(20)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        listed = [t for per_broker in admin.list_transactions().values() for t in per_broker if t.transactional_id == txid]
        assert len(listed) == 1 and listed[0].state == TransactionState.ONGOING, listed
        assert [t for ts in admin.list_transactions(state_filters=["CompleteCommit"]).values() for t in ts if t.transactional_id == txid] == []
        # ListTransactions v2 (KIP-1152): a regular expression that must match
        # the whole transactional id; a malformed one is refused.
        def by_pattern(pattern):
            return [t.transactional_id for ts in admin.list_transactions(transactional_id_pattern=pattern).values() for t in ts]

        assert by_pattern(re.escape(txid[:-2]) + "..") == [txid]
        assert by_pattern(re.escape(txid[:-2])) == [], "a prefix of the id does not match"
        assert txid in by_pattern("")
        with pytest.raises(KafkaError):
            by_pattern("hung-(")
        described = admin.describe_transactions([txid])[txid]
        assert described.state == TransactionState.ONGOING
        assert described.producer_id == listed[0].producer_id
        assert described.topic_partitions == {KpTopicPartition(topic_name, 0)}
        assert described.transaction_start_time_ms > 0
        # The partition's leader knows the producer, and where its open
        # transaction starts (the first offset of the partition here).
        producers = admin.describe_producers([KpTopicPartition(topic_name, 0)])[KpTopicPartition(topic_name, 0)].active_producers
        ours = [p for p in producers if p.producer_id == described.producer_id]
        assert len(ours) == 1 and ours[0].current_transaction_start_offset == 0 and ours[0].last_sequence == 0, producers
        spec = AbortTransactionSpec(KpTopicPartition(topic_name, 0), described.producer_id, described.producer_epoch)
        admin.abort_transaction(spec)
    finally:
        admin.close()
    # The partition no longer waits for that transaction.
    after = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    after.produce(topic_name, value=b"after", partition=0)
    assert after.flush(20) == 0
    assert _values(_read(bootstrap, topic_name, "read_committed", expect=1, partitions=1)) == ["after"]


def test_kafka_python_transactional_producer(bootstrap, topic_name):
    kafka = pytest.importorskip("kafka")
    _create(bootstrap, topic_name)
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"kp-{topic_name}")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for i in range(4):
            producer.send(topic_name, value=f"kp-c-{i}".encode(), partition=i % 2)
        producer.commit_transaction()
        producer.begin_transaction()
        for i in range(4):
            producer.send(topic_name, value=f"kp-a-{i}".encode(), partition=i % 2)
        producer.flush()
        producer.abort_transaction()
    finally:
        producer.close()
    committed = _read(bootstrap, topic_name, "read_committed", expect=4)
    assert _values(committed) == [f"kp-c-{i}" for i in range(4)]


def test_aiokafka_transactional_producer(bootstrap, topic_name):
    aiokafka = pytest.importorskip("aiokafka")
    _create(bootstrap, topic_name)

    async def run():
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"aio-{topic_name}")
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(4):
                    await producer.send_and_wait(topic_name, value=f"aio-c-{i}".encode(), partition=i % 2)
            await producer.begin_transaction()
            for i in range(4):
                await producer.send_and_wait(topic_name, value=f"aio-a-{i}".encode(), partition=i % 2)
            await producer.abort_transaction()
        finally:
            await producer.stop()
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([aiokafka.TopicPartition(topic_name, p) for p in range(2)])
            await consumer.seek_to_beginning()
            got = []
            deadline = time.monotonic() + 20
            while len(got) < 4 and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                got.extend(m.value.decode() for ms in batches.values() for m in ms)
            await asyncio.sleep(0.5)
            batches = await consumer.getmany(timeout_ms=500)
            got.extend(m.value.decode() for ms in batches.values() for m in ms)
            return sorted(got)
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == [f"aio-c-{i}" for i in range(4)]


# A consume-transform-produce loop with exactly-once processing: it reads
# `input`, writes one output per input record and commits the input offsets
# inside the same transaction, a few records per transaction.
PROCESSOR = textwrap.dedent(
    """
    import sys, time
    from confluent_kafka import Consumer, Producer
    bootstrap, source, sink, txid = sys.argv[1:5]
    # The killed instance stays in the group until its session times out.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "etl-" + source, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed", "session.timeout.ms": 6000})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid})
    producer.init_transactions(30)
    consumer.subscribe([source])
    started = time.monotonic()
    last_data = None
    # Until the input has been quiet for 5 s after some arrived (at most 90 s).
    while time.monotonic() - started < 90 and (last_data is None or time.monotonic() - last_data < 5):
        batch = consumer.consume(5, 1.0)
        batch = [m for m in batch if m.error() is None]
        if not batch:
            continue
        last_data = time.monotonic()
        producer.begin_transaction()
        for m in batch:
            producer.produce(sink, value=b"out-" + m.value(), partition=m.partition())
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        print("committed", len(batch), flush=True)
        time.sleep(0.05)
    consumer.close()
    """
)


def test_a_sigkilled_consume_transform_produce_loop_outputs_every_record_exactly_once(bootstrap, topic_name, tmp_path):
    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    _create(bootstrap, source)
    _create(bootstrap, sink)
    count = 200
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(count):
        producer.produce(source, value=f"{i}".encode(), partition=i % 2)
    assert producer.flush(30) == 0
    script = tmp_path / "processor.py"
    script.write_text(PROCESSOR)
    args = [sys.executable, str(script), bootstrap, source, sink, f"etl-{topic_name}"]

    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Let it commit a few transactions, then kill it without warning.
        commits = 0
        deadline = time.monotonic() + 60
        while commits < 5 and time.monotonic() < deadline:
            line = first.stdout.readline()
            assert line, f"the processor ended early (code {first.poll()})"
            commits += line.startswith("committed")
        assert commits >= 5, "the processor committed nothing"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    second = subprocess.run(args, capture_output=True, text=True, timeout=150)
    assert second.returncode == 0, second.stdout + second.stderr

    outputs = _read(bootstrap, sink, "read_committed", expect=count, settle=1.5)
    values = [v for _, _, v in outputs]
    assert len(values) == count, f"{len(values)} outputs for {count} inputs; duplicates: {sorted({v for v in values if values.count(v) > 1})[:10]}"
    assert sorted(values) == sorted(f"out-{i}" for i in range(count))
