"""``-o text|json|yaml`` for the read commands: one data structure, three renderings."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import yaml

FORMATS = ("text", "json", "yaml")


def add_output_format(p: argparse.ArgumentParser, *, default: str = "text") -> None:
    choices = FORMATS if default == "text" else FORMATS[1:]
    p.add_argument(
        "-o",
        "--output",
        dest="format",
        choices=choices,
        default=default,
        help="output format",
    )


def render(data: Any, fmt: str, text: Callable[[], str]) -> str:
    """``data`` as JSON or YAML, else the human text ``text()`` builds (ending in a newline)."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if fmt == "yaml":
        return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    out = text()
    return out if out.endswith("\n") else out + "\n"


def emit(data: Any, fmt: str, text: Callable[[], str]) -> None:
    sys.stdout.write(render(data, fmt, text))
