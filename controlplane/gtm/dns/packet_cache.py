"""UDP responses kept by the query's bytes, as PowerDNS's packet cache keeps them.

An answer is a function of the query's bytes, the client's source address (its client group
when the query carries no ECS option) and the answer table, nothing else: no rotation, no
clock. So the bytes after the 2-byte ID of a query from one source address, answered from one
table, always get the same response after its ID. Resolvers repeat their queries (the same
names, types, flags, EDNS sizes and client subnets), so most queries hit, and a hit costs a
dict lookup instead of parsing and assembling.

The cache belongs to one table object: a new table (a rebuild, a delta, a swap) empties it
before the next lookup, so an answer is never older than the table that serves. Bounded in
bytes: an entry counts its query and response; when the total would pass ``max_bytes`` the
cache is emptied (a flood of distinct queries costs one clear per ``max_bytes`` of them, not an
eviction per query). Queries over ``MAX_QUERY_BYTES`` and responses over
``MAX_RESPONSE_BYTES`` are answered but not kept.

Each entry also keeps a note the caller derives from the response once (the server keeps what
the response adds to the metrics, ``metrics.tally``), so a hit costs no parsing at all.
"""

from __future__ import annotations

from typing import Generic, TypeVar

N = TypeVar("N")

MAX_QUERY_BYTES = 512
MAX_RESPONSE_BYTES = 1232  # the EDNS buffer size DNS Flag Day 2020 settled on
DEFAULT_MAX_BYTES = 4 << 20
ENTRY_OVERHEAD = 200  # the dict slot, the key tuple and two bytes objects, roughly


class PacketCache(Generic[N]):
    __slots__ = ("_bytes", "_entries", "_table", "clears", "hits", "max_bytes", "misses")

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._entries: dict[tuple[str, bytes], tuple[bytes, N]] = {}
        self._table: object = None
        self._bytes = 0
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.clears = 0  # emptied because it was full

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, query: bytes, host: str, table: object) -> bytes | None:
        """The response to ``query`` from ``host`` as ``table`` answered it, or None."""
        entry = self.lookup(query, host, table)
        return None if entry is None else query[:2] + entry[0]

    def lookup(self, query: bytes, host: str, table: object) -> tuple[bytes, N] | None:
        """(the response to ``query`` from ``host`` as ``table`` answered it, after its 2-byte
        ID; the note kept with it), or None."""
        if table is not self._table:
            self._entries.clear()
            self._bytes = 0
            self._table = table
            self.misses += 1
            return None
        entry = self._entries.get((host, query[2:]))
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, query: bytes, host: str, table: object, response: bytes, note: N) -> None:
        """Keep ``response`` (the answer ``table`` gave ``query`` from ``host``) and ``note``."""
        if table is not self._table or len(query) > MAX_QUERY_BYTES:
            return
        if len(response) > MAX_RESPONSE_BYTES or response[:2] != query[:2]:
            return
        size = len(query) + len(response) + len(host) + ENTRY_OVERHEAD
        if self._bytes + size > self.max_bytes:
            self._entries.clear()
            self._bytes = 0
            self.clears += 1
        self._entries[(host, query[2:])] = (response[2:], note)
        self._bytes += size
