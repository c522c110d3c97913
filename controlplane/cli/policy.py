"""Offline policy commands: ``validate``, ``schema``, ``render``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from controlplane.cli.common import load_or_report, summary, write_output
from controlplane.cli.output import emit
from controlplane.errors import UbiqError


def cmd_validate(args: argparse.Namespace) -> int:
    if args.format == "text":
        model = load_or_report(args.directory)
        if model is None:
            return 1
        for warning in model.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{args.directory}: valid ({summary(model)})")
        return 0
    from controlplane.errors import PolicyError
    from controlplane.policy.loader import load_directory

    try:
        model = load_directory(args.directory)
    except PolicyError as exc:
        problems = [dataclasses.asdict(p) for p in exc.problems]
        emit(
            {"directory": str(args.directory), "valid": False, "problems": problems},
            args.format,
            str,
        )
        return 1
    data = {
        "directory": str(args.directory),
        "valid": True,
        "counts": dict(model.summary()),
        "hash": model.hash,
        "problems": [],
        "warnings": [str(w) for w in model.warnings],
    }
    emit(data, args.format, str)
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
    text = render_node_json(model, node, options)
    if args.format == "yaml":
        emit(json.loads(text), "yaml", str)
    else:
        sys.stdout.write(text)
    return 0
