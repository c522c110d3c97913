"""What the benchmarks share: best-of timing and writing results to bench/results/.

Standard library only: ``decision_protos`` runs parts of itself in another interpreter.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` timed calls of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def save(name: str, args: argparse.Namespace, **data: object) -> Path:
    """Write ``bench/results/NAME.json`` with the arguments, Python version and ``data``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    out = {"args": vars(args), "python": platform.python_version(), **data}
    path.write_text(json.dumps(out, indent=2))
    return path
