"""The (client group, region) latency table and the access-log entry readers."""

from __future__ import annotations

import math

import pytest
from envoy.data.accesslog.v3 import accesslog_pb2

from controlplane.feedback.access_logs import client_address, entry_ms
from controlplane.feedback.client_latency import ClientLatencyTable
from controlplane.xds.compiler import CompileOptions, NodeIdentity
from controlplane.xds.compiler.listeners import HTTP_GRPC_ACCESS_LOG, build_listener


def test_ewma_starts_at_the_first_value_and_moves_by_alpha() -> None:
    table = ClientLatencyTable(alpha=0.5)
    table.observe("eu-clients", "eu-west", 10.0)
    table.observe("eu-clients", "eu-west", 30.0)
    assert table.snapshot() == {("eu-clients", "eu-west"): 20.0}
    assert table.count("eu-clients", "eu-west") == 2


@pytest.mark.parametrize(
    ("group", "region", "ms"),
    [
        ("", "eu", 1.0),
        ("g", "", 1.0),
        ("g", "eu", -1.0),
        ("g", "eu", math.nan),
        ("g", "eu", math.inf),
    ],
)
def test_nonsense_observations_are_ignored(group: str, region: str, ms: float) -> None:
    table = ClientLatencyTable()
    table.observe(group, region, ms)
    assert table.snapshot() == {}


def test_pairs_are_bounded() -> None:
    table = ClientLatencyTable(max_pairs=2)
    for region in ("a", "b", "c"):
        table.observe("g", region, 1.0)
    assert set(table.snapshot()) == {("g", "a"), ("g", "b")}


def test_bad_alpha_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        ClientLatencyTable(alpha=0)


def test_entry_readers() -> None:
    entry = accesslog_pb2.HTTPAccessLogEntry()
    assert entry_ms(entry) is None and client_address(entry) == ""
    common = entry.common_properties
    common.time_to_last_downstream_tx_byte.FromMilliseconds(40)
    assert entry_ms(entry) == 40.0
    common.duration.FromMilliseconds(42)
    assert entry_ms(entry) == 42.0
    common.downstream_direct_remote_address.socket_address.address = "10.0.0.1"
    assert client_address(entry) == "10.0.0.1"
    common.downstream_remote_address.socket_address.address = "192.0.2.7"  # from x-forwarded-for
    assert client_address(entry) == "192.0.2.7"


def test_listener_streams_access_logs_only_when_asked() -> None:
    node = NodeIdentity("eu-west-1", "eu-west")
    plain = build_listener(node, CompileOptions())
    assert b"access_loggers" not in plain.SerializeToString()
    logged = build_listener(node, CompileOptions(access_log_cluster="ubiq_xds"))
    assert HTTP_GRPC_ACCESS_LOG.encode() in logged.SerializeToString()
