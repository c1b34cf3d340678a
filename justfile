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
