"""A DNS worker process: answers UDP queries from the answer table the main process ships.

``ubiq serve --dns-workers N`` starts N of these (``workers.DnsWorkers``). Each serves its own
SO_REUSEPORT UDP sockets (created by the main process, inherited by file descriptor) with the
same ``DnsServer`` the main process runs in-process, so answering is one code path; the kernel
spreads queries over the workers by source address and port. Response-rate limiting charges the
one account table all workers map (``rrl_table``; its descriptor inherited like the sockets), so
a prefix gets the rate in total, whichever worker its ports reach. A worker never plans, probes or
builds: it holds the newest table and answers, so a rebuild, an xDS push or an API call in the
main process never delays an answer.

Control channel (a Unix socket pair, one per worker): frames of a 4-byte big-endian length, a
1-byte kind and a payload. Main -> worker: ``C`` config (first), ``T`` table (an AnswerTable in
``pieces``; the first one follows the config), ``D`` table delta (a ``TableDelta`` from the table
the worker holds, in ``pieces``), ``F`` flush counters (8-byte sequence number),
``S`` stop. Worker -> main: ``R`` ready (pickled bound addresses), ``M`` counters (8-byte
sequence number, 0 when unasked, then a pickled ``CountsDelta``). End of file on the channel
means the main process is gone: the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import pickle
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from controlplane.gtm.dns.metrics import DnsMetrics
from controlplane.gtm.dns.pieces import Assembly
from controlplane.gtm.dns.rrl import ResponseRateLimiter
from controlplane.gtm.dns.rrl_table import RrlTable
from controlplane.gtm.dns.server import DnsServer, new_event_loop
from controlplane.gtm.dns.table import AnswerTable

log = structlog.get_logger("ubiq.dns.worker")

CONFIG, TABLE, DELTA, FLUSH, STOP = b"C", b"T", b"D", b"F", b"S"
READY, COUNTS = b"R", b"M"
MAX_FRAME = 1 << 30  # a table larger than 1 GiB is a bug, not a table


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    index: int
    fds: tuple[int, ...]  # inherited UDP sockets, bound with SO_REUSEPORT
    #: the inherited descriptor of the RRL table all workers share (``rrl_table``); None: no RRL
    rrl_table_fd: int | None = None
    #: DnsServer keyword options; every UDP-path option (e.g. response-rate limiting) goes here
    server_options: dict[str, Any] = field(default_factory=dict)
    push_interval: float = 1.0  # seconds between unasked counter pushes
    log_level: str = "info"
    log_format: str = "json"


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return (len(payload) + 1).to_bytes(4) + kind + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(kind, payload); raises asyncio.IncompleteReadError at end of file."""
    length = int.from_bytes(await reader.readexactly(4))
    if not 1 <= length <= MAX_FRAME:
        raise ValueError(f"control frame of {length} bytes")
    body = await reader.readexactly(length)
    return body[:1], body[1:]


async def serve(control: socket.socket) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=control)
    kind, payload = await read_frame(reader)
    if kind != CONFIG:
        raise ValueError(f"expected the config frame first, got {kind!r}")
    config: WorkerConfig = pickle.loads(payload)
    _configure_logging(config)
    kind, payload = await read_frame(reader)
    if kind != TABLE:
        raise ValueError(f"expected a table frame after the config, got {kind!r}")
    table = Assembly(payload).run()
    gc.freeze()
    metrics = DnsMetrics()
    sockets = [socket.socket(fileno=fd) for fd in config.fds]
    options = dict(config.server_options)
    rrl_config = options.pop("rrl_config", None)
    if rrl_config is not None and config.rrl_table_fd is not None:  # one table for all workers
        shared = RrlTable.attach(config.rrl_table_fd)
        options["rrl"] = ResponseRateLimiter(rrl_config, time.monotonic, shared)
    server = DnsServer(table, (), metrics=metrics, tcp=False, udp_sockets=sockets, **options)
    await server.start()
    writer.write(frame(READY, pickle.dumps(server.addresses)))

    def push(seq: int) -> None:
        delta = metrics.take()
        writer.write(frame(COUNTS, seq.to_bytes(8) + pickle.dumps(delta)))

    async def pusher() -> None:
        while True:
            await asyncio.sleep(config.push_interval)
            if metrics.responses or metrics.dropped:
                push(0)

    async def control_loop() -> None:
        while True:
            try:
                kind, payload = await read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the main process is gone
            if kind in (TABLE, DELTA):
                try:
                    server.swap_table(await assemble(payload, server.table))
                except ValueError as exc:  # not the delta's base: exit, restarted with the whole
                    log.error("dns.worker.table_rejected", error=str(exc))
                    raise
            elif kind == FLUSH:
                push(int.from_bytes(payload[:8]))
            elif kind == STOP:
                return

    pushing = asyncio.create_task(pusher())
    try:
        await control_loop()
    finally:
        pushing.cancel()
        await server.stop()
        if not writer.is_closing():
            push(0)  # the last counts, then the channel closes
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 5)


async def assemble(payload: bytes, held: AnswerTable) -> AnswerTable:
    """The table or delta in ``payload`` (``pieces``), one piece per turn of the event loop, so
    answers (from ``held``, until the new table is complete) wait at most one piece. The cyclic
    GC stays off meanwhile, and the new table is frozen out of its reach: a full collection
    walking every slot was a 30-60 ms pause, and the slots hold no cycles (refcounting frees an
    old table)."""
    assembly = Assembly(payload, held)
    enabled = gc.isenabled()
    gc.disable()
    try:
        while not assembly.step():  # noqa: ASYNC110 -- a turn for the answers, no waiting
            await asyncio.sleep(0)
        table = assembly.result()
        gc.freeze()
    finally:
        if enabled:
            gc.enable()
    return table


def _configure_logging(config: WorkerConfig) -> None:
    from controlplane.logging import configure_logging

    fmt = config.log_format if config.log_format in ("console", "json") else "json"
    configure_logging(config.log_level, fmt)  # type: ignore[arg-type]
    structlog.contextvars.bind_contextvars(dns_worker=config.index)


def main(argv: list[str]) -> int:
    """``python -m controlplane.gtm.dns.worker FD``: FD is the control socket."""
    # A worker follows the main process (a stop frame, or end of file when it is gone): Ctrl-C and
    # a service manager's SIGTERM to the whole group reach the main process, which stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    control = socket.socket(fileno=int(argv[0]))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(control))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
