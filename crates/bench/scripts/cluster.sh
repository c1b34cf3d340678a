# Sourced by the three-node benchmark scripts: starts and stops three
# `runnel serve` processes on this machine (each a controller and a broker)
# with Kafka ports BASE, BASE+100, BASE+200 (gRPC +1, HTTP +2), data under
# $PARENT/$NAME, logs in $PARENT/$NAME-N.log. Set RUNNEL, PARENT, BASE, NAME,
# FLUSH and EXTRA (more `runnel serve` flags) before calling start_cluster.
Q="1@127.0.0.1:$((BASE+1)),2@127.0.0.1:$((BASE+101)),3@127.0.0.1:$((BASE+201))"
B="127.0.0.1:$BASE,127.0.0.1:$((BASE+100)),127.0.0.1:$((BASE+200))"
PIDS=()

start_cluster() {
  rm -rf "${PARENT:?}/$NAME"
  for i in 1 2 3; do
    off=$(( (i - 1) * 100 ))
    # shellcheck disable=SC2086
    "$RUNNEL" serve --node-id "$i" --data-dir "$PARENT/$NAME/node-$i" \
      --kafka-listener "127.0.0.1:$((BASE + off))" --rpc-listener "127.0.0.1:$((BASE + off + 1))" \
      --http-listener "127.0.0.1:$((BASE + off + 2))" --controller-quorum "$Q" --flush-policy "${FLUSH:-always}" ${EXTRA:-} \
      >/dev/null 2>"$PARENT/$NAME-$i.log" &
    PIDS+=($!)
  done
  for i in 0 1 2; do
    for _ in $(seq 200); do
      curl -sf "http://127.0.0.1:$((BASE + i * 100 + 2))/readyz" >/dev/null && break
      sleep 0.1
    done
  done
}

stop_cluster() { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=(); }
