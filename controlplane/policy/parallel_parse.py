"""``parse_file`` over many files with more than one core: the cold start of a large policy set.

Parsing and validating is pure CPU per file (YAML compose, conversion, pydantic), ~3 ms for a
file of 10 services here, so 1,000 files hold one core for seconds. ``parse_files`` hands chunks
from the back of the list to worker processes (``parse_worker``: a fresh interpreter, not a fork
of the threaded server) while this thread parses from the front; between two of its own chunks
it collects what the workers sent back and tops them up. One thread does all of it: a feeder
thread unpickling results fought the parsing thread for the GIL and, on a loaded machine, made
the whole slower than parsing alone. A worker that starts late or dies only takes fewer chunks
(what it held is parsed here). Results come back pickled and are the same ``ParsedFile``
values a loop gives, in order (tests/unit/test_policy_parallel_parse.py). Below ``MIN_FILES``
files, or without an idle CPU (``default_workers``), no process is started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import select
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from controlplane.policy.parse_frames import LENGTH_BYTES, MAX_FRAME_BYTES, READY, write_frame

Parsed = TypeVar("Parsed")

Item = tuple[str, bytes | str]
Chunk = tuple[int, int]  # items[start:end]

MIN_FILES = 256  # a worker costs ~0.5 s of start (interpreter + pydantic models): ~150 files
CHUNK_FILES = 16
CHUNK_BYTES = 256 * 1024  # a chunk also ends at this much content: it fits the worker's pipe
MAX_WORKERS = 4
IN_FLIGHT = 2  # chunks held by a worker: it parses one while the next waits in its pipe
STALL_S = 30.0  # a worker silent this long while starting or holding chunks is dropped
PIPE_BYTES = 1 << 20  # each way: a chunk and its pickled result fit, so no one waits
WORKER_ARGV = (sys.executable, "-m", "controlplane.policy.parse_worker")
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(files: int) -> int:
    """Worker processes for ``files`` files to parse: none below ``MIN_FILES`` files; else one
    per idle CPU (usable CPUs less the 1-minute load average, this thread's CPU aside), at most
    ``MAX_WORKERS``. A worker on a busy CPU takes time from the parse it should shorten: on a
    2-core machine shared with other work (and Linux's autogroup scheduling, where processes of
    one session share one CPU share), a worker made the parse slower (docs/benchmarks.md)."""
    if files < MIN_FILES:
        return 0
    cpus = usable_cpus()
    idle = int(cpus - os.getloadavg()[0])
    return max(0, min(cpus - 1, idle, MAX_WORKERS))


@dataclass
class ParseStats:
    """What the workers did in one ``parse_files`` (read by tests and the bench)."""

    started: int = 0
    files_by_workers: int = 0


def parse_files(
    items: Sequence[Item],
    parse: Callable[[str, bytes | str], Parsed],
    workers: int | None = None,
    chunk: int = CHUNK_FILES,
    stats: ParseStats | None = None,
    *,
    local: bool = True,
) -> list[Parsed]:
    """``[parse(name, content) for name, content in items]``, with up to ``workers`` worker
    processes beside this thread (default ``default_workers``). ``parse`` must be what the
    workers run, ``loader.parse_file`` (passed in, so that this module does not import the
    loader that imports it). ``local=False``: this thread parses only what a dead or stalled
    worker left (tests: the workers' results are used)."""
    count = default_workers(len(items)) if workers is None else workers
    if count <= 0:
        return [parse(name, content) for name, content in items]
    stats = ParseStats() if stats is None else stats
    results: list[Any] = [None] * len(items)
    starts = deque(_chunks(items, chunk))
    pool = [_Worker(items, results, stats) for _ in range(count)]
    try:
        while starts or any(w.pending for w in pool):
            live = [w for w in pool if w.alive]
            for worker in live:
                worker.collect(starts)
                worker.top_up(starts)
            if starts and (local or not any(w.alive for w in pool)):
                start, end = starts.popleft()
                results[start:end] = [parse(n, c) for n, c in items[start:end]]
            elif any(w.pending for w in pool) or (starts and not local):
                _wait(w for w in pool if w.alive)
    finally:
        for worker in pool:
            worker.close()
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # every chunk is parsed by a worker or here: cannot happen
        raise RuntimeError(f"parse_files: no result for item {missing[0]}")
    return results


def _worker_env() -> dict[str, str]:
    """This process's environment with its ``sys.path`` as ``PYTHONPATH``: the worker imports
    the same ``controlplane`` (and pydantic, PyYAML) as the process whose files it parses."""
    paths = [p or os.getcwd() for p in sys.path]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _chunks(items: Sequence[Item], files: int) -> list[Chunk]:
    """(start, end) ranges of at most ``files`` files and, unless one file is larger, at most
    ``CHUNK_BYTES`` of content."""
    out: list[Chunk] = []
    start = size = 0
    for i, (_, content) in enumerate(items):
        if i > start and (i - start >= files or size + len(content) > CHUNK_BYTES):
            out.append((start, i))
            start, size = i, 0
        size += len(content)
    if start < len(items):
        out.append((start, len(items)))
    return out


def _wait(workers: Iterable[_Worker]) -> None:
    fds = [w.fd for w in workers]
    if fds:
        select.select(fds, [], [], 1.0)


@dataclass
class _Worker:
    """One worker process: chunk starts sent to it (in order) and the bytes it sent back."""

    items: Sequence[Item]
    results: list[Any]
    stats: ParseStats
    pending: deque[Chunk] = field(default_factory=deque)
    ready: bool = False
    alive: bool = True
    buffer: bytearray = field(default_factory=bytearray)
    heard: float = field(default_factory=time.monotonic)
    proc: subprocess.Popen[bytes] = field(init=False)
    fd: int = field(init=False)

    def __post_init__(self) -> None:
        self.proc = subprocess.Popen(
            list(WORKER_ARGV),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_worker_env(),
        )
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        assert self.proc.stdin is not None
        for fd in (self.fd, self.proc.stdin.fileno()):
            with contextlib.suppress(OSError):  # a smaller pipe only makes one side wait
                fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)

    def collect(self, starts: deque[Chunk]) -> None:
        """Read what the worker sent; file each whole result; a dead or stalled worker gives
        its chunks back to ``starts``."""
        eof = False
        while True:
            try:
                data = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                break
            except OSError:
                eof = True
                break
            if not data:
                eof = True
                break
            self.buffer += data
            self.heard = time.monotonic()
        if not self.ready and self.buffer[: len(READY)] == READY:
            self.ready = True
            self.stats.started += 1
            del self.buffer[: len(READY)]
        try:
            while self.ready and self._one_result():
                pass
        except (ValueError, EOFError, pickle.UnpicklingError):
            eof = True
        quiet = time.monotonic() - self.heard > STALL_S
        stalled = quiet and (bool(self.pending) or not self.ready)
        if eof or stalled:
            self._drop(starts)

    def _one_result(self) -> bool:
        if len(self.buffer) < LENGTH_BYTES:
            return False
        size = int.from_bytes(self.buffer[:LENGTH_BYTES], "little")
        if size > MAX_FRAME_BYTES or not self.pending:
            raise ValueError("worker answered out of protocol")
        if len(self.buffer) < LENGTH_BYTES + size:
            return False
        parsed = pickle.loads(self.buffer[LENGTH_BYTES : LENGTH_BYTES + size])  # our own child
        del self.buffer[: LENGTH_BYTES + size]
        start, end = self.pending[0]
        if not isinstance(parsed, list) or len(parsed) != end - start:
            raise ValueError("worker answered out of protocol")
        self.pending.popleft()
        self.results[start:end] = parsed
        self.stats.files_by_workers += end - start
        return True

    def top_up(self, starts: deque[Chunk]) -> None:
        assert self.proc.stdin is not None
        while self.alive and self.ready and starts and len(self.pending) < IN_FLIGHT:
            taken = starts.pop()
            try:
                write_frame(self.proc.stdin, list(self.items[taken[0] : taken[1]]))
            except OSError:
                starts.append(taken)
                self._drop(starts)
                return
            if not self.pending:
                self.heard = time.monotonic()
            self.pending.append(taken)

    def _drop(self, starts: deque[Chunk]) -> None:
        starts.extend(self.pending)
        self.pending.clear()
        self.alive = False
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
