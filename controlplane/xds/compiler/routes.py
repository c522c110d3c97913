"""RDS: one RouteConfiguration per listener, one VirtualHost per RoutePolicy.

Order: virtual hosts by policy name (Envoy picks a virtual host by domain, never by order). Envoy
takes the first route that matches, so routes are emitted in the policy's effective order
(``controlplane.policy.route_order``: Gateway API precedence, or document order under
``ruleOrder: firstMatch``).

Every route action carries an explicit ``timeout`` (``0s``, disabled, when the rule sets none, as
in Istio), so nothing depends on Envoy's 15 s default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TypeAlias

from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.matcher.v3 import string_pb2

from controlplane.policy.documents import RoutePolicy
from controlplane.policy.route import (
    CorsPolicy,
    Destination,
    Fault,
    HeaderOps,
    Headers,
    HttpMatch,
    HttpRule,
    Retries,
)
from controlplane.policy.route_order import effective_order, written_order
from controlplane.policy.traffic import HashKey
from controlplane.xds.compiler.protos import (
    make_any,
    make_duration,
    make_header_option,
    make_percent,
    make_regex,
    make_string_matcher,
)

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
DEFAULT_TIMEOUT_MS = 0  # no route timeout unless the rule sets one (Istio's default)
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"

#: (service, subset, port) -> Envoy cluster name
ClusterNamer = Callable[[str, "str | None", "int | None"], str]
#: (service, port) -> whether that destination speaks gRPC
GrpcOf = Callable[[str, "int | None"], bool]
#: (service, subset) -> the hash key of its RING_HASH / MAGLEV balancer, if any
HashKeyOf = Callable[[str, "str | None"], "HashKey | None"]

_REDIRECT_CODES = {
    301: rc_pb2.RedirectAction.MOVED_PERMANENTLY,
    302: rc_pb2.RedirectAction.FOUND,
    303: rc_pb2.RedirectAction.SEE_OTHER,
    307: rc_pb2.RedirectAction.TEMPORARY_REDIRECT,
    308: rc_pb2.RedirectAction.PERMANENT_REDIRECT,
}


def make_route_match(match: HttpMatch | None) -> rc_pb2.RouteMatch:
    out = rc_pb2.RouteMatch()
    path = match.path if match is not None else None
    if path is None or path.prefix is not None:
        out.prefix = path.prefix if path is not None and path.prefix is not None else "/"
    elif path.exact is not None:
        out.path = path.exact
    else:
        assert path.regex is not None
        out.safe_regex.CopyFrom(make_regex(path.regex))
    if match is None:
        return out
    if match.ignore_uri_case:
        out.case_sensitive.value = False
    if match.authority is not None:
        out.headers.add(name=":authority", string_match=make_string_matcher(match.authority))
    if match.method is not None:
        out.headers.add(name=":method", string_match=string_pb2.StringMatcher(exact=match.method))
    for name in sorted(match.headers):
        value = match.headers[name]
        if value.present is not None:
            out.headers.add(name=name, present_match=value.present)
        else:
            out.headers.add(name=name, string_match=make_string_matcher(value))
    for name in sorted(match.query_params):
        value = match.query_params[name]
        if value.present is False:
            # Envoy's QueryParameterMatcher cannot say "absent": match :path instead, inverted.
            pattern = f".*[?&]{re.escape(name)}(=|&|#|$).*"
            out.headers.add(
                name=":path",
                string_match=string_pb2.StringMatcher(safe_regex=make_regex(pattern)),
                invert_match=True,
            )
        elif value.present:
            out.query_parameters.add(name=name, present_match=True)
        else:
            out.query_parameters.add(name=name, string_match=make_string_matcher(value))
    return out


def make_retry_policy(retries: Retries) -> rc_pb2.RetryPolicy:
    policy = rc_pb2.RetryPolicy(
        retry_on=",".join(retries.conditions()),
        host_selection_retry_max_attempts=5,
        retriable_status_codes=sorted(set(retries.retriable_status_codes)),
    )
    policy.num_retries.value = retries.attempts
    if retries.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(make_duration(retries.per_try_timeout))
    policy.retry_host_predicate.add(
        name=PREVIOUS_HOSTS, typed_config=make_any(previous_hosts_pb2.PreviousHostsPredicate())
    )
    return policy


def make_fault(fault: Fault) -> fault_pb2.HTTPFault:
    out = fault_pb2.HTTPFault()
    if fault.delay is not None:
        out.delay.CopyFrom(
            common_fault_pb2.FaultDelay(
                fixed_delay=make_duration(fault.delay.fixed_delay),
                percentage=make_percent(fault.delay.percent),
            )
        )
    if fault.abort is not None:
        out.abort.CopyFrom(
            fault_pb2.FaultAbort(
                http_status=fault.abort.http_status,
                percentage=make_percent(fault.abort.percent),
            )
        )
    return out


def make_hash_policy(key: HashKey) -> rc_pb2.RouteAction.HashPolicy:
    policy = rc_pb2.RouteAction.HashPolicy()
    if key.header is not None:
        policy.header.header_name = key.header
    elif key.cookie is not None:
        policy.cookie.name = key.cookie.name
        if key.cookie.ttl is not None:
            policy.cookie.ttl.CopyFrom(make_duration(key.cookie.ttl))
        if key.cookie.path is not None:
            policy.cookie.path = key.cookie.path
    elif key.source_ip:
        policy.connection_properties.source_ip = True
    else:
        assert key.query_parameter is not None
        policy.query_parameter.name = key.query_parameter
    return policy


def make_cors(cors: CorsPolicy) -> cors_pb2.CorsPolicy:
    out = cors_pb2.CorsPolicy(
        allow_origin_string_match=[make_string_matcher(o) for o in cors.allow_origins],
        allow_methods=",".join(cors.allow_methods),
        allow_headers=",".join(cors.allow_headers),
        expose_headers=",".join(cors.expose_headers),
    )
    if cors.max_age is not None:
        out.max_age = str(cors.max_age // 1000)
    out.allow_credentials.value = cors.allow_credentials
    return out


_HeaderTarget: TypeAlias = rc_pb2.Route | rc_pb2.WeightedCluster.ClusterWeight


def _add_header_ops(headers: Headers, target: _HeaderTarget) -> None:
    if headers.request is not None:
        _add_headers(headers.request, target, response=False)
    if headers.response is not None:
        _add_headers(headers.response, target, response=True)


def _add_headers(ops: HeaderOps, route: _HeaderTarget, *, response: bool) -> None:
    adds = route.response_headers_to_add if response else route.request_headers_to_add
    removes = route.response_headers_to_remove if response else route.request_headers_to_remove
    for key in sorted(ops.set):
        adds.append(make_header_option(key, ops.set[key], append=False))
    for key in sorted(ops.add):
        adds.append(make_header_option(key, ops.add[key], append=True))
    removes.extend(ops.remove)


def make_route_action(
    rule: HttpRule, cluster_of: ClusterNamer, hash_key_of: HashKeyOf, grpc_of: GrpcOf | None = None
) -> rc_pb2.RouteAction:
    action = rc_pb2.RouteAction()

    def name(d: Destination) -> str:
        return cluster_of(d.service, d.subset, d.port)

    weights = rule.weights()
    if len(rule.route) == 1:
        action.cluster = name(rule.route[0])
    else:
        for dest, weight in zip(rule.route, weights, strict=True):
            entry = action.weighted_clusters.clusters.add(name=name(dest))
            entry.weight.value = weight
            if dest.headers is not None:
                _add_header_ops(dest.headers, entry)
    timeout = rule.timeout if rule.timeout is not None else DEFAULT_TIMEOUT_MS
    action.timeout.CopyFrom(make_duration(timeout))
    if timeout and grpc_of is not None and any(grpc_of(d.service, d.port) for d in rule.route):
        # proxyless gRPC clients take the deadline from here (gRFC A31), not from ``timeout``
        action.max_stream_duration.max_stream_duration.CopyFrom(make_duration(timeout))
    if rule.retries is not None and rule.retries.attempts > 0:
        action.retry_policy.CopyFrom(make_retry_policy(rule.retries))
    for m in rule.all_mirrors():
        mirror = action.request_mirror_policies.add(cluster=cluster_of(m.service, m.subset, m.port))
        mirror.runtime_fraction.default_value.CopyFrom(make_percent(m.percent))
    if rule.rewrite is not None:
        if rule.rewrite.uri is not None:
            action.prefix_rewrite = rule.rewrite.uri
        if rule.rewrite.authority is not None:
            action.host_rewrite_literal = rule.rewrite.authority
    first = rule.route[0]
    key = hash_key_of(first.service, first.subset)
    if key is not None:
        action.hash_policy.append(make_hash_policy(key))
    return action


def build_routes(
    policy: RoutePolicy,
    cluster_of: ClusterNamer,
    hash_key_of: HashKeyOf,
    grpc_of: GrpcOf | None = None,
) -> list[rc_pb2.Route]:
    """Every route of a policy, in effective order: precedence (stable: ties keep document
    order), or document order under ``ruleOrder: firstMatch``."""
    routes = {
        route.name: route for route in _document_routes(policy, cluster_of, hash_key_of, grpc_of)
    }
    return [routes[entry.name] for entry in effective_order(policy)]


def _document_routes(
    policy: RoutePolicy, cluster_of: ClusterNamer, hash_key_of: HashKeyOf, grpc_of: GrpcOf | None
) -> Iterator[rc_pb2.Route]:
    for entry in written_order(policy):
        rule, match = policy.spec.http[entry.rule], entry.match
        route = rc_pb2.Route(name=entry.name, match=make_route_match(match))
        if rule.redirect is not None:
            r = rule.redirect
            redirect = route.redirect
            if r.uri is not None:
                redirect.path_redirect = r.uri
            if r.authority is not None:
                redirect.host_redirect = r.authority
            if r.scheme is not None:
                redirect.scheme_redirect = r.scheme
            if r.port is not None:
                redirect.port_redirect = r.port
            redirect.response_code = _REDIRECT_CODES[r.response_code]
        elif rule.direct_response is not None:
            route.direct_response.status = rule.direct_response.status
            if rule.direct_response.body:
                route.direct_response.body.inline_string = rule.direct_response.body
        else:
            route.route.CopyFrom(make_route_action(rule, cluster_of, hash_key_of, grpc_of))
        if rule.fault is not None:
            route.typed_per_filter_config[FAULT_FILTER].CopyFrom(make_any(make_fault(rule.fault)))
        if rule.cors_policy is not None:
            route.typed_per_filter_config[CORS_FILTER].CopyFrom(
                make_any(make_cors(rule.cors_policy))
            )
        if rule.headers is not None:
            _add_header_ops(rule.headers, route)
        if len(rule.route) == 1 and rule.route[0].headers is not None:
            _add_header_ops(rule.route[0].headers, route)
        yield route


def domains(hosts: tuple[str, ...], port: int) -> list[str]:
    """Each host as written and as ``host:port`` (clients send the port in Host when it is not 80)."""
    out: list[str] = []
    for host in hosts:
        host = host.rstrip(".")
        out.append(host)
        if host != "*":
            out.append(f"{host}:{port}")
    return out


def build_virtual_host(
    policy: RoutePolicy,
    port: int,
    cluster_of: ClusterNamer,
    hash_key_of: HashKeyOf,
    grpc_of: GrpcOf | None = None,
) -> rc_pb2.VirtualHost:
    return rc_pb2.VirtualHost(
        name=policy.name,
        domains=domains(policy.spec.hosts, port),
        routes=build_routes(policy, cluster_of, hash_key_of, grpc_of),
    )


def build_route_configuration(
    name: str, virtual_hosts: list[rc_pb2.VirtualHost]
) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=virtual_hosts)
