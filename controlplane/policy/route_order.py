"""The order in which a RoutePolicy's rules are tried: Gateway API precedence, or as written.

Envoy takes the first route that matches, so the compiler emits routes in this order, ``ubiq
render`` shows it, and ``ubiq validate`` warns when it differs from the written order. One
entry per match (a rule with several ``match`` entries gives several routes).

``precedence`` (the default, Gateway API HTTPRoute): exact path, then regex, then prefix by
length (longest first; no path counts as prefix ``/``), then a method match, then more header
matches (``authority`` counts as one), then more query-parameter matches; ties keep document
order. ``firstMatch`` (Istio VirtualService): document order.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.policy.documents import RoutePolicy
from controlplane.policy.route import HttpMatch

Rank = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One route of a policy: its name, where it was written, and its match."""

    name: str  # <policy>/<rule name or index>[/<match index>]
    rule: int
    match_index: int
    match: HttpMatch | None


def match_precedence(match: HttpMatch | None) -> Rank:
    """Gateway API HTTPRoute precedence of one match; smaller sorts (and so matches) first."""
    if match is None or match.path is None:
        kind, length = 2, 1  # no path match is PathPrefix "/"
    elif match.path.exact is not None:
        kind, length = 0, 0  # two exact paths never match the same request
    elif match.path.regex is not None:
        kind, length = 1, 0  # implementation-specific in Gateway API: after exact, before prefix
    else:
        kind, length = 2, len(match.path.prefix or "")
    if match is None:
        return (kind, -length, 1, 0, 0)
    method = 0 if match.method is not None else 1
    headers = len(match.headers) + (match.authority is not None)
    return (kind, -length, method, -headers, -len(match.query_params))


def written_order(policy: RoutePolicy) -> list[RouteEntry]:
    """Every route of the policy in document order."""
    out = []
    for index, rule in enumerate(policy.spec.http):
        label = rule.name or str(index)
        matches: tuple[HttpMatch | None, ...] = rule.match or (None,)
        for m_index, match in enumerate(matches):
            suffix = f"/{m_index}" if len(matches) > 1 else ""
            out.append(RouteEntry(f"{policy.name}/{label}{suffix}", index, m_index, match))
    return out


def effective_order(policy: RoutePolicy) -> list[RouteEntry]:
    """Every route of the policy in the order Envoy tries them."""
    written = written_order(policy)
    if policy.spec.rule_order == "firstMatch":
        return written
    ranked = sorted(enumerate(written), key=lambda item: (match_precedence(item[1].match), item[0]))
    return [entry for _, entry in ranked]


def may_overlap(a: HttpMatch | None, b: HttpMatch | None) -> bool:
    """Whether one request could match both (judged by path and method; other conditions are
    assumed to overlap): only then does their order change what a request gets."""
    if a is None or b is None:
        return True
    if a.method is not None and b.method is not None and a.method != b.method:
        return False
    pa, pb = _path_of(a), _path_of(b)
    if pa is None or pb is None:
        return True
    (ka, va), (kb, vb) = pa, pb
    if a.ignore_uri_case or b.ignore_uri_case:
        va, vb = va.lower(), vb.lower()
    if ka == "exact" and kb == "exact":
        return va == vb
    if ka == "exact":
        return va.startswith(vb)
    if kb == "exact":
        return vb.startswith(va)
    return va.startswith(vb) or vb.startswith(va)


def _path_of(match: HttpMatch) -> tuple[str, str] | None:
    path = match.path
    if path is None:
        return ("prefix", "/")
    if path.exact is not None:
        return ("exact", path.exact)
    if path.prefix is not None:
        return ("prefix", path.prefix)
    return None  # a regex may match anything


def reordered_pairs(policy: RoutePolicy) -> list[tuple[RouteEntry, RouteEntry]]:
    """(written first, tried first) pairs of routes that may match the same request and that
    precedence tries in the other order than written: where ``firstMatch`` would differ."""
    rules = policy.spec.http
    if len(rules) < 2 and all(len(rule.match) < 2 for rule in rules):
        return []  # one route at most (most policies): no pair to reorder
    position = {e.name: i for i, e in enumerate(effective_order(policy))}
    written = written_order(policy)
    out = []
    for i, first in enumerate(written):
        for later in written[i + 1 :]:
            if position[later.name] < position[first.name] and may_overlap(
                first.match, later.match
            ):
                out.append((first, later))
    return out
