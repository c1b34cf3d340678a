#!/usr/bin/env bash
# Failover time on three nodes: SIGKILL the leader of partition 0 of an RF 3
# topic, then time until the first acks=all produce to that partition
# succeeds; restart the node and wait for a full ISR; repeat TRIALS times.
# Also reports how long each restarted follower took to rejoin the ISR.
#
#   cargo build --release -p runnel -p runnel-cli
#   bash crates/bench/scripts/failover.sh          # TRIALS=10, default settings
#   SESSION_MS=2000 PROBE_MS=0 bash crates/bench/scripts/failover.sh   # without the gRPC address probe
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=$PWD/target/release/runnel
CTL=$PWD/target/release/runnelctl
TRIALS=${TRIALS:-10}
# Empty: Runnel's defaults (session 6 s, probe every 250 ms).
SESSION_MS=${SESSION_MS:-}
PROBE_MS=${PROBE_MS:-}
EXTRA=()
[ -n "$SESSION_MS" ] && EXTRA+=(--session-timeout-ms "$SESSION_MS")
[ -n "$PROBE_MS" ] && EXTRA+=(--broker-probe-interval-ms "$PROBE_MS")
PARENT=${PARENT:-/tmp}
BASE=${BASE:-19600}
Q="1@127.0.0.1:$((BASE+1)),2@127.0.0.1:$((BASE+101)),3@127.0.0.1:$((BASE+201))"
B="127.0.0.1:$BASE,127.0.0.1:$((BASE+100)),127.0.0.1:$((BASE+200))"
declare -A PID

start_node() { # id
  local i=$1 off=$(( ($1 - 1) * 100 ))
  "$RUNNEL" serve --node-id "$i" --data-dir "$PARENT/runnel-fo/node-$i" \
    --kafka-listener "127.0.0.1:$((BASE + off))" --rpc-listener "127.0.0.1:$((BASE + off + 1))" \
    --http-listener "127.0.0.1:$((BASE + off + 2))" --controller-quorum "$Q" "${EXTRA[@]}" >/dev/null 2>>"$PARENT/runnel-fo-$i.log" &
  PID[$i]=$!
}
ready() { # id
  local off=$(( ($1 - 1) * 100 ))
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$((BASE + off + 2))/readyz" >/dev/null && return; sleep 0.1; done
  echo "node $1 not ready" >&2; exit 1
}
cleanup() { for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
alive_rpc() { for i in 1 2 3; do if kill -0 "${PID[$i]}" 2>/dev/null; then echo "127.0.0.1:$((BASE + (i - 1) * 100 + 1))"; return; fi; done; }

rm -rf "$PARENT/runnel-fo"
for i in 1 2 3; do start_node "$i"; done
for i in 1 2 3; do ready "$i"; done
"$CTL" -b "127.0.0.1:$((BASE+1))" topic create fo --partitions 1 --replication-factor 3 >/dev/null
echo warm | kcat -b "$B" -t fo -p 0 -P -X acks=all -X message.timeout.ms=30000

for t in $(seq "$TRIALS"); do
  leader=$("$CTL" -b "$(alive_rpc)" -o json topic describe fo | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitions"][0]["leader"])')
  ctl_leader=$("$CTL" -b "$(alive_rpc)" -o json cluster status | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader_id"])')
  role=""; [ "$ctl_leader" = "$leader" ] && role=" (also the controller leader)"
  kill -9 "${PID[$leader]}"; wait "${PID[$leader]}" 2>/dev/null || true
  killed=$(now_ms)
  until echo "t$t" | kcat -b "$B" -t fo -p 0 -P -X acks=all -X message.timeout.ms=1000 -X socket.connection.setup.timeout.ms=1000 2>/dev/null; do :; done
  acked=$(now_ms)
  start_node "$leader"; ready "$leader"
  restarted=$(now_ms)
  until "$CTL" -b "$(alive_rpc)" -o json topic describe fo | python3 -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin)["partitions"][0]["isr"]) == 3 else 1)'; do sleep 0.05; done
  rejoined=$(now_ms)
  echo "trial $t: killed leader $leader$role; first acks=all success after $((acked - killed)) ms; rejoined the ISR $((rejoined - restarted)) ms after it was ready"
done
