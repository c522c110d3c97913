"""Offline policy commands: ``validate``, ``schema``, ``render``."""

from __future__ import annotations

import argparse
import sys

from controlplane.cli.common import load_or_report, summary, write_output
from controlplane.errors import UbiqError


def cmd_validate(args: argparse.Namespace) -> int:
    model = load_or_report(args.directory)
    if model is None:
        return 1
    print(f"{args.directory}: valid ({summary(model)})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from controlplane.policy.schema import document_schema_json

    text = document_schema_json()
    return write_output(text, args.output)


def cmd_render(args: argparse.Namespace) -> int:
    from controlplane.xds.compiler.options import CompileOptions, NodeIdentity
    from controlplane.xds.render import render_node_json

    model = load_or_report(args.directory)
    if model is None:
        return 1
    cluster = model.clusters.get(args.cluster)
    if cluster is None:
        known = ", ".join(model.clusters) or "none"
        raise UbiqError(f"--cluster: unknown cluster {args.cluster!r} (known: {known})")
    node = NodeIdentity(
        cluster=args.cluster, region=cluster.spec.region, zone=cluster.spec.zone or ""
    )
    options = CompileOptions(listener_port=args.listener_port)
    sys.stdout.write(render_node_json(model, node, options))
    return 0
