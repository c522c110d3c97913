"""GTM answer-table build time: ``AnswerTable.build`` over names x client groups.

    .venv/bin/python -m bench.gtm_table [--names 100] [--groups 200] [--repeat 3]

Baseline = ``steer_all`` for the same policies (lowestLatency) in the same run: the table build is
reported as a ratio to the steering that feeds it.
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import replace

from bench._common import best_of, save
from bench.steering import build
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.zone import Zone
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.steering import steer_all
from controlplane.gtm.types import ClientGroup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    policies, group_list, health = build(args.names, args.groups)
    policies = [replace(p, strategy="lowestLatency") for p in policies]
    group_list = [
        replace(g, networks=(ipaddress.ip_network(f"10.{i // 256}.{i % 256}.0/24"),))
        for i, g in enumerate(group_list)
    ]
    groups = ClientGroups([ClientGroup(g.name, g.networks, g.region) for g in group_list])
    zone = Zone("gtm.example", ("ns1.gtm.example",), glue={"ns1.gtm.example": ("192.0.2.53",)})
    decisions = steer_all(policies, group_list, health, 1)
    base = best_of(lambda: steer_all(policies, group_list, health, 1), args.repeat)
    table = AnswerTable.build([zone], decisions.values(), groups, policies)
    seconds = best_of(
        lambda: AnswerTable.build([zone], decisions.values(), groups, policies), args.repeat
    )
    rows = [
        {"case": "steer_all lowestLatency (baseline)", "seconds": base, "ratio": 1.0},
        {"case": "AnswerTable.build", "seconds": seconds, "ratio": seconds / base},
    ]
    print(f"{args.names} names x {args.groups} groups, {table.size} slots")
    print(f"{'case':<40} {'seconds':>9} {'ratio':>8}")
    for row in rows:
        print(f"{row['case']:<40} {row['seconds']:>9.3f} {row['ratio']:>8.1f}")
    save("gtm_table", args, rows=rows)


if __name__ == "__main__":
    main()
