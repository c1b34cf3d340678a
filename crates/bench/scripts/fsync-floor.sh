#!/usr/bin/env bash
# What one small write + fdatasync costs on this disk, quiet and beside a
# process writing WRITER_MB files with fdatasync (the ack-latency.sh writer),
# for a growing file and for a pre-zeroed one; no Runnel involved. The floor
# under acks=all latency with the default flush policy (issue 19, goal 1).
#
#   bash crates/bench/scripts/fsync-floor.sh     # RATES="100 1000" SECONDS_PER_RUN=15 ROUNDS=2 WRITER_MB=1536
set -euo pipefail
cd "$(dirname "$0")"
DIR=${DIR:-/tmp/runnel-fsync-floor}
RATES=${RATES:-100 1000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
ROUNDS=${ROUNDS:-2}
WRITER_MB=${WRITER_MB:-1536}
mkdir -p "$DIR"
WRITER=""
stop_writer() {
  [ -n "$WRITER" ] || return 0
  kill "$WRITER" 2>/dev/null || true
  pkill -f "of=$DIR/writer" 2>/dev/null || true
  wait "$WRITER" 2>/dev/null || true
  WRITER=""
  rm -f "$DIR/writer"
}
trap 'stop_writer; rm -rf "$DIR"' EXIT
runs() {
  for _ in $(seq "$ROUNDS"); do
    for rate in $RATES; do
      for mode in append prezero; do python3 fsync-floor.py "$mode" "$rate" "$SECONDS_PER_RUN" "$DIR"; done
    done
  done
}
echo "# quiet"
runs
echo "# beside a writer of ${WRITER_MB} MB files with fdatasync"
( while true; do dd if=/dev/zero of="$DIR/writer" bs=1M count="$WRITER_MB" conv=fdatasync status=none; rm -f "$DIR/writer"; done ) &
WRITER=$!
sleep 2
runs
stop_writer
