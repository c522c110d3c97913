"""The ``ubiq`` command. Errors are one clear line (exit 1), never a traceback unless --debug."""

from __future__ import annotations

import argparse
import asyncio
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
    try:
        model = load_directory(args.directory)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        noun = "problem" if len(exc.problems) == 1 else "problems"
        print(f"{args.directory}: {len(exc.problems)} {noun}", file=sys.stderr)
        return 1
    print(f"{args.directory}: valid ({_summary(model)})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from controlplane.policy.schema import document_schema_json

    text = document_schema_json()
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from controlplane.serve import ServeOptions, serve

    options = ServeOptions.from_args(args)
    asyncio.run(serve(options))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from controlplane.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ubiq", description="Ubiq: one control plane for traffic across clusters and regions."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
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

    p = sub.add_parser("demo", help="run the bundled three-region demo")
    p.add_argument("directory", type=Path, nargs="?", default=Path("examples/three-regions"))
    p.add_argument("--keep-running", action="store_true", help="keep serving until Ctrl-C")
    p.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
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
