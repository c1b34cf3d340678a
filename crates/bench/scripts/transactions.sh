#!/usr/bin/env bash
# Transactional produce beside idempotent produce for docs/benchmarks.md
# (issue 15): three `runnel serve` processes on this machine, a topic of 3
# partitions with replication factor 3, 1 KiB messages, acks=all. The
# idempotent producer pipelines freely; the transactional one commits every
# 100 or 1,000 messages (each commit waits for its batches, then EndTxn
# writes and replicates one marker per partition through Raft-backed state).
#
#   cargo build --release -p runnel -p runnel-bench
#   bash crates/bench/scripts/transactions.sh          # RUNS=3 MESSAGES=200000
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNNEL=target/release/runnel
BENCH=target/release/runnel-bench
PARENT=${PARENT:-/tmp}
RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-200000}
FLUSH=${FLUSH:-always}
BASE=${BASE:-19400}
NAME=runnel-txn
# shellcheck source=cluster.sh
source crates/bench/scripts/cluster.sh
trap stop_cluster EXIT

start_cluster
echo "# three nodes, RF 3, acks=all, $MESSAGES messages of 1 KiB per run"
for r in $(seq "$RUNS"); do
  echo "idempotent $("$BENCH" produce -b "$B" -t "idem-$r" -n "$MESSAGES" -s 1024 --acks all --partitions 3 --replication 3 -X enable.idempotence=true --json 2>/dev/null)"
  echo "txn-1000 $("$BENCH" produce -b "$B" -t "txn1000-$r" -n "$MESSAGES" -s 1024 --acks all --partitions 3 --replication 3 --transaction-size 1000 --json 2>/dev/null)"
  echo "txn-100 $("$BENCH" produce -b "$B" -t "txn100-$r" -n "$MESSAGES" -s 1024 --acks all --partitions 3 --replication 3 --transaction-size 100 --json 2>/dev/null)"
done
