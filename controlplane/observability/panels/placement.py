"""Ubiq / Placement and canaries: weights over time with decision annotations, and the traffic
that follows. The weight panels read the contract metrics (``CONTRACT_METRICS``)."""

from __future__ import annotations

from controlplane.observability.panels.model import (
    Annotation,
    Dashboard,
    Query,
    Row,
    Variable,
    graph,
)
from controlplane.observability.panels.promql import (
    POLICY_CHANGES,
    REGION,
    SERVICE,
    SERVICE_VAR,
    rate_by,
    requests,
    success_ratio,
)

CANARY = Variable("canary", "Canary", "ubiq_canary_weight", "canary", multi=True)


def placement() -> Dashboard:
    by_region = requests(SERVICE, "ubiq_region")
    placement_row = Row(
        "Placement",
        (
            graph(
                "Placement weight by cluster",
                "The weight placement gives each cluster serving the service.",
                Query(
                    'ubiq_placement_weight{service=~"$service",region=~"$region"}',
                    "{{region}} / {{cluster}}",
                ),
            ),
            graph(
                "Traffic share by region",
                "Share of the service's upstream requests proxied in each region.",
                Query(
                    f"{by_region} / ignoring (ubiq_region) group_left sum({by_region})",
                    "{{ubiq_region}}",
                ),
                unit="percentunit",
                min=0,
                max=1,
            ),
            graph(
                "DNS answers by region",
                "GTM answers by the region they send clients to.",
                Query(
                    rate_by("ubiq_dns_answers_total", "region", 'region=~"$region"'), "{{region}}"
                ),
                unit="reqps",
                width=24,
            ),
        ),
    )
    canaries = Row(
        "Canaries",
        (
            graph(
                "Canary weight by subset",
                "The weight each subset of a canary gets.",
                Query('ubiq_canary_weight{canary=~"$canary"}', "{{canary}} {{subset}}"),
            ),
            graph(
                "Canary step",
                "The step each canary is at (index into its steps).",
                Query('ubiq_canary_step{canary=~"$canary"}', "{{canary}}"),
            ),
            graph(
                "Traffic by subset",
                "Upstream requests per subset of the service.",
                Query(requests(SERVICE, "subset", "subset"), "{{subset}}"),
                unit="reqps",
            ),
            graph(
                "Success rate by subset",
                "Share of upstream responses that were not 5xx, per subset.",
                Query(success_ratio(SERVICE, "subset", "subset"), "{{subset}}"),
                unit="percentunit",
                min=0,
                max=1,
            ),
        ),
    )
    decisions = (
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
    )
    return Dashboard(
        "ubiq-placement",
        "Ubiq / Placement and canaries",
        "Where each service is placed and with what weight, canary progress, and the traffic"
        " that follows; annotations mark each decision.",
        (placement_row, canaries),
        (SERVICE_VAR, REGION, CANARY),
        (POLICY_CHANGES, *decisions),
    )
