"""Warnings: a valid policy set that may not do what its author expects.

Not errors (the set loads and serves); ``ubiq validate`` prints them, located like errors:

- a RoutePolicy whose rules Envoy tries in another order than written (Gateway API precedence),
  with the effective order and the way to keep the written one (``ruleOrder: firstMatch``);
- a RoutePolicy served to proxyless gRPC clients (it routes to a GRPC port) that uses something
  gRPC's xDS client ignores, and a TrafficPolicy of a GRPC service likewise (docs/xds.md has the
  table of what reaches proxyless clients);
- a TrafficPolicy with ``tls: {mode: ISTIO_MUTUAL}`` for a service with endpoints in a cluster
  whose gateway has no ``mtlsPort``: those endpoints are unreachable from other clusters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from controlplane.errors import Problem
from controlplane.policy.crosscheck import SetIndex
from controlplane.policy.docmemo import DocMemo, Facts, RecordedLookups, Token
from controlplane.policy.documents import AnyDocument, Cluster, RoutePolicy, Service, TrafficPolicy
from controlplane.policy.located import Located
from controlplane.policy.route import HttpRule
from controlplane.policy.route_order import effective_order, reordered_pairs
from controlplane.policy.yamlsource import Path

#: retryOn conditions gRPC's xDS client acts on (gRFC A44); the others are HTTP-only
GRPC_RETRY_ON = frozenset(
    {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
)
#: load balancers gRPC's xDS client implements (A42 ring hash, A48 least request)
GRPC_ALGORITHMS = frozenset({"ROUND_ROBIN", "RING_HASH", "LEAST_REQUEST"})
PROXYLESS = "proxyless gRPC clients ignore"


class _Seen(RecordedLookups):
    """The Services and Clusters the warnings look up; each look-up is noted in ``reads``
    (``docmemo`` tokens) so that a document's warnings can be kept until one of them changes."""

    def __init__(self, located: list[Located], index: SetIndex | None = None) -> None:
        self.index = index
        if index is not None:  # the first of a name, not the last: the same in a valid set
            self.services: dict[str, Service] = index.named["Service"]  # type: ignore[assignment]
            self.clusters: dict[str, Cluster] = index.named["Cluster"]  # type: ignore[assignment]
        else:
            self.services = {i.doc.name: i.doc for i in located if isinstance(i.doc, Service)}
            self.clusters = {i.doc.name: i.doc for i in located if isinstance(i.doc, Cluster)}
        self.reads: set[Token] = set()

    def is_grpc(self, name: str) -> bool:
        svc = self.service(name)
        return svc is not None and any(p.protocol == "GRPC" for p in svc.spec.ports)

    def facts(self, hash_of: Callable[[AnyDocument], str]) -> Facts:
        if self.index is not None:
            return Facts(names=self.index.hashes)
        return Facts(
            names={
                "Service": {n: hash_of(d) for n, d in self.services.items()},
                "Cluster": {n: hash_of(d) for n, d in self.clusters.items()},
            }
        )


def policy_warnings(
    located: list[Located],
    memo: DocMemo | None = None,
    hash_of: Callable[[AnyDocument], str] | None = None,
    index: SetIndex | None = None,
    files: Sequence[tuple[str, Sequence[Located]]] | None = None,
) -> list[Problem]:
    """The warnings, in document order. With ``memo`` and ``hash_of``, a document's warnings
    are taken from the last run unless it or a Service/Cluster it looked up changed.
    ``index``: the documents' ``crosscheck.SetIndex`` (of a set that passed the checks)."""
    seen = _Seen(located, index)
    if memo is None or hash_of is None:
        out: list[Problem] = []
        for item in located:
            out += _document_warnings(seen, item)
        return out

    def check(item: Located) -> tuple[list[Problem], frozenset[Token]]:
        seen.reads = set()
        found = list(_document_warnings(seen, item))
        return found, frozenset(seen.reads)

    groups = [("", located)] if files is None else files
    return memo.run(groups, seen.facts(hash_of), hash_of, check, (TrafficPolicy, RoutePolicy))


def _document_warnings(seen: _Seen, item: Located) -> Iterator[Problem]:
    if isinstance(item.doc, TrafficPolicy):
        yield from _mutual_without_gateway(item, item.doc, seen)
        if seen.is_grpc(item.doc.spec.service):
            yield from _proxyless_traffic(item, item.doc)
    elif isinstance(item.doc, RoutePolicy):
        yield from _rule_order(item, item.doc)
        if _served_to_grpc(item.doc, seen):
            yield from _proxyless_route(item, item.doc)


