"""Helpers shared by the commands: loading a policy directory, writing output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from controlplane.errors import PolicyError, UbiqError
from controlplane.policy.loader import load_directory
from controlplane.policy.model import Model

Handler = Callable[[argparse.Namespace], int]


def summary(model: Model) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in model.summary().items())
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
