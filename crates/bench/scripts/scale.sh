#!/usr/bin/env bash
# 10,000 partitions on three nodes (issue 19, goal 6). Three `runnel serve`
# nodes; measures, in this order:
#   - metadata change latency on the empty cluster: CHANGES creations of a
#     1-partition RF 3 topic with runnelctl (wall time of the command, which
#     returns once the controller quorum committed it), then their deletion;
#   - creating topic `wide` of PARTITIONS partitions, RF 3: the command's time
#     and the time until every partition has a serving leader and a full ISR;
#   - the same metadata changes again, with `wide` in the cluster;
#   - offset commits (every one a Raft entry that reaches every node's
#     metadata) from 8 clients, on the empty cluster and beside `wide`: the
#     rate, and the CPU seconds each node spent meanwhile;
#   - RSS and open files of each node: before `wide`, with `wide` empty, and
#     after MESSAGES 1 KiB messages (acks=1, keyed, so spread over every
#     partition) were written and 15 s passed;
#   - startup: node 3 stopped and started again, time to ready and time until
#     every partition of `wide` is fully in sync again.
#
#   cargo build --release -p runnel -p runnel-cli -p runnel-bench
#   bash crates/bench/scripts/scale.sh      # PARTITIONS=10000 CHANGES=20 MESSAGES=100000
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=${RUNNEL:-target/release/runnel}
CTL=target/release/runnelctl
BENCH=target/release/runnel-bench
PARENT=${PARENT:-/tmp}
PARTITIONS=${PARTITIONS:-10000}
CHANGES=${CHANGES:-20}
MESSAGES=${MESSAGES:-100000}
BASE=${BASE:-20100}
NAME=runnel-scale
# shellcheck source=cluster.sh
source crates/bench/scripts/cluster.sh
RPC="127.0.0.1:$((BASE + 1))"
trap 'stop_cluster; rm -rf "${PARENT:?}/$NAME"' EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
nodes() { # RSS in MB and open files of each node
  local out="" p
  for p in "${PIDS[@]}"; do
    out+="$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$p/status") MB/$(find "/proc/$p/fd" -mindepth 1 2>/dev/null | wc -l) fds  "
  done
  echo "$out"
}
changes() { # label: CHANGES topic creations and deletions, p50 and max in ms
  local created=() deleted=() t i
  for i in $(seq "$CHANGES"); do
    t=$(now_ms); "$CTL" -b "$RPC" topic create "probe-$1-$i" --partitions 1 --replication-factor 3 >/dev/null; created+=($(( $(now_ms) - t )))
  done
  for i in $(seq "$CHANGES"); do
    t=$(now_ms); "$CTL" -b "$RPC" topic delete "probe-$1-$i" >/dev/null; deleted+=($(( $(now_ms) - t )))
  done
  python3 - "$1" "${created[*]}" "${deleted[*]}" <<'EOF'
import statistics, sys
for what, xs in (("create", sys.argv[2]), ("delete", sys.argv[3])):
    xs = sorted(int(x) for x in xs.split())
    print(f"{sys.argv[1]}: topic {what} p50 {statistics.median(xs):.0f} ms, max {xs[-1]} ms ({len(xs)} changes)")
EOF
}
cpu() { # CPU seconds (user + system) each node has used
  local out="" p
  for p in "${PIDS[@]}"; do
    out+="$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$p/stat") "
  done
  echo "$out"
}
commits() { # label: COMMITS offset commits from 8 clients; the rate and each node's CPU seconds
  local before after
  before=$(cpu)
  "$BENCH" commits -b "$B" -t "commits-$1" -n "${COMMITS:-5000}" --concurrency 8 --json 2>/dev/null | sed "s/^/$1: commits: /"
  after=$(cpu)
  python3 - "$1" "$before" "$after" <<'EOF'
import sys
b, a = [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
print(f"{sys.argv[1]}: CPU seconds per node during the commits: " + ", ".join(f"{y - x:.2f}" for x, y in zip(b, a)))
EOF
}
in_sync() { # prints the number of partitions of `wide` without a serving leader or a full ISR
  "$CTL" -b "$1" -o json topic describe wide 2>/dev/null | python3 -c '
import json, sys
t = json.load(sys.stdin)
print(sum(1 for p in t["partitions"] if not p["leader_serving"] or len(p["isr"]) < len(p["replicas"])))' 2>/dev/null || echo unknown
}
wait_in_sync() { # rpc address; waits (at most 10 minutes) until in_sync says 0
  local _
  for _ in $(seq 3000); do [ "$(in_sync "$1")" = 0 ] && return 0; sleep 0.2; done
  echo "wide never got in sync: $(in_sync "$1") partitions behind" >&2
  return 1
}

start_cluster
sleep 2
echo "nodes, empty cluster: $(nodes)"
changes empty
commits empty

t=$(now_ms)
"$CTL" -b "$RPC" topic create wide --partitions "$PARTITIONS" --replication-factor 3 >/dev/null
created=$(( $(now_ms) - t ))
wait_in_sync "$RPC"
echo "wide ($PARTITIONS partitions, RF 3): created in $created ms, every partition led and in sync after $(( $(now_ms) - t )) ms"
sleep 15
echo "nodes, wide empty: $(nodes)"
changes wide
commits wide

"$BENCH" produce -b "$B" -t wide --acks 1 -n "$MESSAGES" -s 1024 --partitions "$PARTITIONS" --replication 3 --json 2>/dev/null | sed 's/^/fill: /'
sleep 15
echo "nodes, wide written: $(nodes)"

kill "${PIDS[2]}"; wait "${PIDS[2]}" 2>/dev/null || true
off=200
t=$(now_ms)
# shellcheck disable=SC2086
"$RUNNEL" serve --node-id 3 --data-dir "$PARENT/$NAME/node-3" \
  --kafka-listener "127.0.0.1:$((BASE + off))" --rpc-listener "127.0.0.1:$((BASE + off + 1))" \
  --http-listener "127.0.0.1:$((BASE + off + 2))" --controller-quorum "$Q" --flush-policy "${FLUSH:-always}" ${EXTRA:-} \
  >/dev/null 2>>"$PARENT/$NAME-3.log" &
PIDS[2]=$!
for _ in $(seq 3000); do curl -sf "http://127.0.0.1:$((BASE + off + 2))/readyz" >/dev/null && break; sleep 0.1; done
echo "node 3 restarted: ready after $(( $(now_ms) - t )) ms"
wait_in_sync "$RPC"
echo "node 3 restarted: every partition of wide in sync after $(( $(now_ms) - t )) ms"
sleep 15
echo "nodes, after the restart: $(nodes)"
