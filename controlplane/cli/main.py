"""The ``ubiq`` command. Errors are one clear line, never a traceback unless --debug."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controlplane.cli.bootstrap import cmd_bootstrap
from controlplane.cli.common import (
    POLICY_DIR_ENV,
    Handler,
    add_api_option,
    add_policy_dir,
    add_token_options,
    resolve_policy_dir,
)
from controlplane.cli.dns import cmd_dns_explain
from controlplane.cli.endpoint import add_endpoint_arguments, cmd_endpoint
from controlplane.cli.loop import cmd_canary, cmd_placement
from controlplane.cli.output import add_output_format
from controlplane.cli.policy import cmd_render, cmd_schema, cmd_validate
from controlplane.cli.policy_api import add_policy_commands
from controlplane.cli.run import cmd_demo, cmd_serve
from controlplane.cli.status import cmd_status
from controlplane.cli.store import add_store_commands
from controlplane.errors import UbiqError
from controlplane.logging import configure_logging
from controlplane.serve import env_default

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "console", "json")
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in Ubiq; 1, 3 and 4 come from UbiqError.exit_code


def _global_options(suppress: bool) -> argparse.ArgumentParser:
    """--debug and the log options, accepted before or after the command.

    The copy given to each command defaults to SUPPRESS, so it only sets what was typed there."""
    g = argparse.ArgumentParser(add_help=False)
    g.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="show tracebacks",
    )
    g.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS if suppress else os.environ.get("UBIQ_LOG_LEVEL") or None,
        help="default: $UBIQ_LOG_LEVEL, else info (warning for `demo`, whose own output tells"
        " the story)",
    )
    g.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=argparse.SUPPRESS if suppress else os.environ.get("UBIQ_LOG_FORMAT") or "auto",
        help="auto: console on a terminal, JSON lines otherwise (env UBIQ_LOG_FORMAT)",
    )
    return g


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ubiq",
        description="Ubiq: one control plane for traffic across clusters and regions.",
        parents=[_global_options(suppress=False)],
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ubiq {version()}")
    sub = _Subcommands(
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
        _global_options(suppress=True),
    )

    p = sub.add("validate", help="check a policy directory; list every problem")
    add_policy_dir(p)
    add_output_format(p)
    p.set_defaults(handler=cmd_validate)

    p = sub.add("schema", help="write JSON Schema for policy documents")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(handler=cmd_schema)

    p = sub.add("serve", help="serve a policy directory (watching it for changes)")
    add_policy_dir(p)
    from controlplane.serve import add_serve_arguments

    add_serve_arguments(p)
    p.set_defaults(handler=cmd_serve)

    p = sub.add("render", help="the Envoy resources a node would get, as JSON")
    p.add_argument(
        "--node-id", default="envoy", help="informational; resources depend on --cluster"
    )
    p.add_argument("--cluster", required=True, help="the Ubiq cluster the node runs in")
    p.add_argument("--listener-port", type=int, default=10000, help="Envoy HTTP listener port")
    add_policy_dir(p)
    add_output_format(p, default="json")
    p.set_defaults(handler=cmd_render)

    p = sub.add("bootstrap", help="an Envoy bootstrap that points at Ubiq's xDS server")
    p.add_argument("--node-id", required=True, help="the node's id (unique per proxy)")
    p.add_argument("--cluster", required=True, help="the Ubiq cluster this Envoy runs in")
    p.add_argument(
        "--policy",
        type=Path,
        default=os.environ.get(POLICY_DIR_ENV) or None,
        help=f"policy directory to check --cluster against and take region and zone from"
        f" (default: ${POLICY_DIR_ENV}, else no check)",
    )
    p.add_argument("--region", help="required without --policy; must match the policy's")
    p.add_argument("--zone", help="default: the policy's zone of --cluster, else none")
    p.add_argument(
        "--xds",
        default=env_default("UBIQ_XDS", "127.0.0.1:18000"),
        help="Ubiq's xDS; HOST:PORT,HOST:PORT,... lists every replica (env UBIQ_XDS)",
    )
    p.add_argument("--admin-port", type=int, default=9901, help="Envoy's admin port (loopback)")
    p.add_argument("--delta", action="store_true", help="incremental (Delta) xDS instead of SotW")
    p.add_argument(
        "--grpc",
        action="store_true",
        help="a JSON bootstrap for a proxyless gRPC client (GRPC_XDS_BOOTSTRAP) instead of Envoy's",
    )
    p.add_argument(
        "--xds-tls-cert",
        help="reach xDS over mTLS with this node certificate (`ubiq certs node`; the path as the"
        " proxy sees it); needs --xds-tls-key and --xds-tls-ca (default: plaintext)",
    )
    p.add_argument("--xds-tls-key", help="the private key of --xds-tls-cert")
    p.add_argument("--xds-tls-ca", help="the CA that signed ubiq serve's --xds-tls-cert")
    p.add_argument(
        "--xds-tls-sds-file",
        help="also write this file-based SDS secret naming the node certificate, and point the"
        " bootstrap at it: Envoy then picks up a renewed certificate without a restart",
    )
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(handler=cmd_bootstrap)

    p = sub.add("status", help="what a running `ubiq serve` is doing (proxies, GTM)")
    add_api_option(p)
    add_output_format(p)
    p.add_argument("--json", dest="format", action="store_const", const="json", help="-o json")
    p.set_defaults(handler=cmd_status)

    p = sub.add("placement", help="a running server's placement decisions and why")
    p.add_argument("service", nargs="?", help="one service (default: every loop-driven one)")
    add_api_option(p)
    add_output_format(p)
    p.set_defaults(handler=cmd_placement)

    p = sub.add("canary", help="a running server's canaries: status, pause, resume, abort")
    p.add_argument("action", choices=["status", "pause", "resume", "abort"])
    p.add_argument("name", nargs="?", help="the Canary (required except for status)")
    add_api_option(p)
    add_output_format(p)
    p.set_defaults(handler=cmd_canary)

    p = sub.add(
        "endpoint", help="register, heartbeat, deregister, list endpoints (VMs, edge nodes)"
    )
    add_endpoint_arguments(p)
    add_api_option(p)
    add_output_format(p)
    p.set_defaults(handler=cmd_endpoint)

    dns = sub.add("dns", help="global traffic manager tools")
    dns_sub = _Subcommands(
        dns.add_subparsers(dest="dns_command", required=True, metavar="COMMAND"), sub.common
    )
    p = dns_sub.add("explain", help="what a client would get for NAME, and why")
    p.add_argument("name")
    p.add_argument("--client", required=True, help="client IP address (or its ECS subnet address)")
    add_policy_dir(p)
    p.add_argument(
        "--api",
        help="ask a running server (HOST:PORT or URL) instead: live health, no DIRECTORY",
    )
    add_token_options(p)
    add_output_format(p)
    p.set_defaults(handler=cmd_dns_explain, directory_or_api=True)

    add_store_commands(sub.action)
    add_policy_commands(sub)
    _add_certs_commands(sub)

    p = sub.add("demo", help="run the bundled three-region demo")
    add_policy_dir(p)
    p.add_argument("--keep-running", action="store_true", help="keep serving until Ctrl-C")
    p.add_argument("--xds", default="127.0.0.1:0", help="the demo's xDS address (port 0: any free)")
    p.add_argument("--dns", default="127.0.0.1:0", help="the demo's DNS address (port 0: any free)")
    p.add_argument("--api", default="127.0.0.1:0", help="the demo's API address (port 0: any free)")
    p.add_argument(
        "--loop",
        action="store_true",
        help="run the feedback loop on the demo's Prometheus (placement decisions, canaries)",
    )
    p.set_defaults(handler=cmd_demo)
    p = sub.add("completion", help='a shell completion script: eval "$(ubiq completion bash)"')
    p.add_argument("shell", choices=["bash", "zsh"])
    p.set_defaults(handler=cmd_completion)
    mark_completions(parser)
    return parser


def _add_certs_commands(sub: _Subcommands) -> None:
    from controlplane.cli.certs import cmd_certs_ca, cmd_certs_node, cmd_certs_server

    certs = sub.add("certs", help="a CA and certificates for xDS mTLS (docs/security.md)")
    certs_sub = _Subcommands(
        certs.add_subparsers(dest="certs_command", required=True, metavar="COMMAND"), sub.common
    )

    def issuer(p: argparse.ArgumentParser, days: int) -> None:
        p.add_argument("--ca", type=Path, default=Path("ca.pem"), help="the CA certificate")
        p.add_argument("--ca-key", type=Path, default=Path("ca-key.pem"), help="the CA's key")
        p.add_argument("--days", type=int, default=days, help="validity in days")
        p.add_argument("--force", action="store_true", help="replace existing files")

    p = certs_sub.add("ca", help="create a CA: OUT.pem and OUT-key.pem (mode 0600)")
    p.add_argument("--trust-domain", required=True, help="SPIFFE trust domain, e.g. prod.example")
    p.add_argument("--out", default="ca", help="file prefix")
    p.add_argument("--days", type=int, default=3650, help="validity in days")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(handler=cmd_certs_ca)

    p = certs_sub.add(
        "server", help="a certificate for ubiq serve's xDS (spiffe://TD/ubiq/control-plane)"
    )
    issuer(p, days=365)
    p.add_argument("--dns", action="append", help="DNS name clients dial, repeatable")
    p.add_argument("--ip", action="append", help="IP address clients dial, repeatable")
    p.add_argument("--out", default="xds-server", help="file prefix")
    p.set_defaults(handler=cmd_certs_server)

    p = certs_sub.add(
        "node", help="a client certificate for one proxy (spiffe://TD/cluster/C/node/N)"
    )
    issuer(p, days=90)
    p.add_argument("--node-id", required=True, help="the node's id, as in its bootstrap")
    p.add_argument("--cluster", required=True, help="the Ubiq cluster the node runs in")
    p.add_argument("--out", help="file prefix (default: the node id, made file-safe)")
    p.set_defaults(handler=cmd_certs_node)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("ubiq")
    except PackageNotFoundError:
        return "unknown (not installed)"


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return 0


def mark_completions(parser: argparse.ArgumentParser) -> None:
    """Directories and files complete as such (shtab reads ``action.complete``)."""
    import shtab

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                mark_completions(sub)
        elif action.dest in ("directory", "policy"):
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif action.dest == "output":
            action.complete = shtab.FILE  # type: ignore[attr-defined]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default, except an absent one (None, False) or one the help already states."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action) or text


class _Subcommands:
    """Adds commands that share the global options and show defaults in --help."""

    def __init__(self, action: Any, common: argparse.ArgumentParser) -> None:
        self.action = action
        self.common = common

    def add(self, name: str, *, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self.action.add_parser(
            name,
            help=help,
            description=help,
            parents=[self.common],
            formatter_class=_HelpFormatter,
        )
        return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    resolve_policy_dir(parser, args, extra)
    for name, value, allowed in (
        ("UBIQ_LOG_LEVEL", args.log_level, LOG_LEVELS),
        ("UBIQ_LOG_FORMAT", args.log_format, LOG_FORMATS),
    ):
        if value is not None and value not in allowed:
            parser.error(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
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
        return exc.exit_code
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"ubiq: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
