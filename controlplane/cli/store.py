"""``ubiq store import|export``: move a policy directory into etcd and back."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from controlplane.errors import PolicyError


def cmd_store_import(args: argparse.Namespace) -> int:
    from controlplane.policy.etcd_store import EtcdStore

    store = EtcdStore.from_url(args.etcd)

    async def run() -> tuple[int, int]:
        try:
            return await store.import_directory(args.directory)
        finally:
            await store.client.aclose()

    try:
        count, revision = asyncio.run(run())
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(
            f"{args.directory}: {len(exc.problems)} problem(s); nothing imported", file=sys.stderr
        )
        return 1
    print(
        f"imported {count} documents from {args.directory} into {store.source} (revision {revision})"
    )
    return 0


def cmd_store_export(args: argparse.Namespace) -> int:
    from controlplane.policy.etcd_store import EtcdStore

    store = EtcdStore.from_url(args.etcd)

    async def run() -> int:
        try:
            return await store.export_directory(args.directory)
        finally:
            await store.client.aclose()

    count = asyncio.run(run())
    print(f"exported {count} documents from {store.source} into {args.directory}", file=sys.stderr)
    return 0


def add_store_commands(sub: Any) -> None:
    """Register ``ubiq store ...`` on the top-level subparsers."""
    store = sub.add_parser("store", help="the shared policy store (etcd): import, export")
    store_sub = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    etcd_help = "etcd://HOST:PORT[,HOST:PORT...]/PREFIX (prefix default /ubiq)"
    p = store_sub.add_parser(
        "import", help="replace the policies in etcd with a valid directory (one transaction)"
    )
    p.add_argument("directory", type=Path)
    p.add_argument("--etcd", required=True, help=etcd_help)
    p.set_defaults(handler=cmd_store_import)
    p = store_sub.add_parser("export", help="write the policies in etcd to a new directory")
    p.add_argument("directory", type=Path)
    p.add_argument("--etcd", required=True, help=etcd_help)
    p.set_defaults(handler=cmd_store_export)
