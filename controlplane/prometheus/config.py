"""Prometheus configuration rendered from ``templates/prometheus.yml.j2`` (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controlplane.templating import render

TEMPLATE = "prometheus.yml.j2"
ENVOY_METRICS_PATH = "/stats/prometheus"


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    address: str  # HOST:PORT
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScrapeJob:
    name: str
    targets: tuple[ScrapeTarget, ...]
    metrics_path: str = "/metrics"


def envoy_job(admin_addresses: Mapping[str, tuple[str, str]], name: str = "envoy") -> ScrapeJob:
    """One target per Envoy admin address, labelled with its Ubiq cluster and region.

    ``admin_addresses`` maps ``HOST:PORT`` to ``(cluster, region)``.
    """
    return ScrapeJob(
        name,
        tuple(
            ScrapeTarget(address, {"ubiq_cluster": cluster, "ubiq_region": region})
            for address, (cluster, region) in sorted(admin_addresses.items())
        ),
        ENVOY_METRICS_PATH,
    )


def render_config(
    jobs: Sequence[ScrapeJob],
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str | None = None,
    scrape_timeout: str | None = None,
    rule_files: Sequence[str] = (),
) -> str:
    """``scrape_timeout`` defaults to the scrape interval (Prometheus refuses a larger one)."""
    return render(
        TEMPLATE,
        jobs=jobs,
        scrape_interval=scrape_interval,
        evaluation_interval=evaluation_interval or scrape_interval,
        scrape_timeout=scrape_timeout or scrape_interval,
        rule_files=list(rule_files),
    )
