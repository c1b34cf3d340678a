"""ACLs (issue 18): with `--authorizer acl`, a SASL user may do what its
bindings allow and nothing else. Bindings are made, listed and removed with
the clients' own admin APIs (CreateAcls, DescribeAcls, DeleteAcls) by a
super user; a principal allowed to write topic `a`, read group `g` and read
the topics under the prefix `logs-` (except `logs-secret`, denied) cannot
read `b`, cannot create topics and does not see `b` in Metadata."""

from __future__ import annotations

import time
import uuid

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from kafka.admin import (  # noqa: E402
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
)
from kafka.admin import ResourceType as KpResourceType  # noqa: E402

PASSWORDS = {"admin": "admin-secret", "alice": "alice-secret", "mallory": "mallory-secret"}


def runnel_extra_args(work_dir):
    users = work_dir / "users.toml"
    users.write_text("[users]\n" + "".join(f'{u} = "{p}"\n' for u, p in PASSWORDS.items()))
    return [
        "--kafka-security-protocol", "SASL_PLAINTEXT",
        "--sasl-users-file", str(users),
        "--authorizer", "acl",
        "--super-users", "User:admin",
        "--auto-create-topics", "true",
        "--group-initial-rebalance-delay-ms", "0",
    ]


def _config(bootstrap, user, **extra):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": PASSWORDS[user],
        **extra,
    }


def _kafka_python_admin(bootstrap, user):
    return KafkaAdminClient(
        bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=user, sasl_plain_password=PASSWORDS[user],
    )


def _allow(restype, name, operation, pattern=ResourcePatternType.LITERAL, permission=AclPermissionType.ALLOW, principal="User:alice"):
    return AclBinding(restype, name, pattern, principal, "*", operation, permission)


@pytest.fixture(scope="module")
def world(bootstrap):
    """Topics a, b, logs-public and logs-secret, each with one message, and
    alice's bindings, made by the super user."""
    suffix = uuid.uuid4().hex[:6]
    names = {k: f"{k}-{suffix}" for k in ("a", "b")}
    names["public"] = f"logs-{suffix}-public"
    names["secret"] = f"logs-{suffix}-secret"
    names["prefix"] = f"logs-{suffix}-"
    names["group"] = f"g-{suffix}"
    admin = AdminClient(_config(bootstrap, "admin"))
    for f in admin.create_topics([NewTopic(names[k], 1, 1) for k in ("a", "b", "public", "secret")]).values():
        f.result(timeout=20)
    producer = Producer(_config(bootstrap, "admin", acks="all"))
    for k in ("a", "b", "public", "secret"):
        producer.produce(names[k], value=f"{k}-0".encode())
    assert producer.flush(30) == 0
    bindings = [
        _allow(ResourceType.TOPIC, names["a"], AclOperation.WRITE),
        _allow(ResourceType.GROUP, names["group"], AclOperation.READ),
        _allow(ResourceType.TOPIC, names["prefix"], AclOperation.ALL, pattern=ResourcePatternType.PREFIXED),
        _allow(ResourceType.TOPIC, names["secret"], AclOperation.READ, permission=AclPermissionType.DENY),
    ]
    for f in admin.create_acls(bindings).values():
        assert f.result(timeout=20) is None
    return admin, names, bindings


