"""``parse_file`` over many files with more than one core: the cold start of a large policy set.

Parsing and validating is pure CPU per file (YAML compose, conversion, pydantic), ~3 ms for a
file of 10 services here, so 1,000 files hold one core for seconds. ``parse_files`` lets worker
processes (``parse_worker``: a fresh interpreter, not a fork of the threaded server) take chunks
from the back of the list while the calling thread parses from the front, so no one waits for a
slow worker: a worker that starts late or dies only takes fewer chunks (a chunk it failed on is
parsed here). Results come back pickled and are the same ``ParsedFile`` values a loop would give,
in order (tests/unit/test_policy_parallel_parse.py). Below ``MIN_FILES`` files, or with one CPU,
no process is started.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controlplane.policy.parse_worker import READY, read_frame, write_frame

if TYPE_CHECKING:
    from controlplane.policy.loader import ParsedFile

Item = tuple[str, bytes | str]

MIN_FILES = 256  # a worker costs ~0.5 s of start (interpreter + pydantic models): ~150 files
CHUNK_FILES = 16
MAX_WORKERS = 4
WORKER_ARGV = (sys.executable, "-m", "controlplane.policy.parse_worker")


def default_workers(files: int) -> int:
    """Worker processes for ``files`` files to parse: one fewer than the usable CPUs, at most
    ``MAX_WORKERS``, none below ``MIN_FILES`` files."""
    if files < MIN_FILES:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(cpus - 1, MAX_WORKERS))


@dataclass
class ParseStats:
    """What the workers did in one ``parse_files`` (read by tests and the bench)."""

    started: int = 0
    files_by_workers: int = 0


def parse_files(
    items: Sequence[Item],
    workers: int | None = None,
    chunk: int = CHUNK_FILES,
    stats: ParseStats | None = None,
) -> list[ParsedFile]:
    """``[parse_file(name, content) for name, content in items]``, with up to ``workers`` worker
    processes beside this thread (default ``default_workers``)."""
    from controlplane.policy.loader import parse_file

    count = default_workers(len(items)) if workers is None else workers
    if count <= 0:
        return [parse_file(name, content) for name, content in items]
    results: list[ParsedFile | None] = [None] * len(items)
    starts: deque[int] = deque(range(0, len(items), chunk))
    busy = threading.Condition()
    in_flight = [0]
    stats = ParseStats() if stats is None else stats

    def parse_here(start: int) -> None:
        part = items[start : start + chunk]
        results[start : start + len(part)] = [parse_file(name, content) for name, content in part]

    feeders = [
        _Feeder(items, chunk, starts, busy, in_flight, results, parse_here, stats)
        for _ in range(count)
    ]
    for feeder in feeders:
        feeder.start()
    try:
        while True:
            with busy:
                if not starts:
                    break
                start = starts.popleft()
            parse_here(start)
        with busy:
            busy.wait_for(lambda: in_flight[0] == 0)
    finally:
        for feeder in feeders:
            feeder.stop()
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # a feeder died between taking a chunk and giving it back: cannot happen
        raise RuntimeError(f"parse_files: no result for item {missing[0]}")
    return results  # type: ignore[return-value]


class _Feeder:
    """One worker process and the thread that feeds it chunks taken from the back."""

    def __init__(
        self,
        items: Sequence[Item],
        chunk: int,
        starts: deque[int],
        busy: threading.Condition,
        in_flight: list[int],
        results: list[ParsedFile | None],
        parse_here: Callable[[int], None],
        stats: ParseStats,
    ) -> None:
        self.stats = stats
        self.items = items
        self.chunk = chunk
        self.starts = starts
        self.busy = busy
        self.in_flight = in_flight
        self.results = results
        self.parse_here = parse_here
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="ubiq-parse-feeder", daemon=True)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            list(WORKER_ARGV),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.thread.start()

    def stop(self) -> None:
        """End the worker (a worker still starting is killed: nothing is left for it)."""
        proc = self.proc
        if proc is None:
            return
        self.stopping = True
        if proc.poll() is None:
            proc.kill()
        self.thread.join()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()

    def _take(self) -> int | None:
        with self.busy:
            if not self.starts:
                return None
            self.in_flight[0] += 1
            return self.starts.pop()

    def _done(self) -> None:
        with self.busy:
            self.in_flight[0] -= 1
            self.busy.notify_all()

    def _run(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            ready = proc.stdout.read(len(READY)) == READY
        except (OSError, ValueError):
            ready = False
        if ready:
            with self.busy:
                self.stats.started += 1
        while ready and (start := self._take()) is not None:
            part = list(self.items[start : start + self.chunk])
            try:
                write_frame(proc.stdin, part)
                parsed = read_frame(proc.stdout)
                if not isinstance(parsed, list) or len(parsed) != len(part):
                    raise ValueError("worker answered out of protocol")
                self.results[start : start + len(part)] = parsed
                with self.busy:
                    self.stats.files_by_workers += len(part)
            except (OSError, ValueError, EOFError, pickle.UnpicklingError):
                ready = False
                if not self.stopping:
                    self.parse_here(start)
            finally:
                self._done()
