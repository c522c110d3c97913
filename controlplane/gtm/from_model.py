"""Policy model -> GTM inputs: one SteeringPolicy per GlobalService, and the client groups.

Pure. Targets are the GlobalService's explicit ``targets`` or, by default, every cluster the
service is placed in (static placement), answered at the cluster's gateway address.

Client groups come from the policies' ``clientGroups`` and, optionally, from GeoIP databases
(``geoDatabase``). Reading a database is I/O and happens at the edge (``geo_load``); this
module only names the databases and merges the groups read from them.
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Iterable

from controlplane.gtm.types import ClientGroup, IPNetwork, SteeringPolicy, Target
from controlplane.placement.static import place
from controlplane.policy.globalservice import GlobalServiceSpec
from controlplane.policy.model import Model


def _targets(model: Model, spec: GlobalServiceSpec) -> tuple[Target, ...]:
    out: list[Target] = []
    if spec.targets:
        for t in spec.targets:
            cluster = model.clusters[t.cluster].spec
            gateway = cluster.gateway
            address = t.address or (gateway.address if gateway else None)
            if address is None:
                continue  # cross-checks already refuse this
            port = t.port or spec.port or (gateway.port if gateway else 443)
            out.append(Target(t.cluster, cluster.region, address, port, t.weight, t.tier))
        return tuple(out)
    for placed in place(model, spec.service):
        cluster = model.clusters[placed.name].spec
        if cluster.gateway is None:
            continue
        port = spec.port or cluster.gateway.port
        out.append(
            Target(
                placed.name,
                cluster.region,
                cluster.gateway.address,
                port,
                max(placed.weight, 0),
                placed.priority,
            )
        )
    return tuple(out)


def steering_policy(model: Model, name: str) -> SteeringPolicy:
    spec = model.global_services[name].spec
    return SteeringPolicy(
        name=spec.name.rstrip(".").lower(),
        zone=spec.zone.rstrip(".").lower(),
        strategy=spec.strategy,
        targets=_targets(model, spec),
        ttl=spec.ttl // 1000,
        max_answers=spec.max_answers,
        all_down=spec.all_down,
        fallback=spec.fallback,
        latency={g: {r: float(ms) for r, ms in row.items()} for g, row in spec.latency.items()},
        geo=dict(spec.geo),
        sticky=spec.sticky,
        service=spec.service,
    )


def steering_policies(model: Model) -> tuple[SteeringPolicy, ...]:
    return tuple(steering_policy(model, name) for name in model.global_services)


def geo_databases(model: Model) -> tuple[str, ...]:
    """Every GeoIP database named by a GlobalService, in name order, without duplicates.

    A relative path is relative to the directory of the policy file that names it.
    """
    paths: dict[str, None] = {}
    for name, gs in model.global_services.items():
        path = gs.spec.geo_database
        if not path:
            continue
        source = model.sources.get(("GlobalService", name))
        if source is not None and not posixpath.isabs(path):
            path = posixpath.normpath(posixpath.join(posixpath.dirname(source.file), path))
        paths.setdefault(path, None)
    return tuple(paths)


def geo_regions(model: Model) -> frozenset[str]:
    """The regions the GTM can act on: a database's other regions would only grow the table."""
    regions: set[str] = set()
    for name, gs in model.global_services.items():
        spec = gs.spec
        regions.update(t.region for t in steering_policy(model, name).targets)
        regions.update(g.region for g in spec.client_groups if g.region)
        for prefs in spec.geo.values():
            regions.update(prefs)
        for row in spec.latency.values():
            regions.update(row)
    return frozenset(regions)


def client_groups(model: Model, geo: Iterable[ClientGroup] = ()) -> tuple[ClientGroup, ...]:
    """Every client group named by any GlobalService; one name, one definition (merged CIDRs).

    ``geo`` are groups read from GeoIP databases (one per region). A region's networks join the
    policy group that declares that region (so its ``geo``/``latency`` rows apply), else form a
    group named after the region (``geo-<region>`` if a policy group already has that name).
    A network a policy group lists, or an earlier database gave, is not taken again: the policy
    wins over a database, and the first database over later ones.
    """
    merged: dict[str, tuple[list[str], str | None]] = {}
    for gs in model.global_services.values():
        for group in gs.spec.client_groups:
            cidrs, region = merged.setdefault(group.name, ([], group.region))
            cidrs.extend(c for c in group.cidrs if c not in cidrs)
            if region is None and group.region is not None:
                merged[group.name] = (cidrs, group.region)
    groups: dict[str, tuple[list[IPNetwork], str | None]] = {
        name: ([ipaddress.ip_network(c, strict=False) for c in cidrs], region)
        for name, (cidrs, region) in sorted(merged.items())
    }
    by_region: dict[str, str] = {}
    for name, (_, region) in groups.items():
        if region is not None:
            by_region.setdefault(region, name)
    claimed = {net for nets, _ in groups.values() for net in nets}
    for found in geo:
        region = found.region or found.name
        into = by_region.get(region)
        if into is None:
            into = found.name if found.name not in merged else f"geo-{found.name}"
            by_region[region] = into
        nets, _ = groups.setdefault(into, ([], region))
        for net in found.networks:
            if net not in claimed:
                claimed.add(net)
                nets.append(net)
    return tuple(
        ClientGroup(name, tuple(nets), region)
        for name, (nets, region) in sorted(groups.items())
        if nets
    )
