"""What shell users expect: `ubiq --version`, completion scripts, configuration by environment."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from controlplane.cli import build_parser, main
from controlplane.serve import ServeOptions

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"ubiq {version('ubiq')}"


def bash_complete(line: str) -> list[str]:
    script = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "completion", "bash"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    words = line.split(" ")
    program = (
        f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1};"
        f" COMP_LINE={line!r}; COMP_POINT={len(line)}; _shtab_ubiq; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion_completes_commands_and_options() -> None:
    assert bash_complete("ubiq sta") == ["status"]
    assert "--client" in bash_complete("ubiq dns explain --")
    assert bash_complete("ubiq completion z") == ["zsh"]


def test_zsh_completion_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#compdef ubiq")
    for command in ("validate", "serve", "render", "bootstrap", "status", "demo", "dns"):
        assert command in script


def test_configuration_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UBIQ_XDS", "127.0.0.1:19000")
    monkeypatch.setenv("UBIQ_DNS", "127.0.0.1:5300, [::1]:5300")
    monkeypatch.setenv("UBIQ_API", "127.0.0.1:9081")
    monkeypatch.setenv("UBIQ_POLICY_DIR", str(EXAMPLE))
    args = build_parser().parse_args(["serve", "pol"])
    options = ServeOptions.from_args(args)
    assert options.xds == ("127.0.0.1", 19000) and options.api == ("127.0.0.1", 9081)
    assert options.dns == (("127.0.0.1", 5300), ("::1", 5300))
    args = build_parser().parse_args(["serve", "pol", "--xds", "127.0.0.1:1", "--dns", "off"])
    assert ServeOptions.from_args(args).xds == ("127.0.0.1", 1)  # a flag beats the environment
    assert build_parser().parse_args(["status"]).api == "127.0.0.1:9081"
    monkeypatch.setenv("UBIQ_LOG_LEVEL", "loud")
    with pytest.raises(SystemExit) as done:
        main(["validate"])
    assert done.value.code == 2
