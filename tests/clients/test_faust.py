"""Faust (faust-streaming), a Python stream-processing library built on
aiokafka, runs a stateful counting worker against Runnel: it creates its
internal topics (the table's compacted changelog and its assignor's leader
topic) itself, joins a group with its own partition assignor, counts words
per key in a table and sends each new count to an output topic. Stopped and
started again, a worker with an in-memory table rebuilds the table from the
changelog and goes on counting from where it was: every key's counts run
1, 2, ..., n with none missing and the last one equal to the number of words
of that key. At least once (Faust's default) a count may arrive twice;
exactly once (Faust's transactional producers, one per input partition,
reading with read_committed) each arrives once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("faust")

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource  # noqa: E402

from expect import keyed_reader, values_by_key  # noqa: E402

APP = Path(__file__).with_name("faust_app.py")
KEYS = 5
ROUND = 200


def _produce(bootstrap, topic, start):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(start, start + ROUND):
        producer.produce(topic, key=f"w{i % KEYS}", value=f"{i}")
    assert producer.flush(20) == 0


def _run_worker(bootstrap, env, workdir, seen, words, start, log, timeout=90):
    """Starts the worker; once it is ready (its table restored), produces
    the next ROUND words from `start`; runs until their counts have arrived,
    then stops it as a user would (SIGTERM) and waits for it to exit.

    The words go out only after the worker is ready: a worker that fetches
    new input while it is still restoring can drop what it had buffered when
    it seeks back to its committed offsets (a Faust race, faust-streaming
    issue 216, that a fast broker makes likely)."""
    offset = Path(log).stat().st_size if Path(log).exists() else 0
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, str(APP), "worker", "-l", os.environ.get("FAUST_LOG_LEVEL", "info")], cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            while b"[^Worker]: Ready" not in Path(log).read_bytes()[offset:]:
                assert worker.poll() is None, f"the Faust worker exited early ({worker.returncode}): {_tail(log)}"
                assert time.monotonic() < deadline, f"the Faust worker was not ready in {timeout} s: {_tail(log)}"
                time.sleep(0.2)
            _produce(bootstrap, words, start)
            while len(set(seen)) < start + ROUND and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.2)
            assert worker.poll() is None, f"the Faust worker exited early ({worker.returncode}): {_tail(log)}"
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
                pytest.fail(f"the Faust worker did not stop on SIGTERM: {_tail(log)}")


def _tail(log):
    return Path(log).read_text(errors="replace")[-4000:]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_faust_table_counts_and_is_restored_from_its_changelog(bootstrap, topic_name, tmp_path, guarantee):
    words, counts, app_id = f"{topic_name}-words", f"{topic_name}-counts", f"{topic_name}-faust"
    env = dict(os.environ, RUNNEL_BOOTSTRAP=bootstrap, FAUST_APP_ID=app_id, FAUST_WORDS=words, FAUST_COUNTS=counts, FAUST_GUARANTEE=guarantee)
    log = tmp_path / "worker.log"
    exactly_once = guarantee == "exactly_once"
    # Exactly-once: Faust sends, changelog writes and offsets go in one
    # transaction per input partition; a read_committed reader sees each count once.
    isolation = {"isolation.level": "read_committed"} if exactly_once else {}
    seen, stop, reader = keyed_reader(bootstrap, counts, f"{topic_name}-check", int, **isolation)
    try:
        _run_worker(bootstrap, env, tmp_path, seen, words, 0, log)

        # Faust made the table's changelog as a compacted topic.
        admin = AdminClient({"bootstrap.servers": bootstrap})
        changelog = f"{app_id}-counts-changelog"
        assert changelog in admin.list_topics(timeout=10).topics, f"no changelog topic: {_tail(log)}"
        resource = ConfigResource(ConfigResource.Type.TOPIC, changelog)
        described = admin.describe_configs([resource])[resource].result(timeout=20)
        assert "compact" in described["cleanup.policy"].value, described["cleanup.policy"]

        # A second worker's table starts empty in memory and is rebuilt from
        # the changelog before it counts the next words.
        _run_worker(bootstrap, env, tmp_path, seen, words, ROUND, log)
        time.sleep(1)
    finally:
        stop.set()
        reader.join(10)

    per_key = values_by_key(seen)
    expected = Counter(f"w{i % KEYS}" for i in range(2 * ROUND))
    for key, total in expected.items():
        got = per_key[key] if exactly_once else sorted(set(per_key[key]))
        assert got == list(range(1, total + 1)), f"{key}: {per_key[key]}\n{_tail(log)}"
