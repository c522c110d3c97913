"""A hostile node id from a real xDS client cannot forge lines or send escapes to the operator's
terminal through ``ubiq serve``'s console log: its controls arrive escaped, on the one line of
the event that carries it."""

from __future__ import annotations

from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.xds.resources import CLUSTER
from tests.support.poll import wait_until
from tests.support.ubiq_serve import serving, write_policy

FORGED = "2026-01-01T00:00:00.000000Z [info     ] api.policy.written             kind=Route"
HOSTILE = f"envoy-1\n{FORGED}\r\x1b[2J\x1b]0;owned\x07\u202egnp.exe\u2028" + "x" * 5000


def ask_as(port: int, node_id: str) -> None:
    """One ADS stream whose first request carries ``node_id`` in cluster nowhere (no config, so
    the server logs ``xds.unknown_group`` with the id); the stream is closed after it is sent."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
            iter(
                [
                    discovery_pb2.DiscoveryRequest(
                        node=base_pb2.Node(id=node_id, cluster="nowhere"), type_url=CLUSTER
                    )
                ]
            ),
            timeout=2,
        )
        try:
            for _ in call:
                break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc


def test_a_hostile_node_id_is_escaped_in_console_logs(tmp_path: Path) -> None:
    write_policy(tmp_path / "policies")
    with serving(tmp_path / "policies", tmp_path, log_format="console") as served:
        ask_as(served.xds_port, HOSTILE)
        wait_until(lambda: "xds.unknown_group" in served.log_text(), 20, "the unknown_group line")
        raw = served.log.read_bytes()
    assert b"\x1b" not in raw and b"\x07" not in raw and b"\r" not in raw
    text = raw.decode()
    assert "\u202e" not in text and "\u2028" not in text
    lines = text.splitlines()
    assert not any(line.startswith(FORGED) for line in lines)  # no line of the client's making
    (line,) = [line for line in lines if "xds.unknown_group" in line]
    shown = repr(f"{HOSTILE[:2048]}…({len(HOSTILE)} chars)")  # cut at 2,048 characters
    assert f"node={shown}" in line and "\\n2026-01-01T00:00:00.000000Z [info" in shown