def _consume_one(bootstrap, topic, group):
    """The first message or the first error alice gets reading `topic` in `group`."""
    consumer = Consumer(_config(bootstrap, "alice", **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                return msg.error()
            consumer.commit(message=msg, asynchronous=False)
            return msg.value().decode()
        return None
    finally:
        consumer.close()


def test_a_principal_writes_where_allowed_and_nowhere_else(bootstrap, world):
    _, names, _ = world
    producer = Producer(_config(bootstrap, "alice", acks="all", **{"message.timeout.ms": 10000}))
    results = {}
    for k in ("a", "b"):
        producer.produce(names[k], value=b"from alice", on_delivery=lambda err, msg, k=k: results.__setitem__(k, err))
    producer.flush(30)
    assert results["a"] is None
    assert results["b"] is not None and results["b"].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, results["b"]


def test_transactional_writes_need_write_on_the_transactional_id(bootstrap, world):
    """Produce checks the request's transactional id, as Kafka does: a
    transaction whose binding is removed while it is open cannot write
    more, even to a partition it had already added."""
    admin, names, _ = world
    txn = f"tx-{uuid.uuid4().hex[:6]}"
    for f in admin.create_acls([_allow(ResourceType.TRANSACTIONAL_ID, txn, AclOperation.WRITE)]).values():
        assert f.result(timeout=20) is None
    producer = Producer(_config(bootstrap, "alice", **{"transactional.id": txn, "message.timeout.ms": 10000}))
    producer.init_transactions(20)
    producer.begin_transaction()
    errors = []
    producer.produce(names["a"], value=b"in a transaction", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(20)
    assert errors == [None], errors
    binding = AclBindingFilter(ResourceType.TRANSACTIONAL_ID, txn, ResourcePatternType.LITERAL, "User:alice", None, AclOperation.ANY, AclPermissionType.ANY)
    for f in admin.delete_acls([binding]).values():
        assert len(f.result(timeout=20)) == 1
    producer.produce(names["a"], value=b"after the binding went", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(20)
    assert len(errors) == 2 and errors[1] is not None, errors
    assert errors[1].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, errors[1]


def test_metadata_lists_only_what_the_principal_may_describe(bootstrap, world):
    _, names, _ = world
    alice = AdminClient(_config(bootstrap, "alice"))
    topics = set(alice.list_topics(timeout=10).topics)
    assert {names["a"], names["public"], names["secret"]} <= topics, topics
    assert names["b"] not in topics
    # Asked by name, b is refused without saying whether it exists.
    md = alice.list_topics(topic=names["b"], timeout=10)
    assert md.topics[names["b"]].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_describe_topic_partitions_answers_only_what_the_principal_may_describe(bootstrap, world):
    """KIP-966 under ACLs: a topic alice may not describe is refused by
    name and left out of "every topic"; a topic she may write to shows
    WRITE and DESCRIBE among its authorized operations (KIP-430)."""
    _, names, _ = world
    alice = _kafka_python_admin(bootstrap, "alice")
    try:
        asked = alice.describe_topic_partitions([names["a"], names["b"]])
        everything = alice.describe_topic_partitions([])
    finally:
        alice.close()
    by_name = {t["name"]: t for t in asked["topics"]}
    assert by_name[names["b"]]["error_code"] == 29, by_name  # TOPIC_AUTHORIZATION_FAILED
    assert by_name[names["b"]]["partitions"] == []
    a = by_name[names["a"]]
    assert a["error_code"] == 0 and len(a["partitions"]) == 1, a
    for operation in (ACLOperation.WRITE, ACLOperation.DESCRIBE):
        assert a["topic_authorized_operations"] & (1 << int(operation)), a
    assert not a["topic_authorized_operations"] & (1 << int(ACLOperation.DELETE)), a
    listed = {t["name"] for t in everything["topics"]}
    assert names["a"] in listed and names["public"] in listed and names["b"] not in listed, listed


def test_a_principal_reads_through_its_group_and_a_prefixed_binding_and_a_deny_wins(bootstrap, world):
    _, names, _ = world
    assert _consume_one(bootstrap, names["public"], names["group"]) == "public-0"
    denied = _consume_one(bootstrap, names["secret"], names["group"])
    assert isinstance(denied, KafkaError) and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied
    denied = _consume_one(bootstrap, names["b"], names["group"])
    assert isinstance(denied, KafkaError) and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied
    other_group = _consume_one(bootstrap, names["public"], f"other-{names['group']}")
    assert isinstance(other_group, KafkaError) and other_group.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, other_group


def test_a_principal_without_create_cannot_create_topics(bootstrap, world):
    _, names, _ = world
    alice = AdminClient(_config(bootstrap, "alice"))
    future = alice.create_topics([NewTopic(f"new-{names['a']}", 1, 1)])[f"new-{names['a']}"]
    with pytest.raises(KafkaException) as e:
        future.result(timeout=20)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Nor may it list ACLs. (librdkafka drops DescribeAcls' error code and
    # reports an empty list; kafka-python reports the error.)
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY)
    assert alice.describe_acls(everything).result(timeout=20) == []
    kp = _kafka_python_admin(bootstrap, "alice")
    try:
        with pytest.raises(kafka.errors.ClusterAuthorizationFailedError):
            kp.describe_acls(ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY, ResourcePatternFilter(KpResourceType.ANY, None, ACLResourcePatternType.ANY)))
    finally:
        kp.close()


def test_a_principal_without_any_binding_gets_nothing(bootstrap, world):
    _, names, _ = world
    mallory = AdminClient(_config(bootstrap, "mallory"))
    assert not {names["a"], names["b"], names["public"]} & set(mallory.list_topics(timeout=10).topics)
    kp = _kafka_python_admin(bootstrap, "mallory")
    try:
        with pytest.raises(kafka.errors.ClusterAuthorizationFailedError):
            kp.describe_cluster()
        grant = ACL("User:mallory", "*", ACLOperation.ALL, ACLPermissionType.ALLOW, ResourcePattern(KpResourceType.CLUSTER, "kafka-cluster", ACLResourcePatternType.LITERAL))
        result = kp.create_acls([grant])
        assert not result["succeeded"] and len(result["failed"]) == 1, result
        assert result["failed"] == [kafka.errors.ClusterAuthorizationFailedError], result
    finally:
        kp.close()
    # Nothing it tried gave it a binding.
    admin, _, _ = world
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:mallory", None, AclOperation.ANY, AclPermissionType.ANY)
    assert admin.describe_acls(everything).result(timeout=20) == []


def test_super_users_see_every_cluster_operation(bootstrap, world):
    admin, _, _ = world
    cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=20)
    assert {AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.CREATE} <= set(cluster.authorized_operations), cluster.authorized_operations


def test_bindings_are_listed_and_removed_with_either_client(bootstrap, world):
    admin, names, bindings = world
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY)
    listed = admin.describe_acls(everything).result(timeout=20)
    assert set(bindings) <= set(listed), listed
    # kafka-python sees the prefixed binding too.
    kp = _kafka_python_admin(bootstrap, "admin")
    try:
        pattern = ResourcePatternFilter(KpResourceType.TOPIC, names["prefix"], ACLResourcePatternType.PREFIXED)
        acls, error = kp.describe_acls(ACLFilter("User:alice", "*", ACLOperation.ANY, ACLPermissionType.ANY, pattern))
        assert error is kafka.errors.NoError, error
        assert [(a.operation, a.permission_type) for a in acls] == [(ACLOperation.ALL, ACLPermissionType.ALLOW)]
    finally:
        kp.close()
    # Removing alice's write on a: she can no longer write there.
    write_a = AclBindingFilter(ResourceType.TOPIC, names["a"], ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    removed = admin.delete_acls([write_a])[write_a].result(timeout=20)
    assert removed == [bindings[0]]
    producer = Producer(_config(bootstrap, "alice", acks="all", **{"message.timeout.ms": 10000}))
    result = []
    producer.produce(names["a"], value=b"after removal", on_delivery=lambda err, msg: result.append(err))
    producer.flush(30)
    assert result and result[0] is not None and result[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, result
    # Nothing of it is left to list.
    assert bindings[0] not in admin.describe_acls(everything).result(timeout=20)
