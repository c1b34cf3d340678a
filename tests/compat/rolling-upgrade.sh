#!/usr/bin/env bash
# A rolling upgrade under load (issue 14): three nodes of an earlier commit
# (2a9fcc0 by default) take idempotent acks=all writes from confluent-kafka
# while each node in turn is stopped with SIGTERM and started again, on the
# same data directory, with today's binary. Checks that every acknowledged
# write is in the log once, at its offset, that clients saw only retriable
# errors, that `cluster upgrade` is refused while an old node remains, and
# that it finalizes the newest feature level once all run today's binary.
#
#   PYTHON=/tmp/runnel-ci-venv/bin/python bash tests/compat/rolling-upgrade.sh [commit]
#
# Builds the old commit in a git worktree (target dir target/old-<commit>)
# and today's binaries (target/debug) first. Nodes listen on 127.0.15.{1,2,3}.
set -euo pipefail
commit="${1:-2a9fcc0}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
cd "$root"
if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
  echo "FAILED: commit $commit is not in this clone's history (a shallow clone?); the upgrade test needs it" >&2
  exit 1
fi
old_src="$root/target/old-src-$commit"
if [ ! -d "$old_src" ]; then
  git worktree add --detach "$old_src" "$commit" >/dev/null
fi
(cd "$old_src" && cargo build -q -p runnel -p runnel-cli --target-dir "$root/target/old-$commit")
cargo build -q -p runnel -p runnel-cli
OLD="$root/target/old-$commit/debug"
NEW="$root/target/debug"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
Q="1@127.0.15.1:9093,2@127.0.15.2:9093,3@127.0.15.3:9093"
start() { # node binary-dir
  local n="$1" bin="$2"
  "$bin/runnel" serve --node-id "$n" --data-dir "$work/node-$n" --kafka-listener "127.0.15.$n:9092" \
    --rpc-listener "127.0.15.$n:9093" --http-listener "127.0.15.$n:9644" --controller-quorum "$Q" \
    >>"$work/node-$n.log" 2>&1 &
  pids[$n]=$!
}
ready() { # node
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.15.$1:9644/readyz" >/dev/null && return 0
    sleep 0.5
  done
  echo "FAILED: node $1 not ready; its log:" >&2; tail -30 "$work/node-$1.log" >&2; exit 1
}
full_isr() { # node: waits until every partition of topic `upgrade` has 3 ISR members, as node sees it
  for _ in $(seq 1 120); do
    if "$NEW/runnelctl" -b "127.0.15.$1:9093" -o json topic describe upgrade 2>/dev/null \
      | "$PYTHON" -c 'import json,sys; t=json.load(sys.stdin); sys.exit(0 if all(len(p["isr"])==3 and p["leader"] is not None for p in t["partitions"]) else 1)' 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  echo "FAILED: the ISR did not fill again" >&2; exit 1
}

for n in 1 2 3; do start "$n" "$OLD"; done
for n in 1 2 3; do ready "$n"; done
"$OLD/runnelctl" -b 127.0.15.1:9093 topic create upgrade -p 3 -r 3 --config min.insync.replicas=2 >/dev/null
echo "three nodes of $commit are up; producing"

"$PYTHON" - "$work" <<'PY' &
import json, sys, time, os
from confluent_kafka import Producer, KafkaError
work = sys.argv[1]
p = Producer({"bootstrap.servers": "127.0.15.1:9092,127.0.15.2:9092,127.0.15.3:9092", "acks": "all",
              "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 120000})
acked, errors = [], []
def done(err, msg):
    if err is None:
        acked.append([msg.partition(), msg.offset(), msg.value().decode()])
    else:
        errors.append([err.code(), err.str(), err.retriable()])
i = 0
stop = os.path.join(work, "stop")
deadline = time.time() + 300
while not os.path.exists(stop) and time.time() < deadline:
    p.produce("upgrade", key=str(i % 31), value=f"m-{i}", on_delivery=done)
    i += 1
    p.poll(0)
    time.sleep(0.005)
left = p.flush(120)
json.dump({"sent": i, "unflushed": left, "acked": acked, "errors": errors}, open(os.path.join(work, "produced.json"), "w"))
PY
producer=$!
sleep 3

for n in 1 2 3; do
  kill -TERM "${pids[$n]}"
  wait "${pids[$n]}" || true
  start "$n" "$NEW"
  ready "$n"
  full_isr "$n"
  echo "node $n runs today's binary"
  if [ "$n" -lt 3 ]; then
    if out="$("$NEW/runnelctl" -b "127.0.15.$n:9093" cluster upgrade --dry-run 2>&1)"; then
      echo "FAILED: an upgrade was allowed with $commit nodes left: $out" >&2; exit 1
    fi
    case "$out" in
      *"node 3 supports up to 1"*) ;;
      *) echo "FAILED: the refusal does not name the old nodes: $out" >&2; exit 1 ;;
    esac
    echo "  cluster upgrade refused while old nodes remain: $out"
  fi
  sleep 3
done

touch "$work/stop"
wait "$producer"
"$NEW/runnelctl" -b 127.0.15.1:9093 cluster upgrade
"$NEW/runnelctl" -b 127.0.15.2:9093 cluster features

"$PYTHON" - "$work" <<'PY'
import json, sys, os, time
from confluent_kafka import Consumer, TopicPartition
work = sys.argv[1]
d = json.load(open(os.path.join(work, "produced.json")))
assert d["unflushed"] == 0, f"{d['unflushed']} messages never acknowledged"
fatal = [e for e in d["errors"] if not e[2]]
assert not fatal, f"non-retriable errors: {fatal[:5]}"
c = Consumer({"bootstrap.servers": "127.0.15.1:9092", "group.id": "upgrade-check", "enable.auto.commit": False})
log = {}
for part in range(3):
    lo, hi = c.get_watermark_offsets(TopicPartition("upgrade", part), timeout=10)
    c.assign([TopicPartition("upgrade", part, lo)])
    # Read to the end, however slow the first fetch after the restarts is;
    # only the deadline ends a read short, and the check below then fails.
    top, deadline = lo - 1, time.monotonic() + 60
    while top < hi - 1 and time.monotonic() < deadline:
        for m in c.consume(1000, timeout=5):
            if not m.error():
                log[(part, m.offset())] = m.value().decode()
                top = max(top, m.offset())
values = list(log.values())
missing = [a for a in d["acked"] if log.get((a[0], a[1])) != a[2]]
dups = len(values) - len(set(values))
print(f"sent {d['sent']}, acknowledged {len(d['acked'])}, in the log {len(log)}, missing {len(missing)}, duplicated {dups}, "
      f"errors seen by the producer {len(d['errors'])} (all retriable)")
assert not missing, f"acknowledged but not in the log: {missing[:5]}"
assert dups == 0, "duplicates in the log"
assert len(d["acked"]) > 1000, "too few writes to mean anything"
PY
echo "rolling upgrade from $commit: passed"
