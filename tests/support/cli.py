"""Running the real `ubiq` command (``python -m controlplane.cli``) as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
