"""The frames between ``parallel_parse`` and its ``parse_worker`` processes: an 8-byte
little-endian length and a pickle, over a private pipe between ``ubiq`` and a process it started.
The worker writes one byte ``READY`` once its imports are done."""

from __future__ import annotations

import pickle
from typing import IO

READY = b"R"
LENGTH_BYTES = 8
MAX_FRAME_BYTES = 1 << 31  # a chunk of a policy set (at most 64 MiB) and its parsed form


def write_frame(out: IO[bytes], payload: object) -> None:
    blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(len(blob).to_bytes(LENGTH_BYTES, "little"))
    out.write(blob)
    out.flush()


def read_frame(inp: IO[bytes]) -> object | None:
    """The next frame's object, or None at end of input."""
    header = inp.read(LENGTH_BYTES)
    if len(header) < LENGTH_BYTES:
        return None
    size = int.from_bytes(header, "little")
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {size} bytes")
    blob = inp.read(size)
    if len(blob) < size:
        return None
    found: object = pickle.loads(blob)  # written by our own parent or child, over a private pipe
    return found
