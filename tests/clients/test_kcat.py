"""Runnel with kcat: -L metadata, -P produce, -C consume, -Q offset queries.

kcat has no admin API: its topic is created by the broker on first use
(dev mode auto-creates topics with the node's --default-partitions, 3 here;
see conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from expect import (
    CONSUME_TIMEOUT_S,
    DELIVERY_TIMEOUT_S,
    MESSAGE_COUNT,
    PARTITIONS,
    REQUEST_TIMEOUT_S,
    Consumed,
    Delivered,
    Message,
    check_consumed,
    check_delivered,
    messages,
)

KCAT = os.environ.get("KCAT_BIN") or shutil.which("kcat") or "/usr/bin/kcat"
if not (os.path.isfile(KCAT) and os.access(KCAT, os.X_OK)):
    pytest.skip(f"kcat not found (looked for {KCAT}; set KCAT_BIN)", allow_module_level=True)

REQUEST_TIMEOUT_MS = int(REQUEST_TIMEOUT_S * 1000)
# How many of the messages go in the first of the two produce runs; the -Q
# timestamp lookups probe the instant between the two runs.
FIRST_RUN = 200


def kcat(bootstrap: str, *args: str, stdin: bytes | None = None, timeout: float = REQUEST_TIMEOUT_S + 5) -> subprocess.CompletedProcess:
    command = [
        KCAT,
        "-b",
        bootstrap,
        "-m",
        str(int(REQUEST_TIMEOUT_S)),
        "-X",
        f"socket.timeout.ms={REQUEST_TIMEOUT_MS}",
        *args,
    ]
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{command} did not finish within {timeout}s; stdout: {e.stdout!r}, stderr: {e.stderr!r}")
    assert result.returncode == 0, f"{command} exited with {result.returncode}; stdout: {result.stdout!r}, stderr: {result.stderr!r}"
    return result


def produce(bootstrap: str, topic: str, batch: list[Message]) -> tuple[int, int]:
    """Produce `batch` with one `kcat -P` run (acks=all); return the wall-clock window in ms."""
    lines = b"".join(m.key + b":" + m.value + b"\n" for m in batch)
    start_ms = int(time.time() * 1000)
    result = kcat(
        bootstrap,
        "-P",
        "-t",
        topic,
        "-K",
        ":",
        "-X",
        "acks=all",
        "-X",
        f"message.timeout.ms={int(DELIVERY_TIMEOUT_S * 1000)}",
        stdin=lines,
        timeout=DELIVERY_TIMEOUT_S + 10,
    )
    end_ms = int(time.time() * 1000)
    # kcat reports failed deliveries on stderr (and still exits 0 for some).
    assert b"ERROR" not in result.stderr and b"failed" not in result.stderr.lower(), result.stderr
    return start_ms, end_ms


def query(bootstrap: str, topic: str, timestamps: dict[int, int]) -> dict[int, int]:
    """`kcat -Q` for {partition: timestamp (or -1 latest / -2 earliest)}; returns {partition: offset}."""
    args = ["-Q", "-J"]
    for p, ts in sorted(timestamps.items()):
        args += ["-t", f"{topic}:{p}:{ts}"]
    out = json.loads(kcat(bootstrap, *args).stdout)
    entry = out[topic]
    result = {}
    for p in timestamps:
        part = entry[str(p)]
        assert "error" not in part, f"kcat -Q partition {p}: {part}"
        result[p] = part["offset"]
    return result


@pytest.fixture(scope="module")
def loaded_topic(bootstrap):
    """A topic auto-created by `kcat -P`, holding MESSAGE_COUNT messages from two produce runs.

    Returns (topic, sent messages, consumed records, boundary timestamp,
    produce windows), the consumed records read back with `kcat -C`.
    """
    topic = f"kcat-{uuid.uuid4().hex[:12]}"
    sent = messages(topic)
    first_window = produce(bootstrap, topic, sent[:FIRST_RUN])
    time.sleep(0.02)
    boundary_ms = int(time.time() * 1000)
    time.sleep(0.02)
    second_window = produce(bootstrap, topic, sent[FIRST_RUN:])
    result = kcat(bootstrap, "-C", "-J", "-q", "-t", topic, "-o", "beginning", "-e", timeout=CONSUME_TIMEOUT_S)
    consumed = []
    for line in result.stdout.decode().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        assert r["topic"] == topic, r
        assert r["tstype"] == "create", r
        consumed.append(
            Consumed(
                r["partition"],
                r["offset"],
                None if r["key"] is None else r["key"].encode(),
                None if r["payload"] is None else r["payload"].encode(),
                r["ts"],
            )
        )
    return topic, sent, consumed, boundary_ms, (first_window, second_window)


def deliveries(sent: list[Message], consumed: list[Consumed]) -> list[Delivered]:
    """Where each sent message ended up, as read back (kcat -P prints no delivery reports)."""
    by_value = {m.value: m for m in sent}
    return [Delivered(by_value[c.value], c.partition, c.offset) for c in consumed if c.value in by_value]


def test_metadata_lists_the_broker(bootstrap):
    out = json.loads(kcat(bootstrap, "-L", "-J").stdout)
    assert out["brokers"] == [{"id": 1, "name": bootstrap}], out
    assert out["controllerid"] == 1, out
    plain = kcat(bootstrap, "-L").stdout.decode()
    assert " 1 brokers:" in plain, plain
    assert f"broker 1 at {bootstrap} (controller)" in plain, plain


def test_auto_created_topic_has_default_partitions(bootstrap, loaded_topic):
    topic = loaded_topic[0]
    out = json.loads(kcat(bootstrap, "-L", "-J", "-t", topic).stdout)
    [t] = [t for t in out["topics"] if t["topic"] == topic]
    assert "error" not in t, t
    assert sorted(p["partition"] for p in t["partitions"]) == list(range(PARTITIONS)), t
    for p in t["partitions"]:
        assert p["leader"] == 1, t


def test_produce_and_consume_from_beginning(loaded_topic):
    _, sent, consumed, _, (first_window, second_window) = loaded_topic
    assert len(consumed) == MESSAGE_COUNT, f"kcat -C -e returned {len(consumed)} records, want {MESSAGE_COUNT}"
    delivered = deliveries(sent, consumed)
    # Every message exactly once, offsets dense per partition in send order, one partition per key.
    check_delivered(delivered, sent)
    # kcat stamps messages with their produce time; check those instead of the generated ones.
    check_consumed(consumed, delivered, check_timestamps=False)
    first_values = {m.value for m in sent[:FIRST_RUN]}
    for c in consumed:
        lo, hi = first_window if c.value in first_values else second_window
        assert lo <= c.timestamp_ms <= hi, f"partition {c.partition} offset {c.offset}: timestamp {c.timestamp_ms} outside its produce run {lo}..{hi}"


def test_query_earliest_and_latest_offsets(bootstrap, loaded_topic):
    topic, sent, consumed, _, _ = loaded_topic
    groups = check_delivered(deliveries(sent, consumed), sent)
    assert query(bootstrap, topic, {p: -2 for p in range(PARTITIONS)}) == {p: 0 for p in range(PARTITIONS)}
    assert query(bootstrap, topic, {p: -1 for p in range(PARTITIONS)}) == {p: len(ds) for p, ds in groups.items()}


def test_query_offsets_by_timestamp(bootstrap, loaded_topic):
    topic, sent, consumed, boundary_ms, (first_window, _) = loaded_topic
    groups = check_delivered(deliveries(sent, consumed), sent)
    first_values = {m.value for m in sent[:FIRST_RUN]}
    in_first_run = {p: sum(1 for d in ds if d.message.value in first_values) for p, ds in groups.items()}
    for p, ds in groups.items():
        assert 0 < in_first_run[p] < len(ds), f"partition {p} needs messages from both produce runs: {in_first_run[p]} of {len(ds)}"
    # The first offset at or after the boundary is the first message of the second run.
    assert query(bootstrap, topic, {p: boundary_ms for p in range(PARTITIONS)}) == in_first_run
    # Before everything: offset 0. After everything: no offset (-1).
    assert query(bootstrap, topic, {p: first_window[0] - 60_000 for p in range(PARTITIONS)}) == {p: 0 for p in range(PARTITIONS)}
    later = int(time.time() * 1000) + 3_600_000
    assert query(bootstrap, topic, {p: later for p in range(PARTITIONS)}) == {p: -1 for p in range(PARTITIONS)}


def test_the_readme_kcat_group_member_joins_a_cooperative_sticky_group(bootstrap):
    """Issue 13: the README's `kcat -G billing orders` next to the README's
    cooperative-sticky consumers failed with Inconsistent group protocol.
    This runs the README's line as written, on this node, with a fresh
    group and topic."""
    from pathlib import Path
    from confluent_kafka import Consumer

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    line = next(l for l in readme.splitlines() if l.startswith("kcat ") and " -G billing orders" in l)
    args = line.split("#")[0].split()[1:]  # drop "kcat" and the comment
    group, topic = f"billing-{uuid.uuid4().hex[:8]}", f"orders-{uuid.uuid4().hex[:8]}"
    args = [bootstrap if a == "127.0.0.1:9092" else group if a == "billing" else topic if a == "orders" else a for a in args]
    kcat(bootstrap, "-P", "-t", topic, stdin=b"a\nb\nc\n")

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "partition.assignment.strategy": "cooperative-sticky"})
    consumer.subscribe([topic])
    deadline = time.time() + 30
    while not consumer.assignment() and time.time() < deadline:
        consumer.poll(0.2)
    assert consumer.assignment(), "the README consumer never got partitions"
    member = subprocess.Popen([KCAT, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    import threading
    threading.Thread(target=lambda: seen.extend(iter(member.stderr.readline, "")), daemon=True).start()
    try:
        deadline = time.time() + 45
        while time.time() < deadline and not any("rebalanced" in l or "Inconsistent" in l for l in seen) and member.poll() is None:
            consumer.poll(0.2)  # keep the first member in the group through the rebalance
        assert any("rebalanced" in l for l in seen), seen
        assert not any("Inconsistent" in l for l in seen), seen
    finally:
        member.terminate()
        member.wait(10)
        consumer.close()
