"""Logs: every line JSON in JSON mode (libraries too), dotted event names, a target turning
unhealthy at warning."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from controlplane.gtm.health.checker import HealthChecker
from controlplane.gtm.health.state import CheckedTarget, HealthCheck, ProbeResult
from controlplane.gtm.types import Target
from controlplane.logging import configure_logging

SOURCE = Path(__file__).parents[2] / "controlplane"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
DOTTED = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")


def test_library_lines_are_json_in_json_mode(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    try:
        logging.getLogger("watchfiles.main").warning("%d changes detected", 3)
        logging.getLogger("some.library").info("plain %s", "text")
        structlog.get_logger().info("ubiq.own", n=1)
    finally:
        configure_logging("info", "console")
    lines = capsys.readouterr().err.splitlines()
    records = [json.loads(line) for line in lines]  # every line parses
    assert records[0]["event"] == "3 changes detected" and records[0]["level"] == "warning"
    assert records[0]["logger"] == "watchfiles.main" and "timestamp" in records[0]
    assert records[1]["event"] == "plain text"
    assert records[2]["event"] == "ubiq.own"


def test_httpx_request_lines_are_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    logging.getLogger("httpx").info("HTTP Request: GET http://x/ 200 OK")
    assert capsys.readouterr().err == ""


def event_names() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            calls_log = isinstance(func, ast.Attribute) and func.attr in LEVELS
            calls_log = calls_log and isinstance(func.value, ast.Name) and func.value.id == "log"
            chosen = isinstance(func, ast.IfExp) and all(
                isinstance(f, ast.Attribute) and f.attr in LEVELS for f in (func.body, func.orelse)
            )
            first = node.args[0]
            if (calls_log or chosen) and isinstance(first, ast.Constant):
                found.append((str(path.relative_to(SOURCE)), node.lineno, str(first.value)))
    return found


def test_event_names_are_dotted() -> None:
    names = event_names()
    assert len(names) > 20
    wrong = [n for n in names if not DOTTED.match(n[2])]
    assert wrong == []


async def test_a_target_turning_unhealthy_logs_a_warning() -> None:
    check = HealthCheck(interval=1.0, healthy_threshold=1, unhealthy_threshold=1)
    target = CheckedTarget(Target("eu-west", "eu-west", "192.0.2.1", 80), check)
    results = [True, False]

    async def probe(ct: CheckedTarget) -> ProbeResult:
        ok = results.pop(0)
        return ProbeResult(ok, None if ok else "connection refused", None, 0.001)

    checker = HealthChecker([target], lambda view: None, registry=CollectorRegistry(), probe=probe)
    with structlog.testing.capture_logs() as logs:
        await checker.check_once()
        await checker.check_once()
    changes = [e for e in logs if e["event"] == "gtm.health.change"]
    assert [(e["log_level"], e["healthy"]) for e in changes] == [("info", True), ("warning", False)]


_WRITER = """
import structlog, sys
from controlplane.logging import configure_logging
configure_logging("info", "json")
for n in range(300):
    structlog.get_logger().info("writer.line", writer=sys.argv[1], n=n, pad="x" * 200)
"""


def test_lines_from_several_processes_on_one_stderr_stay_whole() -> None:
    """DNS workers share ``ubiq serve``'s stderr: a line is one write, never split by another."""
    import subprocess
    import sys

    read, write = os.pipe()
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(k)], stderr=write) for k in range(4)
    ]
    os.close(write)
    with os.fdopen(read) as pipe:
        lines = pipe.read().splitlines()
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    records = [json.loads(line) for line in lines]
    assert len(records) == 4 * 300
    assert {(r["writer"], r["n"]) for r in records} == {
        (str(k), n) for k in range(4) for n in range(300)
    }


FORGED = "2026-01-01T00:00:00.000000Z [info     ] api.policy.written             kind=Route"
EVENT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[")
#: every way a text can break a line for a terminal, ``str.splitlines`` or a log shipper
BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def test_a_hostile_exception_message_cannot_forge_a_console_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An exception message quoting a client's input keeps every line of its traceback behind
    the continuation prefix: each real event is one line starting with its timestamp, and no
    other line looks like one, whichever line breaks the message carries."""
    from controlplane.logging import CONTINUATION

    hostile = "".join(f"bad{brk}{FORGED}" for brk in BREAKS) + "\x1b[2J\n" + "x" * 5000
    configure_logging("info", "console")
    try:
        raise ValueError(hostile)
    except ValueError:
        structlog.get_logger().exception("ubiq.failed", n=1)
        logging.getLogger("some.library").exception("library failed")
    structlog.get_logger().info("ubiq.after")
    err = capsys.readouterr().err
    assert "\x1b" not in err
    lines = err.splitlines()  # splits on every break in BREAKS
    events = [line for line in lines if EVENT_LINE.match(line)]
    assert [line.split("]")[1].split()[0] for line in events] == [
        "ubiq.failed",
        "library",
        "ubiq.after",
    ]
    rest = [line for line in lines if not EVENT_LINE.match(line)]
    assert len(rest) > 6 and all(line.startswith(CONTINUATION) for line in rest)
    assert sum(line.count(FORGED) for line in rest) == 2 * len(BREAKS)  # shown, behind "  | "
    assert max(len(line) for line in rest) < 2048 + 200  # each line cut like any value
