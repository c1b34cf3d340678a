"""One consumer-group member in its own process, for the group tests.

Usage: python group_member.py LIB BOOTSTRAP TOPIC GROUP [STRATEGY [INSTANCE_ID]]
LIB is kafka-python, confluent-kafka, or confluent-kafka-848 (librdkafka
with group.protocol=consumer: KIP-848, the coordinator assigns). The member subscribes to TOPIC in
GROUP, consumes, commits after each poll, and prints one JSON line per event
on stdout: {"event": "assigned", "partitions": [...]} with its whole
assignment whenever that changes, and for librdkafka also {"event":
"revoked"|"added", "partitions": [...]} from the rebalance callbacks (with
cooperative-sticky these are incremental). SIGTERM closes the consumer
cleanly (it leaves the group) and prints {"event": "closed"}.
"""

from __future__ import annotations

import json
import signal
import sys
import time

SESSION_TIMEOUT_MS = 6000
RUN_LIMIT_S = 120.0

stop = False


def emit(event: str, partitions=None) -> None:
    line = {"event": event}
    if partitions is not None:
        line["partitions"] = sorted(partitions)
    print(json.dumps(line), flush=True)


def on_sigterm(_signum, _frame) -> None:
    global stop
    stop = True


def run_kafka_python(bootstrap: str, topic: str, group: str, strategy: str) -> None:
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    assignors = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=1000,
        partition_assignment_strategy=[assignors[strategy]],
    )
    last = None
    started = time.monotonic()
    while not stop and time.monotonic() - started < RUN_LIMIT_S:
        records = consumer.poll(timeout_ms=200)
        if records:
            consumer.commit()
        current = sorted(tp.partition for tp in consumer.assignment())
        if current != last:
            last = current
            emit("assigned", current)
    consumer.close()
    emit("closed")


def run_confluent(bootstrap: str, topic: str, group: str, strategy: str, kip848: bool = False, instance_id: str | None = None) -> None:
    from confluent_kafka import Consumer

    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if instance_id:
        config["group.instance.id"] = instance_id
    if kip848:
        # Session, heartbeat and assignor are the coordinator's to set.
        config["group.protocol"] = "consumer"
    else:
        config.update({"session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 1000, "partition.assignment.strategy": strategy})
    consumer = Consumer(config)

    def on_assign(c, partitions):
        emit("added", [p.partition for p in partitions])

    def on_revoke(c, partitions):
        emit("revoked", [p.partition for p in partitions])

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    last = None
    started = time.monotonic()
    while not stop and time.monotonic() - started < RUN_LIMIT_S:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            consumer.commit(asynchronous=False)
        current = sorted(p.partition for p in consumer.assignment())
        if current != last:
            last = current
            emit("assigned", current)
    consumer.close()
    emit("closed")


def main() -> None:
    lib, bootstrap, topic, group = sys.argv[1:5]
    strategy = sys.argv[5] if len(sys.argv) > 5 else "range"
    instance_id = sys.argv[6] if len(sys.argv) > 6 else None
    signal.signal(signal.SIGTERM, on_sigterm)
    if lib == "kafka-python":
        run_kafka_python(bootstrap, topic, group, strategy)
    elif lib == "confluent-kafka":
        run_confluent(bootstrap, topic, group, strategy)
    elif lib == "confluent-kafka-848":
        run_confluent(bootstrap, topic, group, strategy, kip848=True, instance_id=instance_id)
    else:
        sys.exit(f"unknown client library {lib!r}")


if __name__ == "__main__":
    main()
