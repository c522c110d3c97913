"""The memory RRL accounts live in: one fixed-size table that every DNS worker process maps.

Why shared: the kernel hands each UDP datagram to one ``SO_REUSEPORT`` worker by a hash of its
4-tuple, so one prefix sending from many source ports reaches every worker; with an account per
worker it would get the rate from each. Knot DNS keeps one table for all its threads; this is
that table for processes.

Why a memfd and not ``multiprocessing.shared_memory``: an anonymous memory file has no name in
/dev/shm, so nothing can leak, whatever dies how. The main process creates it and keeps its
descriptor; each worker (a restarted one too) inherits the descriptor like its sockets, maps
the file and closes the descriptor. The memory is freed when the last process mapping it exits.
Without workers the same table lives in anonymous memory of the one process.

Layout (native byte order, every field 8-byte aligned): a 64-byte header (magic, slots, ways, a
16-byte random hash key), then ``tags`` (u64 per slot; 0: empty), ``tats`` (f64 per slot: the
account's theoretical arrival time, ``rrl.py``) and ``limited`` (u64 per slot: responses limited
since the account was made, for slip). Slots form sets of ``ways`` consecutive slots.
"""

from __future__ import annotations

import mmap
import os
import struct
from array import array

MAGIC = b"UBIQRRL1"
HEADER = struct.Struct("=8sQQ16s24x")  # magic, slots, ways, hash key
SLOT_BYTES = 24  # tag, tat, limited
WAYS = 4  # slots a prefix may occupy (Knot's hopscotch neighbourhood is 4 too)
MAX_SLOTS = 1 << 24  # 384 MiB: a bigger table is a typo


def layout(table_size: int) -> tuple[int, int]:
    """(slots, ways) for a table of at most ``table_size`` accounts."""
    if not 1 <= table_size <= MAX_SLOTS:
        raise ValueError(f"RRL table size {table_size}: expected 1..{MAX_SLOTS}")
    ways = min(WAYS, table_size)
    return table_size // ways * ways, ways


def table_bytes(table_size: int) -> int:
    slots, _ = layout(table_size)
    return HEADER.size + SLOT_BYTES * slots


class RrlTable:
    """Views of the three slot arrays over one mapping (private, created shared, or attached)."""

    def __init__(self, memory: mmap.mmap, fd: int | None) -> None:
        magic, slots, ways, key = HEADER.unpack_from(memory, 0)
        if magic != MAGIC or len(memory) != HEADER.size + SLOT_BYTES * slots:
            raise ValueError("not an RRL table (magic or size differ)")
        self.fd = fd  # the memory file's descriptor, held by the creator for new workers
        self.slots: int = slots
        self.ways: int = ways
        self.sets = slots // ways
        self.key: bytes = key
        self._memory = memory
        whole = memoryview(memory)
        start = HEADER.size
        self.tags = whole[start : start + 8 * slots].cast("Q")
        self.tats = whole[start + 8 * slots : start + 16 * slots].cast("d")
        self.limited = whole[start + 16 * slots : start + 24 * slots].cast("Q")
        self._views = (whole, self.tags, self.tats, self.limited)

    @classmethod
    def private(cls, table_size: int) -> RrlTable:
        """A table for this process alone (no DNS workers)."""
        memory = mmap.mmap(-1, table_bytes(table_size))
        _initialise(memory, table_size)
        return cls(memory, None)

    @classmethod
    def create_shared(cls, table_size: int) -> RrlTable:
        """A table in a new memory file; ``fd`` goes to every worker (``attach``)."""
        fd = os.memfd_create("ubiq-rrl", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, table_bytes(table_size))
            memory = mmap.mmap(fd, table_bytes(table_size))
        except BaseException:
            os.close(fd)
            raise
        _initialise(memory, table_size)
        return cls(memory, fd)

    @classmethod
    def attach(cls, fd: int) -> RrlTable:
        """Map the table behind an inherited descriptor, then close the descriptor."""
        try:
            memory = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        try:
            return cls(memory, None)
        except ValueError:
            memory.close()
            raise

    def accounts(self) -> int:
        """Slots holding an account (an O(slots) scan: for metrics, not the query path)."""
        tags = array("Q", self.tags.tobytes())
        return len(tags) - tags.count(0)

    def close(self) -> None:
        for view in reversed(self._views):
            view.release()
        self._memory.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _initialise(memory: mmap.mmap, table_size: int) -> None:
    slots, ways = layout(table_size)
    HEADER.pack_into(memory, 0, MAGIC, slots, ways, os.urandom(16))
