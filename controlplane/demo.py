"""``ubiq demo``: the bundled example, end to end, on loopback."""

from __future__ import annotations

import argparse

from controlplane.policy.loader import load_directory


def run_demo(args: argparse.Namespace) -> int:
    model = load_directory(args.directory)
    print(f"Ubiq demo: {args.directory}")
    print(f"  policy hash {model.hash[:16]}")
    for kind, count in model.summary().items():
        print(f"  {kind:16} {count}")
    for name, cluster in model.clusters.items():
        print(f"  cluster {name:10} region {cluster.spec.region:8} gateway {cluster.spec.gateway}")
    return 0
