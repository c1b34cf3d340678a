# Everyday recipes. `cargo install just --locked` if you do not have just.

# Build everything (debug).
build:
    cargo build --workspace

# The README's test command: Rust unit, property and end-to-end tests.
test:
    cargo build --workspace && cargo test --workspace

# The real-client suite (needs kcat and a venv with the clients; see .ci/run).
test-clients venv="/tmp/runnel-ci-venv":
    cargo build -p runnel
    RUNNEL_BIN=$PWD/target/debug/runnel {{venv}}/bin/python -m pytest tests/clients -q

# Everything CI runs.
ci:
    bash .ci/run

# One node with embedded defaults on 127.0.0.1:9092.
dev:
    cargo run --release -p runnel -- dev

# Fuzz request decoding for longer than the suite does.
fuzz cases="1000000":
    PROPTEST_CASES={{cases}} cargo test -p runnel-protocol --release --test hostile_requests

# Criterion benchmark of log appends.
bench-storage:
    cargo bench -p runnel-storage --bench append

# Produce, consume and end-to-end figures against a running node (see docs/benchmarks.md).
bench bootstrap="127.0.0.1:9092":
    cargo build --release -p runnel-bench
    target/release/runnel-bench produce -b {{bootstrap}} -t bench-acks1 -n 1000000 --acks 1
    target/release/runnel-bench produce -b {{bootstrap}} -t bench-acksall -n 1000000 --acks all
    target/release/runnel-bench consume -b {{bootstrap}} -t bench-acks1 -n 1000000
    target/release/runnel-bench e2e -b {{bootstrap}} -t bench-e2e -n 100000 --rate 10000

# The container image runnel:latest (release binaries on debian:bookworm-slim,
# which offline-base.sh builds with debootstrap when no registry answers).
image:
    cargo build --release -p runnel -p runnel-cli
    mkdir -p deploy/docker/bin
    cp target/release/runnel target/release/runnelctl deploy/docker/bin/
    bash deploy/docker/offline-base.sh
    docker build -t runnel:latest deploy/docker

# A three-node cluster in docker-compose; Kafka on 127.0.0.1:11092/12092/13092.
compose-up: image
    docker-compose -f deploy/compose/docker-compose.yml up -d

compose-down:
    docker-compose -f deploy/compose/docker-compose.yml down -v

# End-to-end test of the compose cluster (SIGKILL of a leader under acks=all load).
compose-test venv="/tmp/runnel-ci-venv":
    PYTHON={{venv}}/bin/python bash deploy/compose/compose-test.sh

# Strict schema validation of the Kubernetes manifests (offline).
k8s-validate venv="/tmp/runnel-ci-venv":
    {{venv}}/bin/kubernetes-validate --strict --quiet deploy/k8s/configmap.yaml deploy/k8s/service-headless.yaml deploy/k8s/service.yaml deploy/k8s/statefulset.yaml deploy/k8s/pdb.yaml

# The chaos suite: every fault scenario plus the checker's self-test, against
# a failpoints build of runnel (target/chaos). Results in target/chaos-results.
chaos seed="":
    cargo build --release -p runnel -p runnel-cli --features runnel/failpoints --target-dir target/chaos
    cargo build -p runnel-tests --bin runnel-chaos
    RUNNEL_BIN=$PWD/target/chaos/release/runnel target/debug/runnel-chaos --scenario all {{ if seed != "" { "--seed " + seed } else { "" } }}

# The Docker tier: the same workloads and checker against the docker-compose
# cluster (deploy/compose with chaos.yml), faults by kill -9 of a container's
# process, docker pause and docker network disconnect. Needs a Docker engine.
chaos-docker seed="": image
    cargo build -p runnel-tests --bin runnel-chaos
    RUNNEL_BIN=$PWD/target/release/runnel target/debug/runnel-chaos --scenario docker --out target/chaos-docker-results {{ if seed != "" { "--seed " + seed } else { "" } }}

# The CI subset: three scenarios and the self-test.
chaos-smoke:
    cargo build --release -p runnel -p runnel-cli --features runnel/failpoints --target-dir target/chaos
    cargo build -p runnel-tests --bin runnel-chaos
    RUNNEL_BIN=$PWD/target/chaos/release/runnel target/debug/runnel-chaos --scenario smoke
