"""ClusterLoadAssignments spliced from per-locality bytes (``eds_wire``) are exactly the message
built whole (``build_load_assignment``), byte for byte, for random services and node views."""

from __future__ import annotations

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2
from hypothesis import given
from hypothesis import strategies as st

from controlplane.policy.loader import load_texts
from controlplane.policy.service import Endpoint, ServicePort, ServiceSpec
from controlplane.xds.compiler import CompileCache, CompileOptions
from controlplane.xds.compiler.eds_wire import WireAssignment, locality_field
from controlplane.xds.compiler.endpoints import (
    EndpointGroups,
    LocalitySlot,
    assemble_load_assignment,
    build_load_assignment,
)
from controlplane.xds.resources import ENDPOINT, PreSerialized
from controlplane.xds.runtime import build_groups
from controlplane.xds.snapshot import Entry
from tests.support.fuzz import fuzz_settings
from tests.support.policy import doc
from tests.support.xds_per_group import per_group_snapshots

CLUSTERS = ["eu-1", "eu-2", "us-1", "ap-1", "far"]
REGIONS = ["eu-west", "us-west", "ap-south", ""]
ZONES = ["", "a", "b", "eu-west-1b"]
LABELS = [{}, {"version": "v1"}, {"version": "v2"}]

endpoints = st.lists(
    st.builds(
        Endpoint,
        cluster=st.sampled_from(CLUSTERS),
        address=st.sampled_from(["10.0.0.1", "10.0.0.2", "192.168.7.9", "fd00::1"]),
        port=st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
        labels=st.sampled_from(LABELS),
        weight=st.integers(min_value=1, max_value=128),
    ),
    max_size=12,
)
services = st.builds(
    ServiceSpec,
    ports=st.sampled_from(
        [(ServicePort(port=8080),), (ServicePort(port=80), ServicePort(name="grpc", port=9090))]
    ),
    endpoints=endpoints.map(tuple),
)
slots = st.lists(
    st.builds(
        LocalitySlot,
        cluster=st.sampled_from([*CLUSTERS, "unknown"]),
        region=st.sampled_from(REGIONS),
        zone=st.sampled_from(ZONES),
        priority=st.integers(min_value=0, max_value=300),  # multi-byte varints too
        weight=st.one_of(st.none(), st.integers(min_value=0, max_value=100)),
        share=st.sampled_from(["", "eu-west", "us-west", "eu-west/a"]),
        exact=st.booleans(),
    ),
    max_size=8,
    unique_by=lambda s: s.cluster,  # a node sees each Ubiq cluster once
)


def _fixed(raw: list[LocalitySlot]) -> list[LocalitySlot]:
    """As the planners make them: a slot has a weight whenever it shares one or is exact."""
    out = []
    for s in raw:
        if s.weight is None and (s.exact or s.share):
            s = LocalitySlot(s.cluster, s.region, s.zone, s.priority, 1, s.share, s.exact)
        if s.weight is not None and not s.exact and s.weight == 0:
            s = LocalitySlot(s.cluster, s.region, s.zone, s.priority, 1, s.share, s.exact)
        out.append(s)
    return out


@fuzz_settings(300)
@given(
    service=services,
    raw=slots,
    labels=st.sampled_from([None, *LABELS]),
    name=st.sampled_from(["web", "web|v1", "a" * 200, "ünï|8080"]),
)
def test_spliced_assignment_is_the_message_built_whole(
    service: ServiceSpec,
    raw: list[LocalitySlot],
    labels: dict[str, str] | None,
    name: str,
) -> None:
    chosen = _fixed(raw)
    port = service.ports[-1]
    expected = build_load_assignment(name, service, port, labels, chosen)
    got = assemble_load_assignment(name, EndpointGroups.of(service, port, labels), chosen)
    data = expected.SerializeToString(deterministic=True)
    assert got.cluster_name == name
    assert got.serialized() == data
    parsed = endpoint_pb2.ClusterLoadAssignment.FromString(got.serialized())
    assert parsed == expected and got.message() == expected
    assert Entry.of_bytes(ENDPOINT, name, got.serialized()) == Entry.make(ENDPOINT, name, expected)


def test_a_weight_of_zero_is_a_present_empty_wrapper_and_out_of_range_values_are_refused() -> None:
    message = endpoint_pb2.ClusterLoadAssignment(cluster_name="x")
    group = message.endpoints.add(priority=2)
    group.load_balancing_weight.value = 0
    spliced = b"\x0a\x01x" + locality_field(b"", 2, 0)
    assert spliced == message.SerializeToString(deterministic=True)
    with pytest.raises(ValueError, match="uint32"):
        locality_field(b"", 1 << 32, 1)
    with pytest.raises(ValueError, match="uint32"):
        locality_field(b"", 0, -1)


def test_an_assignment_built_as_a_message_keeps_it() -> None:
    message = endpoint_pb2.ClusterLoadAssignment(cluster_name="pay")
    wire = WireAssignment.of_message(message)
    assert wire.message() is message and wire.serialized() == b"\x0a\x03pay"
    assert wire.same(WireAssignment("pay", b"\x0a\x03pay")) and not wire.same(None)


WEB = doc(
    "Service",
    "web",
    """ports: [{port: 8080}]
subsets: [{name: v1, labels: {version: v1}}]
endpoints:
- {cluster: eu-west-1, address: 10.0.0.1, labels: {version: v1}, weight: 3}
- {cluster: eu-west-2, address: 10.0.0.2, labels: {version: v1}}
- {cluster: us-west-1, address: 10.0.1.1, weight: 7}
- {cluster: ap-south-1, address: 10.0.2.1}""",
)
CLUSTER_DOCS = "\n---\n".join(
    doc("Cluster", name, f"region: {region}\nzone: {zone}")
    for name, region, zone in [
        ("eu-west-1", "eu-west", "eu-west-1a"),
        ("eu-west-2", "eu-west", "eu-west-1b"),
        ("us-west-1", "us-west", "us-west-1a"),
        ("ap-south-1", "ap-south", "ap-south-1a"),
    ]
)
TRAFFIC = [
    "",
    doc(
        "TrafficPolicy",
        "web",
        "service: web\nlocality: {distribute: [{from: eu-west, to: {eu-west: 70, us-west: 30}},"
        " {from: eu-west/eu-west-1b, to: {eu-west/eu-west-1b: 100}}]}",
    ),
    doc("TrafficPolicy", "web", "service: web\nlocality: {failoverRegions: [ap-south, us-west]}"),
]


@pytest.mark.parametrize("traffic", range(len(TRAFFIC)))
def test_every_node_groups_eds_is_the_message_path_byte_for_byte(traffic: int) -> None:
    """``build_groups`` (spliced assignments, shared units) against every group compiled alone
    through the message path: the same EDS bytes, versions and entries per group."""
    texts = [("clusters.yaml", CLUSTER_DOCS), ("web.yaml", WEB)]
    if TRAFFIC[traffic]:
        texts.append(("traffic.yaml", TRAFFIC[traffic]))
    model = load_texts(texts)
    options = CompileOptions(listener_port=10000)
    groups = build_groups(model, options, cache=CompileCache())
    alone = per_group_snapshots(model, options, None)
    assert list(groups) == list(alone)
    for key, snapshot in alone.items():
        got = groups[key]
        assert got.snapshot.get(ENDPOINT) == snapshot.get(ENDPOINT), key
        eds = got.compilation.resources[ENDPOINT]
        assert isinstance(eds, PreSerialized)
        for name, entry in snapshot.get(ENDPOINT).entries.items():
            message = eds[name]
            assert Entry.make(ENDPOINT, name, message) == entry
