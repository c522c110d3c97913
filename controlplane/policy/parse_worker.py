"""A worker process for ``parallel_parse``: ``python -m controlplane.policy.parse_worker``.

Protocol on stdin/stdout (a private pipe between ``ubiq`` and the process it started): the worker
writes one byte ``R`` once its imports are done, then answers each frame ``[(name, content)]``
with the frame ``[ParsedFile]`` of ``loader.parse_file`` for each item, in order. A frame is an
8-byte little-endian length and a pickle. End of input ends the worker.
"""

from __future__ import annotations

import gc
import pickle
import sys
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


def main() -> None:
    from controlplane.policy.loader import parse_file

    gc.disable()  # short-lived, parses a bounded input; as load_texts does
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    out.write(READY)
    out.flush()
    while (items := read_frame(inp)) is not None:
        assert isinstance(items, list)
        write_frame(out, [parse_file(name, content) for name, content in items])


if __name__ == "__main__":
    main()
