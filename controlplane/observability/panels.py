"""What Ubiq's Grafana dashboards show: every panel's PromQL, as data (pure).

``dashboards.py`` lays these out and renders them through ``templates/grafana/dashboard.json.j2``;
the live test runs every query here against a real Prometheus. Envoy series carry the
``ubiq_cluster`` / ``ubiq_region`` target labels of the Envoy that proxied the request (see
``controlplane.prometheus.config.envoy_job``); Envoy cluster names are ``SERVICE`` and
``SERVICE|SUBSET`` (``controlplane.xds.compiler.options.cluster_name``).

Metrics in ``CONTRACT_METRICS`` are the placement/canary contract: the feedback loop exports
them; until it does, the panels reading them are marked ``pending`` and the live test checks
that they are still pending (so the first export makes the test ask for them to be proven).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RATE = "$__rate_interval"
ENVOY = 'job="envoy",envoy_cluster_name!="ubiq_xds"'
SERVICE = ENVOY + r',envoy_cluster_name=~"$service(\\|.*)?",ubiq_region=~"$region"'
SERVICE_BASE = 'job="envoy",envoy_cluster_name="$service",ubiq_region=~"$region"'
CONTRACT_METRICS = frozenset({"ubiq_placement_weight", "ubiq_canary_weight", "ubiq_canary_step"})


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False  # tables: the current value only


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | table | state-timeline
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None

    @property
    def pending(self) -> bool:
        return any(metric_names(q.expr) & CONTRACT_METRICS for q in self.queries)


@dataclass(frozen=True, slots=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    label: str
    metric: str  # label_values(metric, label)
    label_name: str
    multi: bool = False
    regex: str = ""  # Grafana's capture-group regex over the values

    @property
    def query(self) -> str:
        return f"label_values({self.metric}, {self.label_name})"


@dataclass(frozen=True, slots=True)
class Annotation:
    name: str
    expr: str
    title: str
    color: str = "blue"

    @property
    def pending(self) -> bool:
        return bool(metric_names(self.expr) & CONTRACT_METRICS)


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    tags: tuple[str, ...] = field(default=("ubiq",))

    def panels(self) -> tuple[Panel, ...]:
        return tuple(p for row in self.rows for p in row.panels)


_NAME = re.compile(r"(?<![\w\"])((?:envoy|ubiq|process)_\w+)\b(?!\s*(?:=|!=|=~|!~)\s*\")")
TARGET_LABELS = frozenset({"ubiq_cluster", "ubiq_region"})  # labels, not metrics


def metric_names(expr: str) -> set[str]:
    """Envoy, Ubiq and process metric families a query reads."""
    return {m for m in _NAME.findall(expr) if m not in TARGET_LABELS}


def by_service(expr: str, label: str = "service") -> str:
    """Adds a ``service`` label taken from the Envoy cluster name (``checkout|v1`` -> checkout)."""
    return f'label_replace({expr}, "{label}", "$1", "envoy_cluster_name", "([^|]+).*")'


def by_subset(expr: str) -> str:
    return f'label_replace({expr}, "subset", "$1", "envoy_cluster_name", "[^|]+\\\\|([^|]*).*")'


def success_ratio(selector: str, by: str, label: str | None = None) -> str:
    """Non-5xx share of the responses Envoy got from upstream, ``by`` some labels."""
    ok = f'rate(envoy_cluster_upstream_rq_xx{{{selector},envoy_response_code_class!="5"}}[{RATE}])'
    everything = f"rate(envoy_cluster_upstream_rq_xx{{{selector}}}[{RATE}])"
    if label == "service":
        ok, everything = by_service(ok), by_service(everything)
    elif label == "subset":
        ok, everything = by_subset(ok), by_subset(everything)
    return f"sum by ({by}) ({ok}) / sum by ({by}) ({everything})"


def latency(q: float, selector: str, by: str, label: str | None = None) -> str:
    rate = f"rate(envoy_cluster_upstream_rq_time_bucket{{{selector}}}[{RATE}])"
    if label == "service":
        rate = by_service(rate)
    return f"histogram_quantile({q}, sum by ({by}, le) ({rate}))"


def requests(selector: str, by: str, label: str | None = None) -> str:
    rate = f"rate(envoy_cluster_upstream_rq_total{{{selector}}}[{RATE}])"
    if label == "service":
        rate = by_service(rate)
    elif label == "subset":
        rate = by_subset(rate)
    return f"sum by ({by}) ({rate})"


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
NAME = Variable("name", "GTM name", "ubiq_gtm_answer", "name", multi=True)
GTM_REGION = Variable("region", "Region", "ubiq_gtm_target_healthy", "region", multi=True)
CANARY = Variable("canary", "Canary", "ubiq_canary_weight", "canary", multi=True)


def mesh_overview() -> Dashboard:
    envoy = ENVOY + ',ubiq_region=~"$region"'
    return Dashboard(
        "ubiq-mesh",
        "Ubiq / Mesh overview",
        "Traffic through every Envoy, the control plane's health and the GTM at a glance.",
        (
            Row(
                "Traffic",
                (
                    Panel(
                        "Requests per second by region",
                        "Requests every Envoy sent upstream, by the region of the Envoy.",
                        (Query(requests(envoy, "ubiq_region"), "{{ubiq_region}}"),),
                        "reqps",
                    ),
                    Panel(
                        "Requests per second by service",
                        "Upstream requests by service (all subsets and regions).",
                        (Query(requests(envoy, "service", "service"), "{{service}}"),),
                        "reqps",
                    ),
                    Panel(
                        "Success rate by service",
                        "Share of upstream responses that were not 5xx.",
                        (Query(success_ratio(envoy, "service", "service"), "{{service}}"),),
                        "percentunit",
                        min=0,
                        max=1,
                    ),
                    Panel(
                        "Latency p99 by service",
                        "99th percentile of upstream request time (Envoy's upstream_rq_time).",
                        (Query(latency(0.99, envoy, "service", "service"), "{{service}}"),),
                        "ms",
                    ),
                ),
            ),
            Row(
                "Control plane and GTM",
                (
                    Panel(
                        "Connected proxies",
                        "xDS streams open to Ubiq.",
                        (Query("sum(ubiq_xds_connected_proxies)"),),
                        kind="stat",
                        width=6,
                        height=4,
                    ),
                    Panel(
                        "Proxies not synced",
                        "Connected proxies that do not hold their group's current snapshot.",
                        (Query('sum(ubiq_xds_proxies{state!="synced"})'),),
                        kind="stat",
                        width=6,
                        height=4,
                    ),
                    Panel(
                        "Last policy change accepted",
                        "1: the policy directory's last change was accepted; 0: rejected (the"
                        " last good model keeps serving).",
                        (Query("min(ubiq_policy_last_reload_successful)"),),
                        kind="stat",
                        width=6,
                        height=4,
                    ),
                    Panel(
                        "GTM names with every target down",
                        "Names answered with their all-down behaviour.",
                        (Query("count(max by (name) (ubiq_gtm_all_down) == 1) or vector(0)"),),
                        kind="stat",
                        width=6,
                        height=4,
                    ),
                    Panel(
                        "DNS queries per second",
                        "Queries the GTM received, by transport.",
                        (
                            Query(
                                f"sum by (proto) (rate(ubiq_dns_requests_total[{RATE}]))",
                                "{{proto}}",
                            ),
                        ),
                        "reqps",
                    ),
                    Panel(
                        "Envoys up",
                        "Envoys Prometheus scraped successfully, by region.",
                        (Query('sum by (ubiq_region) (up{job="envoy"})', "{{ubiq_region}}"),),
                    ),
                ),
            ),
        ),
        (REGION,),
        (POLICY_CHANGES, REJECTED_CHANGES),
    )


def service_detail() -> Dashboard:
    return Dashboard(
        "ubiq-service",
        "Ubiq / Service",
        "One service, per region: rate, success, latency, bytes, circuit breakers, outlier"
        " ejections and healthy endpoints, as every Envoy in the region saw them.",
        (
            Row(
                "Requests",
                (
                    Panel(
                        "Requests per second by region",
                        "Upstream requests to the service from the Envoys of each region.",
                        (Query(requests(SERVICE, "ubiq_region"), "{{ubiq_region}}"),),
                        "reqps",
                    ),
                    Panel(
                        "Requests per second by subset",
                        "Upstream requests per subset (empty: the whole service).",
                        (Query(requests(SERVICE, "subset", "subset"), "{{subset}}"),),
                        "reqps",
                    ),
                    Panel(
                        "Success rate by region",
                        "Share of upstream responses that were not 5xx.",
                        (Query(success_ratio(SERVICE, "ubiq_region"), "{{ubiq_region}}"),),
                        "percentunit",
                        min=0,
                        max=1,
                    ),
                    Panel(
                        "Latency p50 and p99 by region",
                        "Upstream request time percentiles.",
                        (
                            Query(latency(0.5, SERVICE, "ubiq_region"), "p50 {{ubiq_region}}"),
                            Query(latency(0.99, SERVICE, "ubiq_region"), "p99 {{ubiq_region}}"),
                        ),
                        "ms",
                    ),
                ),
            ),
            Row(
                "Bytes",
                (
                    Panel(
                        "Bytes received from upstream",
                        "Response bytes per second, by region.",
                        (
                            Query(
                                f"sum by (ubiq_region) (rate(envoy_cluster_upstream_cx_rx_bytes_total{{{SERVICE}}}[{RATE}]))",
                                "{{ubiq_region}}",
                            ),
                        ),
                        "Bps",
                    ),
                    Panel(
                        "Bytes sent to upstream",
                        "Request bytes per second, by region.",
                        (
                            Query(
                                f"sum by (ubiq_region) (rate(envoy_cluster_upstream_cx_tx_bytes_total{{{SERVICE}}}[{RATE}]))",
                                "{{ubiq_region}}",
                            ),
                        ),
                        "Bps",
                    ),
                ),
            ),
            Row(
                "Resilience",
                (
                    Panel(
                        "Circuit-breaker overflows per second",
                        "Requests refused by the connection pool limits (TrafficPolicy"
                        " connectionPool): pending queue full, connections at the limit,"
                        " retry budget spent.",
                        tuple(
                            Query(
                                f"sum by (ubiq_region) (rate(envoy_cluster_{stat}{{{SERVICE}}}[{RATE}]))",
                                f"{what} {{{{ubiq_region}}}}",
                            )
                            for stat, what in (
                                ("upstream_rq_pending_overflow", "pending"),
                                ("upstream_cx_overflow", "connections"),
                                ("upstream_rq_retry_overflow", "retries"),
                            )
                        ),
                        "reqps",
                    ),
                    Panel(
                        "Outlier ejections",
                        "Endpoints ejected by outlier detection: enforced ejections per second"
                        " and endpoints ejected now.",
                        (
                            Query(
                                f"sum by (ubiq_region) (rate(envoy_cluster_outlier_detection_ejections_enforced_total{{{SERVICE}}}[{RATE}]))",
                                "ejections/s {{ubiq_region}}",
                            ),
                            Query(
                                f"sum by (ubiq_region) (envoy_cluster_outlier_detection_ejections_active{{{SERVICE_BASE}}})",
                                "ejected now {{ubiq_region}}",
                            ),
                        ),
                    ),
                    Panel(
                        "Healthy endpoints",
                        "Endpoints Envoy considers healthy, of all it knows, by region.",
                        (
                            Query(
                                f"sum by (ubiq_region) (envoy_cluster_membership_healthy{{{SERVICE_BASE}}})",
                                "healthy {{ubiq_region}}",
                            ),
                            Query(
                                f"sum by (ubiq_region) (envoy_cluster_membership_total{{{SERVICE_BASE}}})",
                                "total {{ubiq_region}}",
                            ),
                        ),
                        width=24,
                    ),
                ),
            ),
        ),
        (SERVICE_VAR, REGION),
        (POLICY_CHANGES,),
    )


def gtm() -> Dashboard:
    region = 'region=~"$region"'
    return Dashboard(
        "ubiq-gtm",
        "Ubiq / GTM",
        "The global traffic manager: DNS queries, which region answers, target health and"
        " failovers.",
        (
            Row(
                "Queries",
                (
                    Panel(
                        "Queries per second by rcode",
                        "DNS responses by response code.",
                        (
                            Query(
                                f"sum by (rcode) (rate(ubiq_dns_responses_total[{RATE}]))",
                                "{{rcode}}",
                            ),
                        ),
                        "reqps",
                    ),
                    Panel(
                        "Queries per second by type and transport",
                        "DNS queries by query type and transport.",
                        (
                            Query(
                                f"sum by (type, proto) (rate(ubiq_dns_requests_total[{RATE}]))",
                                "{{type}} {{proto}}",
                            ),
                        ),
                        "reqps",
                    ),
                    Panel(
                        "Answers by region",
                        "Answers carrying an address, by the region of the first address.",
                        (
                            Query(
                                f"sum by (region) (rate(ubiq_dns_answers_total{{{region}}}[{RATE}]))",
                                "{{region}}",
                            ),
                        ),
                        "reqps",
                    ),
                    Panel(
                        "Response time p99 by type",
                        "Time to compute a response (the precomputed-answer path is microseconds).",
                        (
                            Query(
                                f"histogram_quantile(0.99, sum by (type, le) (rate(ubiq_dns_request_duration_seconds_bucket[{RATE}])))",
                                "{{type}}",
                            ),
                        ),
                        "s",
                    ),
                ),
            ),
            Row(
                "Steering",
                (
                    Panel(
                        "Current answers",
                        "The address answered for each name and client group, and its region.",
                        (Query('ubiq_gtm_answer{name=~"$name"}', instant=True),),
                        kind="table",
                        width=24,
                    ),
                    Panel(
                        "Names answering all-down",
                        "1 while no target of the name is healthy for the client group.",
                        (Query('max by (name) (ubiq_gtm_all_down{name=~"$name"})', "{{name}}"),),
                    ),
                    Panel(
                        "Failovers",
                        "Times a name's answers left a region with no healthy target.",
                        (
                            Query(
                                f'sum by (name, region) (increase(ubiq_gtm_failovers_total{{name=~"$name",{region}}}[{RATE}]))',
                                "{{name}} left {{region}}",
                            ),
                        ),
                    ),
                ),
            ),
            Row(
                "Health",
                (
                    Panel(
                        "Target health",
                        "1 healthy, 0 unhealthy, per health-checked target.",
                        (
                            Query(
                                f"ubiq_gtm_target_healthy{{{region}}}",
                                "{{cluster}} {{endpoint}}",
                            ),
                        ),
                        kind="state-timeline",
                        min=0,
                        max=1,
                    ),
                    Panel(
                        "Probes per second by result",
                        "Health probes by target cluster and result.",
                        (
                            Query(
                                f"sum by (cluster, result) (rate(ubiq_gtm_health_probes_total{{{region}}}[{RATE}]))",
                                "{{cluster}} {{result}}",
                            ),
                        ),
                        "reqps",
                    ),
                    Panel(
                        "Health transitions",
                        "Targets turning healthy or unhealthy.",
                        (
                            Query(
                                f"sum by (cluster, to) (increase(ubiq_gtm_health_transitions_total{{{region}}}[{RATE}]))",
                                "{{cluster}} to {{to}}",
                            ),
                        ),
                    ),
                    Panel(
                        "Probe latency p99",
                        "Health probe time (connect and status line), by target cluster.",
                        (
                            Query(
                                f"histogram_quantile(0.99, sum by (cluster, le) (rate(ubiq_gtm_health_probe_duration_seconds_bucket[{RATE}])))",
                                "{{cluster}}",
                            ),
                        ),
                        "s",
                    ),
                ),
            ),
        ),
        (NAME, GTM_REGION),
        (POLICY_CHANGES,),
    )


def control_plane() -> Dashboard:
    def quantile(q: float, metric: str, by: str = "") -> str:
        group = f"{by}, le" if by else "le"
        return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))"

    return Dashboard(
        "ubiq-control-plane",
        "Ubiq / Control plane",
        "xDS pushes, push latency, convergence, ACKs and NACKs, proxies, policy reloads and"
        " Ubiq's own process.",
        (
            Row(
                "xDS",
                (
                    Panel(
                        "Pushes per second by type",
                        "xDS responses sent to proxies.",
                        (
                            Query(
                                f"sum by (type) (rate(ubiq_xds_pushes_total[{RATE}]))", "{{type}}"
                            ),
                        ),
                        "reqps",
                    ),
                    Panel(
                        "Push latency p99 by type",
                        "From a snapshot's publication to a proxy's ACK of the type.",
                        (
                            Query(
                                quantile(0.99, "ubiq_xds_push_duration_seconds", "type"), "{{type}}"
                            ),
                        ),
                        "s",
                    ),
                    Panel(
                        "Convergence time",
                        "From a policy change being accepted to every connected proxy holding it"
                        " (p50, p99), and the age of the oldest change not yet everywhere.",
                        (
                            Query(quantile(0.5, "ubiq_xds_convergence_duration_seconds"), "p50"),
                            Query(quantile(0.99, "ubiq_xds_convergence_duration_seconds"), "p99"),
                            Query("max(ubiq_xds_convergence_pending_seconds)", "oldest pending"),
                        ),
                        "s",
                    ),
                    Panel(
                        "ACKs and NACKs per second by type",
                        "Responses proxies accepted and rejected.",
                        (
                            Query(
                                f"sum by (type) (rate(ubiq_xds_acks_total[{RATE}]))", "ACK {{type}}"
                            ),
                            Query(
                                f"sum by (type) (rate(ubiq_xds_nacks_total[{RATE}]))",
                                "NACK {{type}}",
                            ),
                        ),
                        "reqps",
                    ),
                ),
            ),
            Row(
                "Proxies",
                (
                    Panel(
                        "Connected proxies by group",
                        "xDS streams open per node group (Ubiq cluster / role).",
                        (Query("sum by (group) (ubiq_xds_connected_proxies)", "{{group}}"),),
                    ),
                    Panel(
                        "Proxies by state",
                        "synced: holds the current snapshot; stale: not yet ACKed; nacked:"
                        " rejected a response and is not synced.",
                        (Query("sum by (state) (ubiq_xds_proxies)", "{{state}}"),),
                    ),
                ),
            ),
            Row(
                "Policy",
                (
                    Panel(
                        "Policy reloads",
                        "Changes to the policy set, accepted or rejected.",
                        (
                            Query(
                                f"sum by (result) (increase(ubiq_policy_reloads_total[{RATE}]))",
                                "{{result}}",
                            ),
                        ),
                    ),
                    Panel(
                        "Compile time p99",
                        "Time to compile the model into every group's snapshot.",
                        (Query(quantile(0.99, "ubiq_xds_compile_duration_seconds"), "p99"),),
                        "s",
                    ),
                ),
            ),
            Row(
                "Process",
                (
                    Panel(
                        "CPU",
                        "CPU seconds per second used by each Ubiq process.",
                        (
                            Query(
                                f"rate(process_cpu_seconds_total[{RATE}]) * on (job, instance) group_left (version) ubiq_build_info",
                                "{{instance}} {{version}}",
                            ),
                        ),
                        "percentunit",
                    ),
                    Panel(
                        "Resident memory",
                        "Resident set size of each Ubiq process.",
                        (
                            Query(
                                "process_resident_memory_bytes * on (job, instance) group_left (version) ubiq_build_info",
                                "{{instance}} {{version}}",
                            ),
                        ),
                        "bytes",
                    ),
                ),
            ),
        ),
        (),
        (POLICY_CHANGES, REJECTED_CHANGES),
    )


def placement() -> Dashboard:
    return Dashboard(
        "ubiq-placement",
        "Ubiq / Placement and canaries",
        "Where each service is placed and with what weight, canary progress, and the traffic"
        " that follows; annotations mark each decision.",
        (
            Row(
                "Placement",
                (
                    Panel(
                        "Placement weight by cluster",
                        "The weight placement gives each cluster serving the service.",
                        (
                            Query(
                                'ubiq_placement_weight{service=~"$service",region=~"$region"}',
                                "{{region}} / {{cluster}}",
                            ),
                        ),
                    ),
                    Panel(
                        "Traffic share by region",
                        "Share of the service's upstream requests proxied in each region.",
                        (
                            Query(
                                f"{requests(SERVICE, 'ubiq_region')} / ignoring (ubiq_region) group_left sum({requests(SERVICE, 'ubiq_region')})",
                                "{{ubiq_region}}",
                            ),
                        ),
                        "percentunit",
                        min=0,
                        max=1,
                    ),
                    Panel(
                        "DNS answers by region",
                        "GTM answers by the region they send clients to.",
                        (
                            Query(
                                f'sum by (region) (rate(ubiq_dns_answers_total{{region=~"$region"}}[{RATE}]))',
                                "{{region}}",
                            ),
                        ),
                        "reqps",
                        width=24,
                    ),
                ),
            ),
            Row(
                "Canaries",
                (
                    Panel(
                        "Canary weight by subset",
                        "The weight each subset of a canary gets.",
                        (Query('ubiq_canary_weight{canary=~"$canary"}', "{{canary}} {{subset}}"),),
                    ),
                    Panel(
                        "Canary step",
                        "The step each canary is at (index into its steps).",
                        (Query('ubiq_canary_step{canary=~"$canary"}', "{{canary}}"),),
                    ),
                    Panel(
                        "Traffic by subset",
                        "Upstream requests per subset of the service.",
                        (Query(requests(SERVICE, "subset", "subset"), "{{subset}}"),),
                        "reqps",
                    ),
                    Panel(
                        "Success rate by subset",
                        "Share of upstream responses that were not 5xx, per subset.",
                        (Query(success_ratio(SERVICE, "subset", "subset"), "{{subset}}"),),
                        "percentunit",
                        min=0,
                        max=1,
                    ),
                ),
            ),
        ),
        (SERVICE_VAR, REGION, CANARY),
        (
            POLICY_CHANGES,
            Annotation(
                "Placement decisions",
                'changes(ubiq_placement_weight{service=~"$service"}[1m]) > 0',
                "placement changed {{cluster}}",
                "purple",
            ),
            Annotation(
                "Canary steps",
                'changes(ubiq_canary_step{canary=~"$canary"}[1m]) > 0',
                "canary {{canary}} stepped",
                "orange",
            ),
        ),
    )


def all_dashboards() -> tuple[Dashboard, ...]:
    return (mesh_overview(), service_detail(), gtm(), control_plane(), placement())
