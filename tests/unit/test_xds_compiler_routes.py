"""RoutePolicy -> RouteConfiguration: every match kind and every action, YAML in, protos out."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2

from controlplane.xds.compiler.routes import FAULT_FILTER, PREVIOUS_HOSTS
from controlplane.xds.resources import ROUTE
from tests.support.policy import doc
from tests.support.xds_expected import compile_all, duration, model, route_policy, routes_of

MILLION = percent_pb2.FractionalPercent.MILLION


def one_route(rules: str, *extra: str) -> rc_pb2.Route:
    (route,) = routes_of(model(route_policy(rules), *extra))
    return route


def test_virtual_host_per_policy_with_host_and_host_port_domains() -> None:
    m = model(
        route_policy("- route: [{service: web}]", hosts="[web.example, '*.web.example']"),
        route_policy("- route: [{service: web}]", hosts="[api.example]", name="api"),
    )
    (config,) = compile_all(m)[ROUTE].values()
    assert config.name == "ubiq-http"  # type: ignore[attr-defined]
    vhosts = {vh.name: list(vh.domains) for vh in config.virtual_hosts}  # type: ignore[attr-defined]
    assert vhosts == {
        "api": ["api.example", "api.example:10000"],
        "web": ["web.example", "web.example:10000", "*.web.example", "*.web.example:10000"],
    }


def test_each_match_is_a_route_ordered_by_gateway_api_precedence() -> None:
    routes = routes_of(
        model(
            route_policy("""
            - name: a
              match: [{path: {prefix: /a}}, {path: {exact: /b}}]
              route: [{service: web, subset: v2}]
            - route: [{service: web}]
            """)
        )
    )
    assert [r.name for r in routes] == ["web/a/1", "web/a/0", "web/1"]
    assert [r.match for r in routes] == [
        rc_pb2.RouteMatch(path="/b"),
        rc_pb2.RouteMatch(prefix="/a"),
        rc_pb2.RouteMatch(prefix="/"),
    ]
    assert [r.route.cluster for r in routes] == ["web|v2", "web|v2", "web"]


def test_precedence_exact_regex_longest_prefix_method_headers_query_then_document_order() -> None:
    routes = routes_of(
        model(
            route_policy("""
            - {name: catch-all, route: [{service: web}]}
            - {name: short, match: [{path: {prefix: /a}}], route: [{service: web}]}
            - {name: long, match: [{path: {prefix: /a/b}}], route: [{service: web}]}
            - {name: header, match: [{path: {prefix: /a}, headers: {x: {exact: "1"}}}], route: [{service: web}]}
            - {name: two-headers, match: [{path: {prefix: /a}, headers: {x: {exact: "1"}, y: {present: true}}}], route: [{service: web}]}
            - {name: method, match: [{path: {prefix: /a}, method: GET}], route: [{service: web}]}
            - {name: query, match: [{path: {prefix: /a}, queryParams: {q: {exact: "1"}}}], route: [{service: web}]}
            - {name: regex, match: [{path: {regex: "^/r.*"}}], route: [{service: web}]}
            - {name: exact, match: [{path: {exact: /z}}], route: [{service: web}]}
            - {name: short-again, match: [{path: {prefix: /a}}], route: [{service: web}]}
            """)
        )
    )
    assert [r.name.split("/")[1] for r in routes] == [
        "exact", "regex", "long", "method", "two-headers", "header", "query", "short",
        "short-again", "catch-all",
    ]  # fmt: skip


def test_path_regex_headers_query_and_method() -> None:
    route = one_route("""
    - match:
      - path: {regex: "^/u/[0-9]+$"}
        method: PUT
        headers:
          x-e: {exact: "1"}
          x-p: {prefix: ab}
          x-r: {regex: "^v[12]$"}
          x-there: {present: true}
          x-gone: {present: false}
        queryParams:
          q: {exact: "1"}
          debug: {present: true}
          trace: {present: false}
      route: [{service: web}]
    """)
    sm = string_pb2.StringMatcher
    assert route.match == rc_pb2.RouteMatch(
        safe_regex=regex_pb2.RegexMatcher(regex="^/u/[0-9]+$"),
        headers=[
            rc_pb2.HeaderMatcher(name=":method", string_match=sm(exact="PUT")),
            rc_pb2.HeaderMatcher(name="x-e", string_match=sm(exact="1")),
            rc_pb2.HeaderMatcher(name="x-gone", present_match=False),
            rc_pb2.HeaderMatcher(name="x-p", string_match=sm(prefix="ab")),
            rc_pb2.HeaderMatcher(
                name="x-r", string_match=sm(safe_regex=regex_pb2.RegexMatcher(regex="^v[12]$"))
            ),
            rc_pb2.HeaderMatcher(name="x-there", present_match=True),
            rc_pb2.HeaderMatcher(
                name=":path",
                string_match=sm(safe_regex=regex_pb2.RegexMatcher(regex=".*[?&]trace(=|&|#|$).*")),
                invert_match=True,
            ),
        ],
        query_parameters=[
            rc_pb2.QueryParameterMatcher(name="debug", present_match=True),
            rc_pb2.QueryParameterMatcher(name="q", string_match=sm(exact="1")),
        ],
    )


def test_weighted_clusters_in_percent_zero_allowed() -> None:
    route = one_route("""
    - route:
      - {service: web, subset: v1, weight: 100}
      - {service: web, subset: v2, weight: 0}
    """)
    wc = rc_pb2.WeightedCluster
    expected = wc(clusters=[wc.ClusterWeight(name="web|v1"), wc.ClusterWeight(name="web|v2")])
    expected.clusters[0].weight.value = 100
    expected.clusters[1].weight.value = 0
    assert route.route.weighted_clusters == expected


def test_timeout_retries_and_grpc_retry_codes() -> None:
    route = one_route("""
    - route: [{service: web}]
      timeout: 2s
      retries: {attempts: 3, perTryTimeout: 250ms, retryOn: [unavailable, resource-exhausted, reset]}
    """)
    assert route.route.timeout == duration(2000)
    policy = route.route.retry_policy
    assert policy.retry_on == "unavailable,resource-exhausted,reset"
    assert policy.num_retries.value == 3
    assert policy.per_try_timeout == duration(250)
    assert [p.name for p in policy.retry_host_predicate] == [PREVIOUS_HOSTS]
    no_retry = one_route("- {route: [{service: web}], retries: {attempts: 0}}")
    assert not no_retry.route.HasField("retry_policy")


def test_fault_is_per_route_config_with_million_fractions() -> None:
    route = one_route("""
    - route: [{service: web}]
      fault: {delay: {fixedDelay: 1500ms, percent: 1.5}, abort: {httpStatus: 503, percent: 0.0001}}
    """)
    fault = fault_pb2.HTTPFault()
    assert route.typed_per_filter_config[FAULT_FILTER].Unpack(fault)
    assert fault.delay.fixed_delay == duration(1500)
    assert fault.delay.percentage == percent_pb2.FractionalPercent(
        numerator=15000, denominator=MILLION
    )
    assert fault.abort.http_status == 503
    assert fault.abort.percentage.numerator == 1
    assert fault.abort.percentage.denominator == MILLION


def test_mirror_with_runtime_fraction() -> None:
    route = one_route("- {route: [{service: web}], mirror: {service: web, subset: v2, percent: 5}}")
    (mirror,) = route.route.request_mirror_policies
    assert mirror.cluster == "web|v2"
    assert mirror.runtime_fraction.default_value == percent_pb2.FractionalPercent(
        numerator=50000, denominator=MILLION
    )


def test_header_set_add_remove_both_directions() -> None:
    route = one_route("""
    - route: [{service: web}]
      headers:
        request: {set: {b: "2", a: "1"}, add: {c: "3"}, remove: [x-drop]}
        response: {set: {x-served-by: ubiq}, remove: [server]}
    """)
    opt = base_pb2.HeaderValueOption
    over, append = opt.OVERWRITE_IF_EXISTS_OR_ADD, opt.APPEND_IF_EXISTS_OR_ADD
    assert [
        (h.header.key, h.header.value, h.append_action) for h in route.request_headers_to_add
    ] == [
        ("a", "1", over),
        ("b", "2", over),
        ("c", "3", append),
    ]
    assert list(route.request_headers_to_remove) == ["x-drop"]
    assert [(h.header.key, h.append_action) for h in route.response_headers_to_add] == [
        ("x-served-by", over)
    ]
    assert list(route.response_headers_to_remove) == ["server"]


def test_redirect_direct_response_and_rewrite() -> None:
    redirect, direct, rewrite = routes_of(
        model(
            route_policy("""
            - match: [{path: {exact: /old}}]
              redirect: {uri: /new, authority: b.example, scheme: https, port: 8443, responseCode: 308}
            - match: [{path: {exact: /gone}}]
              directResponse: {status: 410, body: "gone\\n"}
            - route: [{service: web}]
              rewrite: {uri: /v2/, authority: internal.example}
            """)
        )
    )
    assert redirect.redirect == rc_pb2.RedirectAction(
        path_redirect="/new",
        host_redirect="b.example",
        scheme_redirect="https",
        port_redirect=8443,
        response_code=rc_pb2.RedirectAction.PERMANENT_REDIRECT,
    )
    assert direct.direct_response.status == 410
    assert direct.direct_response.body.inline_string == "gone\n"
    assert rewrite.route.prefix_rewrite == "/v2/"
    assert rewrite.route.host_rewrite_literal == "internal.example"


def test_hash_policy_follows_the_destinations_balancer() -> None:
    cases = {
        "{header: x-user}": rc_pb2.RouteAction.HashPolicy(
            header=rc_pb2.RouteAction.HashPolicy.Header(header_name="x-user")
        ),
        "{cookie: {name: sid, ttl: 1h, path: /}}": rc_pb2.RouteAction.HashPolicy(
            cookie=rc_pb2.RouteAction.HashPolicy.Cookie(
                name="sid", ttl=duration(3_600_000), path="/"
            )
        ),
        "{sourceIp: true}": rc_pb2.RouteAction.HashPolicy(
            connection_properties=rc_pb2.RouteAction.HashPolicy.ConnectionProperties(source_ip=True)
        ),
        "{queryParameter: u}": rc_pb2.RouteAction.HashPolicy(
            query_parameter=rc_pb2.RouteAction.HashPolicy.QueryParameter(name="u")
        ),
    }
    for key, expected in cases.items():
        traffic = doc(
            "TrafficPolicy",
            "web",
            f"service: web\nloadBalancer: {{algorithm: MAGLEV, hashKey: {key}}}",
        )
        route = one_route("- route: [{service: web, subset: v1}]", traffic)
        assert list(route.route.hash_policy) == [expected], key
    plain = one_route("- route: [{service: web}]")
    assert list(plain.route.hash_policy) == []
