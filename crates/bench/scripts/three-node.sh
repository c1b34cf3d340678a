#!/usr/bin/env bash
# Three-node figures for docs/benchmarks.md: three `runnel serve` processes on
# this machine (each a controller and a broker), topics with replication
# factor 3, 1 KiB messages. Produce with acks=all and acks=1 under the default
# flush policy and under FLUSH=interval, and end-to-end latency at 10k msgs/s.
#
#   cargo build --release -p runnel -p runnel-bench
#   bash crates/bench/scripts/three-node.sh            # FLUSH=always RUNS=3 MESSAGES=500000
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=${RUNNEL:-target/release/runnel}
BENCH=target/release/runnel-bench
PARENT=${PARENT:-/tmp}
RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-500000}
FLUSH=${FLUSH:-always}
BASE=${BASE:-19300}
NAME=runnel-3n
# shellcheck source=cluster.sh
source crates/bench/scripts/cluster.sh
trap stop_cluster EXIT

# Seconds from now until every replica of topic $1 holds the same log end
# on all three nodes: an acks=1 run ends with its followers behind, and this
# is the replication it left to do.
replicated_after() {
  local start end
  start=$(date +%s.%N)
  for _ in $(seq 1200); do
    if for i in 0 1 2; do curl -sf "http://127.0.0.1:$((BASE + i * 100 + 2))/metrics"; done \
      | awk -v t="topic=\"$1\"" 'index($0, "runnel_log_end_offset{") == 1 && index($0, t) {
          match($0, /partition="[0-9]+"/); p = substr($0, RSTART, RLENGTH); n[p]++
          if (!(p in lo) || $NF < lo[p]) lo[p] = $NF; if (!(p in hi) || $NF > hi[p]) hi[p] = $NF }
        END { for (p in n) if (n[p] < 3 || lo[p] != hi[p]) exit 1; exit (length(n) == 0) }'; then
      break
    fi
    sleep 0.05
  done
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}

start_cluster
echo "# three nodes, RF 3, flush policy $FLUSH, $MESSAGES messages of 1 KiB per run"
for r in $(seq "$RUNS"); do
  echo "acks=all $("$BENCH" produce -b "$B" -t "all-$r" -n "$MESSAGES" -s 1024 --acks all --partitions 3 --replication 3 --json 2>/dev/null)"
  echo "acks=1 $("$BENCH" produce -b "$B" -t "one-$r" -n "$MESSAGES" -s 1024 --acks 1 --partitions 3 --replication 3 --json 2>/dev/null)"
  echo "acks=1 followers caught up $(replicated_after "one-$r") s after the producer finished"
done
for r in $(seq "$RUNS"); do
  echo "e2e-10k $("$BENCH" e2e -b "$B" -t "e2e-$r" -n 50000 -s 1024 --rate 10000 --acks all --partitions 3 --replication 3 --linger-ms 5 --json 2>/dev/null)"
done
ps -o rss= -p "${PIDS[@]}" | awk '{s += $1} END {print "RSS of the three nodes (KiB): " s}'
sleep 10
ps -o rss= -p "${PIDS[@]}" | awk '{s += $1} END {print "RSS of the three nodes 10 s later (KiB): " s}'
