"""The data set every client test produces, and the checks on what comes back.

Each test produces MESSAGE_COUNT keyed messages to a topic with PARTITIONS
partitions, records where each delivery report placed it, consumes the topic
from the beginning by assignment, and hands both lists to `check_consumed`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

PARTITIONS = 3
MESSAGE_COUNT = 300
DISTINCT_KEYS = 60

# Upper bounds on every wait in the suite; a healthy run takes far less.
DELIVERY_TIMEOUT_S = 20.0
CONSUME_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 10.0
POLL_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class Message:
    index: int
    key: bytes
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True)
class Delivered:
    """A message and where the broker acknowledged it."""

    message: Message
    partition: int
    offset: int


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


def messages(topic: str, count: int = MESSAGE_COUNT, base_timestamp_ms: int | None = None) -> list[Message]:
    """`count` keyed messages; keys repeat (DISTINCT_KEYS of them) so each key sees several values.

    Timestamps are explicit, strictly increasing and a minute in the past,
    far inside the default retention, so lookups by time are deterministic.
    """
    if base_timestamp_ms is None:
        base_timestamp_ms = int(time.time() * 1000) - 60_000
    return [
        Message(
            index=i,
            key=f"key-{i % DISTINCT_KEYS:03d}".encode(),
            value=f"value-{i:05d}-{topic}".encode(),
            timestamp_ms=base_timestamp_ms + i,
        )
        for i in range(count)
    ]


def by_partition(delivered: list[Delivered]) -> dict[int, list[Delivered]]:
    """Deliveries grouped by partition, each list in offset order."""
    groups: dict[int, list[Delivered]] = defaultdict(list)
    for d in delivered:
        groups[d.partition].append(d)
    return {p: sorted(ds, key=lambda d: d.offset) for p, ds in sorted(groups.items())}


def check_delivered(delivered: list[Delivered], sent: list[Message], partitions: int = PARTITIONS) -> dict[int, list[Delivered]]:
    """Every message acknowledged once, offsets dense from 0 per partition, in send order.

    Returns the deliveries grouped by partition in offset order.
    """
    assert len(delivered) == len(sent), f"{len(delivered)} delivery reports for {len(sent)} messages"
    assert sorted(d.message.index for d in delivered) == [m.index for m in sent], "a message was acknowledged twice or never"
    groups = by_partition(delivered)
    assert set(groups) <= set(range(partitions)), f"deliveries to unknown partitions: {sorted(groups)}"
    assert len(groups) == partitions, f"{len(sent)} messages with {DISTINCT_KEYS} keys only reached partitions {sorted(groups)}"
    for p, ds in groups.items():
        offsets = [d.offset for d in ds]
        assert offsets == list(range(len(ds))), f"partition {p}: acknowledged offsets are not 0..{len(ds) - 1}: {offsets}"
        indexes = [d.message.index for d in ds]
        assert indexes == sorted(indexes), f"partition {p}: offsets do not follow send order: {indexes}"
    # The same key always lands on the same partition.
    key_partitions: dict[bytes, set[int]] = defaultdict(set)
    for d in delivered:
        key_partitions[d.message.key].add(d.partition)
    split = {k: ps for k, ps in key_partitions.items() if len(ps) > 1}
    assert not split, f"keys spread over several partitions: {split}"
    return groups


def check_consumed(consumed: list[Consumed], delivered: list[Delivered], check_timestamps: bool = True) -> None:
    """Every delivered message consumed exactly once, in offset order per partition, with its key and value."""
    expected = {(d.partition, d.offset): d.message for d in delivered}
    seen: dict[tuple[int, int], Consumed] = {}
    duplicates = []
    for c in consumed:
        if (c.partition, c.offset) in seen:
            duplicates.append((c.partition, c.offset))
        seen[(c.partition, c.offset)] = c
    assert not duplicates, f"consumed more than once: {duplicates[:20]}"
    missing = sorted(set(expected) - set(seen))
    unexpected = sorted(set(seen) - set(expected))
    assert not missing, f"{len(missing)} messages never consumed, e.g. {missing[:20]}"
    assert not unexpected, f"consumed records nobody produced: {unexpected[:20]}"
    per_partition: dict[int, list[int]] = defaultdict(list)
    for c in consumed:
        per_partition[c.partition].append(c.offset)
    for p, offsets in per_partition.items():
        assert offsets == sorted(offsets), f"partition {p}: consumed out of order: {offsets}"
    for c in consumed:
        m = expected[(c.partition, c.offset)]
        assert (c.key, c.value) == (m.key, m.value), f"partition {c.partition} offset {c.offset}: got {(c.key, c.value)}, want {(m.key, m.value)}"
        if check_timestamps and c.timestamp_ms is not None:
            assert c.timestamp_ms == m.timestamp_ms, f"partition {c.partition} offset {c.offset}: timestamp {c.timestamp_ms}, want {m.timestamp_ms}"


def timestamp_probes(groups: dict[int, list[Delivered]]) -> dict[str, dict[int, tuple[int, int | None]]]:
    """Timestamp lookups to make, each {partition: (timestamp, expected offset)}.

    Timestamps increase with the send order, hence with the offset within a
    partition, so "the first offset whose timestamp is at or after T" is known:
    - "exact": the timestamp of the middle message resolves to its offset;
    - "between": one past the previous message's timestamp still resolves to
      the middle message (nothing in the partition lies in between);
    - "before": earlier than every message resolves to offset 0;
    - "after": later than every message resolves to no offset (None; Kafka
      answers offset -1, which clients report as None or -1).
    """
    probes: dict[str, dict[int, tuple[int, int | None]]] = {"exact": {}, "between": {}, "before": {}, "after": {}}
    for p, ds in groups.items():
        mid = len(ds) // 2
        assert mid >= 1, f"partition {p} has too few messages ({len(ds)}) for timestamp probes"
        probes["exact"][p] = (ds[mid].message.timestamp_ms, ds[mid].offset)
        probes["between"][p] = (ds[mid - 1].message.timestamp_ms + 1, ds[mid].offset)
        probes["before"][p] = (ds[0].message.timestamp_ms - 10_000, 0)
        probes["after"][p] = (ds[-1].message.timestamp_ms + 10_000, None)
    return probes


def deadline(seconds: float) -> float:
    return time.monotonic() + seconds


def expired(at: float) -> bool:
    return time.monotonic() >= at


def confluent_round_trip(config: dict, topic: str, n: int = 10) -> list[str]:
    """Produces v0..v(n-1) with acks=all through confluent-kafka with these
    client settings (security ones, say), consumes them in a group from the
    beginning, and returns the values consumed, sorted."""
    from confluent_kafka import Consumer, Producer

    producer = Producer({**config, "acks": "all"})
    delivered = []
    for i in range(n):
        producer.produce(topic, key=f"k{i}", value=f"v{i}", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(DELIVERY_TIMEOUT_S) == 0
    assert delivered == [None] * n
    consumer = Consumer({**config, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values: list[str] = []
    end = deadline(CONSUME_TIMEOUT_S * 3)
    while len(values) < n and not expired(end):
        m = consumer.poll(0.2)
        if m is not None and m.error() is None:
            values.append(m.value().decode())
    consumer.close()
    return sorted(values)


def keyed_reader(bootstrap: str, topic: str, group: str, parse, **config):
    """Reads `topic` from the beginning in a confluent-kafka group, in a
    thread, appending (key, parse(value)) for every record, until the
    returned event is set. Returns (records, stop, thread)."""
    import threading

    from confluent_kafka import Consumer

    records: list = []
    stop = threading.Event()

    def run():
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", **config})
        consumer.subscribe([topic])
        try:
            while not stop.is_set():
                msg = consumer.poll(POLL_TIMEOUT_S)
                if msg is None or msg.error():
                    continue
                records.append((msg.key().decode(), parse(msg.value())))
        finally:
            consumer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return records, stop, thread


def values_by_key(records) -> dict:
    """(key, value) pairs as {key: [values in the order read]}."""
    out = defaultdict(list)
    for key, value in records:
        out[key].append(value)
    return out
