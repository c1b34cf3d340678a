"""Quix Streams, a Python stream-processing library, runs a stateful
read-process-write loop with processing_guarantee="exactly-once" against
Runnel: it creates its output topic and a compacted changelog topic for its
state, counts words per key in transactions, and, started again with its
local state deleted, restores the counts from the changelog and goes on.
Every count is emitted exactly once: a read_committed consumer of the
output sees 1, 2, ..., n for each key, nothing twice, nothing missing."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter

import pytest

quixstreams = pytest.importorskip("quixstreams")

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource  # noqa: E402
from quixstreams import Application  # noqa: E402

from expect import keyed_reader, values_by_key  # noqa: E402

KEYS = 7
ROUND = 300


def _produce(bootstrap, topic, start):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(start, start + ROUND):
        producer.produce(topic, key=f"w{i % KEYS}", value=json.dumps({"n": i}))
    assert producer.flush(20) == 0


def _run_until(bootstrap, input_topic, output_topic, group, state_dir, seen, expect, timeout=90):
    """Runs the counting application until `seen` holds `expect` outputs."""
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=str(state_dir),
        commit_interval=0.5,
    )
    sdf = app.dataframe(app.topic(input_topic, value_deserializer="json"))

    def count(value, state):
        n = state.get("count", 0) + 1
        state.set("count", n)
        return {"count": n}

    sdf.apply(count, stateful=True).to_topic(app.topic(output_topic, value_serializer="json"))
    deadline = time.monotonic() + timeout

    def watch():
        while len(seen) < expect and time.monotonic() < deadline:
            time.sleep(0.2)
        app.stop()

    threading.Thread(target=watch, daemon=True).start()
    app.run()


def test_an_exactly_once_counting_app_restores_its_state_from_a_compacted_changelog(bootstrap, topic_name, tmp_path):
    words, counts, group = f"{topic_name}-words", f"{topic_name}-counts", f"{topic_name}-app"
    seen, stop, reader = keyed_reader(bootstrap, counts, f"{topic_name}-check", lambda v: json.loads(v)["count"], **{"isolation.level": "read_committed"})
    try:
        _produce(bootstrap, words, 0)
        state_dir = tmp_path / "state"
        _run_until(bootstrap, words, counts, group, state_dir, seen, ROUND)
        assert len(seen) >= ROUND, f"{len(seen)} outputs of {ROUND}"

        # The changelog topic Quix Streams made for the state is compacted.
        admin = AdminClient({"bootstrap.servers": bootstrap})
        changelogs = [t for t in admin.list_topics(timeout=10).topics if t.startswith("changelog__") and group in t]
        assert changelogs, "no changelog topic"
        resource = ConfigResource(ConfigResource.Type.TOPIC, changelogs[0])
        described = admin.describe_configs([resource])[resource].result(timeout=20)
        assert "compact" in described["cleanup.policy"].value, described["cleanup.policy"]

        # A second run with its local state gone restores it from the changelog.
        _produce(bootstrap, words, ROUND)
        shutil.rmtree(state_dir)
        _run_until(bootstrap, words, counts, group, state_dir, seen, 2 * ROUND)
        time.sleep(1)  # anything duplicated would arrive by now
    finally:
        stop.set()
        reader.join(10)

    per_key = values_by_key(seen)
    expected = Counter(f"w{i % KEYS}" for i in range(2 * ROUND))
    for key, total in expected.items():
        assert per_key[key] == list(range(1, total + 1)), f"{key}: {per_key[key]}"
