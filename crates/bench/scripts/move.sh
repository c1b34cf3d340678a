#!/usr/bin/env bash
# Moving GB gigabytes of partition data to a new broker (issue 17): three
# nodes, topic `big` (4 partitions, RF 1) filled with acks=1, then a fourth
# broker joins and every partition of `big` is reassigned to it. Meanwhile
# an idempotent acks=all producer writes 1 KiB messages at RATE msgs/s to
# `live` (3 partitions, RF 3) for PROBE_SECONDS from the start of the move;
# its acknowledgement latency is reported, and the same probe on the quiet
# cluster before the move is the baseline. THROTTLE (bytes/s, 0 for none)
# is set as the dynamic follower.replication.throttled.rate of every broker
# before the move.
#
#   cargo build --release -p runnel -p runnel-cli -p runnel-bench
#   bash crates/bench/scripts/move.sh                      # GB=1 THROTTLE=0
#   THROTTLE=52428800 bash crates/bench/scripts/move.sh    # 50 MiB/s
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=target/release/runnel
CTL=target/release/runnelctl
BENCH=target/release/runnel-bench
PARENT=${PARENT:-/tmp}
GB=${GB:-1}
THROTTLE=${THROTTLE:-0}
RATE=${RATE:-1000}
PROBE_SECONDS=${PROBE_SECONDS:-20}
BASE=${BASE:-19900}
NAME=runnel-move
# shellcheck source=cluster.sh
source crates/bench/scripts/cluster.sh
RPC="127.0.0.1:$((BASE + 1))"
FOURTH=
cleanup() { [ -n "$FOURTH" ] && kill "$FOURTH" 2>/dev/null; stop_cluster; rm -rf "${PARENT:?}/$NAME"; }
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
probe() { # seconds
  "$BENCH" produce -b "$B" -t live --acks all --rate "$RATE" -n $((RATE * $1)) -s 1024 --partitions 3 --replication 3 --linger-ms 0 \
    -X enable.idempotence=true --warmup 200 --json 2>/dev/null
}

start_cluster
"$CTL" -b "$RPC" topic create live --partitions 3 --replication-factor 3 --config min.insync.replicas=2 >/dev/null
"$CTL" -b "$RPC" topic create big --partitions 4 --replication-factor 1 >/dev/null
"$BENCH" produce -b "$B" -t big --acks 1 -n $((GB * 1024 * 1024)) -s 1024 --partitions 4 --replication 1 --json 2>/dev/null | sed 's/^/fill: /'
echo "quiet: $(probe 10)"

off=300
"$RUNNEL" serve --node-id 4 --roles broker --data-dir "$PARENT/$NAME/node-4" --controller-quorum "$Q" \
  --kafka-listener "127.0.0.1:$((BASE + off))" --rpc-listener "127.0.0.1:$((BASE + off + 1))" \
  --http-listener "127.0.0.1:$((BASE + off + 2))" >/dev/null 2>"$PARENT/$NAME-4.log" &
FOURTH=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$((BASE + off + 2))/readyz" >/dev/null && break; sleep 0.1; done
if [ "$THROTTLE" != 0 ]; then
  "$CTL" -b "$RPC" broker throttle --rate "$THROTTLE" >/dev/null
fi

probe "$PROBE_SECONDS" > "$PARENT/$NAME-probe.json" &
probe_pid=$!
sleep 1
started=$(now_ms)
for p in 0 1 2 3; do
  "$CTL" -b "$RPC" partition reassign --topic big --partition "$p" --replicas 4 >/dev/null
done
until [ "$("$CTL" -b "$RPC" -o json partition reassignments | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 0 ]; do sleep 0.2; done
done_ms=$(now_ms)
wait "$probe_pid"
bytes=$(du -sb "$PARENT/$NAME/node-4/logs" | cut -f1)
secs=$(python3 -c "print(($done_ms - $started) / 1000)")
echo "moved $bytes bytes to broker 4 in $secs s: $(python3 -c "print(round($bytes / 1048576 / (($done_ms - $started) / 1000), 1))") MiB/s (throttle $THROTTLE B/s)"
echo "during the move: $(cat "$PARENT/$NAME-probe.json")"
