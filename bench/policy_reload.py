"""A policy reload at 1,000 services: one file rewritten, the set loaded again with the cache.

    .venv/bin/python -m bench.policy_reload [--services 1000] [--rounds 10]

The policy directory of bench/xds_convergence.py's ``--services N`` configuration (10 clusters,
the service ``web``, ``bulk.yaml`` with N services and a RoutePolicy each, ``routes.yaml``), in
one process. Each round rewrites ``routes.yaml`` (v1 <-> v2) and reloads it with two file caches
that both skip parsing the unchanged files, side by side in the same round:

- before: ``FileCache(incremental_checks=False)``, the cross-checks and the warnings over every
  document at every load (what a reload did before ``policy.docmemo``);
- after: ``FileCache()``, per-document problems and warnings kept between loads.

Per step, the median over the rounds (ms of CPU time of this thread, so that other work on a
shared machine inflates it less than wall clock): the whole
``load_directory``, the cross-checks, the warnings, ``Model.build``, and the garbage collection
of what the load left (``gc.collect(1)`` with everything from before the load frozen), then
the ratio after/before of each median.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench._convergence_procs import policy_files, routes_yaml
from controlplane.policy import loader
from controlplane.policy.loader import FileCache, load_directory

clock = time.thread_time  # CPU time of this thread: what the reload costs, whatever else runs
STEPS = ("whole reload", "cross-check", "warnings", "Model.build", "GC of what it left")


@contextmanager
def timed(spent: dict[str, float]) -> Iterator[None]:
    """Time ``loader``'s cross_check, policy_warnings and Model.build into ``spent`` (ms)."""
    model = loader.__dict__["Model"]
    patched: dict[tuple[Any, str], Any] = {
        (loader, "cross_check"): loader.__dict__["cross_check"],
        (loader, "policy_warnings"): loader.__dict__["policy_warnings"],
        (model, "build"): model.__dict__["build"],
    }
    steps = {"cross_check": "cross-check", "policy_warnings": "warnings", "build": "Model.build"}

    def wrap(step: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return function(*args, **kwargs)
            finally:
                spent[step] = spent.get(step, 0.0) + (clock() - start) * 1e3

        return call

    for owner, name in patched:
        setattr(owner, name, wrap(steps[name], getattr(owner, name)))
    try:
        yield
    finally:
        for (owner, name), original in patched.items():
            setattr(owner, name, original)


def reload_once(root: Path, cache: FileCache) -> dict[str, float]:
    spent: dict[str, float] = {}
    gc.collect()
    gc.freeze()  # what the load leaves is all the next collection scans
    try:
        with timed(spent):
            start = clock()
            load_directory(root, cache, workers=0)
            spent["whole reload"] = (clock() - start) * 1e3
        start = clock()
        gc.collect(1)
        spent["GC of what it left"] = (clock() - start) * 1e3
    finally:
        gc.unfreeze()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, text in policy_files(10, 8080, args.services).items():
            (root / name).write_text(text)
        caches = {"before": FileCache(incremental_checks=False), "after": FileCache()}
        for cache in caches.values():
            load_directory(root, cache, workers=0)
        runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for i in range(args.rounds):
            (root / "routes.yaml").write_text(routes_yaml("v2" if i % 2 == 0 else "v1"))
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            for label in order:
                runs[label].append(reload_once(root, caches[label]))
        documents = len(caches["after"].problems)
        checked = caches["after"].problems.checked_last
    print(
        f"{args.services + 1} services, 10 clusters, routes.yaml rewritten; median of"
        f" {args.rounds} reloads, ms; after: {checked} of {documents} documents checked again"
    )
    print("| step | before (whole-set checks) | after (incremental) | after/before |")
    print("|---|---:|---:|---:|")
    for step in STEPS:
        before = statistics.median(r.get(step, 0.0) for r in runs["before"])
        after = statistics.median(r.get(step, 0.0) for r in runs["after"])
        print(f"| {step} | {before:.1f} | {after:.1f} | {after / before:.2f}x |")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
