"""A real Prometheus for tests: the product's launcher, failing (never skipping) when missing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from controlplane.prometheus.config import ScrapeJob, render_config
from controlplane.prometheus.process import PrometheusProcess, start_prometheus, wait_ready
from tests.support.procs import require_binary


@contextlib.contextmanager
def prometheus(
    workdir: Path,
    jobs: Sequence[ScrapeJob],
    *,
    scrape_interval: str = "1s",
    rule_files: Sequence[str] = (),
) -> Iterator[PrometheusProcess]:
    """Prometheus scraping ``jobs`` until the with-block ends."""
    require_binary("prometheus")
    config = render_config(jobs, scrape_interval=scrape_interval, rule_files=rule_files)
    prom = start_prometheus(workdir / "prometheus", config)
    try:
        wait_ready(prom)
        yield prom
    finally:
        prom.stop()
