"""The ``ubiq`` command. Errors are one clear line (exit 1), never a traceback unless --debug."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from controlplane.errors import PolicyError, UbiqError
from controlplane.logging import configure_logging
from controlplane.policy.loader import load_directory
from controlplane.policy.model import Model

Handler = Callable[[argparse.Namespace], int]


def _summary(model: Model) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in model.summary().items())
    return f"{counts}; hash {model.hash[:16]}"


def cmd_validate(args: argparse.Namespace) -> int:
    model = _load_or_report(args.directory)
    if model is None:
        return 1
    for warning in model.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.directory}: valid ({_summary(model)})")
    return 0


def _write_output(text: str, output: str | None) -> int:
    if output:
        try:
            Path(output).write_text(text)
        except OSError as exc:
            raise UbiqError(f"{output}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from controlplane.policy.schema import document_schema_json

    text = document_schema_json()
    return _write_output(text, args.output)


def cmd_serve(args: argparse.Namespace) -> int:
    from controlplane.gtm.server import new_event_loop
    from controlplane.serve import ServeOptions, serve

    options = ServeOptions.from_args(args)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:  # uvloop when installed
        runner.run(serve(options))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from controlplane.demo import run_demo

    return run_demo(args)


def cmd_dns_explain(args: argparse.Namespace) -> int:
    import ipaddress

    from controlplane.gtm.explain import explain
    from controlplane.gtm.geo_load import GeoDatabases
    from controlplane.gtm.plan import GtmConfig, decide, plan_from_model
    from controlplane.gtm.types import HealthView

    try:
        ipaddress.ip_address(args.client)
    except ValueError:
        raise UbiqError(f"--client: expected an IP address, got {args.client!r}") from None
    model = _load_or_report(args.directory)
    if model is None:
        return 1
    health = HealthView(frozenset())
    geo = GeoDatabases().load(model)
    for error in geo.errors:
        print(f"warning: {error}; using the CIDR client groups", file=sys.stderr)
    plan = decide(plan_from_model(model, GtmConfig(), geo.groups), health, epoch=1)
    name = args.name.rstrip(".").lower()
    policy = plan.policies.get(name)
    if policy is None:
        known = ", ".join(sorted(plan.policies)) or "none"
        raise UbiqError(f"no GlobalService serves {args.name!r} (served names: {known})")
    group = plan.group_for(args.client)
    print(explain(policy, group, health, plan.decisions[(name, group.name)], client=args.client))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from controlplane.xds.compiler.options import CompileOptions, NodeIdentity
    from controlplane.xds.render import render_node_json

    model = _load_or_report(args.directory)
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


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from controlplane.serve import parse_hostport
    from controlplane.xds.bootstrap import render_bootstrap, render_grpc_bootstrap

    host, port = parse_hostport(args.xds)
    if args.grpc:
        text = render_grpc_bootstrap(args.node_id, args.cluster, args.region, args.zone, host, port)
        return _write_output(text, args.output)
    text = render_bootstrap(
        node_id=args.node_id,
        cluster=args.cluster,
        region=args.region,
        zone=args.zone,
        xds_host=host,
        xds_port=port,
        admin_port=args.admin_port,
        mode="ads-delta" if args.delta else "ads-sotw",
    )
    return _write_output(text, args.output)


def cmd_status(args: argparse.Namespace) -> int:
    import json
    import time

    import httpx

    try:
        reply = httpx.get(f"{args.api.rstrip('/')}/v1/status", timeout=5)
        reply.raise_for_status()
    except httpx.HTTPError as exc:
        raise UbiqError(f"cannot read status from {args.api}: {exc}") from None
    status = reply.json()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    policy = status["policy"]
    state = "ok" if policy["ok"] else f"REJECTED last change ({policy['rejected']} rejected)"
    print(f"policy  {policy['modelHash'][:16]}  generation {policy['generation']}  {state}")
    for problem in policy["problems"][:10]:
        print(f"  {problem}")
    print(f"proxies {len(status['proxies'])}")
    now = time.time()
    for p in status["proxies"]:
        acked = " ".join(
            f"{t.rsplit('.', 1)[-1][:3]}={v[:8]}" for t, v in sorted(p["acked"].items())
        )
        nack = p["last_nack"]
        line = (
            f"  {p['node_id']:20} {p['cluster']:12} {p['locality']:24} {p['mode']:5}"
            f" up {now - p['connected_since']:7.0f}s  {acked}"
        )
        print(line)
        if nack:
            print(f"    last NACK ({nack['type_url'].rsplit('.', 1)[-1]}): {nack['message']}")
    print(f"gtm targets {len(status['gtm'])}")
    for t in status["gtm"]:
        health = {True: "healthy", False: "UNHEALTHY", None: "unchecked"}[t["healthy"]]
        error = f"  ({t['last_error']})" if t["last_error"] and t["healthy"] is False else ""
        print(f"  {t['cluster']:12} {t['address']}:{t['port']:<6} {health}{error}")
    return 0


def _load_or_report(directory: Path) -> Model | None:
    """The model, or None after printing every problem, one line each, and a count."""
    try:
        return load_directory(directory)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        noun = "problem" if len(exc.problems) == 1 else "problems"
        print(f"{directory}: {len(exc.problems)} {noun}", file=sys.stderr)
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ubiq", description="Ubiq: one control plane for traffic across clusters and regions."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="default: info (warning for `demo`, whose own output tells the story)",
    )
    parser.add_argument("--log-format", default="auto", choices=["auto", "console", "json"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a policy directory; list every problem")
    p.add_argument("directory", type=Path)
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("schema", help="write JSON Schema for policy documents")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(handler=cmd_schema)

    p = sub.add_parser("serve", help="serve a policy directory (watching it for changes)")
    p.add_argument("directory", type=Path)
    from controlplane.serve import add_serve_arguments

    add_serve_arguments(p)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("render", help="the Envoy resources a node would get, as JSON")
    p.add_argument(
        "--node-id", default="envoy", help="informational; resources depend on --cluster"
    )
    p.add_argument("--cluster", required=True, help="the Ubiq cluster the node runs in")
    p.add_argument("--listener-port", type=int, default=10000)
    p.add_argument("directory", type=Path, nargs="?", default=Path("examples/three-regions"))
    p.set_defaults(handler=cmd_render)

    p = sub.add_parser("bootstrap", help="an Envoy bootstrap that points at Ubiq's xDS server")
    p.add_argument("--node-id", required=True)
    p.add_argument("--cluster", required=True, help="the Ubiq cluster this Envoy runs in")
    p.add_argument("--region", required=True)
    p.add_argument("--zone", default="")
    p.add_argument("--xds", default="127.0.0.1:18000", help="Ubiq's xDS address")
    p.add_argument("--admin-port", type=int, default=9901)
    p.add_argument("--delta", action="store_true", help="incremental (Delta) xDS instead of SotW")
    p.add_argument(
        "--grpc",
        action="store_true",
        help="a JSON bootstrap for a proxyless gRPC client (GRPC_XDS_BOOTSTRAP) instead of Envoy's",
    )
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(handler=cmd_bootstrap)

    p = sub.add_parser("status", help="what a running `ubiq serve` is doing (proxies, GTM)")
    p.add_argument("--api", default="http://127.0.0.1:8081", help="the server's API address")
    p.add_argument("--json", action="store_true", help="raw JSON")
    p.set_defaults(handler=cmd_status)

    dns = sub.add_parser("dns", help="global traffic manager tools")
    dns_sub = dns.add_subparsers(dest="dns_command", required=True, metavar="COMMAND")
    p = dns_sub.add_parser("explain", help="what a client would get for NAME, and why")
    p.add_argument("name")
    p.add_argument("--client", required=True, help="client IP address (or its ECS subnet address)")
    p.add_argument("directory", type=Path, nargs="?", default=Path("examples/three-regions"))
    p.set_defaults(handler=cmd_dns_explain)

    p = sub.add_parser("demo", help="run the bundled three-region demo")
    p.add_argument("directory", type=Path, nargs="?", default=Path("examples/three-regions"))
    p.add_argument("--keep-running", action="store_true", help="keep serving until Ctrl-C")
    p.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = args.log_level or ("warning" if args.command == "demo" else "info")
    configure_logging(level, args.log_format)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `ubiq ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UbiqError as exc:
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"ubiq: error: {first}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"ubiq: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
