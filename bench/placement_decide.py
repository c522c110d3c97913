"""Placement decision time per tick: every service of a model, with signals, health and history.

    .venv/bin/python -m bench.placement_decide [--regions 50] [--services 1000]

Model: ``--regions`` clusters (one per region) and ``--services`` services, each placed by a
selector that matches every cluster (so each decision weighs every region). Signals: one
RegionSignal per service x region (latency, success rate, volume). Baseline, same run: the
static placement of the same model (``static.place`` for every service, what the xDS compiler
does without the engine), reported as a ratio. Rows:

* static strategy, no signals (the engine's floor);
* lowestLatency + SLO, first tick (no previous decisions);
* lowestLatency + SLO, steady tick (previous decisions, a new poll with equal values: every
  service is compared, none re-decided);
* lowestLatency + SLO, every value moved (a new poll where every latency changed a little: every
  service re-decided, nothing switches);
* lowestLatency + SLO, a tick where one region in ten fails its SLO (exits, reasons, re-weighting);
* lowestLatency + SLO, each service placed in 5 of the regions (a typical footprint), every value
  moved (the poll still carries every service x region);
* capacity with spread (minRegions 3, maxSharePercent 40), steady tick;
* per-client-group choices (``decide_groups``, 20 groups x every region) for every service: first,
  and again with nothing changed (each choice compares its Decision and latency row).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controlplane.feedback.signals import RegionSignal, SignalKey, Signals
from controlplane.placement.decision import Decision
from controlplane.placement.engine import decide_all
from controlplane.placement.groups import decide_groups
from controlplane.placement.static import place
from controlplane.policy.documents import AnyDocument, Cluster, Placement, Service
from controlplane.policy.model import Model

RESULTS = Path(__file__).parent / "results"
TARGET_MS = 100.0


def build_model(
    regions: int, services: int, placement: dict[str, Any], per_service: int = 0
) -> Model:
    docs: list[AnyDocument] = []
    for r in range(regions):
        docs.append(
            Cluster.model_validate(
                {
                    "metadata": {"name": f"c{r}"},
                    "spec": {
                        "region": f"r{r}",
                        "labels": {"mesh": "on"},
                        "costWeight": 1 + r % 7,
                        "capacity": {"requestsPerSecond": 100 * (1 + r % 5)},
                    },
                }
            )
        )
    for s in range(services):
        eps = [
            {"cluster": f"c{r}", "address": f"10.{r}.{s // 250}.{s % 250 + 1}"}
            for r in range(regions)
        ]
        docs.append(
            Service.model_validate(
                {
                    "metadata": {"name": f"svc-{s}"},
                    "spec": {"ports": [{"port": 8080}], "endpoints": eps},
                }
            )
        )
        docs.append(
            Placement.model_validate(
                {
                    "metadata": {"name": f"svc-{s}"},
                    "spec": {
                        "service": f"svc-{s}",
                        **(
                            {"clusters": [f"c{(s + j * 7) % regions}" for j in range(per_service)]}
                            if per_service
                            else {"clusterSelector": {"matchLabels": {"mesh": "on"}}}
                        ),
                        **placement,
                    },
                }
            )
        )
    return Model.build(docs)


def build_signals(
    regions: int, services: int, at: float, failing_every: int = 0, jitter: float = 0.0
) -> Signals:
    values = {}
    for s in range(services):
        for r in range(regions):
            failing = failing_every and (s + r) % failing_every == 0
            values[SignalKey(f"svc-{s}", f"r{r}")] = RegionSignal(
                request_rate=50.0,
                requests=500.0,
                success_rate=0.5 if failing else 0.999,
                latency_p50_ms=10.0 + (s * 7 + r * 13) % 90 + jitter,
                latency_p99_ms=40.0 + (s * 7 + r * 13) % 300 + jitter,
            )
    return Signals(at=at, values=values)


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(regions: int, services: int, repeat: int) -> list[dict[str, Any]]:
    latency = {"type": "lowestLatency", "slo": {"successRate": 0.99}}
    capacity = {"type": "capacity"}
    models = {
        "static": build_model(regions, services, {}),
        "latency": build_model(regions, services, {"strategy": latency}),
        "capacity": build_model(
            regions,
            services,
            {"strategy": capacity, "spread": {"minRegions": 3, "maxSharePercent": 40}},
        ),
    }
    gc.collect()
    gc.freeze()
    good0 = build_signals(regions, services, 0.0)
    good1 = build_signals(regions, services, 1.0)
    bad = build_signals(regions, services, 1.0, failing_every=10)
    rows: list[dict[str, Any]] = []
    static_model = models["static"]
    names = list(static_model.services)
    base = best_of(lambda: [place(static_model, n) for n in names], repeat)
    rows.append({"case": "baseline: static.place for every service", "seconds": base})

    def timed(case: str, fn: Callable[[], object]) -> None:
        rows.append({"case": case, "seconds": best_of(fn, repeat)})

    timed("engine: static, no signals", lambda: decide_all(static_model, now=0.0))
    lat = models["latency"]
    timed("engine: lowestLatency+slo, first tick", lambda: decide_all(lat, now=0.0, signals=good0))
    first = decide_all(lat, now=0.0, signals=good0)
    timed(
        "engine: lowestLatency+slo, steady tick",
        lambda: decide_all(lat, now=1.0, signals=good1, previous=first),
    )
    moved = build_signals(regions, services, 1.0, jitter=0.5)
    timed(
        "engine: lowestLatency+slo, every value moved",
        lambda: decide_all(lat, now=1.0, signals=moved, previous=first),
    )
    timed(
        "engine: lowestLatency+slo, 1 region in 10 fails",
        lambda: decide_all(lat, now=1.0, signals=bad, previous=first),
    )
    few = build_model(regions, services, {"strategy": latency}, per_service=5)
    few_first = decide_all(few, now=0.0, signals=good0)
    timed(
        "engine: lowestLatency+slo, 5 regions each, every value moved",
        lambda: decide_all(few, now=1.0, signals=moved, previous=few_first),
    )
    cap = models["capacity"]
    cap_first = decide_all(cap, now=0.0, signals=good0)
    timed(
        "engine: capacity+spread, steady tick",
        lambda: decide_all(cap, now=1.0, signals=good1, previous=cap_first),
    )
    groups = [f"g{i}" for i in range(20)]
    matrix = {
        g: {f"r{r}": float((i * 31 + r * 17) % 200 + 5) for r in range(regions)}
        for i, g in enumerate(groups)
    }
    steady: dict[str, Decision] = decide_all(lat, now=1.0, signals=good1, previous=first)
    timed(
        "groups: 20 client groups per service, first",
        lambda: [decide_groups(lat, d, groups, matrix, now=1.0) for d in steady.values()],
    )
    chosen = {n: decide_groups(lat, d, groups, matrix, now=1.0) for n, d in steady.items()}
    timed(
        "groups: 20 client groups per service, unchanged",
        lambda: [
            decide_groups(lat, d, groups, matrix, now=2.0, previous=chosen[n])
            for n, d in steady.items()
        ],
    )
    for row in rows:
        row["ms"] = row["seconds"] * 1000.0
        row["ratio"] = row["seconds"] / base
        row["per_service_us"] = row["seconds"] / services * 1e6
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--regions", type=int, default=50)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = run(args.regions, args.services, args.repeat)
    print(
        f"placement decisions: {args.services} services x {args.regions} regions (best of {args.repeat})"
    )
    print(f"{'case':62} {'ms':>9} {'us/service':>11} {'vs static.place':>16}")
    for r in rows:
        print(f"{r['case']:62} {r['ms']:9.1f} {r['per_service_us']:11.1f} {r['ratio']:15.2f}x")
    tick = next(r for r in rows if r["case"] == "engine: lowestLatency+slo, steady tick")
    verdict = "met" if tick["ms"] <= TARGET_MS else "MISSED"
    print(f"\ntarget: steady tick <= {TARGET_MS:.0f} ms: {verdict} ({tick['ms']:.1f} ms)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "placement_decide.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "python": platform.python_version(),
                "target_ms": TARGET_MS,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
