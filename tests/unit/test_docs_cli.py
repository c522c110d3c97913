"""docs/cli.md documents every command and every option the parser accepts."""

from __future__ import annotations

import argparse
from pathlib import Path

from controlplane.cli import build_parser

DOC = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()


def commands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{prefix}{name}", sub))
                found += commands(sub, f"{prefix}{name} ")
    return found


def test_every_command_and_option_is_documented() -> None:
    missing = []
    for name, sub in commands(build_parser()):
        if f"## {name}" not in DOC and name != "dns":
            missing.append(f"section for {name!r}")
        for action in sub._actions:
            for option in action.option_strings:
                documented = f"`{option}" in DOC or option == "--help"
                if option.startswith("--") and not documented:
                    missing.append(f"{name} {option}")
    assert missing == []


def test_every_environment_variable_is_documented() -> None:
    for var in (
        "UBIQ_POLICY_DIR",
        "UBIQ_XDS",
        "UBIQ_DNS",
        "UBIQ_API",
        "UBIQ_LOG_LEVEL",
        "UBIQ_LOG_FORMAT",
    ):
        assert f"| `{var}` |" in DOC
