#!/usr/bin/env bash
# Single-node figures for docs/benchmarks.md: disk baseline, produce with
# acks=1 and acks=all, consume, end-to-end latency at 10k msgs/s, idle RSS,
# and the node's CPU beside the load generator's. Each throughput figure is
# run RUNS times (default 3) on a fresh data directory; the summaries are
# printed as JSON lines for the medians to be taken.
#
#   cargo build --release -p runnel -p runnel-bench
#   bash crates/bench/scripts/single-node.sh [data-dir-parent]
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=target/release/runnel
BENCH=target/release/runnel-bench
PARENT=${1:-/tmp}
RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-1000000}
PORT=${PORT:-19192}
FLUSH=${FLUSH:-always}
B=127.0.0.1:$PORT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

start_node() {
  rm -rf "$PARENT/runnel-bench-data"
  "$RUNNEL" dev --data-dir "$PARENT/runnel-bench-data" --kafka-listener "$B" --rpc-listener "127.0.0.1:$((PORT + 1))" --http-listener "127.0.0.1:$((PORT + 2))" --flush-policy "$FLUSH" >/dev/null 2>"$PARENT/runnel-bench.log" &
  NODE=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$((PORT + 2))/readyz" >/dev/null && return; sleep 0.1; done
  echo "node did not start" >&2; exit 1
}
stop_node() { kill "$NODE"; wait "$NODE" || true; }

echo "# disk: dd 1 GiB with conv=fdatasync"
for _ in $(seq "$RUNS"); do
  dd if=/dev/zero of="$PARENT/runnel-dd.tmp" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1
  rm -f "$PARENT/runnel-dd.tmp"
done

echo "# idle RSS (KiB) two seconds after start"
start_node; sleep 2; grep VmRSS "/proc/$NODE/status"; stop_node

run() { # name, bench args...
  local name=$1; shift
  start_node
  local before; before=$(cpu_ticks "$NODE")
  local t0; t0=$(date +%s.%N)
  local out; out=$(/usr/bin/time -o "$PARENT/runnel-bench.time" -f '%U %S' "$BENCH" "$@" -b "$B" --json 2>/dev/null)
  local t1; t1=$(date +%s.%N)
  local after; after=$(cpu_ticks "$NODE")
  local wall; wall=$(echo "$t1 - $t0" | bc)
  local node_cpu; node_cpu=$(echo "scale=2; ($after - $before) / $hz / $wall * 100" | bc)
  local gen; gen=$(tail -1 "$PARENT/runnel-bench.time" | awk -v w="$wall" '{printf "%.0f", ($1 + $2) / w * 100}')
  echo "$name $out node_cpu_pct=$node_cpu loadgen_cpu_pct=$gen"
  stop_node
}

for i in $(seq "$RUNS"); do
  run produce-acks1 produce -t p1 -n "$MESSAGES" -s 1024 --acks 1 --partitions 3
  run produce-acksall produce -t pa -n "$MESSAGES" -s 1024 --acks all --partitions 3
done

for i in $(seq "$RUNS"); do
  start_node
  "$BENCH" produce -b "$B" -t c -n "$MESSAGES" -s 1024 --acks 1 --partitions 3 --json >/dev/null 2>&1
  before=$(cpu_ticks "$NODE")
  out=$("$BENCH" consume -b "$B" -t c -n "$MESSAGES" --json 2>/dev/null)
  after=$(cpu_ticks "$NODE")
  echo "consume $out node_cpu_s=$(echo "scale=2; ($after - $before) / $hz" | bc)"
  stop_node
done

for i in $(seq "$RUNS"); do
  run e2e-10k e2e -t e -n 100000 -s 1024 --rate 10000 --acks all --partitions 3 --linger-ms 5
done
