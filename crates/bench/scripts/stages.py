"""Per-stage replication timings between two scrapes of the three nodes'
/metrics: for each runnel_replication_*_seconds histogram, and for the
Produce requests' time on the broker (arrival to response ready), the number
of observations in between and their p50, p99 and max (the upper bound of
the bucket that holds them), summed over the nodes.

    python3 stages.py snapshot PORT... > before.json
    python3 stages.py diff before.json PORT...
"""

import json
import re
import sys
import urllib.request

LINE = re.compile(r'^runnel_replication_(\w+)_seconds_bucket\{le="([^"]+)"\} (\S+)$')
# The produce requests' whole time on the broker, arrival to response ready.
PRODUCE = re.compile(r'^runnel_request_duration_seconds_bucket\{le="([^"]+)",api="Produce"\} (\S+)$')


def scrape(ports):
    buckets = {}
    for port in ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            m = LINE.match(line)
            if m:
                key = f"{m.group(1)} {m.group(2)}"
                buckets[key] = buckets.get(key, 0.0) + float(m.group(3))
            m = PRODUCE.match(line)
            if m:
                key = f"produce_request {m.group(1)}"
                buckets[key] = buckets.get(key, 0.0) + float(m.group(2))
    return buckets


def quantile(cumulative, q):
    total = cumulative[-1][1]
    for le, count in cumulative:
        if count >= q * total:
            return le
    return float("inf")


def main():
    if sys.argv[1] == "snapshot":
        json.dump(scrape(sys.argv[2:]), sys.stdout)
        return
    before = json.load(open(sys.argv[2]))
    after = scrape(sys.argv[3:])
    stages = {}
    for key, count in after.items():
        stage, le = key.split(" ")
        stages.setdefault(stage, []).append((float(le), count - before.get(key, 0.0)))
    parts = []
    for stage in ["produce_request", "leader_flush", "isr_wait", "follower_round", "follower_flush"]:
        cumulative = sorted(stages.get(stage, []))
        if not cumulative or cumulative[-1][1] == 0:
            continue
        p50, p99, top = (quantile(cumulative, q) * 1000 for q in (0.5, 0.99, 1.0))
        parts.append(f"{stage} n={int(cumulative[-1][1])} p50<={p50:g}ms p99<={p99:g}ms max<={top:g}ms")
    print("  stages: " + "; ".join(parts))


main()