def _rule_order(item: Located, policy: RoutePolicy) -> Iterator[Problem]:
    """Only where the order matters: two routes a request could match both, tried in the other
    order than written (an exact /old before a prefix /api changes nothing)."""
    pairs = reordered_pairs(policy)
    if pairs:
        first, later = pairs[0]
        effective = ", ".join(e.name for e in effective_order(policy))
        yield item.problem(
            ("spec", "http", later.rule),
            f"{later.name} is tried before {first.name}, written above it: rules go by"
            f" precedence, the most specific first (effective order: {effective});"
            " set ruleOrder: firstMatch to keep the written order",
        )


def _served_to_grpc(policy: RoutePolicy, seen: _Seen) -> bool:
    for rule in policy.spec.http:
        for dest in rule.route:
            svc = seen.service(dest.service)
            if svc is None:
                continue
            ports = svc.spec.ports
            port = next((p for p in ports if p.port == dest.port), ports[0])
            if port.protocol == "GRPC":
                return True
    return False


def _proxyless_route(item: Located, policy: RoutePolicy) -> Iterator[Problem]:
    for r, rule in enumerate(policy.spec.http):
        base: Path = ("spec", "http", r)
        for path, what in _ignored_in_rule(rule):
            yield item.problem((*base, *path), f"{PROXYLESS} {what}")


def _ignored_in_rule(rule: HttpRule) -> Iterator[tuple[Path, str]]:
    if rule.retries is not None:
        http_only = [c for c in rule.retries.conditions() if c not in GRPC_RETRY_ON]
        if http_only:
            yield (
                ("retries", "retryOn"),
                f"retryOn {', '.join(http_only)} (they retry on gRPC status names)",
            )
        if rule.retries.per_try_timeout is not None:
            yield ("retries", "perTryTimeout"), "perTryTimeout"
    if rule.all_mirrors():
        yield ("mirror" if rule.mirror is not None else "mirrors",), "mirroring"
    if rule.headers is not None or any(d.headers is not None for d in rule.route):
        yield ("headers",), "header changes"
    if rule.rewrite is not None:
        yield ("rewrite",), "rewrite"
    if rule.cors_policy is not None:
        yield ("corsPolicy",), "corsPolicy"
    if rule.redirect is not None or rule.direct_response is not None:
        yield (
            (("redirect" if rule.redirect else "directResponse"),),
            "redirects and direct responses (the call fails)",
        )
    for m, match in enumerate(rule.match):
        if match.query_params:
            yield ("match", m, "queryParams"), "a match with queryParams (the whole match entry)"


def _proxyless_traffic(item: Located, policy: TrafficPolicy) -> Iterator[Problem]:
    spec = policy.spec
    od = spec.outlier_detection
    if od is not None and (od.consecutive_5xx_errors or od.consecutive_gateway_errors):
        yield item.problem(
            ("spec", "outlierDetection"),
            f"{PROXYLESS} consecutive-error ejection (they implement failurePercentage)",
        )
    lb = spec.load_balancer
    if lb is not None and lb.algorithm not in GRPC_ALGORITHMS:
        yield item.problem(("spec", "loadBalancer", "algorithm"), f"{PROXYLESS} {lb.algorithm}")
    if lb is not None and lb.hash_key is not None and lb.hash_key.header is None:
        yield item.problem(
            ("spec", "loadBalancer", "hashKey"),
            f"{PROXYLESS} hash keys other than header",
        )
    pool = spec.connection_pool
    if pool is not None:
        ignored = [
            name
            for name, value in (
                ("maxConnections", pool.max_connections),
                ("maxPendingRequests", pool.max_pending_requests),
                ("maxRetries", pool.max_retries),
                ("maxRequestsPerConnection", pool.max_requests_per_connection),
                ("tcpKeepalive", pool.tcp_keepalive),
                ("idleTimeout", pool.idle_timeout),
                ("maxConnectionDuration", pool.max_connection_duration),
            )
            if value is not None
        ]
        if ignored:
            yield item.problem(
                ("spec", "connectionPool"),
                f"{PROXYLESS} connectionPool {', '.join(ignored)} (only maxRequests)",
            )


def _mutual_without_gateway(item: Located, policy: TrafficPolicy, seen: _Seen) -> Iterator[Problem]:
    tls = policy.spec.tls
    if tls is None or tls.mode != "ISTIO_MUTUAL":
        return
    service = seen.service(policy.spec.service)
    if service is None:
        return

    def no_port(cluster: Cluster) -> bool:
        gateway = cluster.spec.gateway
        return gateway is None or gateway.mtls_port is None

    found = {name: seen.cluster(name) for name in {ep.cluster for ep in service.spec.endpoints}}
    closed = sorted(name for name, c in found.items() if c is not None and no_port(c))
    if closed:
        yield item.problem(
            ("spec", "tls", "mode"),
            f"ISTIO_MUTUAL: the endpoints of {policy.spec.service!r} in {', '.join(closed)} are"
            " unreachable from other clusters (their Cluster's gateway has no mtlsPort)",
        )
