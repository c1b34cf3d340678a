"""Three `runnel serve` processes with a replicated topic: acknowledged writes
from kafka-python (idempotent, acks=all) and kcat survive a SIGKILL of the
partition leader and are read back exactly once by kcat."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from conftest import free_ports, runnel_bin

KCAT = os.environ.get("KCAT_BIN", "kcat")


class Cluster:
    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="runnel-failover-"))
        ports = free_ports(9)
        self.kafka = ports[0:3]
        self.rpc = ports[3:6]
        self.http = ports[6:9]
        self.quorum = ",".join(f"{i + 1}@127.0.0.1:{self.rpc[i]}" for i in range(3))
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self, node: int) -> None:
        i = node - 1
        log = open(self.work / f"node-{node}.log", "ab")
        self.procs[node] = subprocess.Popen(
            [str(runnel_bin()), "serve", "--node-id", str(node), "--data-dir", str(self.work / f"node-{node}"),
             "--kafka-listener", f"127.0.0.1:{self.kafka[i]}", "--rpc-listener", f"127.0.0.1:{self.rpc[i]}",
             "--http-listener", f"127.0.0.1:{self.http[i]}", "--controller-quorum", self.quorum,
             "--session-timeout-ms", "2000", "--replica-lag-time-max-ms", "3000"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        )

    def wait_ready(self, node: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.http[node - 1]), timeout=1) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"node {node} not ready")

    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.kafka)

    def kill(self, node: int) -> None:
        self.procs[node].send_signal(signal.SIGKILL)
        self.procs[node].wait(timeout=10)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        shutil.rmtree(self.work, ignore_errors=True)


@pytest.fixture
def cluster():
    c = Cluster()
    try:
        for n in (1, 2, 3):
            c.start(n)
        for n in (1, 2, 3):
            c.wait_ready(n)
        yield c
    finally:
        c.stop()


def _leader(bootstrap: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        (desc,) = admin.describe_topics([topic])
        return desc["partitions"][0]["leader_id"]
    finally:
        admin.close()


def test_acknowledged_writes_survive_a_leader_sigkill(cluster):
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(), request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic("durable", num_partitions=1, replication_factor=3)], timeout_ms=15000)
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap(), acks="all", linger_ms=5, retries=1000,
                             request_timeout_ms=5000, delivery_timeout_ms=60000, max_block_ms=30000)
    acked: list[str] = []
    futures = []
    try:
        for i in range(3000):
            futures.append((f"py-{i}", producer.send("durable", value=f"py-{i}".encode())))
            if i == 1000:
                producer.flush(timeout=60)
                leader = _leader(cluster.bootstrap(), "durable")
                cluster.kill(leader)
                killed = leader
        producer.flush(timeout=60)
        for value, f in futures:
            f.get(timeout=60)
            acked.append(value)
    finally:
        producer.close(timeout=10)
    # kcat produces through the new leader too, with acks=all.
    kcat_values = "\n".join(f"kcat-{i}" for i in range(100)) + "\n"
    subprocess.run([KCAT, "-b", cluster.bootstrap(), "-t", "durable", "-P", "-X", "acks=all"],
                   input=kcat_values.encode(), timeout=60, check=True)
    acked += [f"kcat-{i}" for i in range(100)]
    # The killed node comes back and catches up; everything is read back once.
    cluster.start(killed)
    cluster.wait_ready(killed)
    out = subprocess.run([KCAT, "-b", cluster.bootstrap(), "-t", "durable", "-C", "-e", "-o", "beginning", "-J"],
                         capture_output=True, timeout=60, check=True).stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    values = [r["payload"] for r in records]
    assert sorted(values) == sorted(acked), "every acknowledged write once, nothing else"
    assert [r["offset"] for r in records] == list(range(len(records))), "offsets dense and in order"
