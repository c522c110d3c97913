"""The PromQL behind each signal, per service x region (x subset). Pure: strings in, strings out.

Two sources of region, chosen per signal (docs/placement.md "Signals"):

- **Request signals** (rate, success rate, latency percentiles, volume) come from Envoy's zone
  stats, ``cluster.<c>.zone.<from_zone>.<to_zone>.upstream_rq_*``, which Envoy keeps per
  *upstream* zone. Ubiq's bootstrap turns the two zones into the labels ``ubiq_from_zone`` and
  ``ubiq_to_zone``; the queries map ``ubiq_to_zone`` to its region with ``label_replace`` (the
  zone -> region table comes from the model's Cluster documents), so a request is counted in the
  region whose endpoint answered it, whichever Envoy sent it there.
- **Proxy signals** (active connections, circuit-breaker overflows, outlier ejections, healthy
  endpoint share) exist only per Envoy cluster; they are keyed by the region of the Envoy that
  reports them (the scrape target's ``ubiq_region`` label).

Every query returns, per series, the labels ``ubiq_service``, ``ubiq_region`` and, for one
subset, ``ubiq_subset`` (whole-service series have none), derived from Envoy's cluster names
(``checkout``, ``checkout|v1``, ``checkout||9090``; see ``controlplane.xds.compiler.options``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controlplane.policy.model import Model

SERVICE_LABEL = "ubiq_service"
SUBSET_LABEL = "ubiq_subset"
REGION_LABEL = "ubiq_region"  # the Envoy target label (proxy region); reused for the answer
TO_ZONE_LABEL = "ubiq_to_zone"
CLUSTER_LABEL = "envoy_cluster_name"

#: Envoy clusters that are not services (Ubiq's own xDS connection)
NON_SERVICE_CLUSTERS = "ubiq_.*"
DEFAULT_JOB = "envoy"
DEFAULT_WINDOW = "10s"
QUANTILES: Mapping[str, float] = {
    "latency_p50_ms": 0.5,
    "latency_p90_ms": 0.9,
    "latency_p99_ms": 0.99,
}
#: circuit breakers that turned a request or connection away (Envoy counts each separately)
OVERFLOW_COUNTERS = (
    "upstream_cx_overflow",
    "upstream_cx_pool_overflow",
    "upstream_rq_pending_overflow",
    "upstream_rq_retry_overflow",
)
FRESHNESS = "freshness"

_DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")
_ZONE_OR_REGION = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class QueryError(ValueError):
    """The inputs cannot make safe PromQL (bad window, a zone in two regions, ...)."""


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """The PromQL of one poll: signal field name -> query, plus the freshness probe."""

    queries: Mapping[str, str]
    freshness: str
    window: str
    job: str


def _q(value: str) -> str:
    """A PromQL string literal (JSON escaping is a subset of PromQL's)."""
    return json.dumps(value)


def _selector(metric: str, job: str, extra: str = "") -> str:
    matchers = f"job={_q(job)},{CLUSTER_LABEL}!~{_q(NON_SERVICE_CLUSTERS)}"
    return f"{metric}{{{matchers}{',' + extra if extra else ''}}}"


def _with_service(expr: str) -> str:
    """Add ``ubiq_service`` and ``ubiq_subset`` parsed from Envoy's cluster name."""
    service = f"label_replace({expr}, {_q(SERVICE_LABEL)}, {_q('$1')}, {_q(CLUSTER_LABEL)}, {_q('([^|]+).*')})"
    return (
        f"label_replace({service}, {_q(SUBSET_LABEL)}, {_q('$1')}, {_q(CLUSTER_LABEL)}, "
        f"{_q('[^|]+[|]([^|]+).*')})"
    )


def _with_upstream_region(expr: str, zones: Mapping[str, str]) -> str:
    """Overwrite ``ubiq_region`` with the region of ``ubiq_to_zone``; unknown zones get ""."""
    by_region: dict[str, list[str]] = {}
    for zone, region in sorted(zones.items()):
        by_region.setdefault(region, []).append(zone)
    out = f"label_replace({expr}, {_q(REGION_LABEL)}, {_q('')}, {_q(REGION_LABEL)}, {_q('.*')})"
    for region, members in sorted(by_region.items()):
        pattern = "|".join(members)
        out = f"label_replace({out}, {_q(REGION_LABEL)}, {_q(region)}, {_q(TO_ZONE_LABEL)}, {_q(pattern)})"
    return out


def _by_service_and_subset(agg: str, expr: str, extra: str = "") -> str:
    """``agg by (service, region[, extra])`` over all clusters, or ``by`` subset too."""
    tail = f", {extra}" if extra else ""
    whole = f"{agg} by ({SERVICE_LABEL}, {REGION_LABEL}{tail}) ({expr})"
    subsets = f"{agg} by ({SERVICE_LABEL}, {SUBSET_LABEL}, {REGION_LABEL}{tail}) ({expr})"
    return f"({whole}) or ({subsets})"


def check_zones(zones: Mapping[str, str]) -> None:
    for zone, region in zones.items():
        if not _ZONE_OR_REGION.match(zone) or not _ZONE_OR_REGION.match(region):
            raise QueryError(f"zone {zone!r} -> region {region!r}: both must be DNS labels")


def zones_by_region(clusters: Mapping[str, tuple[str, str | None]]) -> dict[str, str]:
    """Zone -> region from ``cluster name -> (region, zone or None)``.

    A zone named in two regions is refused: Envoy's zone stats could not tell them apart.
    """
    out: dict[str, str] = {}
    for name, (region, zone) in sorted(clusters.items()):
        if not zone:
            continue
        if out.setdefault(zone, region) != region:
            raise QueryError(
                f"cluster {name}: zone {zone!r} is in regions {out[zone]!r} and {region!r}; "
                "per-region signals need zones unique across regions"
            )
    check_zones(out)
    return out


def zones_from_model(model: Model) -> dict[str, str]:
    """Zone -> region from the model's Cluster documents (see :func:`zones_by_region`)."""
    return zones_by_region({n: (c.spec.region, c.spec.zone) for n, c in model.clusters.items()})


def build_plan(
    zones: Mapping[str, str], *, window: str = DEFAULT_WINDOW, job: str = DEFAULT_JOB
) -> QueryPlan:
    """Every query of one poll. ``zones`` maps each Envoy locality zone to its region."""
    if not _DURATION.match(window):
        raise QueryError(f"window {window!r}: expected a Prometheus duration like 10s")
    check_zones(zones)

    def zone_rate(metric: str, extra: str = "") -> str:
        raw = f"rate({_selector(metric, job, extra)}[{window}])"
        return _with_upstream_region(_with_service(raw), zones)

    def proxy(expr: str) -> str:
        return _with_service(expr)

    completed = _by_service_and_subset("sum", zone_rate("envoy_cluster_zone_upstream_rq_xx"))
    ok = _by_service_and_subset(
        "sum",
        zone_rate("envoy_cluster_zone_upstream_rq_xx", 'envoy_response_code_class!="5"'),
    )
    queries: dict[str, str] = {
        "request_rate": completed,
        # No completed request: 0/0 is NaN, "no data". Only 5xx answers: the non-5xx series does
        # not exist, so ``ok / completed`` has no sample; the ``or`` branch then gives
        # completed/completed*0 = 0 (still NaN when completed is 0).
        "success_rate": f"(({ok}) / ({completed})) or ((({completed}) / ({completed})) * 0)",
        "requests": f"({completed}) * {_seconds(window):g}",
    }
    buckets = zone_rate("envoy_cluster_zone_upstream_rq_time_bucket")
    for field, q in QUANTILES.items():
        queries[field] = f"histogram_quantile({q}, {_by_service_and_subset('sum', buckets, 'le')})"
    queries["active_connections"] = _by_service_and_subset(
        "sum", proxy(_selector("envoy_cluster_upstream_cx_active", job))
    )
    # one rate per counter, told apart by a label (rate drops the metric name), then summed
    overflow = " or ".join(
        f"label_replace(rate({_selector(f'envoy_cluster_{c}', job)}[{window}]), "
        f"{_q('ubiq_counter')}, {_q(c)}, {_q('')}, {_q('')})"
        for c in OVERFLOW_COUNTERS
    )
    queries["circuit_breaker_overflows"] = _by_service_and_subset("sum", proxy(overflow))
    ejections = f"rate({_selector('envoy_cluster_outlier_detection_ejections_enforced_total', job)}[{window}])"
    queries["outlier_ejections"] = _by_service_and_subset("sum", proxy(ejections))
    healthy = _by_service_and_subset(
        "sum", proxy(_selector("envoy_cluster_membership_healthy", job))
    )
    total = _by_service_and_subset("sum", proxy(_selector("envoy_cluster_membership_total", job)))
    queries["healthy_endpoint_share"] = f"({healthy}) / ({total})"
    # seconds since the newest successful scrape of any Envoy, measured on Prometheus's clock
    freshness = f"time() - max(timestamp(up{{job={_q(job)}}} == 1))"
    return QueryPlan(queries, freshness, window, job)


def _seconds(duration: str) -> float:
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    unit = "ms" if duration.endswith("ms") else duration[-1]
    return int(duration[: -len(unit)]) * scale[unit]
