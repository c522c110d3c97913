"""GTM answer-table build time: a full build vs a health change built incrementally.

    .venv/bin/python -m bench.gtm_table [--names 100] [--groups 200] [--repeat 5]

Inputs: ``bench.steering``'s policies (lowestLatency, 6 targets per name, one in three unhealthy)
with one /24 per client group. Rows, best of ``--repeat`` (each measured in the same run):

* ``steer_all`` for every name (the baseline: the steering that feeds a full build);
* ``AnswerTable.build`` in full;
* ``decide`` in full for a one-target health change (steer everything, build everything): what
  every health change cost before the incremental build;
* ``decide`` with ``reuse`` for the same change (steer and build only the name it touches);
* shipping to the DNS workers: pickling the whole table vs the delta of that change;
* a worker taking the whole table in: one unpickle of it in one pickle (how it was shipped
  before), against the table in ``pieces``: all of them, one on average (what the worker's event
  loop waits for at a time, its GC off as in the worker) and the longest (on a loaded machine
  mostly the scheduler's doing).

The incremental rows flip a different name's first target each round, so every round is a real
change from the plan before it.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import pickle
import time
from collections.abc import Callable
from dataclasses import replace

from bench._common import best_of, save
from bench.steering import build
from controlplane.gtm.dns.delta import table_delta
from controlplane.gtm.dns.pieces import Assembly, to_pieces
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.zone import Zone
from controlplane.gtm.plan import DecidedPlan, GtmPlan, decide
from controlplane.gtm.steering import steer_all
from controlplane.gtm.types import HealthView


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    policies, group_list, health = build(args.names, args.groups)
    policies = [replace(p, strategy="lowestLatency") for p in policies]
    group_list = [
        replace(g, networks=(ipaddress.ip_network(f"10.{i // 256}.{i % 256}.0/24"),))
        for i, g in enumerate(group_list)
    ]
    zone = Zone("gtm.example", ("ns1.gtm.example",), glue={"ns1.gtm.example": ("192.0.2.53",)})
    plan = GtmPlan({p.name: p for p in policies}, tuple(group_list), (zone,), ())
    groups = plan.client_groups
    decisions = steer_all(policies, group_list, health, 1)
    base = best_of(lambda: steer_all(policies, group_list, health, 1), args.repeat)
    full_table = best_of(
        lambda: AnswerTable.build([zone], decisions.values(), groups, policies), args.repeat
    )

    served = decide(plan, health, epoch=1, serial=1)
    flips = iter(range(1_000_000))

    def changed(plan_before: DecidedPlan) -> HealthView:
        """plan_before's health with the next name's first target flipped."""
        target = policies[next(flips) % len(policies)].targets[0]
        key = (target.cluster, target.address, target.port)
        return HealthView(plan_before.health.healthy ^ {key}, plan_before.health.known)

    def timed_change(reuse: bool) -> Callable[[], float]:
        def run() -> float:
            nonlocal served
            view = changed(served)
            epoch = served.table.generation + 1
            start = time.perf_counter()
            new = decide(
                plan,
                view,
                epoch=epoch,
                previous=served.decisions,
                serial=epoch,
                reuse=served if reuse else None,
            )
            seconds = time.perf_counter() - start
            served = new
            return seconds

        return run

    full_change = min(timed_change(False)() for _ in range(args.repeat))
    incremental = min(timed_change(True)() for _ in range(args.repeat))
    before = served
    after = decide(
        plan,
        changed(before),
        epoch=before.table.generation + 1,
        previous=before.decisions,
        serial=before.table.generation + 1,
        reuse=before,
    )
    delta = table_delta(before.table, after.table)
    assert delta is not None
    whole_bytes = len(pickle.dumps(after.table, pickle.HIGHEST_PROTOCOL))
    delta_bytes = len(pickle.dumps(delta, pickle.HIGHEST_PROTOCOL))
    pickle_whole = best_of(lambda: pickle.dumps(after.table, pickle.HIGHEST_PROTOCOL), args.repeat)
    pickle_delta = best_of(lambda: pickle.dumps(delta, pickle.HIGHEST_PROTOCOL), args.repeat)
    whole = pickle.dumps(after.table, pickle.HIGHEST_PROTOCOL)
    unpickle_whole = best_of(lambda: pickle.loads(whole), args.repeat)
    pieces = to_pieces(after.table)
    piece_count = int.from_bytes(pieces[:4])

    def take_in() -> float:
        """All pieces, as the worker does; returns the longest single step."""
        assembly, longest = Assembly(pieces), 0.0
        gc.disable()
        try:
            while True:
                start = time.perf_counter()
                done = assembly.step()
                longest = max(longest, time.perf_counter() - start)
                if done:
                    return longest
        finally:
            gc.enable()

    all_pieces = best_of(take_in, args.repeat)
    longest_piece = min(take_in() for _ in range(args.repeat))
    rows: list[dict[str, str | float | int]] = [
        {"case": "steer_all lowestLatency (baseline)", "seconds": base, "ratio": 1.0},
        {"case": "AnswerTable.build (full)", "seconds": full_table, "ratio": full_table / base},
        {"case": "health change: decide, full", "seconds": full_change},
        {"case": "health change: decide, incremental", "seconds": incremental},
        {"case": "ship: pickle whole table", "seconds": pickle_whole, "bytes": whole_bytes},
        {"case": "ship: pickle delta", "seconds": pickle_delta, "bytes": delta_bytes},
        {"case": "worker: unpickle whole table, 1 call", "seconds": unpickle_whole},
        {
            "case": f"worker: all {piece_count} pieces",
            "seconds": all_pieces,
            "bytes": len(pieces),
        },
        {"case": "worker: one piece, mean", "seconds": all_pieces / piece_count},
        {"case": "worker: longest piece (+ scheduling)", "seconds": longest_piece},
    ]
    for row in rows[2:]:
        row["ratio"] = float(row["seconds"]) / base
    print(f"{args.names} names x {args.groups} groups, {after.table.size} answers")
    print(f"{'case':<40} {'seconds':>9} {'vs steer_all':>13} {'bytes':>10}")
    for row in rows:
        size = f"{row['bytes']:>10,}" if "bytes" in row else ""
        print(f"{row['case']:<40} {row['seconds']:>9.4f} {row['ratio']:>12.2f}x {size}")
    ratio = full_change / incremental
    print(f"health change, full / incremental: {ratio:.1f}x; delta {delta.size} answers")
    held = unpickle_whole / (all_pieces / piece_count)
    print(f"the worker's wait for a whole table, one unpickle / a mean piece: {held:.0f}x")
    save("gtm_table", args, rows=rows, full_over_incremental=ratio, one_call_over_piece=held)


if __name__ == "__main__":
    main()
