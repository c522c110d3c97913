"""`ubiq serve` that cannot start says why in one line, with its own exit code; --debug and the
log options are accepted after the command too."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from controlplane.ports import free_port
from tests.support.cli import ubiq

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"


@pytest.mark.parametrize("flag", ["--xds", "--api"])
def test_port_in_use_is_one_line_exit_3(flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        others = {"--xds": "127.0.0.1:0", "--api": f"127.0.0.1:{free_port()}"}
        others[flag] = busy
        out = ubiq(
            "serve", str(EXAMPLE), "--log-level", "error", "--dns", f"127.0.0.1:{free_port()}",
            "--xds", others["--xds"], "--api", others["--api"],
        )  # fmt: skip
    assert out.returncode == 3, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"ubiq: error: {flag}")
    assert "cannot listen" in lines[0] and "internal error" not in lines[0]


def test_global_options_after_the_command() -> None:
    out = ubiq(
        "validate", str(EXAMPLE), "--debug", "--log-level", "warning", "--log-format", "json"
    )
    assert out.returncode == 0, out.stderr
    missing = ubiq("validate", "/nonexistent/policies", "--debug")
    assert missing.returncode == 1
    assert "Traceback" in missing.stderr  # --debug took effect after the command


async def test_demo_backend_on_a_taken_address_is_a_listen_error() -> None:
    from controlplane.demo.backends import DemoBackend
    from controlplane.errors import ListenError

    port = free_port()
    first = DemoBackend("checkout", "eu-west", "v1", "127.0.0.1", port)
    await first.start()
    try:
        with pytest.raises(ListenError, match=rf"checkout \(eu-west\) 127.0.0.1:{port}: cannot"):
            await DemoBackend("checkout", "eu-west", "v2", "127.0.0.1", port).start()
    finally:
        await first.stop()
