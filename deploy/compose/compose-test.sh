#!/usr/bin/env bash
# End-to-end test of the docker-compose cluster, as a user runs it: build the
# image, bring three nodes up, create an RF 3 topic with runnelctl inside a
# container, produce and consume with kcat from the host, SIGKILL the
# container leading partition 0 while an acks=all producer keeps going, check
# that every acknowledged message is read back once, and that the ISR is full
# again after the node returns. Then the same cluster with secure.yml: kcat
# over SASL_SSL, runnelctl over the gRPC port's mutual TLS, an ACL letting a
# user write one topic and not another. Always takes the cluster down (-v).
#
#   bash deploy/compose/compose-test.sh        # PYTHON=python3 with confluent-kafka
#
# RUNNEL_PROFILE=debug puts the debug binaries in the image instead of the
# release ones users run: CI has built those already, and the test asserts
# that nothing acknowledged is lost, not speed.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
PROJECT=runnel-compose-test
COMPOSE=(docker-compose -p "$PROJECT" -f deploy/compose/docker-compose.yml)
BOOTSTRAP=127.0.0.1:11092,127.0.0.1:12092,127.0.0.1:13092
WORK=$(mktemp -d /tmp/runnel-compose.XXXXXX)
START=$(date +%s)
step() { echo "compose-test [$(( $(date +%s) - START ))s]: $*"; }
cleanup() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "compose-test: FAILED; last log lines of each node:" >&2
    for n in 1 2 3; do "${COMPOSE[@]}" logs --no-color --tail 30 "runnel-$n" >&2 2>&1 || true; done
  fi
  "${COMPOSE[@]}" down -v --timeout 10 >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
ctl() { "${COMPOSE[@]}" exec -T "$1" runnelctl "${@:2}"; }
wait_until() { # SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then echo "compose-test: timed out after ${limit}s waiting for $what" >&2; return 1; fi
    sleep 1
  done
}

PROFILE=${RUNNEL_PROFILE:-release}
case "$PROFILE" in
  release) build_flags=(--release) ;;
  debug) build_flags=() ;;
  *) echo "compose-test: RUNNEL_PROFILE is release or debug, not '$PROFILE'" >&2; exit 2 ;;
esac

step "building the $PROFILE binaries and the image"
cargo build "${build_flags[@]}" -p runnel -p runnel-cli >/dev/null 2>&1
mkdir -p deploy/docker/bin
cp "target/$PROFILE/runnel" "target/$PROFILE/runnelctl" deploy/docker/bin/
if [ "$PROFILE" = debug ]; then
  # A debug binary's debug info is most of its size; the image needs none.
  strip --strip-debug deploy/docker/bin/runnel deploy/docker/bin/runnelctl
fi
bash deploy/docker/offline-base.sh
docker build -q -t runnel:latest deploy/docker >/dev/null

step "starting the cluster"
"${COMPOSE[@]}" down -v --timeout 5 >/dev/null 2>&1 || true
"${COMPOSE[@]}" up -d >/dev/null 2>&1
three_brokers() { [ "$(kcat -b 127.0.0.1:11092 -L -m 3 2>/dev/null | grep -c '^  broker ')" = 3 ]; }
wait_until 90 "three brokers in kcat -L" three_brokers
kcat -b 127.0.0.1:11092 -L -m 3 | head -5

step "creating an RF 3 topic with runnelctl inside runnel-1"
ctl runnel-1 topic create orders --partitions 3 --replication-factor 3 --config min.insync.replicas=2
full_isr() { ctl runnel-1 -o json topic describe orders | "$PYTHON" -c 'import json,sys; t=json.load(sys.stdin); sys.exit(0 if all(len(p["isr"])==3 and p["leader"] for p in t["partitions"]) else 1)'; }
wait_until 30 "a full ISR" full_isr

step "producing and consuming with kcat from the host"
seq 1 200 | sed 's/^/kcat-/' | kcat -b "$BOOTSTRAP" -t orders -P -X acks=all
count=$(kcat -b "$BOOTSTRAP" -t orders -C -e -o beginning -q -X fetch.wait.max.ms=100 | grep -c '^kcat-')
[ "$count" = 200 ] || { echo "compose-test: kcat read $count of 200 messages" >&2; exit 1; }

step "SIGKILL of the container leading orders-0 under acks=all load"
leader=$(ctl runnel-1 -o json topic describe orders | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["partitions"][0]["leader"])')
victim="runnel-$leader"
"$PYTHON" deploy/compose/acked_writes.py produce "$BOOTSTRAP" orders 3000 during "$WORK/during.acked" &
producer=$!
sleep 3
docker kill -s KILL "$("${COMPOSE[@]}" ps -q "$victim")" >/dev/null
step "killed $victim; the producer keeps going"
wait "$producer"
acked=$(wc -l < "$WORK/during.acked")
[ "$acked" -gt 1000 ] || { echo "compose-test: only $acked writes acknowledged around the kill" >&2; exit 1; }

