"""Broker ACL against a real Mosquitto: each identity reaches only its own topics.

Mosquitto silently drops a publish the ACL denies (the QoS 1 PUBACK still comes),
so every "denied" check is proven by a subscriber entitled to see the topic that
receives nothing, with a positive control that does arrive through the same path.
"""
from __future__ import annotations


import pytest

from tests.e2e.broker_fixtures import fleet  # noqa: F401 - the pytest fixture

DEVICE_TOPICS = ("telemetry", "status", "events", "update")
# No settle sleeps: every publish waits for its PUBACK and Mosquitto delivers to
# one subscriber in the order it processed the publishes, so once a control
# message published after the denied ones has arrived, a denied one that got
# through would already be there.




def test_device_cannot_publish_on_another_devices_topics(fleet):
    watch = fleet.subscriber("collector", [f"medsentry/+/{t}" for t in DEVICE_TOPICS])
    cmd_watch = fleet.subscriber("pump-1", ["medsentry/pump-1/cmd"])
    intruder = fleet.client("pump-2")
    for t in DEVICE_TOPICS + ("cmd",):
        fleet.publish(intruder, f"medsentry/pump-1/{t}", b"forged-by-pump-2")
    # pump-2 may not command itself or anyone either
    fleet.publish(intruder, "medsentry/pump-2/cmd", b"self-command")
    owner = fleet.client("pump-1")
    for t in DEVICE_TOPICS:
        fleet.publish(owner, f"medsentry/pump-1/{t}", b"genuine")
    assert watch.wait_count(len(DEVICE_TOPICS)), watch.messages
    assert sorted(watch.messages) == sorted((f"medsentry/pump-1/{t}", b"genuine") for t in DEVICE_TOPICS)
    assert cmd_watch.messages == []
    # and pump-2 can publish on its own topic (the ACL is not simply closed)
    fleet.publish(intruder, "medsentry/pump-2/telemetry", b"own")
    assert watch.wait_count(len(DEVICE_TOPICS) + 1)
    assert watch.messages[-1] == ("medsentry/pump-2/telemetry", b"own")


def test_device_cannot_read_another_devices_topics(fleet):
    spy = fleet.subscriber("pump-2", [
        "medsentry/pump-1/telemetry", "medsentry/pump-1/status", "medsentry/pump-1/cmd",
        "medsentry/+/telemetry", "medsentry/#", "#",
    ])
    own_cmd = fleet.subscriber("pump-1", ["medsentry/pump-1/cmd"])
    collector = fleet.subscriber("collector", ["medsentry/+/telemetry"])
    # one connection per certificate (its CN is its client id): pump-1 publishes
    # through the connection that holds its cmd subscription
    fleet.publish(own_cmd.client, "medsentry/pump-1/telemetry", b"vitals")
    fleet.publish(fleet.client("operator"), "medsentry/pump-1/cmd", b"stop-infusion")
    assert collector.wait_count(1) and own_cmd.wait_count(1)
    assert collector.messages == [("medsentry/pump-1/telemetry", b"vitals")]
    assert own_cmd.messages == [("medsentry/pump-1/cmd", b"stop-infusion")]
    # the spy's control: a command to pump-2 itself, which its "#" may read
    fleet.publish(fleet.client("operator"), "medsentry/pump-2/cmd", b"control")
    assert spy.wait_count(1), "the spy's own command never arrived"
    assert {m for m in spy.messages} == {("medsentry/pump-2/cmd", b"control")}, spy.messages


def test_collector_is_read_only(fleet):
    device_cmd = fleet.subscriber("pump-1", ["medsentry/pump-1/cmd"])
    other_collector = fleet.subscriber("collector-b", ["medsentry/+/telemetry", "medsentry/+/status"])
    col = fleet.client("collector")
    fleet.publish(col, "medsentry/pump-1/cmd", b"collector-command")
    fleet.publish(col, "medsentry/pump-1/telemetry", b"collector-forgery")
    fleet.publish(col, "medsentry/pump-1/status", b"collector-forgery")
    # controls: the operator may command, the device may publish
    fleet.publish(fleet.client("operator"), "medsentry/pump-1/cmd", b"operator-command")
    fleet.publish(device_cmd.client, "medsentry/pump-1/telemetry", b"device")
    assert device_cmd.wait_count(1) and other_collector.wait_count(1)
    assert device_cmd.messages == [("medsentry/pump-1/cmd", b"operator-command")]
    assert other_collector.messages == [("medsentry/pump-1/telemetry", b"device")]


def test_service_identities_only_reach_their_reserved_names(fleet):
    """Known residual of Mosquitto's `pattern` lines (no deny rules): a service
    identity may write medsentry/<its own name>/telemetry. No device can carry that
    name (reserved in the PKI) and the collector ignores those topics; this test
    pins the behaviour so a change is noticed."""
    watch = fleet.subscriber("collector-b", ["medsentry/+/telemetry"])
    fleet.publish(fleet.client("collector"), "medsentry/collector/telemetry", b"own-name")
    assert watch.wait_count(1)
    assert watch.messages == [("medsentry/collector/telemetry", b"own-name")]


def test_operator_cannot_publish_telemetry(fleet):
    watch = fleet.subscriber("collector", ["medsentry/+/telemetry"])
    op = fleet.client("operator")
    fleet.publish(op, "medsentry/pump-1/telemetry", b"operator-forgery")
    fleet.publish(fleet.client("pump-2"), "medsentry/pump-2/telemetry", b"control")
    assert watch.wait_count(1)
    assert watch.messages == [("medsentry/pump-2/telemetry", b"control")]
