"""Checks that span documents: references resolve, names and hosts are unique, weights add up.

Each check reads typed documents and reports Problems at the exact field that is wrong, using the
line map of the document it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from controlplane.errors import Problem
from controlplane.policy.docmemo import (
    A_CLUSTER_FAILED,
    NAMED_KINDS,
    DocMemo,
    Facts,
    RecordedLookups,
    Token,
)
from controlplane.policy.documents import (
    AnyDocument,
    Canary,
    Cluster,
    GlobalService,
    Placement,
    RoutePolicy,
    Service,
    TrafficPolicy,
)
from controlplane.policy.located import Located as Located  # re-exported: bench.cold_start
from controlplane.policy.yamlsource import Path


@dataclass(frozen=True, slots=True)
class FileIndex:
    """One file's share of what the checks over the whole set read, made once per parsed file
    (``index_file``) so that a reload merges a few dicts per file instead of walking every
    document. Within a file the first document of a name wins, as across files."""

    keys: tuple[tuple[str, str], ...]  # (kind, name) of every document, in order
    named: Mapping[str, Mapping[str, AnyDocument]]  # Cluster/Service/RoutePolicy -> name -> doc
    hashes: Mapping[str, Mapping[str, str]]  # the same -> document_hash
    residency: Mapping[str, frozenset[str]]  # Placement's service -> regions (the last wins)
    hosts: tuple[str, ...]  # every RoutePolicy host, without a trailing dot
    networks: tuple[str, ...]  # every client-group network of every GlobalService
    targets: tuple[tuple[str | None, ...], ...]  # TrafficPolicy, Placement and DNS-name targets
    hash_by_id: Mapping[int, str]  # id(document) -> document_hash (the file cache keeps them)
    by_kind: Mapping[str, tuple[AnyDocument, ...]]  # kind -> documents, in order


def index_file(located: Sequence[Located], hashes: Sequence[str]) -> FileIndex:
    named: dict[str, dict[str, AnyDocument]] = {kind: {} for kind in NAMED_KINDS}
    digests: dict[str, dict[str, str]] = {kind: {} for kind in NAMED_KINDS}
    residency: dict[str, frozenset[str]] = {}
    hosts: list[str] = []
    networks: list[str] = []
    targets: list[tuple[str | None, ...]] = []
    for item, digest in zip(located, hashes, strict=True):
        d = item.doc
        if d.kind in named and d.name not in named[d.kind]:
            named[d.kind][d.name] = d
            digests[d.kind][d.name] = digest
        if isinstance(d, RoutePolicy):
            hosts += (host.rstrip(".") for host in d.spec.hosts)
        elif isinstance(d, TrafficPolicy):
            targets.append(("TrafficPolicy", d.spec.service, d.spec.subset))
        elif isinstance(d, Placement):
            targets.append(("Placement", d.spec.service))
            if d.spec.residency is not None:
                residency[d.spec.service] = frozenset(d.spec.residency.regions)
        elif isinstance(d, GlobalService):
            for name in (d.spec.name, *d.spec.aliases):
                targets.append(("GlobalService", name.rstrip(".")))
            networks += (n for group in d.spec.client_groups for n in group.cidrs)
    by_kind: dict[str, list[AnyDocument]] = {}
    for item in located:
        by_kind.setdefault(item.doc.kind, []).append(item.doc)
    return FileIndex(
        hash_by_id={id(item.doc): digest for item, digest in zip(located, hashes, strict=True)},
        by_kind={kind: tuple(docs) for kind, docs in by_kind.items()},
        keys=tuple((item.doc.kind, item.doc.name) for item in located),
        named=named,
        hashes=digests,
        residency=residency,
        hosts=tuple(hosts),
        networks=tuple(networks),
        targets=tuple(targets),
    )


class SetIndex:
    """The files' ``FileIndex``es merged, in file order: the named documents (first wins), their
    hashes, residencies, and whether names, hosts, networks and targets are all distinct (then
    the checks for clashes have nothing to report and need not walk the documents)."""

    def __init__(self, files: Sequence[FileIndex]) -> None:
        self.named: dict[str, dict[str, AnyDocument]] = {kind: {} for kind in NAMED_KINDS}
        self.hashes: dict[str, dict[str, str]] = {kind: {} for kind in NAMED_KINDS}
        for f in reversed(files):  # the first file's documents are set last: the first wins
            for kind in NAMED_KINDS:
                self.named[kind].update(f.named[kind])
                self.hashes[kind].update(f.hashes[kind])
        self.residency: dict[str, frozenset[str]] = {}
        for f in files:
            self.residency.update(f.residency)
        self.distinct_names = _distinct([f.keys for f in files])
        self.distinct_hosts = _distinct([f.hosts for f in files])
        self.distinct_networks = _distinct([f.networks for f in files])
        self.distinct_targets = _distinct([f.targets for f in files])


def _distinct(parts: Sequence[Sequence[Hashable]]) -> bool:
    return sum(len(p) for p in parts) == len(set().union(*parts))


class _World(RecordedLookups):
    """The indexes the per-document checks read. Every read goes through a method that notes
    what it read (``reads``: ``docmemo`` tokens), so a check's result can be kept until one of
    those facts changes."""

    def __init__(
        self,
        located: list[Located],
        failed: frozenset[tuple[str, str]],
        index: SetIndex | None = None,
    ) -> None:
        self.failed = failed  # (kind, name) of documents that did not validate: not "unknown"
        self.reads: set[Token] = set()
        self.index = index
        clusters: dict[str, Cluster] = {}
        services: dict[str, Service] = {}
        routes: dict[str, RoutePolicy] = {}
        residency: dict[str, frozenset[str]] = {}
        if index is not None:
            clusters = index.named["Cluster"]  # type: ignore[assignment]
            services = index.named["Service"]  # type: ignore[assignment]
            routes = index.named["RoutePolicy"]  # type: ignore[assignment]
            residency = index.residency
        else:
            for item in located:
                d = item.doc
                if isinstance(d, Cluster):
                    clusters.setdefault(d.name, d)
                elif isinstance(d, Service):
                    services.setdefault(d.name, d)
                elif isinstance(d, RoutePolicy):
                    routes.setdefault(d.name, d)
                elif isinstance(d, Placement) and d.spec.residency is not None:
                    residency[d.spec.service] = frozenset(d.spec.residency.regions)
        self.clusters = clusters
        self.services = services
        self.routes = routes
        self.residency = residency
        zones: dict[str, set[str]] = {}
        for c in clusters.values():
            zones.setdefault(c.spec.region, set()).add(c.spec.zone or "")
        self.zones: dict[str, frozenset[str]] = {r: frozenset(z) for r, z in zones.items()}

    def facts(self, hash_of: Callable[[AnyDocument], str]) -> Facts:
        if self.index is not None:
            return Facts(
                names=self.index.hashes,
                failed=self.failed,
                regions=self.zones,
                residency=self.residency,
            )
        return Facts(
            names={
                "Cluster": {n: hash_of(d) for n, d in self.clusters.items()},
                "Service": {n: hash_of(d) for n, d in self.services.items()},
                "RoutePolicy": {n: hash_of(d) for n, d in self.routes.items()},
            },
            failed=self.failed,
            regions=self.zones,
            residency=self.residency,
        )

    def route(self, name: str) -> RoutePolicy | None:
        self.reads.add(("RoutePolicy", name))
        return self.routes.get(name)

    def did_fail(self, kind: str, name: str) -> bool:
        self.reads.add((kind, name))
        return (kind, name) in self.failed

    def a_cluster_failed(self) -> bool:
        self.reads.add(A_CLUSTER_FAILED)
        return any(k == "Cluster" for k, _ in self.failed)

    def has_region(self, region: str) -> bool:
        self.reads.add(("region", region))
        return region in self.zones

    def zones_of(self, region: str) -> frozenset[str]:
        self.reads.add(("region", region))
        return self.zones.get(region, frozenset())

    def residency_of(self, service: str) -> frozenset[str] | None:
        self.reads.add(("residency", service))
        return self.residency.get(service)

    def known(self, kind: str) -> str:
        """`` (known: a, b, …)`` for a message: the first names of ``kind`` (or of regions)."""
        self.reads.add(("known", kind))
        names: Mapping[str, object] = self.zones
        if kind == "Cluster":
            names = self.clusters
        elif kind == "Service":
            names = self.services
        elif kind == "RoutePolicy":
            names = self.routes
        return _known(names)


def cross_check(
    located: list[Located],
    failed: frozenset[tuple[str, str]] = frozenset(),
    memo: DocMemo | None = None,
    hash_of: Callable[[AnyDocument], str] | None = None,
    index: SetIndex | None = None,
    files: Sequence[tuple[str, Sequence[Located]]] | None = None,
) -> list[Problem]:
    """Problems across documents; references to ``failed`` documents are not reported again.
    ``index``: the same documents' ``SetIndex``, so that the indexes are merged, not built;
    ``files``: the same documents by file (name, documents), for ``memo`` to keep per file.

    With ``memo`` (and ``hash_of``, each document's ``document_hash``), a document's own
    problems are taken from the last check when neither it nor any fact its check read changed
    (``docmemo``); the checks over the whole set (unique names, hosts, targets, client-group
    networks) run every time (with ``index``: walk the documents only if a clash exists). Same
    problems, same order."""
    world = _World(located, failed, index)
    problems: list[Problem] = []
    if index is None or not index.distinct_names:
        problems += _unique_names(located)
    if index is None or not index.distinct_hosts:
        problems += _unique_hosts(located)
    if memo is None or hash_of is None:
        for item in located:
            problems += _check_document(world, item)
    else:

        def check(item: Located) -> tuple[list[Problem], frozenset[Token]]:
            world.reads = set()
            found = list(_check_document(world, item))
            return found, frozenset(world.reads)

        groups = [("", located)] if files is None else files
        problems += memo.run(groups, world.facts(hash_of), hash_of, check, _CHECKED)
    if index is None or not index.distinct_targets:
        problems += _unique_targets(located)
    if index is None or not index.distinct_networks:
        problems += _client_group_networks(located)
    return problems


_CHECKED = (Service, RoutePolicy, TrafficPolicy, Placement, GlobalService, Canary)


def _check_document(world: _World, item: Located) -> Iterator[Problem]:
    d = item.doc
    if isinstance(d, Service):
        return _check_service(world, item, d)
    if isinstance(d, RoutePolicy):
        return _check_route(world, item, d)
    if isinstance(d, TrafficPolicy):
        return _check_traffic(world, item, d)
    if isinstance(d, Placement):
        return _check_placement(world, item, d)
    if isinstance(d, GlobalService):
        return _check_global(world, item, d)
    if isinstance(d, Canary):
        return _check_canary(world, item, d)
    return iter(())


def _unique_names(located: Iterable[Located]) -> Iterator[Problem]:
    first: dict[tuple[str, str], Located] = {}
    for item in located:
        key = (item.doc.kind, item.doc.name)
        if key in first:
            yield item.problem(
                ("metadata", "name"),
                f"duplicate {key[0]} {key[1]!r} (first defined at {first[key].where()})",
            )
        else:
            first[key] = item


def _unique_hosts(located: Iterable[Located]) -> Iterator[Problem]:
    """A host in two places is reported at the second, naming the first's file:line."""
    owner: dict[str, tuple[Located, Path]] = {}  # host -> where it was first listed
    for item in located:
        if not isinstance(item.doc, RoutePolicy):
            continue
        for i, host in enumerate(item.doc.spec.hosts):
            key = host.rstrip(".")
            path = ("spec", "hosts", i)
            if key not in owner:
                owner[key] = (item, path)  # located only if reported: lines are made on demand
                continue
            first, first_path = owner[key]
            name = first.doc.name
            where = f"{first.raw.file}:{first.raw.line_of(first_path)}"
            if name != item.doc.name:
                yield item.problem(
                    path, f"host {host!r} is already claimed by RoutePolicy {name!r} at {where}"
                )
            else:
                yield item.problem(path, f"host {host!r} is listed twice (first at {where})")


def _client_group_networks(located: Iterable[Located]) -> Iterator[Problem]:
    """One network, one client group, across every GlobalService (the DNS server looks a client
    up once, before it knows the name asked for)."""
    owner: dict[str, tuple[str, str]] = {}  # network -> (group, GlobalService)
    for item in located:
        if not isinstance(item.doc, GlobalService):
            continue
        for i, group in enumerate(item.doc.spec.client_groups):
            for j, network in enumerate(group.cidrs):
                first = owner.setdefault(network, (group.name, item.doc.name))
                if first[0] != group.name:
                    yield item.problem(
                        ("spec", "clientGroups", i, "cidrs", j),
                        f"network {network} is already in client group {first[0]!r}"
                        f" (GlobalService {first[1]!r}); a network belongs to one group",
                    )


def _unique_targets(located: Iterable[Located]) -> Iterator[Problem]:
    traffic: dict[tuple[str, str | None], str] = {}
    placement: dict[str, str] = {}
    dns: dict[str, str] = {}
    for item in located:
        d = item.doc
        if isinstance(d, TrafficPolicy):
            key = (d.spec.service, d.spec.subset)
            if key in traffic:
                what = f"{key[0]}/{key[1]}" if key[1] else key[0]
                yield item.problem(
                    ("spec", "service"), f"{what} already has TrafficPolicy {traffic[key]!r}"
                )
            traffic.setdefault(key, d.name)
        elif isinstance(d, Placement):
            if d.spec.service in placement:
                yield item.problem(
                    ("spec", "service"),
                    f"service {d.spec.service!r} already has Placement {placement[d.spec.service]!r}",
                )
            placement.setdefault(d.spec.service, d.name)
        elif isinstance(d, GlobalService):
            names = [(("spec", "name"), d.spec.name)] + [
                (("spec", "aliases", i), a) for i, a in enumerate(d.spec.aliases)
            ]
            for path, raw in names:
                name = raw.rstrip(".")
                if name in dns:
                    yield item.problem(
                        path, f"DNS name {name!r} is already served by GlobalService {dns[name]!r}"
                    )
                dns.setdefault(name, d.name)


def _service_ref(
    world: _World,
    item: Located,
    path: Path,
    service: str,
    subset: str | None = None,
    port: int | None = None,
    *,
    subset_field: str = "subset",
) -> Iterator[Problem]:
    svc = world.service(service)
    if svc is None and world.did_fail("Service", service):
        return
    if svc is None:
        yield item.problem(
            (*path, "service"), f"unknown service {service!r}{world.known('Service')}"
        )
        return
    if subset is not None and svc.spec.subset(subset) is None:
        names = [s.name for s in svc.spec.subsets]
        yield item.problem(
            (*path, subset_field),
            f"service {service!r} has no subset {subset!r}"
            + (f" (it has {', '.join(names)})" if names else " (it defines no subsets)"),
        )
    if port is not None and port not in {p.port for p in svc.spec.ports}:
        yield item.problem((*path, "port"), f"service {service!r} has no port {port}")


def _known(names: Iterable[str]) -> str:
    listed = sorted(names)
    return f" (known: {', '.join(listed[:8])}{', …' if len(listed) > 8 else ''})" if listed else ""


def _cluster_ref(world: _World, item: Located, path: Path, name: str) -> Iterator[Problem]:
    if world.cluster(name) is None and not world.did_fail("Cluster", name):
        yield item.problem(path, f"unknown cluster {name!r}{world.known('Cluster')}")


def _region_ref(world: _World, item: Located, path: Path, region: str) -> Iterator[Problem]:
    if not world.has_region(region) and not world.a_cluster_failed():
        yield item.problem(path, f"no cluster is in region {region!r}{world.known('region')}")


def _locality_ref(world: _World, item: Located, path: Path, name: str) -> Iterator[Problem]:
    """A region, or ``region/zone``: some cluster must be in that zone of that region."""
    region, _, zone = name.partition("/")
    if not zone or not world.has_region(region):
        yield from _region_ref(world, item, path, region)
        return
    zones = sorted(world.zones_of(region))
    if zone not in zones:
        listed = ", ".join(z for z in zones if z) or "none"
        yield item.problem(
            path, f"no cluster of region {region!r} is in zone {zone!r} (zones: {listed})"
        )


def _check_service(world: _World, item: Located, d: Service) -> Iterator[Problem]:
    clusters = world.clusters  # known clusters checked inline: no generator per endpoint
    world.reads.update([("Cluster", ep.cluster) for ep in d.spec.endpoints])
    for i, ep in enumerate(d.spec.endpoints):
        if ep.cluster not in clusters:
            yield from _cluster_ref(world, item, ("spec", "endpoints", i, "cluster"), ep.cluster)


def _check_route(world: _World, item: Located, d: RoutePolicy) -> Iterator[Problem]:
    for r, rule in enumerate(d.spec.http):
        base: Path = ("spec", "http", r)
        for i, dest in enumerate(rule.route):
            yield from _service_ref(
                world, item, (*base, "route", i), dest.service, dest.subset, dest.port
            )
        explicit = [dest.weight for dest in rule.route if dest.weight is not None]
        if len(rule.route) > 1 and len(explicit) != len(rule.route):
            missing = next(i for i, dest in enumerate(rule.route) if dest.weight is None)
            yield item.problem(
                (*base, "route", missing, "weight"),
                "every destination needs a weight when a rule has several",
            )
        elif explicit and sum(explicit) != 100:
            yield item.problem(
                (*base, "route"), f"weights must sum to 100, got {sum(explicit)} ({explicit})"
            )
        if rule.mirror is not None:
            m = rule.mirror
            yield from _service_ref(world, item, (*base, "mirror"), m.service, m.subset, m.port)
        for i, m in enumerate(rule.mirrors):
            path = (*base, "mirrors", i)
            yield from _service_ref(world, item, path, m.service, m.subset, m.port)


def _check_traffic(world: _World, item: Located, d: TrafficPolicy) -> Iterator[Problem]:
    yield from _service_ref(world, item, ("spec",), d.spec.service, d.spec.subset)
    loc = d.spec.locality
    if loc is None:
        return
    base: Path = ("spec", "locality")
    for i, fo in enumerate(loc.failover):
        yield from _region_ref(world, item, (*base, "failover", i, "from"), fo.from_)
        yield from _region_ref(world, item, (*base, "failover", i, "to"), fo.to)
    for i, region in enumerate(loc.failover_regions):
        yield from _region_ref(world, item, (*base, "failoverRegions", i), region)
    for i, dist in enumerate(loc.distribute):
        yield from _locality_ref(world, item, (*base, "distribute", i, "from"), dist.from_)
        for name in dist.to:
            yield from _locality_ref(world, item, (*base, "distribute", i, "to", name), name)
        if sum(dist.to.values()) != 100:
            yield item.problem(
                (*base, "distribute", i, "to"),
                f"weights must sum to 100, got {sum(dist.to.values())}",
            )


def _check_placement(world: _World, item: Located, d: Placement) -> Iterator[Problem]:
    spec = d.spec
    yield from _service_ref(world, item, ("spec",), spec.service)
    for i, name in enumerate(spec.clusters):
        yield from _cluster_ref(world, item, ("spec", "clusters", i), name)
    explicit = set(spec.clusters) if spec.clusters and spec.cluster_selector is None else None
    for name in spec.strategy.weights:
        yield from _cluster_ref(world, item, ("spec", "strategy", "weights", name), name)
        if explicit is not None and name not in explicit and world.cluster(name):
            yield item.problem(
                ("spec", "strategy", "weights", name),
                f"cluster {name!r} is not one of spec.clusters, so it never gets traffic",
            )
    if spec.strategy.weights and sum(spec.strategy.weights.values()) == 0:
        yield item.problem(
            ("spec", "strategy", "weights"), "weights sum to 0: no cluster would serve"
        )
    for i, name in enumerate(spec.strategy.order):
        yield from _cluster_ref(world, item, ("spec", "strategy", "order", i), name)
        if explicit is not None and name not in explicit and world.cluster(name):
            yield item.problem(
                ("spec", "strategy", "order", i),
                f"cluster {name!r} is not one of spec.clusters",
            )
    if spec.residency is not None:
        allowed = set(spec.residency.regions)
        for i, region in enumerate(spec.residency.regions):
            yield from _region_ref(world, item, ("spec", "residency", "regions", i), region)
        for i, name in enumerate(spec.clusters):
            cluster = world.cluster(name)
            if cluster is not None and cluster.spec.region not in allowed:
                yield item.problem(
                    ("spec", "clusters", i),
                    f"cluster {name!r} is in region {cluster.spec.region!r}, outside the residency boundary",
                )


def _check_global(world: _World, item: Located, d: GlobalService) -> Iterator[Problem]:
    spec = d.spec
    yield from _service_ref(world, item, ("spec",), spec.service)
    for i, target in enumerate(spec.targets):
        path: Path = ("spec", "targets", i)
        yield from _cluster_ref(world, item, (*path, "cluster"), target.cluster)
        cluster = world.cluster(target.cluster)
        if target.address is None and cluster is not None and cluster.spec.gateway is None:
            yield item.problem(
                (*path, "address"),
                f"cluster {target.cluster!r} has no gateway address; give the target an address",
            )
        allowed = world.residency_of(spec.service)
        if cluster is not None and allowed is not None and cluster.spec.region not in allowed:
            yield item.problem(
                (*path, "cluster"),
                f"cluster {target.cluster!r} is in region {cluster.spec.region!r}, outside the"
                f" residency boundary of service {spec.service!r} ({', '.join(sorted(allowed))})",
            )
    groups = {g.name for g in spec.client_groups}
    for name, regions in spec.geo.items():
        if name not in groups:
            yield item.problem(
                ("spec", "geo", name), f"unknown client group {name!r}{_known(groups)}"
            )
        for i, region in enumerate(regions):
            yield from _region_ref(world, item, ("spec", "geo", name, i), region)
    for name, row in spec.latency.items():
        if name not in groups:
            yield item.problem(
                ("spec", "latency", name), f"unknown client group {name!r}{_known(groups)}"
            )
        for region in row:
            yield from _region_ref(world, item, ("spec", "latency", name, region), region)
    for i, group in enumerate(spec.client_groups):
        if group.region is not None:
            yield from _region_ref(world, item, ("spec", "clientGroups", i, "region"), group.region)


def _check_canary(world: _World, item: Located, d: Canary) -> Iterator[Problem]:
    spec = d.spec
    yield from _service_ref(world, item, ("spec",), spec.service)
    if world.service(spec.service) is not None:
        for field, subset in (
            ("stableSubset", spec.stable_subset),
            ("canarySubset", spec.canary_subset),
        ):
            yield from _service_ref(
                world, item, ("spec",), spec.service, subset, subset_field=field
            )
    route = world.route(spec.route_policy)
    if route is None and world.did_fail("RoutePolicy", spec.route_policy):
        return
    if route is None:
        yield item.problem(
            ("spec", "routePolicy"),
            f"unknown RoutePolicy {spec.route_policy!r}{world.known('RoutePolicy')}",
        )
        return
    used = {
        dest.subset
        for rule in route.spec.http
        for dest in rule.route
        if dest.service == spec.service
    }
    for field, subset in (
        ("stableSubset", spec.stable_subset),
        ("canarySubset", spec.canary_subset),
    ):
        if subset not in used:
            yield item.problem(
                ("spec", field),
                f"RoutePolicy {spec.route_policy!r} never routes to {spec.service}/{subset}",
            )
