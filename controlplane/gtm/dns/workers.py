"""DNS worker processes, seen from the main process: start, ship tables, gather counts, restart.

Why processes: in ``ubiq serve`` the DNS server shares one thread and one GIL with xDS, the API,
health probes and table builds, which halves its throughput under load. Workers answer UDP on
their own cores from the newest table; planning, probing and explaining stay in the main process
(``ubiq dns explain`` reads the main process's plan, the table the workers hold is built from).

* Sockets: the main process binds ``count`` UDP sockets per listen address with SO_REUSEPORT
  (the first one resolves port 0) and each worker inherits its own; a port some other socket
  holds fails the start like the in-process server does (probed without SO_REUSEPORT, so a second
  ``ubiq serve`` cannot silently join the group). TCP stays in the main process (connection limits
  are global; zone transfers are rare).
* Tables: each new table goes to every worker as a delta from the table shipped before
  (``delta``: the slots an incremental build changed, found by identity), or whole when there is
  no delta (a full build); pickled once, in a thread, in pieces of a few names each (``pieces``);
  only the newest pending table is sent. A worker takes in one piece per turn of its event loop,
  answering from the table it holds meanwhile, and swaps the new one in once complete. A worker
  that starts gets the whole table last shipped.
* Counters: a worker pushes its query counts every second and when asked (``gather_counts``, which
  /metrics awaits before rendering), as deltas merged into the main ``DnsMetrics``: a worker that
  dies loses at most its last second of counts, and totals never go backwards. Its response-rate
  limiter's counters ride along (``CountsDelta.rrl``), so ``ubiq_dns_rrl_*`` are the workers' sums.
* Response-rate limiting: the main process creates one RRL table in a memory file
  (``rrl_table``) and every worker, a restarted one too, inherits its descriptor and maps it, so a
  prefix is limited across workers. The main process holds it until ``stop``; it has no name in
  /dev/shm, so no crash can leak it.
* A worker that exits is restarted (after 0.5 s, doubling to 30 s while it keeps dying within
  10 s of its start) with the newest table; ``ubiq_dns_worker_restarts_total`` counts that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.gtm.dns.delta import table_delta
from controlplane.gtm.dns.metrics import CountsDelta, DnsMetrics
from controlplane.gtm.dns.pieces import to_pieces
from controlplane.gtm.dns.rrl import RrlConfig
from controlplane.gtm.dns.rrl_table import RrlTable
from controlplane.gtm.dns.server import udp_socket
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.worker import (
    CONFIG,
    COUNTS,
    DELTA,
    FLUSH,
    READY,
    STOP,
    TABLE,
    WorkerConfig,
    frame,
    read_frame,
)

log = structlog.get_logger("ubiq.dns.workers")

START_TIMEOUT = 30.0  # seconds for a worker to import, bind and say ready
STOP_TIMEOUT = 5.0
SEND_TIMEOUT = 30.0  # a worker that has not read a table in this long is restarted
GATHER_TIMEOUT = 1.0  # a scrape waits at most this long for the workers' counts
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 10.0  # a worker that lived this long resets the restart delay


@dataclass(eq=False)
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    exited: asyncio.Future[int]  # the exit status, once the process has ended
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    ready: asyncio.Future[Any]
    started: float
    waiters: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    reading: asyncio.Task[None] | None = None


class WorkerCollector(Collector):
    """``ubiq_dns_workers`` and ``ubiq_dns_worker_restarts_total``; 0 while UDP is answered in
    the main process (``workers()`` gives None)."""

    def __init__(self, workers: Callable[[], DnsWorkers | None]) -> None:
        self._workers = workers

    def collect(self) -> Iterator[Metric]:
        workers = self._workers()
        yield GaugeMetricFamily(
            "ubiq_dns_workers",
            "DNS worker processes answering UDP (--dns-workers)",
            value=len(workers.pids) if workers is not None else 0,
        )
        yield CounterMetricFamily(
            "ubiq_dns_worker_restarts",
            "DNS worker processes restarted after they exited",
            value=workers.restarts if workers is not None else 0,
        )


class DnsWorkers:
    """``count`` worker processes answering UDP on ``listen`` with the newest table."""

    def __init__(
        self,
        listen: Sequence[tuple[str, int]],
        count: int,
        metrics: DnsMetrics,
        *,
        server_options: dict[str, Any] | None = None,
        receive_buffer: int = 4 << 20,
    ) -> None:
        if count < 1:
            raise ValueError("DnsWorkers needs at least one worker")
        self.listen = tuple(listen)
        self.count = count
        self.metrics = metrics
        self.server_options = dict(server_options or {})
        self.receive_buffer = receive_buffer
        self.restarts = 0
        self.addresses: list[tuple[str, str, int]] = []  # ("udp", host, port) bound
        self._sockets: list[list[socket.socket]] = []  # per worker: one per listen address
        self._workers: list[_Worker | None] = [None] * count
        self._supervisors: list[asyncio.Task[None]] = []
        self._shipped: AnswerTable | None = None  # the table every ready worker holds
        self._payload = b""  # a table pickled whole: ``_shipped`` when ``_payload_of`` is it
        self._payload_of: AnswerTable | None = None
        self._latest: AnswerTable | None = None
        self._changed = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._stopping = False
        self._seq = 0
        self._rrl_table: RrlTable | None = None  # shared by the workers, held here

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w is not None and not w.exited.done()]

    async def start(self, table: AnswerTable) -> None:
        """Bind, start every worker with ``table`` and wait until each answers; raises OSError
        when an address cannot be bound, RuntimeError when a worker does not start."""
        self._latest = self._shipped = self._payload_of = table
        self._payload = await asyncio.to_thread(to_pieces, table)
        try:
            self._bind()
            rrl: RrlConfig | None = self.server_options.get("rrl_config")
            if rrl is not None:
                self._rrl_table = RrlTable.create_shared(rrl.table_size)
            await asyncio.gather(*(self._spawn(i) for i in range(self.count)))
        except BaseException:
            await self.stop()
            raise
        loop = asyncio.get_running_loop()
        self._supervisors = [loop.create_task(self._supervise(i)) for i in range(self.count)]
        self._sender = loop.create_task(self._send_tables())
        log.info("dns.workers.started", workers=self.count, pids=self.pids, udp=self.addresses)

    def publish(self, table: AnswerTable) -> None:
        """Ship ``table`` to every worker (the newest wins when several wait)."""
        self._latest = table
        self._changed.set()

    async def gather_counts(self) -> None:
        """Ask every worker for its counts and merge them (bounded by GATHER_TIMEOUT)."""
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[None]] = []
        for worker in self._workers:
            if worker is None or not _ready(worker) or worker.writer.is_closing():
                continue
            self._seq += 1
            future: asyncio.Future[None] = loop.create_future()
            worker.waiters[self._seq] = future
            worker.writer.write(frame(FLUSH, self._seq.to_bytes(8)))
            waiting.append(future)
        if waiting:
            await asyncio.wait(waiting, timeout=GATHER_TIMEOUT)
        for worker in self._workers:
            if worker is not None:
                for seq in [s for s, f in worker.waiters.items() if f.done()]:
                    del worker.waiters[seq]

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._sender, *self._supervisors):
            if task is not None:
                task.cancel()
        for worker in self._workers:
            if worker is not None and not worker.writer.is_closing():
                worker.writer.write(frame(STOP))
        await asyncio.gather(
            *(self._reap(w) for w in self._workers if w is not None), return_exceptions=True
        )
        for sockets in self._sockets:
            for sock in sockets:
                sock.close()
        self._sockets.clear()
        if self._rrl_table is not None:
            self._rrl_table.close()
            self._rrl_table = None

    # --- internals ------------------------------------------------------------------------------

    def _bind(self) -> None:
        self._sockets = [[] for _ in range(self.count)]
        for host, port in self.listen:
            if port != 0:  # taken by anyone, even a SO_REUSEPORT group: fail like DnsServer
                udp_socket(host, port).close()
            first = udp_socket(host, port, self.receive_buffer, reuse_port=True)
            self._sockets[0].append(first)
            port = first.getsockname()[1]
            for sockets in self._sockets[1:]:
                sockets.append(udp_socket(host, port, self.receive_buffer, reuse_port=True))
            self.addresses.append(("udp", host, port))

    async def _spawn(self, index: int) -> _Worker:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        fds = tuple(s.fileno() for s in self._sockets[index])
        table_fd = self._rrl_table.fd if self._rrl_table is not None else None
        inherited = fds if table_fd is None else (*fds, table_fd)
        try:
            proc = _spawn_process(child.fileno(), inherited)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        exited = loop.create_task(_exit_status(proc))
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        worker = _Worker(index, proc, exited, reader, writer, loop.create_future(), loop.time())
        level, fmt = _log_settings()
        config = WorkerConfig(
            index, fds, table_fd, self.server_options, log_level=level, log_format=fmt
        )
        # no await between taking the shipped table and joining the list the sender writes to
        sent = self._shipped
        writer.write(frame(CONFIG, pickle.dumps(config)))
        writer.write(frame(TABLE, self._whole()))
        self._workers[index] = worker
        worker.reading = loop.create_task(self._read(worker))
        try:
            await asyncio.wait_for(asyncio.shield(worker.ready), START_TIMEOUT)
        except BaseException:
            await self._reap(worker, kill=True)
            self._workers[index] = None
            raise
        if self._shipped is not sent:  # a newer table was shipped while it started
            writer.write(frame(TABLE, self._whole()))
        return worker

    def _whole(self) -> bytes:
        """The shipped table whole, in pieces (pickled here when only deltas were sent since)."""
        if self._payload_of is not self._shipped:
            assert self._shipped is not None
            self._payload = to_pieces(self._shipped)
            self._payload_of = self._shipped
        return self._payload

    async def _read(self, worker: _Worker) -> None:
        try:
            while True:
                kind, payload = await read_frame(worker.reader)
                if kind == READY and not worker.ready.done():
                    worker.ready.set_result(pickle.loads(payload))
                elif kind == COUNTS:
                    seq = int.from_bytes(payload[:8])
                    delta: CountsDelta = pickle.loads(payload[8:])
                    self.metrics.merge(delta, worker.index)
                    waiter = worker.waiters.pop(seq, None) if seq else None
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("dns.worker.channel_failed", worker=worker.index)
        finally:
            if not worker.ready.done():
                worker.ready.set_exception(
                    RuntimeError(f"DNS worker {worker.index} exited before it was ready")
                )
            for waiter in worker.waiters.values():
                if not waiter.done():
                    waiter.set_result(None)
            worker.writer.close()

    async def _reap(self, worker: _Worker, kill: bool = False) -> None:
        """Wait for the worker to exit (killed past STOP_TIMEOUT) and read its last counts."""
        if kill and not worker.exited.done():
            worker.proc.kill()
        try:
            await asyncio.wait_for(asyncio.shield(worker.exited), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("dns.worker.killed", worker=worker.index, pid=worker.proc.pid)
            worker.proc.kill()
            await worker.exited
        if worker.reading is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(worker.reading), STOP_TIMEOUT)
            worker.reading.cancel()

    async def _supervise(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_DELAY
        while not self._stopping:
            worker = self._workers[index]
            if worker is not None:
                code = await asyncio.shield(worker.exited)
                await self._reap(worker)
                if self._stopping:
                    return
                lived = loop.time() - worker.started
                delay = RESTART_DELAY if lived >= STABLE_AFTER else delay
                log.error(
                    "dns.worker.exited",
                    worker=index,
                    pid=worker.proc.pid,
                    returncode=code,
                    detail=f"restarting in {delay:g}s",
                )
                self._workers[index] = None
            await asyncio.sleep(delay)
            try:
                worker = await self._spawn(index)
            except Exception as exc:
                log.error("dns.worker.start_failed", worker=index, error=str(exc))
                delay = min(delay * 2, MAX_RESTART_DELAY)
                continue
            self.restarts += 1
            log.info("dns.worker.restarted", worker=index, pid=worker.proc.pid)
            delay = min(delay * 2, MAX_RESTART_DELAY)

    async def _send_tables(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            table = self._latest
            base = self._shipped
            if table is None or table is base:
                continue
            delta = table_delta(base, table) if base is not None else None
            kind = TABLE if delta is None else DELTA
            payload = await asyncio.to_thread(to_pieces, table if delta is None else delta)
            if self._changed.is_set():
                continue  # a newer table arrived while pickling: send that one
            self._shipped = table
            if delta is None:
                self._payload, self._payload_of = payload, table
            data = frame(kind, payload)
            log.debug(
                "dns.workers.shipped",
                generation=table.generation,
                delta=delta is not None,
                answers=delta.size if delta is not None else table.size,
                bytes=len(payload),
            )
            live = [  # a worker still starting gets the newest table once ready (_spawn)
                w
                for w in self._workers
                if w is not None and _ready(w) and not w.writer.is_closing()
            ]
            for worker in live:
                worker.writer.write(data)
            results = await asyncio.gather(
                *(asyncio.wait_for(w.writer.drain(), SEND_TIMEOUT) for w in live),
                return_exceptions=True,
            )
            for worker, result in zip(live, results, strict=True):
                if isinstance(result, BaseException):  # stuck or gone: the supervisor restarts it
                    log.error("dns.worker.unresponsive", worker=worker.index, error=repr(result))
                    if not worker.exited.done():
                        worker.proc.kill()


def _ready(worker: _Worker) -> bool:
    return worker.ready.done() and not worker.ready.cancelled() and not worker.ready.exception()


def _spawn_process(control: int, inherited_fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
    """Start a worker with these descriptors (its sockets and the RRL table). posix_spawn, not fork: gRPC's fork handlers (and
    their log lines) stay out of it, and nothing of this process is copied."""
    inherited = (control, *inherited_fds)
    for fd in inherited:
        os.set_inheritable(fd, True)
    try:  # close_fds=False lets subprocess use posix_spawn; only inheritable descriptors pass
        return subprocess.Popen(
            [sys.executable, "-m", "controlplane.gtm.dns.worker", str(control)],
            stdin=subprocess.DEVNULL,
            close_fds=False,
            # the worker imports what this process imported, wherever it was found
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
    finally:
        for fd in inherited:
            os.set_inheritable(fd, False)


async def _exit_status(proc: subprocess.Popen[bytes]) -> int:
    """Wait for ``proc`` to end without a thread or a SIGCHLD handler: its pidfd turns readable."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return proc.wait()
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await ended
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return proc.wait()


def _log_settings() -> tuple[str, str]:
    from controlplane import logging as ubiq_logging

    return ubiq_logging.configured or ("info", "json")
