"""SASL re-authentication (KIP-368) with connections_max_reauth_ms: clients
that support it (librdkafka, kafka-python) keep producing on their
connections across several session lifetimes, re-authenticating as they go;
the broker never has to close one of them for an ended session."""

from __future__ import annotations

import time
import uuid

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from confluent_kafka import Producer  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

USER, PASSWORD = "alice", "alice-secret"
# librdkafka re-authenticates at 90% of the lifetime, so a request more
# than a tenth of it late meets an ended session: 400 ms of slack here.
LIFETIME_MS = 4000


def runnel_extra_args(work_dir):
    users = work_dir / "users.toml"
    users.write_text(f'[users]\n{USER} = "{PASSWORD}"\n')
    return [
        "--kafka-security-protocol", "SASL_PLAINTEXT",
        "--sasl-users-file", str(users),
        "--connections-max-reauth-ms", str(LIFETIME_MS),
        "--auto-create-topics", "true",
        "--group-initial-rebalance-delay-ms", "0",
    ]


def _confluent(bootstrap, mechanism):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": mechanism,
        "sasl.username": USER,
        "sasl.password": PASSWORD,
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_confluent_kafka_re_authenticates_and_keeps_its_connection(bootstrap, runnel_node, mechanism):
    topic = f"reauth-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    producer = Producer({**_confluent(bootstrap, mechanism), "acks": "all"})
    delivered = []
    # Three session lifetimes of steady traffic.
    end = time.monotonic() + 3 * LIFETIME_MS / 1000
    sent = 0
    while time.monotonic() < end:
        producer.produce(topic, value=f"v{sent}", on_delivery=lambda err, msg: delivered.append(err))
        sent += 1
        producer.poll(0.05)
    assert producer.flush(30) == 0
    assert delivered == [None] * sent
    log = runnel_node.log()
    assert "did not re-authenticate" not in log, "a librdkafka connection was closed for an ended session"
    assert f'SASL re-authenticated user={USER} mechanism="{mechanism}"' in log


def test_kafka_python_re_authenticates_and_keeps_its_connection(bootstrap, runnel_node):
    topic = f"reauth-kp-{uuid.uuid4().hex[:6]}"
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username=USER,
        sasl_plain_password=PASSWORD,
        acks="all",
    )
    end = time.monotonic() + 3 * LIFETIME_MS / 1000
    futures = []
    while time.monotonic() < end:
        futures.append(producer.send(topic, value=b"x"))
        time.sleep(0.05)
    for f in futures:
        f.get(timeout=30)
    producer.close()
    log = runnel_node.log()
    assert "did not re-authenticate" not in log, "a kafka-python connection was closed for an ended session"
    assert f'SASL re-authenticated user={USER} mechanism="SCRAM-SHA-256"' in log
