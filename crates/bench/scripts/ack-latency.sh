#!/usr/bin/env bash
# acks=all acknowledgement latency at fixed rates on three nodes (RF 3,
# min.insync 2, default flush policy: fsync before acknowledging), 1 KiB
# messages from an idempotent producer, in three conditions:
#   quiet   nothing else runs;
#   burst   right after an acks=1 burst of BURST_MB (its dirty pages are
#           still being written back), its topic deleted after the run;
#   writer  beside a process writing WRITER_MB files with fdatasync to the
#           same disk, again and again (at most 50 files) until the run ends.
# Each line: condition, rate, run, then runnel-bench's JSON summary, then the
# replication stages timed on the nodes during the run (scripts/stages.py).
#
#   cargo build --release -p runnel -p runnel-cli -p runnel-bench
#   bash crates/bench/scripts/ack-latency.sh   # RUNS=3 SECONDS_PER_RUN=15 BURST_MB=3072 WRITER_MB=1536
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=target/release/runnel
CTL=target/release/runnelctl
BENCH=target/release/runnel-bench
PARENT=${PARENT:-/tmp}
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
BURST_MB=${BURST_MB:-3072}
WRITER_MB=${WRITER_MB:-1536}
RATES=${RATES:-100 1000 10000}
CONDITIONS=${CONDITIONS:-quiet burst writer}
BASE=${BASE:-19700}
NAME=runnel-acks
# shellcheck source=cluster.sh
source crates/bench/scripts/cluster.sh
HTTP=("$((BASE + 2))" "$((BASE + 102))" "$((BASE + 202))")
WRITER=
stop_writer() {
  if [ -n "$WRITER" ]; then
    # Stopped first, so it starts no other dd once its dd is killed.
    kill -STOP "$WRITER" 2>/dev/null || true
    pkill -P "$WRITER" 2>/dev/null || true
    kill -9 "$WRITER" 2>/dev/null || true
    wait "$WRITER" 2>/dev/null || true
    WRITER=
  fi
  rm -f "$PARENT/runnel-acks-writer"
}
stop_all() { stop_writer; stop_cluster; }
trap stop_all EXIT

start_writer() {
  ( for _ in $(seq 50); do
      dd if=/dev/zero of="$PARENT/runnel-acks-writer" bs=1M count="$WRITER_MB" conv=fdatasync status=none
      rm -f "$PARENT/runnel-acks-writer"
    done ) &
  WRITER=$!
  sleep 2 # the writer's dirty pages build up first
}

start_cluster
echo "# three nodes, RF 3, default flush policy; $SECONDS_PER_RUN s per run; burst $BURST_MB MB; writer files $WRITER_MB MB"
for condition in $CONDITIONS; do
  for rate in $RATES; do
    linger=0
    [ "$rate" -ge 10000 ] && linger=5
    for r in $(seq "$RUNS"); do
      topic="lat-$condition-$rate-$r"
      "$CTL" -b "127.0.0.1:$((BASE + 1))" topic create "$topic" --partitions 1 --replication-factor 3 --config min.insync.replicas=2 >/dev/null
      case $condition in
        burst) "$BENCH" produce -b "$B" -t "burst-$rate-$r" -n $((BURST_MB * 1024)) -s 1024 --acks 1 --partitions 3 --replication 3 >/dev/null 2>&1 ;;
        writer) start_writer ;;
      esac
      python3 crates/bench/scripts/stages.py snapshot "${HTTP[@]}" >"$PARENT/runnel-acks-stages.json"
      summary=$("$BENCH" produce -b "$B" -t "$topic" -n $((rate * SECONDS_PER_RUN)) -s 1024 --acks all --rate "$rate" \
        --linger-ms "$linger" --warmup 100 -X enable.idempotence=true --json 2>/dev/null)
      echo "$condition rate=$rate run=$r $summary"
      python3 crates/bench/scripts/stages.py diff "$PARENT/runnel-acks-stages.json" "${HTTP[@]}"
      stop_writer
      [ "$condition" = burst ] && "$CTL" -b "127.0.0.1:$((BASE + 1))" topic delete "burst-$rate-$r" >/dev/null
      "$CTL" -b "127.0.0.1:$((BASE + 1))" topic delete "$topic" >/dev/null
    done
  done
done
