"""One run of fetch-sessions.sh: a kafka-python consumer assigned every
partition of a new topic, fed by a producer process at a fixed rate spread
over all partitions, with incremental fetch sessions on or off. Prints one
JSON line: messages, end-to-end latency p50/p99 (ms), the consumer's CPU
seconds, and from the broker's /metrics the Fetch requests answered, their
mean time on the broker and the broker's CPU seconds during the run."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
import urllib.request
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def scrape(url: str) -> dict[str, float]:
    wanted = {
        'runnel_requests_total{api="Fetch"}': "fetches",
        'runnel_request_duration_seconds_sum{api="Fetch"}': "fetch_seconds",
        "runnel_process_cpu_seconds": "broker_cpu",
    }
    out = {}
    for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            out[wanted[name]] = float(value)
    return out


def produce(bootstrap: str, topic: str, partitions: int, rate: int, seconds: float) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        time.sleep(max(0.0, due - time.monotonic()))
        producer.send(topic, partition=i % partitions, value=str(time.time_ns()).encode())
    producer.flush()
    producer.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--sessions", choices=["true", "false"], required=True)
    args = ap.parse_args()
    topic = f"fetch-sessions-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=args.partitions, replication_factor=1)], timeout_ms=60_000)
    admin.close()
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        enable_incremental_fetch_sessions=args.sessions == "true",
    )
    tps = [TopicPartition(topic, p) for p in range(args.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    consumer.poll(timeout_ms=2000)  # settle: positions known, first fetches done
    before, cpu_before = scrape(args.metrics), resource.getrusage(resource.RUSAGE_SELF)
    producer = multiprocessing.Process(target=produce, args=(args.bootstrap, topic, args.partitions, args.rate, args.seconds))
    producer.start()
    latencies = []
    end = time.monotonic() + args.seconds + 2
    while time.monotonic() < end:
        for records in consumer.poll(timeout_ms=200).values():
            now = time.time_ns()
            latencies.extend((now - int(r.value)) / 1e6 for r in records)
    producer.join()
    after, cpu_after = scrape(args.metrics), resource.getrusage(resource.RUSAGE_SELF)
    consumer.close()
    latencies.sort()
    fetches = after["fetches"] - before["fetches"]
    print(json.dumps({
        "sessions": args.sessions,
        "partitions": args.partitions,
        "messages": len(latencies),
        "e2e_p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
        "e2e_p99_ms": round(latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
        "consumer_cpu_s": round(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 2),
        "fetches": int(fetches),
        "broker_ms_per_fetch": round((after["fetch_seconds"] - before["fetch_seconds"]) * 1000 / max(fetches, 1), 2),
        "broker_cpu_s": round(after["broker_cpu"] - before["broker_cpu"], 2),
    }))


if __name__ == "__main__":
    main()
