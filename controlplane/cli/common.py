"""Helpers shared by the commands: loading a policy directory, writing output."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from controlplane.errors import PolicyError, UbiqError
from controlplane.policy.loader import load_directory
from controlplane.policy.model import Model
from controlplane.serve import env_default

Handler = Callable[[argparse.Namespace], int]

POLICY_DIR_ENV = "UBIQ_POLICY_DIR"


def add_api_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api",
        default=env_default("UBIQ_API", "127.0.0.1:8081"),
        help="a running server's API, HOST:PORT or URL (env UBIQ_API)",
    )
    add_token_options(p)


def add_token_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="the API token to send: the file's first token (default: $UBIQ_API_TOKEN, else"
        " the first token of $UBIQ_API_TOKEN_FILE, else none)",
    )
    p.add_argument(
        "--ca-cert",
        metavar="PEM",
        help="CA bundle to verify an https:// API with (default: the system's)",
    )


def add_policy_dir(p: argparse.ArgumentParser) -> None:
    """The policy directory: the positional argument, else $UBIQ_POLICY_DIR; never a guess."""
    p.add_argument(
        "directory",
        type=Path,
        nargs="?",
        default=None,
        help=f"policy directory (default: ${POLICY_DIR_ENV}; required when that is unset)",
    )
    p.set_defaults(policy_parser=p)


def resolve_policy_dir(
    parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]
) -> None:
    """Fill ``args.directory`` from the command line or the environment, or stop with a usage error.

    argparse (3.11) binds an optional positional at the first positional it meets, so in
    ``dns explain NAME --client IP DIR`` the directory arrives in ``extra``: taken from there."""
    bare = len(extra) == 1 and not extra[0].startswith("-")
    if "directory" in args and args.directory is None and bare:
        args.directory = Path(extra.pop())
    if "policy_parser" in args:
        parser = args.policy_parser
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if "directory" not in args or args.directory is not None:
        return
    if getattr(args, "directory_or_api", False) and args.api is not None:
        return
    if getattr(args, "store", None):  # serve --store etcd://...: no directory
        return
    from_env = os.environ.get(POLICY_DIR_ENV)
    if not from_env:
        store = " or --store etcd://..." if "store" in args else ""
        parser.error(f"give a policy DIRECTORY{store} (or set {POLICY_DIR_ENV})")
    args.directory = Path(from_env)


#: model.summary() key -> the word for one of them
_SINGULAR = {
    "clusters": "cluster",
    "services": "service",
    "routePolicies": "routePolicy",
    "trafficPolicies": "trafficPolicy",
    "placements": "placement",
    "globalServices": "globalService",
    "canaries": "canary",
}


def count(n: int, plural: str) -> str:
    """``1 globalService``, ``2 globalServices``, ``0 canaries``."""
    return f"{n} {_SINGULAR.get(plural, plural) if n == 1 else plural}"


def summary(model: Model) -> str:
    counts = ", ".join(count(n, k) for k, n in model.summary().items())
    return f"{counts}; hash {model.hash[:16]}"


def write_output(text: str, output: str | None) -> int:
    if output:
        try:
            Path(output).write_text(text)
        except OSError as exc:
            raise UbiqError(f"{output}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def load_or_report(directory: Path) -> Model | None:
    """The model, or None after printing every problem, one line each, and a count."""
    try:
        return load_directory(directory)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        noun = "problem" if len(exc.problems) == 1 else "problems"
        print(f"{directory}: {len(exc.problems)} {noun}", file=sys.stderr)
        return None
