"""Reading one policy file without trusting what sits at its path.

A policy directory is written by people and tools we do not control. A path ending in ``.yaml``
may be a FIFO (opening it would block forever), a device, a symlink to ``/etc/shadow`` or a
50 MiB log. Only regular files inside the policy directory are read, and never more than
``MAX_FILE_BYTES``: the type is checked before opening (``stat``), the open cannot block
(``O_NONBLOCK``), and the type and size are checked again on the open descriptor (``fstat``), so
a path swapped between the two checks is caught. Links that stay inside the directory, such as a
Kubernetes ConfigMap mount (``x.yaml -> ..data/x.yaml``, ``..data -> ..2024_01_01...``), are read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from controlplane.errors import PolicyError, Problem

MAX_FILE_BYTES = 1024 * 1024

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def describe_mode(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def human_size(size: int) -> str:
    """``52428800`` -> ``'52428800 bytes (50.0 MiB)'``; small sizes stay in bytes."""
    if size < 1024:
        return f"{size} bytes"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size} bytes ({size / scale:.1f} {unit})"
    return f"{size} bytes"  # pragma: no cover


def too_large(file: str, size: int, limit: int = MAX_FILE_BYTES) -> Problem:
    return Problem(file, None, "", f"file is {human_size(size)}; the limit is {human_size(limit)}")


def inside(path: str, root: str) -> bool:
    """True when the resolved ``path`` is ``root`` or below it (both already resolved)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _problem(path: Path, message: str) -> PolicyError:
    return PolicyError([Problem(str(path), None, "", message)])


def read_policy_file(path: Path, root: Path | None = None) -> bytes:
    """The bytes of ``path``; PolicyError (one line for this file) when it must not be read.

    ``root`` is the policy directory: a path that resolves outside it is refused.
    """
    try:
        real = os.path.realpath(path)
        if root is not None and not inside(real, os.path.realpath(root)):
            raise _problem(path, "symlink leads outside the policy directory; not read")
        before = os.stat(real)
        if not stat.S_ISREG(before.st_mode):
            raise _problem(path, f"{describe_mode(before.st_mode)}, not a regular file; not read")
        if before.st_size > MAX_FILE_BYTES:
            raise PolicyError([too_large(str(path), before.st_size)])
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _problem(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        after = os.fstat(fd)
        if not stat.S_ISREG(after.st_mode):
            raise _problem(path, f"{describe_mode(after.st_mode)}, not a regular file; not read")
        if after.st_size > MAX_FILE_BYTES:
            raise PolicyError([too_large(str(path), after.st_size)])
        chunks: list[bytes] = []
        total = 0
        while total <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > MAX_FILE_BYTES:  # grew after fstat: report its size now
            raise PolicyError([too_large(str(path), max(os.fstat(fd).st_size, total))])
        return b"".join(chunks)
    except OSError as exc:
        raise _problem(path, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
