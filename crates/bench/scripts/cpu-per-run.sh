#!/usr/bin/env bash
# CPU cost of replicated produce, for comparing two builds: three `runnel
# serve` nodes, topics of 3 partitions at RF 3, N messages of 1 KiB per run,
# acks=all then acks=1; prints the producer's MB/s and the user and kernel
# CPU seconds the three nodes spent on each run (counted until 3 s after the
# producer finished, so an acks=1 run's follower work is in it).
#
# Throughput alone swings ±25% between runs here, and a run's CPU cost
# doubles as the page cache fills with earlier runs' data; so before each
# run this syncs and drops the page cache (needs root; without it the
# figures drift the same way). Builds alternate, ROUNDS times each.
#
#   cargo build --release -p runnel -p runnel-bench
#   cp target/release/runnel /tmp/runnel-a   # ... and a second build as /tmp/runnel-b
#   bash crates/bench/scripts/cpu-per-run.sh /tmp/runnel-a /tmp/runnel-b
set -euo pipefail
cd "$(dirname "$0")/../../.."
BENCH=target/release/runnel-bench
PARENT=${PARENT:-/tmp}
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-2}
N=${N:-300000}
BASE=${BASE:-19600}
NAME=runnel-cpu
[ $# -ge 1 ] || { echo "usage: $0 RUNNEL_BINARY [RUNNEL_BINARY...]" >&2; exit 2; }
# shellcheck source=cluster.sh
source crates/bench/scripts/cluster.sh
trap stop_cluster EXIT

cpu() { for p in "${PIDS[@]}"; do awk '{print $14, $15}' "/proc/$p/stat"; done | awk '{u += $1; k += $2} END {print u / 100, k / 100}'; }
drop_cache() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

echo "# three nodes, RF 3, $N messages of 1 KiB per run; CPU of the three nodes per run"
for round in $(seq "$ROUNDS"); do
  for RUNNEL in "$@"; do
    start_cluster
    "$BENCH" produce -b "$B" -t warm -n 50000 -s 1024 --acks all --partitions 3 --replication 3 --json >/dev/null 2>&1
    for r in $(seq "$RUNS"); do
      for acks in all 1; do
        drop_cache
        read -r u0 k0 < <(cpu)
        out=$("$BENCH" produce -b "$B" -t "t-$acks-$r" -n "$N" -s 1024 --acks "$acks" --partitions 3 --replication 3 --json 2>/dev/null)
        sleep 3
        read -r u1 k1 < <(cpu)
        mbps=$(echo "$out" | sed -n 's/.*"mb_per_sec":\([0-9.]*\).*/\1/p')
        awk -v b="$RUNNEL" -v round="$round" -v r="$r" -v a="$acks" -v m="$mbps" -v u0="$u0" -v u1="$u1" -v k0="$k0" -v k1="$k1" \
          'BEGIN { printf "%s round %d run %d acks=%s: %.1f MB/s, user %.2f s, kernel %.2f s\n", b, round, r, a, m, u1 - u0, k1 - k0 }'
      done
    done
    stop_cluster
  done
done
