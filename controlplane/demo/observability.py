"""The demo's Prometheus (scraping every demo Envoy and Ubiq, with Ubiq's alert rules) and the
Grafana dashboards written next to it.

Prometheus starts *before* Ubiq, so Ubiq can be told its URL (``--prometheus``: the feedback
loop); the scrape targets are written once the Envoys are up (``scrape_demo``) and again whenever
one is restarted on a new admin port."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from controlplane.demo.envoys import EnvoyProcess
from controlplane.errors import UbiqError
from controlplane.observability.dashboards import write_dashboards
from controlplane.prometheus.config import ScrapeJob, ScrapeTarget, envoy_job, render_config
from controlplane.prometheus.process import PrometheusProcess, start_prometheus, wait_ready

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "ubiq.rules.yml"


def _rules() -> list[str]:
    return [str(RULES)] if RULES.is_file() else []  # not shipped in an installed wheel


def start_demo_prometheus(workdir: Path) -> PrometheusProcess:
    """Prometheus (1 s scrape) on a free loopback port, nothing to scrape yet. Raises UbiqError
    when prometheus is missing or does not start."""
    prom = start_prometheus(workdir / "prometheus", render_config([], rule_files=_rules()))
    try:
        wait_ready(prom)
    except UbiqError:
        prom.stop()
        raise
    return prom


def scrape_demo(
    prom: PrometheusProcess, envoys: Sequence[EnvoyProcess], regions: Mapping[str, str], api: str
) -> None:
    """Scrape job ``envoy`` for every Envoy's admin ``/stats/prometheus`` labelled with its
    cluster and region, job ``ubiq`` for ``api`` (HOST:PORT); Prometheus re-reads its config."""
    jobs = [
        envoy_job({f"127.0.0.1:{e.admin_port}": (e.cluster, regions[e.cluster]) for e in envoys}),
        ScrapeJob("ubiq", (ScrapeTarget(api),)),
    ]
    prom.config.write_text(render_config(jobs, rule_files=_rules()))
    prom.reload()


def write_demo_dashboards(workdir: Path) -> tuple[Path, int]:
    """Every dashboard's JSON in ``workdir/grafana-dashboards``: the directory and how many."""
    directory = workdir / "grafana-dashboards"
    return directory, len(write_dashboards(directory))
