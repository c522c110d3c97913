"""The jinja2 templates Ubiq renders (Envoy bootstrap, Prometheus configuration, ...)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

_MARKER = "envoy-bootstrap.yaml.j2"


def templates_dir() -> Path:
    """The repository's templates/ or, when installed, controlplane/_templates."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "templates", package / "_templates"):
        if (candidate / _MARKER).is_file():
            return candidate
    raise FileNotFoundError(f"templates not found next to {package}")


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)
