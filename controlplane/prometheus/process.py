"""A real Prometheus server (Debian's ``prometheus``) on loopback, with its own config and data dir."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from controlplane.errors import UbiqError
from controlplane.ports import free_port

INSTALL_HINT = "apt-get install prometheus (make system-deps does)"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise UbiqError(f"prometheus not found: {INSTALL_HINT}")
    return found


@dataclass
class PrometheusProcess:
    port: int
    workdir: Path
    config: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reload(self) -> None:
        """Re-read the configuration file (after it was rewritten)."""
        httpx.post(f"{self.url}/-/reload", timeout=5).raise_for_status()

    def query(self, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on a Prometheus error)."""
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=timeout)
        body = reply.json()
        if body.get("status") != "success":
            raise UbiqError(f"prometheus query {promql!r} failed: {body.get('error', reply.text)}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def start_prometheus(
    workdir: Path, config_text: str, *, port: int | None = None
) -> PrometheusProcess:
    """Start Prometheus with ``config_text`` as its configuration; data and log go in ``workdir``.

    ``--web.enable-lifecycle`` allows :meth:`PrometheusProcess.reload`. Returns at once; call
    :func:`wait_ready` before querying.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = workdir / "prometheus.yml"
    config.write_text(config_text)
    log = workdir / "prometheus.log"
    argv = [
        prometheus_binary(),
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return PrometheusProcess(port, workdir, config, process, log)


def wait_ready(prom: PrometheusProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prom.process.poll() is not None:
            tail = prom.log.read_text(errors="replace")[-500:]
            raise UbiqError(f"prometheus exited ({prom.process.returncode}): {tail.strip()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{prom.url}/-/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise UbiqError(f"prometheus not ready after {timeout}s; see {prom.log}")


def wait_for_series(
    prom: PrometheusProcess, promql: str, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Poll until ``promql`` returns at least one series (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = prom.query(promql)
        if result:
            return result
        if time.monotonic() > deadline:
            raise UbiqError(f"no series for {promql!r} after {timeout}s")
        time.sleep(0.2)
