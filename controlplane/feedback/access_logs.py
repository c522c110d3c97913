"""Envoy's gRPC Access Log Service (``envoy.service.accesslog.v3``): client-group latency.

Each gateway Envoy streams its HTTP access log entries to Ubiq (``CompileOptions.access_log_cluster``
turns the logger on in the listener). The stream's first message names the node, hence its
region; each entry gives the client address and the request's duration. The client address is
mapped to its GTM client group and the duration feeds the (group, region) EWMA of a
:class:`ClientLatencyTable`. Runs on the gRPC server's event loop; each entry is a dict probe and
a few float operations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import structlog
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from controlplane.feedback.client_latency import ClientLatencyTable

log = structlog.get_logger(__name__)

GroupOf = Callable[[str], str]  # client address (text) -> GTM client group


def entry_ms(entry: accesslog_pb2.HTTPAccessLogEntry) -> float | None:
    """The request's duration as Envoy saw it (start to last byte sent downstream), in ms."""
    common = entry.common_properties
    if common.HasField("duration"):
        d = common.duration
    elif common.HasField("time_to_last_downstream_tx_byte"):
        d = common.time_to_last_downstream_tx_byte
    else:
        return None
    return float(d.seconds) * 1000.0 + float(d.nanos) / 1e6


def client_address(entry: accesslog_pb2.HTTPAccessLogEntry) -> str:
    """The client as Envoy resolved it (``x-forwarded-for`` aware), else the peer."""
    common = entry.common_properties
    for address in (common.downstream_remote_address, common.downstream_direct_remote_address):
        if address.HasField("socket_address") and address.socket_address.address:
            return str(address.socket_address.address)
    return ""


class AccessLogReceiver(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    def __init__(self, table: ClientLatencyTable, group_of: GroupOf) -> None:
        self.table = table
        self.group_of = group_of
        self.entries = 0

    def add_to_server(self, server: grpc.aio.Server) -> None:
        als_pb2_grpc.add_AccessLogServiceServicer_to_server(self, server)

    async def StreamAccessLogs(
        self,
        request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext[
            als_pb2.StreamAccessLogsMessage, als_pb2.StreamAccessLogsResponse
        ],
    ) -> als_pb2.StreamAccessLogsResponse:
        region = ""
        async for message in request_iterator:
            if message.HasField("identifier"):
                region = message.identifier.node.locality.region
                log.info("feedback.als.stream", node=message.identifier.node.id, region=region)
            if not region or not message.HasField("http_logs"):
                continue
            for entry in message.http_logs.log_entry:
                ms = entry_ms(entry)
                address = client_address(entry)
                if ms is None or not address:
                    continue
                self.entries += 1
                self.table.observe(self.group_of(address), region, ms)
        return als_pb2.StreamAccessLogsResponse()
