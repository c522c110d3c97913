"""PromQL building blocks over Envoy's and Ubiq's series, and the shared variables (pure).

Envoy series carry the ``ubiq_cluster`` / ``ubiq_region`` target labels of the Envoy that
proxied the request (``controlplane.prometheus.config.envoy_job``); Envoy cluster names are
``SERVICE`` and ``SERVICE|SUBSET`` (``controlplane.xds.compiler.options.cluster_name``).
"""

from __future__ import annotations

from controlplane.observability.panels.model import Annotation, Variable

RATE = "$__rate_interval"
ENVOY = 'job="envoy",envoy_cluster_name!="ubiq_xds"'
#: every Envoy cluster of the chosen service (whole service and subsets) in the chosen regions
SERVICE = ENVOY + r',envoy_cluster_name=~"$service(\\|.*)?",ubiq_region=~"$region"'
#: the whole-service cluster only: its endpoints are every endpoint of the service once
SERVICE_BASE = 'job="envoy",envoy_cluster_name="$service",ubiq_region=~"$region"'


def by_service(expr: str) -> str:
    """Adds a ``service`` label taken from the Envoy cluster name (``checkout|v1`` -> checkout)."""
    return f'label_replace({expr}, "service", "$1", "envoy_cluster_name", "([^|]+).*")'


def by_subset(expr: str) -> str:
    return f'label_replace({expr}, "subset", "$1", "envoy_cluster_name", "[^|]+\\\\|([^|]*).*")'


def _relabel(expr: str, label: str | None) -> str:
    if label == "service":
        return by_service(expr)
    if label == "subset":
        return by_subset(expr)
    return expr


def requests(selector: str, by: str, label: str | None = None) -> str:
    """Upstream requests per second, ``by`` some labels (``label`` adds service or subset)."""
    rate = f"rate(envoy_cluster_upstream_rq_total{{{selector}}}[{RATE}])"
    return f"sum by ({by}) ({_relabel(rate, label)})"


def success_ratio(selector: str, by: str, label: str | None = None) -> str:
    """Non-5xx share of the responses Envoy got from upstream."""
    ok = f'rate(envoy_cluster_upstream_rq_xx{{{selector},envoy_response_code_class!="5"}}[{RATE}])'
    everything = f"rate(envoy_cluster_upstream_rq_xx{{{selector}}}[{RATE}])"
    return f"sum by ({by}) ({_relabel(ok, label)}) / sum by ({by}) ({_relabel(everything, label)})"


def latency(q: float, selector: str, by: str, label: str | None = None) -> str:
    """A quantile of Envoy's upstream request time (milliseconds)."""
    rate = f"rate(envoy_cluster_upstream_rq_time_bucket{{{selector}}}[{RATE}])"
    return f"histogram_quantile({q}, sum by ({by}, le) ({_relabel(rate, label)}))"


def per_region(stat: str, selector: str = SERVICE) -> str:
    """Rate of an Envoy cluster counter by region."""
    return f"sum by (ubiq_region) (rate(envoy_cluster_{stat}{{{selector}}}[{RATE}]))"


def quantile(q: float, histogram: str, by: str = "") -> str:
    """A quantile of one of Ubiq's histograms."""
    group = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({histogram}_bucket[{RATE}])))"


def rate_by(metric: str, by: str, selector: str = "") -> str:
    matchers = f"{{{selector}}}" if selector else ""
    return f"sum by ({by}) (rate({metric}{matchers}[{RATE}]))"


POLICY_CHANGES = Annotation(
    "Policy changes",
    'increase(ubiq_policy_reloads_total{result="accepted"}[1m]) > 0',
    "policy change accepted",
    "green",
)
REJECTED_CHANGES = Annotation(
    "Rejected changes",
    'increase(ubiq_policy_reloads_total{result="rejected"}[1m]) > 0',
    "policy change rejected",
    "red",
)

REGION = Variable("region", "Region", "envoy_server_live", "ubiq_region", multi=True)
SERVICE_VAR = Variable(
    "service",
    "Service",
    'envoy_cluster_upstream_rq_total{envoy_cluster_name!="ubiq_xds"}',
    "envoy_cluster_name",
    regex="/^([^|]+)$/",
)
