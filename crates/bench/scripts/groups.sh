#!/usr/bin/env bash
# Consumer-group figures for docs/benchmarks.md: rebalance time when a 7th
# member joins a group of 6 (median of TRIALS), and offset commits per second
# with every commit going through Raft, on one node and on three `runnel
# serve` processes (the commits' Raft entries are then replicated and fsynced
# on a majority).
#
#   cargo build --release -p runnel -p runnel-bench
#   bash crates/bench/scripts/groups.sh                # TRIALS=5 COMMITS=5000
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=${RUNNEL:-target/release/runnel}
BENCH=target/release/runnel-bench
PARENT=${PARENT:-/tmp}
TRIALS=${TRIALS:-5}
COMMITS=${COMMITS:-5000}
BASE=${BASE:-19500}
PIDS=()
stop() { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=(); }
trap stop EXIT
ready() { for _ in $(seq 200); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.1; done; echo "node on $1 not ready" >&2; exit 1; }

measure() {
  local bootstrap=$1 label=$2
  echo "== $label: rebalance, a member joins a group of 6 (12 partitions, range)"
  "$BENCH" rebalance -b "$bootstrap" -t "rebalance-$label" --members 6 --trials "$TRIALS"
  echo "== $label: the same with cooperative-sticky, and with KIP-848 (group.protocol=consumer, 500 ms heartbeats set by the node)"
  "$BENCH" rebalance -b "$bootstrap" -t "rebalance-coop-$label" --members 6 --trials "$TRIALS" --strategy cooperative-sticky
  "$BENCH" rebalance -b "$bootstrap" -t "rebalance-kip848-$label" --members 6 --trials "$TRIALS" --strategy consumer
  for c in 1 8; do
    echo "== $label: offset commits, concurrency $c"
    "$BENCH" commits -b "$bootstrap" -t "commits-$label-$c" -n "$COMMITS" --concurrency "$c"
  done
}

rm -rf "$PARENT/runnel-groups-1"
"$RUNNEL" dev --data-dir "$PARENT/runnel-groups-1" --kafka-listener "127.0.0.1:$BASE" --rpc-listener "127.0.0.1:$((BASE+1))" \
  --http-listener "127.0.0.1:$((BASE+2))" --group-consumer-heartbeat-interval-ms 500 >/dev/null 2>"$PARENT/runnel-groups-1.log" &
PIDS+=($!)
ready $((BASE+2))
measure "127.0.0.1:$BASE" single
stop

rm -rf "$PARENT/runnel-groups-3"
Q="1@127.0.0.1:$((BASE+1)),2@127.0.0.1:$((BASE+101)),3@127.0.0.1:$((BASE+201))"
for i in 1 2 3; do
  off=$(( (i - 1) * 100 ))
  "$RUNNEL" serve --node-id "$i" --data-dir "$PARENT/runnel-groups-3/node-$i" \
    --kafka-listener "127.0.0.1:$((BASE + off))" --rpc-listener "127.0.0.1:$((BASE + off + 1))" \
    --http-listener "127.0.0.1:$((BASE + off + 2))" --controller-quorum "$Q" --group-consumer-heartbeat-interval-ms 500 >/dev/null 2>"$PARENT/runnel-groups-3-$i.log" &
  PIDS+=($!)
done
for i in 0 1 2; do ready $((BASE + i * 100 + 2)); done
measure "127.0.0.1:$BASE,127.0.0.1:$((BASE+100)),127.0.0.1:$((BASE+200))" three
