"""etcd for tests: the product's launcher (controlplane.etcd.process), failing with an install
hint (never skipping) when the binary is missing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from controlplane.etcd.process import EtcdCluster, start_etcd_cluster
from tests.support.procs import require_binary


@contextlib.contextmanager
def etcd_cluster(workdir: Path, size: int = 1) -> Iterator[EtcdCluster]:
    require_binary("etcd")
    cluster = start_etcd_cluster(workdir, size)
    try:
        yield cluster
    finally:
        cluster.stop()
