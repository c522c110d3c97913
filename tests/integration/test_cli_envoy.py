"""`ubiq bootstrap` writes what a real Envoy accepts; `ubiq render` shows what a node would get."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import bootstrap, ubiq

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"


@pytest.mark.parametrize("delta", [False, True])
def test_bootstrap_is_accepted_by_envoy(tmp_path: Path, delta: bool) -> None:
    target = tmp_path / "bootstrap.yaml"
    node = ["--node-id", "e1", "--cluster", "eu-west", "--region", "eu-west"]
    validated = bootstrap(target, *node, "--zone", "eu-west-1b", *(["--delta"] if delta else []))
    assert ("DELTA_GRPC" in target.read_text()) is delta
    assert "configuration" in validated.lower()


def test_render_prints_every_resource_type() -> None:
    out = ubiq("render", "--cluster", "eu-west", str(EXAMPLE))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"CDS", "EDS", "LDS", "RDS", "routeOrder"}
    names = {c["name"] for c in data["CDS"]}
    assert {"checkout|v1", "checkout|v2", "payments"} <= names


def test_render_unknown_cluster_is_one_line() -> None:
    out = ubiq("render", "--cluster", "mars", str(EXAMPLE))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "ubiq: error: --cluster: unknown cluster 'mars' (known: cn-east, eu-west, us-west)"
    )
