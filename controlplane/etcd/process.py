"""Real etcd servers (Debian's ``etcd-server``) on loopback: one member or a cluster of several.

Used by the tests, the benchmarks and anyone trying the replicated setup on one machine. Each
member gets its own data directory, client and peer ports (below the ephemeral range, see
controlplane.ports) and log file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from controlplane.errors import UbiqError
from controlplane.ports import free_port

INSTALL_HINT = "apt-get install etcd-server (make system-deps does)"


def etcd_binary() -> str:
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if found is None:
        raise UbiqError(f"etcd not found: {INSTALL_HINT}")
    return found


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


@dataclass
class EtcdCluster:
    members: list[EtcdMember] = field(default_factory=list)

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(m.endpoint for m in self.members)

    def url(self, prefix: str = "/ubiq") -> str:
        """The ``etcd://`` URL ``ubiq serve --store`` takes."""
        hosts = ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)
        return f"etcd://{hosts}{prefix}"

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def start_etcd_cluster(workdir: Path, size: int = 1, *, timeout: float = 30.0) -> EtcdCluster:
    """Start ``size`` members forming one new cluster and wait until every one is healthy."""
    binary = etcd_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    members = [
        EtcdMember(
            name=f"m{i}",
            client_port=free_port(),
            peer_port=free_port(),
            data_dir=workdir / f"m{i}.etcd",
            log=workdir / f"m{i}.log",
        )
        for i in range(size)
    ]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    cluster = EtcdCluster(members)
    try:
        for member in members:
            member.process = _spawn(binary, member, initial)
        for member in members:
            wait_healthy(member, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _spawn(binary: str, member: EtcdMember, initial_cluster: str) -> subprocess.Popen[bytes]:
    argv: Sequence[str] = [
        binary,
        f"--name={member.name}",
        f"--data-dir={member.data_dir}",
        f"--listen-client-urls={member.endpoint}",
        f"--advertise-client-urls={member.endpoint}",
        f"--listen-peer-urls={member.peer_url}",
        f"--initial-advertise-peer-urls={member.peer_url}",
        f"--initial-cluster={initial_cluster}",
        "--initial-cluster-state=new",
        "--initial-cluster-token=ubiq-local",
        # one-machine clusters: short heartbeats keep elections quick after a member dies
        "--heartbeat-interval=100",
        "--election-timeout=1000",
        "--logger=zap",
    ]
    with member.log.open("wb") as out:
        return subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_healthy(member: EtcdMember, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if member.process is not None and member.process.poll() is not None:
            raise UbiqError(
                f"etcd {member.name} exited (rc={member.process.returncode}):"
                f" {member.log.read_text(errors='replace')[-2000:]}"
            )
        with contextlib.suppress(httpx.HTTPError, ValueError):
            reply = httpx.get(f"{member.endpoint}/health", timeout=1)
            if reply.status_code == 200 and reply.json().get("health") == "true":
                return
        time.sleep(0.05)
    raise UbiqError(f"etcd {member.name} not healthy after {timeout}s; log: {member.log}")
