"""The traffic row the Mesh overview and the Service dashboard share: requests by region and by
one more split, success rate and latency percentiles (pure)."""

from __future__ import annotations

from controlplane.observability.panels.model import Query, Row, graph
from controlplane.observability.panels.promql import latency, requests, success_ratio

#: how a split label reads in a title; ``service`` and ``subset`` are taken from the cluster name
_SPLITS = {"ubiq_region": "region", "service": "service", "subset": "subset"}


def _by(split: str) -> tuple[str, str | None]:
    """``sum by`` label and the label to derive from the Envoy cluster name (None: a target label)."""
    return split, (None if split == "ubiq_region" else split)


def traffic_row(
    title: str,
    selector: str,
    *,
    region_text: str,
    split: str,
    split_text: str,
    quality_by: str,
    quantiles: tuple[float, ...],
    latency_text: str,
) -> Row:
    """Requests per second by region and by ``split``; success rate and the latency
    ``quantiles`` by ``quality_by``. Legends name the split; with several quantiles, each
    legend starts with its percentile (``p50 eu-west``)."""
    percentiles = [f"p{round(q * 100)}" for q in quantiles]
    several = len(quantiles) > 1
    return Row(
        title,
        (
            graph(
                "Requests per second by region",
                region_text,
                Query(requests(selector, "ubiq_region"), "{{ubiq_region}}"),
                unit="reqps",
            ),
            graph(
                f"Requests per second by {_SPLITS[split]}",
                split_text,
                Query(requests(selector, *_by(split)), f"{{{{{split}}}}}"),
                unit="reqps",
            ),
            graph(
                f"Success rate by {_SPLITS[quality_by]}",
                "Share of upstream responses that were not 5xx.",
                Query(success_ratio(selector, *_by(quality_by)), f"{{{{{quality_by}}}}}"),
                unit="percentunit",
                min=0,
                max=1,
            ),
            graph(
                f"Latency {' and '.join(percentiles)} by {_SPLITS[quality_by]}",
                latency_text,
                *(
                    Query(
                        latency(q, selector, *_by(quality_by)),
                        (f"{p} " if several else "") + f"{{{{{quality_by}}}}}",
                    )
                    for q, p in zip(quantiles, percentiles, strict=True)
                ),
                unit="ms",
            ),
        ),
    )
