"""A worker process for ``parallel_parse``: ``python -m controlplane.policy.parse_worker``.

Protocol on stdin/stdout (a private pipe between ``ubiq`` and the process it started): the worker
writes one byte ``R`` once its imports are done, then answers each frame ``[(name, content)]``
with the frame ``[ParsedFile]`` of ``loader.parse_file`` for each item, in order. A frame is an
8-byte little-endian length and a pickle. End of input ends the worker.
"""

from __future__ import annotations

import gc
import sys

from controlplane.policy.parse_frames import READY, read_frame, write_frame


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
