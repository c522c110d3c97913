"""Ubiq / Control plane: xDS pushes, latency, convergence, proxies, policy reloads, process."""

from __future__ import annotations

from controlplane.observability.panels.model import Dashboard, Query, Row, graph
from controlplane.observability.panels.promql import (
    POLICY_CHANGES,
    RATE,
    REJECTED_CHANGES,
    quantile,
    rate_by,
)

_UBIQ_ONLY = "* on (job, instance) group_left (version) ubiq_build_info"


def control_plane() -> Dashboard:
    xds = Row(
        "xDS",
        (
            graph(
                "Pushes per second by type",
                "xDS responses sent to proxies.",
                Query(rate_by("ubiq_xds_pushes_total", "type"), "{{type}}"),
                unit="reqps",
            ),
            graph(
                "Push latency p99 by type",
                "From a snapshot's publication to a proxy's ACK of the type.",
                Query(quantile(0.99, "ubiq_xds_push_duration_seconds", "type"), "{{type}}"),
                unit="s",
            ),
            graph(
                "Convergence time",
                "From a policy change being accepted to every connected proxy holding it (p50,"
                " p99), and the age of the oldest change not yet everywhere.",
                Query(quantile(0.5, "ubiq_xds_convergence_duration_seconds"), "p50"),
                Query(quantile(0.99, "ubiq_xds_convergence_duration_seconds"), "p99"),
                Query("max(ubiq_xds_convergence_pending_seconds)", "oldest pending"),
                unit="s",
            ),
            graph(
                "ACKs and NACKs per second by type",
                "Responses proxies accepted and rejected.",
                Query(rate_by("ubiq_xds_acks_total", "type"), "ACK {{type}}"),
                Query(rate_by("ubiq_xds_nacks_total", "type"), "NACK {{type}}"),
                unit="reqps",
            ),
        ),
    )
    proxies = Row(
        "Proxies",
        (
            graph(
                "Connected proxies by group",
                "xDS streams open per node group (Ubiq cluster / role).",
                Query("sum by (group) (ubiq_xds_connected_proxies)", "{{group}}"),
            ),
            graph(
                "Proxies by state",
                "synced: holds the current snapshot; stale: not yet ACKed; nacked: rejected a"
                " response and is not synced.",
                Query("sum by (state) (ubiq_xds_proxies)", "{{state}}"),
            ),
        ),
    )
    policy = Row(
        "Policy",
        (
            graph(
                "Policy reloads",
                "Changes to the policy set, accepted or rejected.",
                Query(
                    f"sum by (result) (increase(ubiq_policy_reloads_total[{RATE}]))", "{{result}}"
                ),
            ),
            graph(
                "Compile time p99",
                "Time to compile the model into every group's snapshot.",
                Query(quantile(0.99, "ubiq_xds_compile_duration_seconds"), "p99"),
                unit="s",
            ),
        ),
    )
    process = Row(
        "Process",
        (
            graph(
                "CPU",
                "CPU seconds per second used by each Ubiq process.",
                Query(
                    f"rate(process_cpu_seconds_total[{RATE}]) {_UBIQ_ONLY}",
                    "{{instance}} {{version}}",
                ),
                unit="percentunit",
            ),
            graph(
                "Resident memory",
                "Resident set size of each Ubiq process.",
                Query(f"process_resident_memory_bytes {_UBIQ_ONLY}", "{{instance}} {{version}}"),
                unit="bytes",
            ),
        ),
    )
    return Dashboard(
        "ubiq-control-plane",
        "Ubiq / Control plane",
        "xDS pushes, push latency, convergence, ACKs and NACKs, proxies, policy reloads and"
        " Ubiq's own process.",
        (xds, proxies, policy, process),
        (),
        (POLICY_CHANGES, REJECTED_CHANGES),
    )
