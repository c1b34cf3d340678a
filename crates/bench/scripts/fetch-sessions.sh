#!/usr/bin/env bash
# Incremental fetch sessions (KIP-227) for docs/benchmarks.md (issue 19,
# goal 5): one `runnel serve` node, a kafka-python consumer assigned every
# partition of a topic of PARTITIONS partitions while a producer writes
# RATE msgs/s spread over all of them, with sessions on and off (the
# consumer's enable_incremental_fetch_sessions), RUNS times each.
#
#   cargo build --release -p runnel
#   PY=/path/to/venv/bin/python bash crates/bench/scripts/fetch-sessions.sh   # PARTITIONS=1000 RATE=100 SECONDS_PER_RUN=30 RUNS=3
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=target/release/runnel
PY=${PY:-python3}
PARENT=${PARENT:-/tmp}
BASE=${BASE:-19500}
PARTITIONS=${PARTITIONS:-1000}
RATE=${RATE:-100}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-30}
RUNS=${RUNS:-3}
DIR=$PARENT/runnel-fetch-sessions
rm -rf "$DIR"
"$RUNNEL" serve --node-id 1 --data-dir "$DIR" --kafka-listener "127.0.0.1:$BASE" --rpc-listener "127.0.0.1:$((BASE + 1))" \
  --http-listener "127.0.0.1:$((BASE + 2))" --controller-quorum "1@127.0.0.1:$((BASE + 1))" >/dev/null 2>"$DIR.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 200); do
  curl -sf "http://127.0.0.1:$((BASE + 2))/readyz" >/dev/null && break
  sleep 0.1
done
for r in $(seq "$RUNS"); do
  for sessions in true false; do
    echo "run $r $("$PY" crates/bench/scripts/fetch_sessions.py --bootstrap "127.0.0.1:$BASE" --metrics "http://127.0.0.1:$((BASE + 2))/metrics" \
      --partitions "$PARTITIONS" --rate "$RATE" --seconds "$SECONDS_PER_RUN" --sessions "$sessions")"
  done
done
