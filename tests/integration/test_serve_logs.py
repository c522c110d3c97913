"""`ubiq serve --log-format json`: every line is JSON, from start to `serve.stopped`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.procs import free_port, free_udp_tcp_port, wait_for_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"


def test_json_lines_from_start_to_stop() -> None:
    api = free_port()
    argv = [
        sys.executable, "-m", "controlplane.cli", "serve", str(EXAMPLE), "--log-format", "json",
        "--xds", "127.0.0.1:0", "--dns", f"127.0.0.1:{free_udp_tcp_port()}",
        "--api", f"127.0.0.1:{api}",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port("127.0.0.1", api, 20)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in err.splitlines()]  # every line is JSON
    assert "serve.started" in events
    assert events[-1] == "serve.stopped"
