"""The docs' policy examples are valid as written, and the broken set they quote fails as quoted.

Each ```yaml block of docs/*.md is validated together with examples/three-regions (its clusters
and services are what the examples refer to); a block's document replaces the example's
document of the same kind and name, or the one for the same service."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.policy.loader import load_directory

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "three-regions"
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)


def yaml_blocks() -> list[tuple[str, str]]:
    found = []
    for doc in sorted((ROOT / "docs").glob("*.md")):
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{doc.name}:{line}", match.group(1)))
    return found


def _identity(doc: dict[str, Any]) -> set[tuple[str, str]]:
    keys = {(doc["kind"], doc["metadata"]["name"])}
    service = (doc.get("spec") or {}).get("service")
    if doc["kind"] in {"Placement", "TrafficPolicy", "GlobalService"} and service:
        keys.add((doc["kind"], f"service={service}"))
    return keys


def test_docs_have_yaml_examples() -> None:
    assert len(yaml_blocks()) >= 7


@pytest.mark.parametrize("where,block", yaml_blocks(), ids=[w for w, _ in yaml_blocks()])
def test_yaml_example_validates(where: str, block: str, tmp_path: Path) -> None:
    ours = [d for d in yaml.safe_load_all(block) if d]
    replaced = set().union(*(_identity(d) for d in ours))
    kept = []
    for path in sorted(EXAMPLE.glob("*.yaml")):
        for d in yaml.safe_load_all(path.read_text()):
            if d and not _identity(d) & replaced:
                kept.append(d)
    (tmp_path / "example.yaml").write_text(yaml.safe_dump_all(kept, sort_keys=False))
    (tmp_path / "docs-example.yaml").write_text(block)
    load_directory(tmp_path)  # raises PolicyError, naming file:line, when the example is wrong


def test_the_quoted_validate_output_is_what_examples_bad_gives() -> None:
    text = (ROOT / "docs" / "policy-reference.md").read_text()
    quoted = text.split("`ubiq validate DIR` checks a set", 1)[1].split("```", 2)[1]
    out = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "validate", "examples/bad"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert out.stderr.strip() == quoted.strip()
    assert "problems" in out.stderr  # the set is broken in several ways, all listed
