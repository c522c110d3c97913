"""`ubiq demo --keep-running` on ports the user chose: after the demo's own failover step, every
command it printed still works when run as printed (curl, dig, ubiq dns explain --api)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from controlplane.observability.panels import all_dashboards
from tests.support.demo import where_to_look
from tests.support.procs import (
    free_port,
    free_udp_tcp_port,
    require_binary,
    running,
    wait_for_output,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"


def test_printed_commands_work_after_the_demo(tmp_path: Path) -> None:
    require_binary("curl")
    require_binary("dig")
    api, dns = free_port(), free_udp_tcp_port()
    log = tmp_path / "demo.log"
    argv = [
        sys.executable, "-m", "controlplane.cli", "--log-level", "warning", "demo", str(EXAMPLE),
        "--keep-running", "--api", f"127.0.0.1:{api}", "--dns", f"127.0.0.1:{dns}",
    ]  # fmt: skip
    env = {"PYTHONUNBUFFERED": "1"}
    with running(argv, log=log, env=env) as demo:
        try:
            check_printed_commands(log, demo, api, dns)
        finally:  # Ctrl-C: the demo stops its Envoys (SIGTERM from `running` comes after)
            demo.send_signal(signal.SIGINT)
            assert demo.wait(30) == 128 + signal.SIGINT
    assert "demo stopped (SIGINT); cleaned up" in log.read_text()


def check_printed_commands(log: Path, demo: subprocess.Popen[bytes], api: int, dns: int) -> None:
    text = wait_for_output(log, "running; Ctrl-C to stop", demo, 120)
    assert f"API on http://127.0.0.1:{api}" in text and f"DNS on 127.0.0.1:{dns}" in text
    assert "restore: start the eu-west Envoy again" in text
    # the demo's API token: printed with the API URL; reads need it, and it works
    token = re.search(r"API token \(scopes read,write\): (\S+)", text)
    assert token is not None, text
    url = f"http://127.0.0.1:{api}/v1/policies"
    assert httpx.get(url, timeout=10).status_code == 401
    listed = httpx.get(url, headers={"Authorization": f"Bearer {token[1]}"}, timeout=10)
    assert listed.status_code == 200 and listed.json()["items"]
    # the closing block says where everything is, and each of them is live while it runs
    places = where_to_look(text)
    assert places["API"] == f"http://127.0.0.1:{api}" and places["API token"] == token[1]
    assert httpx.get(f"{places['Prometheus']}/-/ready", timeout=10).status_code == 200
    dashboards = sorted(p.name for p in Path(places["Dashboards"]).glob("*.json"))
    assert dashboards == sorted(f"{d.uid}.json" for d in all_dashboards())
    assert "All of it runs until Ctrl-C." in text
    commands = [line[2:] for line in text.splitlines() if line.startswith("$ ")]
    assert any(c.startswith("curl ") for c in commands)
    explain = next(c for c in commands if c.startswith("ubiq dns explain"))
    assert f"--api http://127.0.0.1:{api}" in explain  # the live demo, not the repo example
    assert any(f"-p {dns}" in c for c in commands)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "PATH": path},
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
        assert done.stdout.strip(), command
        if command.startswith("curl "):
            assert re.search(
                r"\bin [a-z]+-[a-z]+\b|HTTP/1.1 301|payments|fault filter abort", done.stdout
            ), done.stdout
