"""Running the real `ubiq` command (``python -m controlplane.cli``) as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.procs import require_binary


def ubiq(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def bootstrap(target: Path, *args: str) -> str:
    """``ubiq bootstrap ARGS -o TARGET``, then ``envoy --mode validate`` on what it wrote: both
    must succeed. Returns Envoy's output."""
    out = ubiq("bootstrap", *args, "-o", str(target))
    assert out.returncode == 0, out.stderr
    check = subprocess.run(
        [require_binary("envoy"), "--mode", "validate", "-c", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return check.stdout + check.stderr
