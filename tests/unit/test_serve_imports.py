"""``ubiq serve --api off`` never imports the API stack (FastAPI, uvicorn, the OpenAPI models):
it was ~44% of the CLI's import time, paid at every cold start (docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "three-regions"

SCRIPT = f"""
import sys
from controlplane.cli.main import build_parser
from controlplane.serve import ServeOptions, Ubiq

args = build_parser().parse_args(
    ["serve", {str(EXAMPLE)!r}, "--dns", "off", "--api", "off", "--xds", "127.0.0.1:0"]
)
ubiq = Ubiq(ServeOptions.from_args(args))
assert ubiq.api is None
heavy = sorted(m for m in ("fastapi", "uvicorn", "starlette", "controlplane.api.app") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_serve_with_the_api_off_imports_no_api_stack() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "none"
