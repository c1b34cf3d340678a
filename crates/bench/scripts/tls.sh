#!/usr/bin/env bash
# TLS beside plaintext for docs/benchmarks.md (issue 18): one `runnel dev`
# node per security protocol (PLAINTEXT, SSL, SASL_SSL with SCRAM-SHA-512),
# the same load each time: produce MESSAGES of 1 KiB with acks=1 and
# acks=all, consume them back, and end-to-end latency at 1,000 msgs/s. The
# certificate is made here with openssl (RSA 2048, as most deployments).
#
#   cargo build --release -p runnel -p runnel-bench
#   bash crates/bench/scripts/tls.sh            # RUNS=3 MESSAGES=500000
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=target/release/runnel
BENCH=target/release/runnel-bench
PARENT=${PARENT:-/tmp}
RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-500000}
PORT=${PORT:-19492}
B=127.0.0.1:$PORT
WORK=$(mktemp -d "$PARENT/runnel-tls-bench.XXXXXX")
NODE=
cleanup() { [ -n "$NODE" ] && kill "$NODE" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$WORK/node.key" -out "$WORK/node.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$WORK/node.ext"
openssl x509 -req -in "$WORK/node.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 -extfile "$WORK/node.ext" -out "$WORK/node.pem" 2>/dev/null
printf '[users]\nbench = "bench-secret"\n' > "$WORK/users.toml"

start_node() { # PROTOCOL
  rm -rf "$WORK/data"
  "$RUNNEL" dev --data-dir "$WORK/data" --kafka-listener "$B" --rpc-listener "127.0.0.1:$((PORT + 1))" \
    --http-listener "127.0.0.1:$((PORT + 2))" --kafka-security-protocol "$1" \
    $( [ "$1" != PLAINTEXT ] && echo "--ssl-certificate-file $WORK/node.pem --ssl-key-file $WORK/node.key" ) \
    $( [ "$1" = SASL_SSL ] && echo "--sasl-users-file $WORK/users.toml" ) \
    >/dev/null 2>"$WORK/node.log" &
  NODE=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$((PORT + 2))/readyz" >/dev/null && return; sleep 0.1; done
  echo "node did not start:" >&2; cat "$WORK/node.log" >&2; exit 1
}
stop_node() { kill "$NODE"; wait "$NODE" || true; NODE=; }

for protocol in PLAINTEXT SSL SASL_SSL; do
  X=()
  case $protocol in
    SSL) X=(-X security.protocol=ssl -X "ssl.ca.location=$WORK/ca.pem") ;;
    SASL_SSL) X=(-X security.protocol=sasl_ssl -X "ssl.ca.location=$WORK/ca.pem" -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=bench -X sasl.password=bench-secret) ;;
  esac
  start_node "$protocol"
  echo "# $protocol"
  for r in $(seq "$RUNS"); do
    echo "produce-acks1 $("$BENCH" produce -b "$B" -t "one-$r" -n "$MESSAGES" -s 1024 --acks 1 --partitions 3 --json "${X[@]}" 2>/dev/null)"
    echo "produce-acksall $("$BENCH" produce -b "$B" -t "all-$r" -n "$MESSAGES" -s 1024 --acks all --partitions 3 --json "${X[@]}" 2>/dev/null)"
    echo "consume $("$BENCH" consume -b "$B" -t "one-$r" -n "$MESSAGES" --json "${X[@]}" 2>/dev/null)"
    echo "e2e-1k $("$BENCH" e2e -b "$B" -t "e2e-$r" -n 20000 -s 1024 --rate 1000 --acks all --partitions 3 --linger-ms 0 --json "${X[@]}" 2>/dev/null)"
  done
  stop_node
done
