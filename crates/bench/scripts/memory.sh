#!/usr/bin/env bash
# Memory of one node for docs/benchmarks.md (issue 19, goal 4): idle RSS two
# seconds after start, then RSS right after a produce-and-consume run
# (MESSAGES 1 KiB messages, acks=1, 3 partitions, then read back), and
# 10 s later. ENV is passed to the node (e.g. ENV="MALLOC_ARENA_MAX=2").
#
#   cargo build --release -p runnel -p runnel-bench
#   bash crates/bench/scripts/memory.sh      # MESSAGES=1000000 RUNS=3
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=${RUNNEL:-target/release/runnel}
BENCH=target/release/runnel-bench
PARENT=${PARENT:-/tmp}
RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-1000000}
PORT=${PORT:-19292}
B=127.0.0.1:$PORT
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
for r in $(seq "$RUNS"); do
  rm -rf "$PARENT/runnel-memory"
  # shellcheck disable=SC2086
  env ${ENV:-} "$RUNNEL" dev --data-dir "$PARENT/runnel-memory" --kafka-listener "$B" --rpc-listener "127.0.0.1:$((PORT + 1))" \
    --http-listener "127.0.0.1:$((PORT + 2))" >/dev/null 2>"$PARENT/runnel-memory.log" &
  NODE=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$((PORT + 2))/readyz" >/dev/null && break; sleep 0.1; done
  sleep 2
  idle=$(rss "$NODE")
  produced=$("$BENCH" produce -b "$B" -t mem -n "$MESSAGES" -s 1024 --acks 1 --partitions 3 --json 2>/dev/null)
  consumed=$("$BENCH" consume -b "$B" -t mem -n "$MESSAGES" --json 2>/dev/null)
  after=$(rss "$NODE")
  sleep 10
  settled=$(rss "$NODE")
  echo "run $r idle_mb=$idle after_load_mb=$after after_10s_mb=$settled ${ENV:-}"
  echo "  produce $produced"
  echo "  consume $consumed"
  kill "$NODE"; wait "$NODE" || true
done
