#!/usr/bin/env bash
# Makes tests/compat/<commit>-three-nodes.tar.gz: the data directories of a
# three-node cluster run by the binaries of an earlier commit, with topics,
# acknowledged messages, committed group offsets and configs, stopped with
# SIGTERM. tests/tests/compat.rs starts today's binaries on a copy and checks
# that everything is there (expected.json, written here, says what).
#
#   git worktree add /tmp/old-runnel 2a9fcc0 && (cd /tmp/old-runnel && cargo build -p runnel -p runnel-cli)
#   RUNNEL_BIN=/tmp/old-runnel/target/debug/runnel RUNNELCTL_BIN=/tmp/old-runnel/target/debug/runnelctl \
#     PYTHON=/tmp/runnel-ci-venv/bin/python bash tests/compat/make-cluster-fixture.sh 2a9fcc0
#
# The nodes listen on 127.0.14.{1,2,3} (the Raft membership records those
# addresses), which the test uses again.
set -euo pipefail
commit="${1:?usage: make-cluster-fixture.sh <commit>}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
Q="1@127.0.14.1:9093,2@127.0.14.2:9093,3@127.0.14.3:9093"
for n in 1 2 3; do
  "$RUNNEL_BIN" serve --node-id "$n" --data-dir "$work/node-$n" --kafka-listener "127.0.14.$n:9092" \
    --rpc-listener "127.0.14.$n:9093" --http-listener "127.0.14.$n:9644" --controller-quorum "$Q" \
    --group-initial-rebalance-delay-ms 0 >"$work/node-$n.log" 2>&1 &
done
for n in 1 2 3; do
  for _ in $(seq 1 60); do
    curl -sf "http://127.0.14.$n:9644/readyz" >/dev/null && break
    sleep 0.5
  done
done
ctl() { "$RUNNELCTL_BIN" -b 127.0.14.1:9093 "$@"; }
ctl topic create orders -p 3 -r 3 >/dev/null
ctl topic create audit -p 1 -r 2 --config retention.ms=604800000 --config min.insync.replicas=2 >/dev/null
"$PYTHON" - "$here/expected.json.tmp" <<'PY'
import json, sys, time
from confluent_kafka import Producer, Consumer, TopicPartition
boot = "127.0.14.1:9092,127.0.14.2:9092,127.0.14.3:9092"
p = Producer({"bootstrap.servers": boot, "acks": "all", "enable.idempotence": True})
acked = []
def done(err, msg):
    if err is None:
        acked.append((msg.topic(), msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode()))
for i in range(300):
    p.produce("orders", key=f"k{i % 17}", value=f"order-{i}", on_delivery=done)
for i in range(50):
    p.produce("audit", key=f"a{i}", value=f"audit-{i}", on_delivery=done)
assert p.flush(60) == 0
assert len(acked) == 350, len(acked)
# A group that read and committed part of orders.
c = Consumer({"bootstrap.servers": boot, "group.id": "billing", "enable.auto.commit": False, "auto.offset.reset": "earliest"})
c.subscribe(["orders"])
seen = 0
deadline = time.time() + 60
while seen < 120 and time.time() < deadline:
    m = c.poll(1.0)
    if m is None or m.error():
        continue
    seen += 1
# Commit a position in every partition (the group read them up to there).
c.commit(offsets=[TopicPartition("orders", 0, 40), TopicPartition("orders", 1, 14), TopicPartition("orders", 2, 100)], asynchronous=False)
committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition("orders", i) for i in range(3)], timeout=10)}
assert committed == {0: 40, 1: 14, 2: 100}, committed
c.close()
counts = {}
for t, part, off, k, v in acked:
    counts.setdefault(f"{t}-{part}", 0)
    counts[f"{t}-{part}"] += 1
json.dump({"messages": sorted(acked), "group": "billing", "committed": committed, "counts": counts}, open(sys.argv[1], "w"), indent=1)
PY
cluster_id="$(ctl -o json cluster status | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["cluster_id"])')"
"$PYTHON" - "$here/expected.json.tmp" "$here/$commit-expected.json" "$cluster_id" "$commit" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["cluster_id"] = sys.argv[3]
d["commit"] = sys.argv[4]
messages = d.pop("messages")
with open(sys.argv[2], "w") as f:
    body = json.dumps(d, indent=1)[:-2]
    f.write(body + ',\n "messages": [\n' + ",\n".join("  " + json.dumps(m) for m in messages) + "\n ]\n}\n")
json.load(open(sys.argv[2]))
PY
rm "$here/expected.json.tmp"
for n in 1 2 3; do
  kill -TERM %$n
done
wait || true
tar -C "$work" -czf "$here/$commit-three-nodes.tar.gz" node-1 node-2 node-3
ls -la "$here/$commit-three-nodes.tar.gz"
