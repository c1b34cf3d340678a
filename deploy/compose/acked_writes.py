"""Produce with acks=all to the compose cluster from the host and record what
was acknowledged; or read a topic back and check every acknowledged value.

  python acked_writes.py produce BOOTSTRAP TOPIC COUNT PREFIX OUT_FILE
  python acked_writes.py verify BOOTSTRAP TOPIC ACKED_FILE...

`produce` sends COUNT values PREFIX-0.. with an idempotent producer, waits
for every delivery report and writes the acknowledged values, one per line.
Timeouts count as not acknowledged (the value may or may not be there).
`verify` reads every partition from the start to its high watermark and
fails if an acknowledged value is missing or appears twice.
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition


def produce(bootstrap: str, topic: str, count: int, prefix: str, out: str) -> None:
    acked: list[str] = []
    failed = 0

    def report(err, msg):
        nonlocal failed
        if err is None:
            acked.append(msg.value().decode())
        else:
            failed += 1

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "message.timeout.ms": 30000, "linger.ms": 5})
    for i in range(count):
        while True:
            try:
                p.produce(topic, value=f"{prefix}-{i}".encode(), on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        time.sleep(0.002)
    remaining = p.flush(60)
    with open(out, "w") as f:
        f.write("".join(v + "\n" for v in acked))
    print(f"{prefix}: {len(acked)} acknowledged, {failed} failed, {remaining} unresolved")


def verify(bootstrap: str, topic: str, files: list[str]) -> None:
    acked = set()
    for name in files:
        with open(name) as f:
            acked.update(line.strip() for line in f if line.strip())
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compose-verify", "enable.auto.commit": False})
    meta = c.list_topics(topic, timeout=10).topics[topic]
    ends = {}
    for p in meta.partitions:
        _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        ends[p] = high
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    seen: dict[str, int] = {}
    got = {p: 0 for p in ends}
    deadline = time.monotonic() + 60
    while any(got[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got[m.partition()] = m.offset() + 1
        v = m.value().decode()
        seen[v] = seen.get(v, 0) + 1
    c.close()
    missing = sorted(acked - set(seen))
    duplicated = sorted(v for v in acked if seen.get(v, 0) > 1)
    print(f"verify: {len(acked)} acknowledged, {len(seen)} distinct read, {len(missing)} missing, {len(duplicated)} duplicated")
    if missing or duplicated:
        print(f"missing: {missing[:10]} duplicated: {duplicated[:10]}")
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif sys.argv[1] == "verify":
        verify(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")