step "restarting $victim"
"${COMPOSE[@]}" start "$victim" >/dev/null
"$PYTHON" deploy/compose/acked_writes.py produce "$BOOTSTRAP" orders 500 after "$WORK/after.acked"
other=runnel-1; [ "$victim" = runnel-1 ] && other=runnel-2
full_isr() { ctl "$other" -o json topic describe orders | "$PYTHON" -c 'import json,sys; t=json.load(sys.stdin); sys.exit(0 if all(len(p["isr"])==3 and p["leader"] for p in t["partitions"]) else 1)'; }
wait_until 60 "the ISR to be full again after $victim returned" full_isr

step "reading everything back"
"$PYTHON" deploy/compose/acked_writes.py verify "$BOOTSTRAP" orders "$WORK/during.acked" "$WORK/after.acked"
step "kafka-python from the host: a consumer group reads the topic"
"$PYTHON" - "$BOOTSTRAP" <<'PY'
import sys, time
from kafka import KafkaConsumer, TopicPartition
# Polled until the group has read up to every partition's end: the first
# records come only after the group's join, which the cluster holds for
# its initial rebalance delay, so a quiet timeout would cut the read short.
c = KafkaConsumer("orders", bootstrap_servers=sys.argv[1].split(","), group_id="compose-kafka-python",
                  auto_offset_reset="earliest", enable_auto_commit=False)
parts = [TopicPartition("orders", p) for p in sorted(c.partitions_for_topic("orders"))]
expected = sum(c.end_offsets(parts).values())
n, deadline = 0, time.monotonic() + 90
while n < expected and time.monotonic() < deadline:
    n += sum(len(batch) for batch in c.poll(timeout_ms=1000).values())
c.commit()
c.close()
print(f"kafka-python read {n} of the topic's {expected} messages as a group")
sys.exit(0 if n == expected and expected > 0 else 1)
PY

step "security switched on (secure.yml): SASL_SSL from the host, mutual TLS between nodes, ACLs"
"${COMPOSE[@]}" down -v --timeout 10 >/dev/null 2>&1
bash deploy/compose/make-certs.sh "$WORK/secrets" >/dev/null
ADMIN_PASSWORD=$(sed -n 's/^admin = "\(.*\)"$/\1/p' "$WORK/secrets/users.toml")
COMPOSE+=(-f deploy/compose/secure.yml)
export RUNNEL_SECRETS="$WORK/secrets"
"${COMPOSE[@]}" up -d >/dev/null 2>&1
tls=(-X security.protocol=SASL_SSL -X "ssl.ca.location=$WORK/secrets/ca.pem" -X sasl.mechanisms=SCRAM-SHA-512)
as_admin=("${tls[@]}" -X sasl.username=admin -X "sasl.password=$ADMIN_PASSWORD")
as_alice=("${tls[@]}" -X sasl.username=alice -X sasl.password=alice-secret)
secure_brokers() { [ "$(kcat -b 127.0.0.1:11092 "${as_admin[@]}" -L -m 3 2>/dev/null | grep -c '^  broker ')" = 3 ]; }
wait_until 90 "three brokers in kcat -L as admin over SASL_SSL" secure_brokers
# runnelctl over the gRPC port's mutual TLS (the container's RUNNEL_RPC_TLS_*).
ctl runnel-1 topic create audit --partitions 1 --replication-factor 3
ctl runnel-1 topic create payroll --partitions 1 --replication-factor 3
"${COMPOSE[@]}" exec -T -e RUNNEL_USER_PASSWORD=alice-secret runnel-1 runnelctl user create alice >/dev/null
acl() { "${COMPOSE[@]}" exec -T -e "RUNNEL_SASL_PASSWORD=$ADMIN_PASSWORD" runnel-1 runnelctl acl "$@" --kafka runnel-1:9092 --sasl-mechanism SCRAM-SHA-512 --sasl-username admin; }
acl create --topic audit --principal User:alice --operation write --operation read
acl list
echo "written by alice" | kcat -b "$BOOTSTRAP" "${as_alice[@]}" -t audit -P -X acks=all
got=$(kcat -b "$BOOTSTRAP" "${as_alice[@]}" -C -t audit -o beginning -e -q 2>/dev/null | head -1)
[ "$got" = "written by alice" ] || { echo "compose-test: alice read back '$got'" >&2; exit 1; }
if echo "not allowed" | kcat -b "$BOOTSTRAP" "${as_alice[@]}" -t payroll -P -X acks=all -X message.timeout.ms=5000 2>"$WORK/denied.err"; then
  echo "compose-test: alice wrote to payroll without an ACL" >&2; exit 1
fi
grep -qi "authoriz" "$WORK/denied.err" || { echo "compose-test: refused write without an authorization error:" >&2; cat "$WORK/denied.err" >&2; exit 1; }
if "${COMPOSE[@]}" exec -T runnel-1 sh -c 'unset RUNNEL_RPC_TLS_CA_FILE RUNNEL_RPC_TLS_CERTIFICATE_FILE RUNNEL_RPC_TLS_KEY_FILE; runnelctl --timeout-secs 5 cluster status' >/dev/null 2>&1; then
  echo "compose-test: runnelctl reached the gRPC port without a certificate" >&2; exit 1
fi
step "passed"
