#!/usr/bin/env bash
# Failover time on three nodes: SIGKILL the leader of a partition of an RF 3
# topic, then time until the first acks=all produce to that partition
# succeeds; restart the node and wait for a full ISR; repeat TRIALS times.
# Also reports how long each restarted follower took to rejoin the ISR.
#
#   cargo build --release -p runnel -p runnel-cli
#   bash crates/bench/scripts/failover.sh          # TRIALS=10, default settings
#   KILL=controller bash crates/bench/scripts/failover.sh                  # the controller leader
#   SESSION_MS=2000 PROBE_MS=0 bash crates/bench/scripts/failover.sh   # without the gRPC address probe
#   KILL=term bash crates/bench/scripts/failover.sh                       # SIGTERM (a rolling restart's controlled shutdown)
#   PYTHON=venv/bin/python KILL=term bash crates/bench/scripts/failover.sh  # the running producer on confluent-kafka's librdkafka
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=$PWD/target/release/runnel
CTL=$PWD/target/release/runnelctl
TRIALS=${TRIALS:-10}
# partition: kill the leader of a partition, not the controller leader;
# controller: kill the controller leader, timing a partition it led;
# term: SIGTERM a partition leader that is not the controller leader (it
# hands its partitions over before it exits).
KILL=${KILL:-partition}
SIGNAL=KILL; [ "$KILL" = term ] && SIGNAL=TERM
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
"$CTL" -b "127.0.0.1:$((BASE+1))" topic create fo --partitions 3 --replication-factor 3 >/dev/null
for p in 0 1 2; do echo warm | kcat -b "$B" -t fo -p "$p" -P -X acks=all -X message.timeout.ms=30000; done
# The Kafka addresses of the running nodes: a fresh client given a dead
# bootstrap address waits a second before it tries the next, which would be
# the client's time, not the cluster's.
live_bootstrap() { for i in 1 2 3; do kill -0 "${PID[$i]}" 2>/dev/null && printf '127.0.0.1:%s,' $((BASE + (i - 1) * 100)); done; }
leader_of() { # partition, from a live node's Kafka metadata
  kcat -b "$(live_bootstrap)" -L -t fo -J 2>/dev/null | python3 -c "import json,sys; print([p['leader'] for p in json.load(sys.stdin)['topics'][0]['partitions'] if p['partition'] == $1][0])" 2>/dev/null || echo -1
}

# The running producer: kcat (the system's librdkafka), or with PYTHON set
# to an interpreter that has confluent-kafka, that package's own librdkafka
# (2.4 and later follow the new leader a refusal names, KIP-951).
PYTHON=${PYTHON:-}
running_producer() { # partition; one acks=all message per line of stdin
  if [ -n "$PYTHON" ]; then
    "$PYTHON" -c '
import sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "acks": "all", "message.timeout.ms": 30000, "linger.ms": 0})
for line in sys.stdin:
    p.produce("fo", line.strip(), partition=int(sys.argv[2]))
    p.poll(0)
sys.exit(1 if p.flush(30) else 0)' "$B" "$1"
  else
    kcat -b "$B" -t fo -p "$1" -P -X acks=all -X message.timeout.ms=30000
  fi
}

for t in $(seq "$TRIALS"); do
  ctl_leader=$("$CTL" -b "$(alive_rpc)" -o json cluster status | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader_id"])')
  if [ "$KILL" = controller ]; then
    # A partition the controller leader leads; kill the controller leader.
    part=$("$CTL" -b "$(alive_rpc)" -o json topic describe fo | python3 -c "import json,sys; print(([p['partition'] for p in json.load(sys.stdin)['partitions'] if p['leader'] == $ctl_leader] + [-1])[0])")
    if [ "$part" = -1 ]; then "$CTL" -b "$(alive_rpc)" partition elect-leader --topic fo >/dev/null; sleep 1; continue; fi
    leader=$ctl_leader
  else
    # A partition led by a node that is not the controller leader.
    part=$("$CTL" -b "$(alive_rpc)" -o json topic describe fo | python3 -c "import json,sys; print([p['partition'] for p in json.load(sys.stdin)['partitions'] if p['leader'] != $ctl_leader][0])")
    leader=$(leader_of "$part")
  fi
  role=""; [ "$ctl_leader" = "$leader" ] && role=" (the controller leader)"
  # A producer that is already running, connected to the leader, sends one
  # message right after the kill and keeps retrying it: librdkafka re-queries
  # a partition whose leader is down on its 1 s topic scan, so this includes
  # up to a second of the client's own.
  fifo="$PARENT/runnel-fo-fifo"; rm -f "$fifo"; mkfifo "$fifo"
  ( running_producer "$part" <"$fifo" 2>/dev/null; now_ms >"$PARENT/runnel-fo-client" ) &
  client_pid=$!
  exec 3>"$fifo"
  # A random phase against the client's 1 s timers.
  echo "before $t" >&3; sleep "0.$((RANDOM % 7 + 3))"
  kill "-$SIGNAL" "${PID[$leader]}"
  # A killed node is reaped at once (live_bootstrap must not name it); a
  # terminated one is still handing over and is waited for after the trial.
  if [ "$SIGNAL" = KILL ]; then wait "${PID[$leader]}" 2>/dev/null || true; fi
  killed=$(now_ms)
  echo "after $t" >&3; exec 3>&-
  # The cluster's side: poll metadata until it names a new leader, then
  # a fresh producer's acks=all write to it.
  until l=$(leader_of "$part") && [ "$l" -ge 1 ] && [ "$l" != "$leader" ]; do sleep 0.02; done
  until echo "t$t" | kcat -b "$(live_bootstrap)" -t fo -p "$part" -P -X acks=all -X message.timeout.ms=5000 2>/dev/null; do :; done
  acked=$(now_ms)
  wait "$client_pid"
  client=$(cat "$PARENT/runnel-fo-client")
  wait "${PID[$leader]}" 2>/dev/null || true
  start_node "$leader"; ready "$leader"
  restarted=$(now_ms)
  until "$CTL" -b "$(alive_rpc)" -o json topic describe fo | python3 -c 'import json,sys; sys.exit(0 if all(len(p["isr"]) == 3 for p in json.load(sys.stdin)["partitions"]) else 1)'; do sleep 0.05; done
  rejoined=$(now_ms)
  echo "trial $t: SIG$SIGNAL to node $leader$role, leader of partition $part; new leader took an acks=all write after $((acked - killed)) ms (a running producer: $((client - killed)) ms); rejoined the ISR $((rejoined - restarted)) ms after it was ready"
done
