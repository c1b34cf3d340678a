"""Consumer groups with real clients: kafka-python and confluent-kafka
members in their own processes share a topic's partitions, take over from a
member that leaves or is SIGKILLed, cooperative-sticky keeps unaffected
partitions, aiokafka consumes a topic as a group, and Kafka's admin API
shows the groups and their offsets.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

PARTITIONS = 6
ALL = set(range(PARTITIONS))
MEMBER_SCRIPT = Path(__file__).with_name("group_member.py")
# Joining (with the 3 s first-join delay), a session timeout of 6 s and a
# rebalance fit well inside this.
SETTLE_TIMEOUT_S = 45.0


def runnel_extra_args(_work_dir):
    """KIP-848 members heartbeat every second and are removed after 8 s of
    silence (Kafka's defaults are 5 s and 45 s), so the kill test ends soon."""
    return ["--group-consumer-session-timeout-ms", "8000", "--group-consumer-heartbeat-interval-ms", "1000"]


class Member:
    """A group member process (group_member.py) and what it reported."""

    def __init__(self, lib: str, bootstrap: str, topic: str, group: str, strategy: str = "range", instance_id: str | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, str(MEMBER_SCRIPT), lib, bootstrap, topic, group, strategy, *([instance_id] if instance_id else [])],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.assignment: set[int] = set()
        self.events: list[tuple[str, set[int]]] = []
        self.closed = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            parts = set(e.get("partitions", []))
            with self.lock:
                self.events.append((e["event"], parts))
                if e["event"] == "assigned":
                    self.assignment = parts
            if e["event"] == "closed":
                self.closed.set()

    def current(self) -> set[int]:
        with self.lock:
            return set(self.assignment)

    def events_since(self, n: int) -> list[tuple[str, set[int]]]:
        with self.lock:
            return list(self.events[n:])

    def event_count(self) -> int:
        with self.lock:
            return len(self.events)

    def leave(self) -> None:
        self.proc.terminate()
        assert self.closed.wait(30), "the member did not close after SIGTERM"
        self.proc.wait(10)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def wait_until(what: str, predicate, timeout: float = SETTLE_TIMEOUT_S) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def shares_all(members: list[Member]) -> bool:
    """Every member has partitions, no two share one, and together they cover the topic."""
    sets = [m.current() for m in members]
    union = set().union(*sets)
    return all(sets) and sum(len(s) for s in sets) == len(union) and union == ALL


def shares_evenly(members: list[Member]) -> bool:
    """As shares_all, and no member holds more than one partition over another.

    KIP-848 members reconcile one step at a time: a member given a revoked
    partition can hold it while another has not yet given up its own, so
    the topic is covered before the assignment is even. Waiting on
    coverage alone reads that passing state."""
    sizes = [len(m.current()) for m in members]
    return shares_all(members) and max(sizes) - min(sizes) <= 1


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(count):
        producer.send(topic, value=f"v{i}".encode(), partition=i % PARTITIONS)
    producer.flush(20)
    producer.close()


def committed_total(admin: KafkaAdminClient, group: str) -> int:
    """The sum of a group's committed offsets, through kafka-python's admin
    client (whose call kafka-python 3 renamed, and whose answer may be keyed
    by group)."""
    offsets_of = getattr(admin, "list_consumer_group_offsets", None) or admin.list_group_offsets
    o = offsets_of(group)
    o = o.get(group, o) if isinstance(o, dict) and group in o else o
    return sum(v.offset for v in o.values() if v.offset > 0)


def new_group() -> str:
    return f"group-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("lib", ["kafka-python", "confluent-kafka"])
def test_members_share_partitions_and_take_over_on_leave_and_on_kill(bootstrap, topic_name, lib):
    create_topic(bootstrap, topic_name)
    produce(bootstrap, topic_name, 120)
    group = new_group()
    members = [Member(lib, bootstrap, topic_name, group) for _ in range(3)]
    try:
        wait_until("three members sharing all six partitions", lambda: shares_all(members))

        members[0].leave()
        wait_until("the two remaining members taking the leaver's partitions", lambda: shares_evenly(members[1:]))

        killed_at = time.monotonic()
        members[1].kill()
        wait_until("the last member taking over after the session timeout", lambda: members[2].current() == ALL)
        # The broker waited for the session timeout; nothing told it sooner.
        assert time.monotonic() - killed_at >= 3.0
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.kill()


@pytest.mark.parametrize("lib,strategy", [("kafka-python", "roundrobin"), ("confluent-kafka", "roundrobin"), ("confluent-kafka", "range")])
def test_each_assignor_shares_the_topic(bootstrap, topic_name, lib, strategy):
    create_topic(bootstrap, topic_name)
    group = new_group()
    members = [Member(lib, bootstrap, topic_name, group, strategy) for _ in range(2)]
    try:
        wait_until(f"two {lib} members sharing the topic with {strategy}", lambda: shares_all(members))
        assert sorted(len(m.current()) for m in members) == [3, 3]
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.kill()


def test_cooperative_sticky_rebalance_keeps_unaffected_partitions(bootstrap, topic_name):
    create_topic(bootstrap, topic_name)
    group = new_group()
    a = Member("confluent-kafka", bootstrap, topic_name, group, "cooperative-sticky")
    b = Member("confluent-kafka", bootstrap, topic_name, group, "cooperative-sticky")
    c = None
    try:
        wait_until("two members sharing the topic", lambda: shares_all([a, b]))
        before = {"a": a.current(), "b": b.current()}
        marks = {"a": a.event_count(), "b": b.event_count()}
        c = Member("confluent-kafka", bootstrap, topic_name, group, "cooperative-sticky")
        wait_until("three members sharing the topic", lambda: shares_all([a, b, c]))
        for name, member in (("a", a), ("b", b)):
            after = member.current()
            revoked = set().union(*[p for e, p in member.events_since(marks[name]) if e == "revoked"] or [set()])
            assert after <= before[name], f"{name} kept only partitions it had: {before[name]} -> {after}"
            assert revoked == before[name] - after, f"{name} had exactly the moved partitions revoked, got {revoked}"
            assert not (revoked & after), f"{name} never gave up a partition it keeps"
    finally:
        for m in (a, b, c):
            if m is not None and m.proc.poll() is None:
                m.kill()


def test_kip848_members_share_partitions_commit_and_take_over_on_leave_and_on_kill(bootstrap, topic_name, runnel_node):
    """librdkafka with group.protocol=consumer (KIP-848): the coordinator
    computes the assignment and each member reconciles to it through
    ConsumerGroupHeartbeat; offsets commit with the member epoch; a member
    that leaves, or is SIGKILLed and misses its heartbeats, has its
    partitions taken over; ListGroups calls the group a consumer group."""
    from confluent_kafka.admin import AdminClient

    create_topic(bootstrap, topic_name)
    produce(bootstrap, topic_name, 120)
    group = new_group()
    members = [Member("confluent-kafka-848", bootstrap, topic_name, group) for _ in range(3)]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        wait_until("three KIP-848 members sharing all six partitions evenly", lambda: shares_evenly(members))
        assert sorted(len(m.current()) for m in members) == [2, 2, 2]
        wait_until("every record's offset committed with the member epoch", lambda: committed_total(admin, group) == 120)

        confluent_admin = AdminClient({"bootstrap.servers": bootstrap})
        listed = confluent_admin.list_consumer_groups().result(20)
        ours = [g for g in listed.valid if g.group_id == group]
        assert len(ours) == 1, (listed.valid, listed.errors)
        assert ours[0].type.name == "CONSUMER", ours[0].type
        described = confluent_admin.describe_consumer_groups([group])[group].result(20)
        assert len(described.members) == 3
        held = [tp.partition for m in described.members for tp in m.assignment.topic_partitions]
        assert sorted(held) == sorted(ALL), described

        members[0].leave()
        wait_until("the two remaining members taking the leaver's partitions", lambda: shares_evenly(members[1:]))
        assert sorted(len(m.current()) for m in members[1:]) == [3, 3]

        killed_at = time.monotonic()
        members[1].kill()
        wait_until("the last member taking over after the session timeout", lambda: members[2].current() == ALL)
        # Nothing but the missed heartbeats told the coordinator: it expired
        # the member, 8 s after its last heartbeat, which can have come up to
        # a heartbeat interval (1 s here) or a late one before the kill.
        assert time.monotonic() - killed_at >= 6.0
        assert f"consumer group member expired group={group}" in runnel_node.log()
    finally:
        admin.close()
        for m in members:
            if m.proc.poll() is None:
                m.kill()


def test_kip848_static_member_restarts_into_its_own_partitions(bootstrap, topic_name):
    """A KIP-848 static member (group.instance.id) that closes leaves with
    epoch -2: nothing moves, and its next instance, under a new member id,
    is given the same partitions at once while the other member keeps its
    own and is never asked to revoke."""
    create_topic(bootstrap, topic_name)
    group = new_group()
    a = Member("confluent-kafka-848", bootstrap, topic_name, group, "range", "instance-a")
    b = Member("confluent-kafka-848", bootstrap, topic_name, group, "range", "instance-b")
    a2 = None
    try:
        wait_until("two static members sharing the topic", lambda: shares_all([a, b]))
        held_a, held_b, mark_b = a.current(), b.current(), b.event_count()
        a.leave()
        # For three heartbeat intervals (1 s here) the departed instance's
        # partitions wait for it: the other member is not given them.
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            assert b.current() == held_b, f"b took partitions of the departed static member: {b.current()}"
            time.sleep(0.1)
        a2 = Member("confluent-kafka-848", bootstrap, topic_name, group, "range", "instance-a")
        wait_until("the next instance holding the same partitions", lambda: a2.current() == held_a)
        assert b.current() == held_b
        assert [e for e, _ in b.events_since(mark_b) if e == "revoked"] == [], "the other member gave nothing up"
    finally:
        for m in (a, b, a2):
            if m is not None and m.proc.poll() is None:
                m.kill()


def test_kip848_regex_subscription_follows_new_topics(bootstrap, topic_name):
    """A KIP-848 member subscribed by regular expression is assigned every
    partition of the topics it matches, by the coordinator, which resolves
    the expression, and of a matching topic created later."""
    from confluent_kafka.admin import AdminClient

    for suffix in ("a", "b"):
        create_topic(bootstrap, f"{topic_name}-{suffix}")
    create_topic(bootstrap, f"{topic_name}x")  # does not match
    group = new_group()
    member = Member("confluent-kafka-848", bootstrap, f"^{topic_name}-.*", group)
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def held() -> set[tuple[str, int]]:
        described = admin.describe_consumer_groups([group])[group].result(20)
        return {(tp.topic, tp.partition) for m in described.members for tp in m.assignment.topic_partitions}

    try:
        wanted = {(f"{topic_name}-{s}", p) for s in ("a", "b") for p in ALL}
        wait_until("the member holding both matching topics", lambda: member.current() == ALL and held() == wanted)
        create_topic(bootstrap, f"{topic_name}-c")
        wanted |= {(f"{topic_name}-c", p) for p in ALL}
        wait_until("the member holding the new matching topic too", lambda: held() == wanted)
    finally:
        if member.proc.poll() is None:
            member.kill()


def test_kafka_admin_apis_show_groups_members_and_offsets(bootstrap, topic_name):
    create_topic(bootstrap, topic_name)
    produce(bootstrap, topic_name, 60)
    group = new_group()
    members = [Member("kafka-python", bootstrap, topic_name, group) for _ in range(2)]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        wait_until("two members sharing the topic", lambda: shares_all(members))
        # kafka-python 3 renamed the *_consumer_group* calls; accept either.
        list_groups = getattr(admin, "list_consumer_groups", None) or admin.list_groups
        describe = getattr(admin, "describe_consumer_groups", None) or admin.describe_groups

        listed = list_groups()
        ids = [g[0] if isinstance(g, tuple) else g["group_id"] for g in listed]
        assert group in ids

        described = describe([group])
        d = described[0] if isinstance(described, list) else described[group]
        d = d._asdict() if hasattr(d, "_asdict") else d
        assert d.get("group_state", d.get("state")) == "Stable"
        assert len(d["members"]) == 2
        for m in d["members"]:
            m = m._asdict() if hasattr(m, "_asdict") else m
            assert m["client_host"] == "/127.0.0.1"

        # librdkafka asks ConsumerGroupDescribe first; a classic group is
        # GROUP_ID_NOT_FOUND there, and it asks DescribeGroups instead.
        from confluent_kafka.admin import AdminClient

        confluent_admin = AdminClient({"bootstrap.servers": bootstrap})
        classic = confluent_admin.describe_consumer_groups([group])[group].result(20)
        assert classic.state.name == "STABLE" and len(classic.members) == 2, classic

        wait_until("the members' commits of all 60 messages", lambda: committed_total(admin, group) == 60, 30)
    finally:
        admin.close()
        for m in members:
            if m.proc.poll() is None:
                m.kill()


def test_aiokafka_consumers_share_a_topic_and_commit(bootstrap, topic_name):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    create_topic(bootstrap, topic_name, 3)
    produce_count = 300
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(produce_count):
        producer.send(topic_name, value=f"a{i}".encode(), partition=i % 3)
    producer.flush(20)
    producer.close()
    group = new_group()

    async def run() -> tuple[set[str], dict[int, int]]:
        consumers = [
            AIOKafkaConsumer(
                topic_name,
                bootstrap_servers=bootstrap,
                group_id=group,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                session_timeout_ms=6000,
                heartbeat_interval_ms=1000,
            )
            for _ in range(2)
        ]
        seen: set[str] = set()
        for c in consumers:
            await c.start()
        try:
            end = time.monotonic() + SETTLE_TIMEOUT_S
            while len(seen) < produce_count and time.monotonic() < end:
                for c in consumers:
                    batches = await c.getmany(timeout_ms=200)
                    for records in batches.values():
                        seen.update(r.value.decode() for r in records)
                    if batches:
                        await c.commit()
            committed = {p: await consumers[0].committed(TopicPartition(topic_name, p)) for p in range(3)}
            return seen, committed
        finally:
            for c in consumers:
                await c.stop()

    seen, committed = asyncio.run(asyncio.wait_for(run(), SETTLE_TIMEOUT_S + 15))
    assert seen == {f"a{i}" for i in range(produce_count)}
    assert committed == {0: 100, 1: 100, 2: 100}


def test_a_group_is_empty_and_deletable_right_after_its_last_member_leaves(bootstrap, topic_name):
    """Issue 13: the group stayed PreparingRebalance until the coordinator's
    next tick, so tools that delete a group right after stopping its
    consumers got NON_EMPTY_GROUP."""
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient

    create_topic(bootstrap, topic_name)
    produce(bootstrap, topic_name, 6)
    group = new_group()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic_name])
    deadline = time.time() + SETTLE_TIMEOUT_S
    while not consumer.assignment() and time.time() < deadline:
        consumer.poll(0.2)
    assert consumer.assignment(), "the consumer never got an assignment"
    consumer.close()  # LeaveGroup

    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_consumer_groups().result(timeout=10)
    states = {g.group_id: str(g.state) for g in listed.valid}
    assert "EMPTY" in states.get(group, "").upper(), states
    admin.delete_consumer_groups([group])[group].result(timeout=10)
    listed = admin.list_consumer_groups().result(timeout=10)
    assert group not in {g.group_id for g in listed.valid}
