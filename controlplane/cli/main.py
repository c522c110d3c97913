"""The ``ubiq`` command. Errors are one clear line (exit 1), never a traceback unless --debug."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from controlplane.cli.bootstrap import cmd_bootstrap
from controlplane.cli.common import Handler, add_policy_dir, resolve_policy_dir
from controlplane.cli.dns import cmd_dns_explain
from controlplane.cli.policy import cmd_render, cmd_schema, cmd_validate
from controlplane.cli.run import cmd_demo, cmd_serve
from controlplane.cli.status import cmd_status
from controlplane.errors import UbiqError
from controlplane.logging import configure_logging


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
    add_policy_dir(p)
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("schema", help="write JSON Schema for policy documents")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(handler=cmd_schema)

    p = sub.add_parser("serve", help="serve a policy directory (watching it for changes)")
    add_policy_dir(p)
    from controlplane.serve import add_serve_arguments

    add_serve_arguments(p)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("render", help="the Envoy resources a node would get, as JSON")
    p.add_argument(
        "--node-id", default="envoy", help="informational; resources depend on --cluster"
    )
    p.add_argument("--cluster", required=True, help="the Ubiq cluster the node runs in")
    p.add_argument("--listener-port", type=int, default=10000)
    add_policy_dir(p)
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
    add_policy_dir(p)
    p.set_defaults(handler=cmd_dns_explain)

    p = sub.add_parser("demo", help="run the bundled three-region demo")
    add_policy_dir(p)
    p.add_argument("--keep-running", action="store_true", help="keep serving until Ctrl-C")
    p.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    resolve_policy_dir(parser, args, extra)
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
