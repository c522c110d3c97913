"""Every command of the README's tour that needs no running server works as written."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.support.cli import ubiq

ROOT = Path(__file__).parents[2]
NEEDS_A_SERVER = {"serve", "status", "store"}  # store: a running etcd


def tour_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## A short tour", 1)[1].split("```", 2)[1]
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "ubiq" and words[1] not in NEEDS_A_SERVER:
            commands.append(words[1:])
    return commands


def test_the_tour_has_the_offline_commands() -> None:
    assert {c[0] for c in tour_commands()} >= {"validate", "schema", "render", "bootstrap", "dns"}


@pytest.mark.parametrize("argv", tour_commands(), ids=lambda argv: " ".join(argv[:2]))
def test_tour_command_works(argv: list[str], tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    out = ubiq(*argv, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout or list(tmp_path.glob("*.json")), "printed nothing and wrote nothing"
    assert "error" not in out.stderr


def test_policy_commands_need_a_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    from controlplane.cli import main

    monkeypatch.delenv("UBIQ_POLICY_DIR", raising=False)
    for argv in (
        ["render", "--cluster", "eu-west"],
        ["dns", "explain", "x", "--client", "1.2.3.4"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    monkeypatch.setenv("UBIQ_POLICY_DIR", str(ROOT / "examples" / "three-regions"))
    assert main(["validate"]) == 0
    assert main(["dns", "explain", "checkout.gtm.example", "--client", "203.0.113.7"]) == 0
