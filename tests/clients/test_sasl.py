"""SASL on a SASL_PLAINTEXT listener with the clients' usual settings:
PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 from confluent-kafka and kafka-python
(and kcat, librdkafka 2.0 as Debian ships it); a wrong password and a client
that does not authenticate get nothing."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
import kafka.errors as Errors  # noqa: E402

from expect import confluent_round_trip  # noqa: E402

USER, PASSWORD = "alice", "alice-secret"
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def runnel_extra_args(work_dir):
    users = work_dir / "users.toml"
    users.write_text(f'[users]\n{USER} = "{PASSWORD}"\nbob = "b0b"\n')
    return ["--kafka-security-protocol", "SASL_PLAINTEXT", "--sasl-users-file", str(users), "--auto-create-topics", "true", "--group-initial-rebalance-delay-ms", "0"]


def _confluent(bootstrap, mechanism, password=PASSWORD, **extra):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": mechanism,
        "sasl.username": USER,
        "sasl.password": password,
        **extra,
    }


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_produces_and_consumes_after_authenticating(bootstrap, mechanism):
    topic = f"sasl-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    assert confluent_round_trip(_confluent(bootstrap, mechanism), topic) == sorted(f"v{i}" for i in range(10))


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_kafka_wrong_password_is_an_authentication_error(bootstrap, mechanism):
    admin = AdminClient(_confluent(bootstrap, mechanism, password="guess"))
    with pytest.raises(KafkaException) as e:
        admin.list_topics(timeout=5)
    assert "Authentication" in str(e.value) or "_AUTHENTICATION" in str(e.value) or "transport" in str(e.value).lower(), e.value


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_produces_and_consumes_after_authenticating(bootstrap, mechanism):
    topic = f"kp-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    common = dict(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism, sasl_plain_username=USER, sasl_plain_password=PASSWORD)
    producer = KafkaProducer(acks="all", **common)
    for i in range(5):
        producer.send(topic, value=f"v{i}".encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000, **common)
    values = sorted(m.value.decode() for _, m in zip(range(5), consumer))
    consumer.close()
    assert values == [f"v{i}" for i in range(5)]


def test_kafka_python_wrong_password_fails(bootstrap, runnel_node):
    with pytest.raises(Errors.KafkaError):
        KafkaProducer(
            bootstrap_servers=bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_plain_username="bob",
            sasl_plain_password="not-bobs",
            max_block_ms=5000,
            bootstrap_timeout_ms=5000,
        )
    assert 'SASL authentication failed mechanism="SCRAM-SHA-256"' in runnel_node.log()


def test_a_client_that_does_not_authenticate_gets_no_metadata(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_scram_round_trip(bootstrap):
    topic = f"kcat-{uuid.uuid4().hex[:6]}"
    auth = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", f"sasl.username={USER}", "-X", f"sasl.password={PASSWORD}"]
    subprocess.run(["kcat", "-b", bootstrap, *auth, "-P", "-t", topic], input=b"one\ntwo\n", check=True, timeout=30)
    out = subprocess.run(["kcat", "-b", bootstrap, *auth, "-C", "-t", topic, "-e", "-q"], capture_output=True, check=True, timeout=30).stdout
    assert sorted(out.split()) == [b"one", b"two"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_runnelctl_produce_and_consume_authenticate(bootstrap, mechanism):
    """runnelctl's own Kafka client speaks SASL too; its password comes
    from the environment, and a wrong one is an error naming the user."""
    import json
    import os

    from conftest import runnel_bin

    runnelctl = str(runnel_bin().with_name("runnelctl"))
    topic = f"ctl-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "RUNNEL_SASL_PASSWORD": PASSWORD}
    auth = ["--kafka", bootstrap, "--sasl-mechanism", mechanism, "--sasl-username", USER]
    admin = AdminClient(_confluent(bootstrap, mechanism))
    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    produced = subprocess.run([runnelctl, "-o", "json", "produce", topic, *auth, "a", "b"], capture_output=True, text=True, env=env, timeout=60)
    assert produced.returncode == 0, produced.stderr
    assert [json.loads(line)["offset"] for line in produced.stdout.splitlines()] == [0, 1]
    consumed = subprocess.run([runnelctl, "-o", "json", "consume", topic, *auth], capture_output=True, text=True, env=env, timeout=60)
    assert consumed.returncode == 0, consumed.stderr
    assert [json.loads(line)["value"] for line in consumed.stdout.splitlines()] == ["a", "b"]
    wrong = subprocess.run(
        [runnelctl, "consume", topic, *auth], capture_output=True, text=True, env={**os.environ, "RUNNEL_SASL_PASSWORD": "nope"}, timeout=60
    )
    assert wrong.returncode == 1 and "authentication" in wrong.stderr and USER in wrong.stderr, wrong.stderr


def test_scram_users_managed_through_the_admin_api(bootstrap):
    """AlterUserScramCredentials and DescribeUserScramCredentials from
    confluent-kafka: a user created over the Kafka protocol (the client
    sends only a salted password) authenticates with SCRAM at once, is
    described without secrets, and is refused once deleted."""
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialDeletion, UserScramCredentialUpsertion

    admin = AdminClient(_confluent(bootstrap, "SCRAM-SHA-256"))
    carol = f"carol-{uuid.uuid4().hex[:6]}"
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    for f in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(carol, info, b"c4rol-pw")]).values():
        f.result(timeout=30)
    described = admin.describe_user_scram_credentials([carol])[carol].result(timeout=30)
    assert [(i.mechanism, i.iterations) for i in described.scram_credential_infos] == [(ScramMechanism.SCRAM_SHA_512, 8192)]

    as_carol = {**_confluent(bootstrap, "SCRAM-SHA-512"), "sasl.username": carol, "sasl.password": "c4rol-pw"}
    AdminClient(as_carol).list_topics(timeout=10)
    with pytest.raises(KafkaException):
        AdminClient({**as_carol, "sasl.password": "wrong"}).list_topics(timeout=3)

    for f in admin.alter_user_scram_credentials([UserScramCredentialDeletion(carol, ScramMechanism.SCRAM_SHA_512)]).values():
        f.result(timeout=30)
    with pytest.raises(KafkaException):
        AdminClient(as_carol).list_topics(timeout=3)
    with pytest.raises(KafkaException):
        admin.describe_user_scram_credentials([carol])[carol].result(timeout=30)
