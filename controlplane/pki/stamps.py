"""Cheap change detection for files re-read on change (TLS certificates and keys)."""

from __future__ import annotations

import os
from pathlib import Path

Stamp = tuple[tuple[int, int, int], ...]


def file_stamps(*paths: Path) -> Stamp:
    """(inode, size, mtime) of each path, (0, 0, 0) for one that cannot be read: any rename into
    place, rewrite or removal changes it."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((0, 0, 0))
    return tuple(out)
