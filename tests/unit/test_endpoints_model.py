"""Registered endpoints joining the model (EDS endpoints, GTM targets) and the in-memory
registry's TTL, with an injected clock."""

from __future__ import annotations

import pytest

from controlplane.endpoints.memory import MemoryRegistry
from controlplane.endpoints.model import (
    Registered,
    RegistrationError,
    UnknownEndpoint,
    check_registration,
    merge_registered,
    parse_registration,
)
from controlplane.gtm.from_model import steering_policy
from tests.support.policy import doc, load
from tests.support.poll import until

BASE = """\
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: eu}
spec: {region: eu-west, gateway: {address: 10.0.0.1, port: 443}}
---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: us}
spec: {region: us-west, gateway: {address: 10.0.0.2, port: 443}}
"""
EDGE = doc(
    "Service",
    "edge",
    "discovery: api\nports: [{port: 8080}]\nendpoints: [{cluster: eu, address: 10.1.0.1}]",
)
FIXED = doc(
    "Service", "fixed", "ports: [{port: 80}]\nendpoints: [{cluster: eu, address: 10.1.0.9}]"
)
GLOBAL = doc("GlobalService", "edge", "name: edge.gtm.example\nzone: gtm.example\nservice: edge")


def reg(address: str, cluster: str = "us", **extra: object) -> Registered:
    return parse_registration("edge", {"cluster": cluster, "address": address, **extra})


def test_a_registration_joins_the_service_and_the_gtm_targets() -> None:
    model = load(EDGE, FIXED, GLOBAL, base=BASE)
    merged = merge_registered(model, [reg("10.2.0.7", labels={"version": "v2"})])
    endpoints = merged.services["edge"].spec.endpoints
    assert [(e.cluster, e.address) for e in endpoints] == [("eu", "10.1.0.1"), ("us", "10.2.0.7")]
    assert endpoints[1].labels == {"version": "v2"}
    targets = steering_policy(merged, "edge").targets
    # the default targets (each serving cluster's gateway) stay; the VM is answered itself
    assert [(t.cluster, t.address, t.port) for t in targets] == [
        ("eu", "10.0.0.1", 443),
        ("us", "10.0.0.2", 443),
        ("us", "10.2.0.7", 8080),
    ]
    assert merged.services["fixed"] is model.services["fixed"]
    assert merge_registered(model, []) is model


def test_registrations_that_no_longer_match_the_policy_are_ignored() -> None:
    model = load(EDGE, FIXED, GLOBAL, base=BASE)
    stale = Registered("edge", "x", "gone", "10.2.0.8", None)
    other = Registered("fixed", "y", "eu", "10.2.0.9", None)
    assert merge_registered(model, [stale, other]) is model


def test_registrations_are_checked_against_the_policy() -> None:
    model = load(EDGE, FIXED, GLOBAL, base=BASE)
    check_registration(model, reg("10.2.0.7"))
    with pytest.raises(RegistrationError, match="discovery: api"):
        check_registration(model, Registered("fixed", "y", "eu", "10.2.0.9", None))
    with pytest.raises(RegistrationError, match="no such Cluster"):
        check_registration(model, reg("10.2.0.7", cluster="mars"))
    with pytest.raises(RegistrationError, match=r"^address"):
        reg("300.1.1.1")
    with pytest.raises(RegistrationError, match=r"^ttl"):
        reg("10.2.0.7", ttl=1)
    with pytest.raises(RegistrationError, match=r"^id"):
        reg("10.2.0.7", id="../etc")
    assert reg("10.2.0.7", port=9000).id == "us.10.2.0.7.9000"


async def test_the_memory_registry_expires_without_heartbeats() -> None:
    now = [100.0]
    registry = MemoryRegistry(clock=lambda: now[0])
    changes: list[int] = []
    registry.subscribe(lambda: changes.append(len(registry.registered())))
    await registry.register(reg("10.2.0.7", ttl=10))
    now[0] += 8
    assert await registry.heartbeat("edge", "us.10.2.0.7.default") == 10
    now[0] += 8  # 16 s after registering, 8 s after the heartbeat: still there
    assert [r.address for r in registry.registered()] == ["10.2.0.7"]
    now[0] += 3
    with pytest.raises(UnknownEndpoint):
        await registry.heartbeat("edge", "us.10.2.0.7.default")
    await registry.start()
    try:
        await until(lambda: registry.registered() == (), 5, "the expired registration dropped")
    finally:
        await registry.stop()
    assert changes == [1, 0]
    with pytest.raises(UnknownEndpoint):
        await registry.deregister("edge", "us.10.2.0.7.default")
