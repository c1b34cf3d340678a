"""Dynamic broker configs (issues 16 and 17): follower.replication.throttled.rate
changed at run time with the admin clients' IncrementalAlterConfigs and
AlterConfigs on a BROKER resource, reported by DescribeConfigs with its
source, and applied by the node."""

from __future__ import annotations

import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, ResourceType  # noqa: E402
from kafka.admin import ConfigResource as KpConfigResource  # noqa: E402
from kafka.admin import ConfigResourceType, KafkaAdminClient  # noqa: E402

RATE = "follower.replication.throttled.rate"


def _set(admin, broker, value, op=AlterConfigOpType.SET):
    resource = ConfigResource(ResourceType.BROKER, broker, incremental_configs=[ConfigEntry(RATE, value, incremental_operation=op)])
    return admin.incremental_alter_configs([resource])[resource].result(timeout=20)


def _described(admin, broker="1"):
    resource = ConfigResource(ResourceType.BROKER, broker)
    entry = admin.describe_configs([resource])[resource].result(timeout=20)[RATE]
    return entry.value, entry.source


def _wait_for_log(node, text):
    deadline = time.monotonic() + 10
    while text not in node.log():
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.1)


def test_the_catch_up_throttle_changes_at_run_time_per_broker_and_by_default(bootstrap, runnel_node):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    value, source = _described(admin)
    assert source == ConfigSource.DEFAULT_CONFIG.value, (value, source)

    _set(admin, "1", "2097152")
    assert _described(admin) == ("2097152", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    _wait_for_log(runnel_node, "catch-up throttle changed bytes_per_sec=2097152")

    # kafka-python too; removing the value goes back to the static setting
    # (none here). (The default for every broker, the empty resource name,
    # only the Java tools send: both Python clients refuse an empty name.)
    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        kp.alter_configs([KpConfigResource(ConfigResourceType.BROKER, "1", configs={RATE: "4194304"})])
    finally:
        kp.close()
    assert _described(admin) == ("4194304", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    _wait_for_log(runnel_node, "catch-up throttle changed bytes_per_sec=4194304")
    _set(admin, "1", None, AlterConfigOpType.DELETE)
    assert _described(admin)[1] == ConfigSource.DEFAULT_CONFIG.value
    _wait_for_log(runnel_node, "catch-up throttle changed bytes_per_sec=0")


@pytest.mark.parametrize(
    ("name", "value", "expect"),
    [
        (RATE, "1000", "at least 1048576"),
        ("log.retention.ms", "1000", "cannot be changed at run time"),
    ],
)
def test_a_broker_config_that_cannot_change_is_refused_by_name(bootstrap, name, value, expect):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        admin.incremental_alter_configs([resource])[resource].result(timeout=20)
    assert expect in str(e.value), e.value
