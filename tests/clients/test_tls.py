"""TLS on the Kafka listeners with the clients' usual settings: an SSL
listener (client certificates requested, not required) and a SASL_SSL
external listener with SCRAM, used by confluent-kafka, kafka-python,
aiokafka, kcat and runnelctl. Clients that do not trust the CA, that speak
plaintext to a TLS port, or that send a wrong password get nothing; a
renewed certificate is served to new connections without a restart."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")
aiokafka = pytest.importorskip("aiokafka")

from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

from conftest import free_ports, runnel_bin  # noqa: E402
from expect import confluent_round_trip  # noqa: E402

USER, PASSWORD = "alice", "alice-secret"
_PKI: dict[str, Path] = {}
_EXTERNAL: dict[str, str] = {}


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(dir: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=Runnel test {name}", cwd=dir)


def _issue(dir: Path, ca: str, name: str, cn: str, server: bool) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=dir)
    ext = dir / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-out", f"{name}.pem", "-extfile", ext.name, cwd=dir)


def _free_port() -> int:
    return free_ports(1)[0]


def runnel_extra_args(work_dir):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    pki = work_dir / "pki"
    pki.mkdir()
    _make_ca(pki, "ca")
    _make_ca(pki, "other-ca")
    _issue(pki, "ca", "broker", "localhost", server=True)
    _issue(pki, "ca", "client", "client-app", server=False)
    _issue(pki, "other-ca", "renewed", "localhost", server=True)
    _PKI.update({name: pki / name for name in ["ca.pem", "other-ca.pem", "broker.pem", "broker.key", "client.pem", "client.key", "renewed.pem", "renewed.key"]})
    users = work_dir / "users.toml"
    users.write_text(f'[users]\n{USER} = "{PASSWORD}"\n')
    external = f"127.0.0.1:{_free_port()}"
    _EXTERNAL["bootstrap"] = external
    return [
        "--kafka-security-protocol", "SSL",
        "--external-listener", external,
        "--external-security-protocol", "SASL_SSL",
        "--sasl-users-file", str(users),
        "--ssl-certificate-file", str(_PKI["broker.pem"]),
        "--ssl-key-file", str(_PKI["broker.key"]),
        "--ssl-client-ca-file", str(_PKI["ca.pem"]),
        "--ssl-client-auth", "requested",
        "--auto-create-topics", "true",
        "--group-initial-rebalance-delay-ms", "0",
    ]


def _ssl(bootstrap, **extra):
    return {"bootstrap.servers": bootstrap, "security.protocol": "SSL", "ssl.ca.location": str(_PKI["ca.pem"]), **extra}


def _sasl_ssl(password=PASSWORD, **extra):
    return {
        "bootstrap.servers": _EXTERNAL["bootstrap"],
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(_PKI["ca.pem"]),
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": USER,
        "sasl.password": password,
        **extra,
    }


def test_confluent_kafka_over_ssl(bootstrap):
    topic = f"ssl-{uuid.uuid4().hex[:6]}"
    assert confluent_round_trip(_ssl(bootstrap), topic) == sorted(f"v{i}" for i in range(10))


def test_confluent_kafka_with_a_client_certificate(bootstrap):
    topic = f"mtls-{uuid.uuid4().hex[:6]}"
    config = _ssl(bootstrap, **{"ssl.certificate.location": str(_PKI["client.pem"]), "ssl.key.location": str(_PKI["client.key"])})
    assert confluent_round_trip(config, topic, 3) == ["v0", "v1", "v2"]


def test_confluent_kafka_over_sasl_ssl_with_scram(bootstrap):
    """The external listener is SASL_SSL, and Metadata from it names the
    external endpoints, so every connection is TLS plus SCRAM."""
    topic = f"saslssl-{uuid.uuid4().hex[:6]}"
    assert confluent_round_trip(_sasl_ssl(), topic) == sorted(f"v{i}" for i in range(10))
    with pytest.raises(KafkaException):
        AdminClient(_sasl_ssl(password="guess")).list_topics(timeout=5)


def test_clients_that_do_not_trust_the_ca_or_speak_plaintext_get_nothing(bootstrap, runnel_node):
    with pytest.raises(KafkaException):
        AdminClient(_ssl(bootstrap, **{"ssl.ca.location": str(_PKI["other-ca.pem"])})).list_topics(timeout=5)
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=3)
    assert "TLS handshake failed" in runnel_node.log()
    # The listener still serves clients that do it right.
    AdminClient(_ssl(bootstrap)).list_topics(timeout=10)


def test_kafka_python_over_ssl_and_sasl_ssl(bootstrap):
    topic = f"kp-ssl-{uuid.uuid4().hex[:6]}"
    ssl = dict(bootstrap_servers=bootstrap, security_protocol="SSL", ssl_cafile=str(_PKI["ca.pem"]))
    producer = KafkaProducer(acks="all", **ssl)
    for i in range(5):
        producer.send(topic, value=f"v{i}".encode()).get(timeout=30)
    producer.close()
    sasl_ssl = dict(
        bootstrap_servers=_EXTERNAL["bootstrap"],
        security_protocol="SASL_SSL",
        ssl_cafile=str(_PKI["ca.pem"]),
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username=USER,
        sasl_plain_password=PASSWORD,
    )
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000, **sasl_ssl)
    values = sorted(m.value.decode() for _, m in zip(range(5), consumer))
    consumer.close()
    assert values == [f"v{i}" for i in range(5)]


def test_aiokafka_over_ssl(bootstrap):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    topic = f"aio-ssl-{uuid.uuid4().hex[:6]}"

    async def run() -> list[bytes]:
        context = create_ssl_context(cafile=str(_PKI["ca.pem"]))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, security_protocol="SSL", ssl_context=context, acks="all")
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"v{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, security_protocol="SSL", ssl_context=context, auto_offset_reset="earliest")
        await consumer.start()
        try:
            got = []
            async with asyncio.timeout(30):
                async for m in consumer:
                    got.append(m.value)
                    if len(got) == 5:
                        break
            return got
        finally:
            await consumer.stop()

    assert sorted(asyncio.run(run())) == [f"v{i}".encode() for i in range(5)]


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_over_ssl(bootstrap):
    topic = f"kcat-ssl-{uuid.uuid4().hex[:6]}"
    tls = ["-X", "security.protocol=ssl", "-X", f"ssl.ca.location={_PKI['ca.pem']}"]
    subprocess.run(["kcat", "-b", bootstrap, *tls, "-P", "-t", topic], input=b"one\ntwo\n", check=True, timeout=30)
    out = subprocess.run(["kcat", "-b", bootstrap, *tls, "-C", "-t", topic, "-e", "-q"], capture_output=True, check=True, timeout=30).stdout
    assert sorted(out.split()) == [b"one", b"two"]


def test_runnelctl_over_ssl_and_sasl_ssl(bootstrap):
    runnelctl = str(runnel_bin().with_name("runnelctl"))
    topic = f"ctl-ssl-{uuid.uuid4().hex[:6]}"
    tls = ["--tls-ca-file", str(_PKI["ca.pem"])]
    from confluent_kafka.admin import NewTopic

    admin = AdminClient(_ssl(bootstrap))
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    produced = subprocess.run([runnelctl, "-o", "json", "produce", topic, "--kafka", bootstrap, *tls, "a", "b"], capture_output=True, text=True, timeout=60)
    assert produced.returncode == 0, produced.stderr
    assert [json.loads(line)["offset"] for line in produced.stdout.splitlines()] == [0, 1]
    env = {**os.environ, "RUNNEL_SASL_PASSWORD": PASSWORD}
    sasl = ["--kafka", _EXTERNAL["bootstrap"], *tls, "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", USER]
    consumed = subprocess.run([runnelctl, "-o", "json", "consume", topic, *sasl], capture_output=True, text=True, env=env, timeout=60)
    assert consumed.returncode == 0, consumed.stderr
    assert [json.loads(line)["value"] for line in consumed.stdout.splitlines()] == ["a", "b"]
    untrusted = subprocess.run(
        [runnelctl, "consume", topic, "--kafka", bootstrap, "--tls-ca-file", str(_PKI["other-ca.pem"])], capture_output=True, text=True, timeout=60
    )
    assert untrusted.returncode == 1 and "TLS handshake" in untrusted.stderr, untrusted.stderr


def test_a_renewed_certificate_is_served_without_a_restart(bootstrap, runnel_node):
    """Last in the module: it replaces the broker's certificate with one from
    another CA. New connections get it; the old CA no longer verifies."""
    topic = f"renew-{uuid.uuid4().hex[:6]}"
    AdminClient(_ssl(bootstrap)).list_topics(timeout=10)
    # The key first, then the certificate: until both match, the broker
    # keeps serving the old pair.
    shutil.copy(_PKI["renewed.key"], _PKI["broker.key"])
    shutil.copy(_PKI["renewed.pem"], _PKI["broker.pem"])
    renewed = _ssl(bootstrap, **{"ssl.ca.location": str(_PKI["other-ca.pem"])})
    assert confluent_round_trip(renewed, topic, 3) == ["v0", "v1", "v2"]
    with pytest.raises(KafkaException):
        AdminClient(_ssl(bootstrap)).list_topics(timeout=5)
    assert "TLS files changed; new connections get the new certificate" in runnel_node.log()
