"""``ubiq policy list|get|apply|delete``: a running server's policy documents, over its API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from controlplane.cli.api_client import ApiReplyError, call, get_json, target
from controlplane.cli.common import add_api_option
from controlplane.cli.output import add_output_format, emit
from controlplane.errors import UbiqError

EXIT_INVALID = 1


def add_policy_commands(sub: Any) -> None:
    """``sub`` is main.py's ``_Subcommands`` (its type makes the nested one: no import cycle)."""
    group = sub.add("policy", help="a running server's policies: list, get, apply, delete (API)")
    commands = type(sub)(
        group.add_subparsers(dest="policy_command", required=True, metavar="COMMAND"), sub.common
    )
    p = commands.add("list", help="every stored document (KIND/NAME, version, where)")
    p.add_argument("--kind", help="only this kind")
    add_api_option(p)
    add_output_format(p)
    p.set_defaults(handler=cmd_policy_list)

    p = commands.add("get", help="one document, as stored (YAML)")
    p.add_argument("ref", metavar="KIND/NAME")
    add_api_option(p)
    add_output_format(p, default="yaml")
    p.set_defaults(handler=cmd_policy_get)

    p = commands.add("apply", help="create or replace every document of a file")
    p.add_argument("-f", "--filename", required=True, help="YAML file ('-': stdin)")
    p.add_argument(
        "--dry-run", action="store_true", help="check and show what would change; change nothing"
    )
    add_api_option(p)
    add_output_format(p)
    p.set_defaults(handler=cmd_policy_apply)

    p = commands.add("delete", help="delete one document (refused if the rest needs it)")
    p.add_argument("ref", metavar="KIND/NAME")
    p.add_argument(
        "--dry-run", action="store_true", help="check and show what would change; change nothing"
    )
    add_api_option(p)
    add_output_format(p)
    p.set_defaults(handler=cmd_policy_delete)


def parse_ref(ref: str) -> tuple[str, str]:
    kind, sep, name = ref.partition("/")
    if not sep or not kind or not name or "/" in name:
        raise UbiqError(f"expected KIND/NAME (e.g. RoutePolicy/checkout), got {ref!r}")
    return kind, name


def cmd_policy_list(args: argparse.Namespace) -> int:
    api = target(args)
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:  # every page; bounded by the server's document count
        params = {"limit": "500"}
        if args.kind:
            params["kind"] = args.kind
        if token:
            params["continue"] = token
        page = get_json(api, "/v1/policies", params)
        items += page["items"]
        token = page["metadata"].get("continue")
        if not token:
            break
    rows = [{k: i[k] for k in ("kind", "name", "resourceVersion", "source")} for i in items]
    emit(rows, args.format, lambda: _table(rows))
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("KIND/NAME", "VERSION", "SOURCE")
    cells = [(f"{r['kind']}/{r['name']}", r["resourceVersion"], r["source"] or "") for r in rows]
    widths = [max(len(c[i]) for c in (header, *cells)) for i in range(2)]
    return "\n".join(
        f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c}".rstrip() for a, b, c in (header, *cells)
    )


def cmd_policy_get(args: argparse.Namespace) -> int:
    kind, name = parse_ref(args.ref)
    found = get_json(target(args), f"/v1/policies/{kind}/{name}")
    emit(found["document"], args.format, lambda: yaml.safe_dump(found["document"], sort_keys=False))
    return 0


def _documents(filename: str) -> list[tuple[str, str, str]]:
    from controlplane.errors import PolicyError
    from controlplane.policy.etcd_store import split_documents

    text = sys.stdin.read() if filename == "-" else _read(Path(filename))
    try:
        docs = split_documents(text, filename)
    except PolicyError as exc:
        raise UbiqError(str(exc.problems[0]) if exc.problems else f"{filename}: not YAML") from None
    out = []
    for doc in docs:
        if not doc.kind or not doc.name:
            raise UbiqError(f"{filename}: every document needs kind and metadata.name")
        out.append((doc.kind, doc.name, doc.text))
    if not out:
        raise UbiqError(f"{filename}: no documents")
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UbiqError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def _write(args: argparse.Namespace, method: str, kind: str, name: str, text: str | None) -> Any:
    params = {"dryRun": "true"} if args.dry_run else None
    headers = {"Content-Type": "application/yaml"} if text is not None else None
    try:
        return call(
            method,
            target(args),
            f"/v1/policies/{kind}/{name}",
            params=params,
            content=text.encode() if text is not None else None,
            headers=headers,
        )
    except ApiReplyError as exc:
        errors = exc.problem.get("errors") or []
        for error in errors:
            print(f"  {error.get('location') or error.get('message')}", file=sys.stderr)
        raise


def cmd_policy_apply(args: argparse.Namespace) -> int:
    """Each document is its own write, in file order: a refused one stops the rest."""
    results = []
    for kind, name, text in _documents(args.filename):
        results.append(_write(args, "PUT", kind, name, text))
    emit(results, args.format, lambda: "\n".join(result_text(r) for r in results))
    return 0


def cmd_policy_delete(args: argparse.Namespace) -> int:
    kind, name = parse_ref(args.ref)
    result = _write(args, "DELETE", kind, name, None)
    emit(result, args.format, lambda: result_text(result))
    return 0


def result_text(result: Mapping[str, Any]) -> str:
    ref = f"{result['kind']}/{result['name']}"
    if not result.get("dryRun"):
        served = "served" if result.get("served") else "NOT YET SERVED (see `ubiq status`)"
        return f"{ref} {result['action']} ({served})"
    lines = [f"{ref} would be {result['action']} (dry run)"]
    diff = result.get("diff") or {}
    for d in diff.get("documents", []):
        lines.append(f"  document {d['kind']}/{d['name']}: {d['change']}")
    for x in diff.get("xds", []):
        for what in ("added", "changed", "removed"):
            if x.get(what):
                lines.append(f"  xds {x['group']} {x['type']} {what}: {', '.join(x[what])}")
    for a in diff.get("dns", []):
        before = ",".join(a["before"]) or "-"
        after = ",".join(a["after"]) or "-"
        lines.append(f"  dns {a['name']} for {a['clientGroup']}: {before} -> {after}")
    if len(lines) == 1:
        lines.append("  nothing would change")
    return "\n".join(lines)
