"""Every kind validates its fields and reports problems as file:line: field: message."""

from __future__ import annotations

import pytest

from controlplane.policy.common import LabelSelector
from tests.support.policy import BASE, doc, load, problems


def test_base_set_loads() -> None:
    model = load()
    assert set(model.clusters) == {"eu-west", "us-west"}
    assert model.services["web"].spec.ports[0].protocol == "HTTP"


def test_weight_out_of_range_matches_the_documented_message() -> None:
    route = doc(
        "RoutePolicy",
        "web",
        """
        hosts: [web.example]
        http:
        - route:
          - {service: web, subset: v1, weight: 60}
          - {service: web, subset: v2, weight: 140}
        """,
    )
    assert problems(route) == [
        "extra0.yaml:9: spec.http[0].route[1].weight: must be 0..100, got 140"
    ]


def test_unknown_field_suggests_the_right_one() -> None:
    route = doc(
        "RoutePolicy", "web", "hosts: [web.example]\nhttp:\n- route: [{service: web, weigth: 100}]"
    )
    assert problems(route) == [
        "extra0.yaml:7: spec.http[0].route[0].weigth: unknown field 'weigth' (did you mean 'weight'?)"
    ]


def test_unknown_kind_and_api_version() -> None:
    bad = "apiVersion: ubiq.io/v2\nkind: Clustr\nmetadata: {name: x}\nspec: {}\n"
    assert problems(bad) == [
        "extra0.yaml:1: apiVersion: expected 'ubiq.io/v1alpha1', got 'ubiq.io/v2'",
        "extra0.yaml:2: kind: expected one of Cluster, Service, RoutePolicy, TrafficPolicy,"
        " Placement, GlobalService, Canary, got 'Clustr' (did you mean 'Cluster'?)",
    ]


def test_missing_and_wrong_types() -> None:
    svc = doc("Service", "api", "ports: [{port: eighty}]\nendpoints: [{address: 127.0.0.1}]")
    assert problems(svc) == [
        "extra0.yaml:5: spec.ports[0].port: expected a whole number, got 'eighty'",
        "extra0.yaml:6: spec.endpoints[0].cluster: required field is missing",
    ]


@pytest.mark.parametrize(
    ("value", "ms"), [("250ms", 250), ("2s", 2000), ("1.5s", 1500), ("1m", 60000), (3, 3000)]
)
def test_durations(value: object, ms: int) -> None:
    route = doc(
        "RoutePolicy",
        "web",
        f"hosts: [web.example]\nhttp:\n- route: [{{service: web}}]\n  timeout: {value}",
    )
    assert load(route).route_policies["web"].spec.http[0].timeout == ms


def test_bad_duration() -> None:
    route = doc(
        "RoutePolicy",
        "web",
        "hosts: [web.example]\nhttp:\n- route: [{service: web}]\n  timeout: soon",
    )
    assert problems(route) == [
        "extra0.yaml:8: spec.http[0].timeout: expected a duration such as 500ms, 2s or 1m, got 'soon'"
    ]


def test_regex_must_be_re2() -> None:
    route = doc(
        "RoutePolicy",
        "web",
        "hosts: [web.example]\nhttp:\n- match: [{path: {regex: '/(?=admin)'}}]\n  route: [{service: web}]",
    )
    (message,) = problems(route)
    assert message.startswith(
        "extra0.yaml:7: spec.http[0].match[0].path.regex: not a valid RE2 regex"
    )


def test_rule_needs_exactly_one_action() -> None:
    route = doc(
        "RoutePolicy",
        "web",
        "hosts: [web.example]\nhttp:\n- route: [{service: web}]\n  directResponse: {status: 200}",
    )
    assert problems(route) == [
        "extra0.yaml:7: spec.http[0]: set exactly one of route, redirect, directResponse"
        " (got route, directResponse)"
    ]


def test_string_match_needs_exactly_one() -> None:
    route = doc(
        "RoutePolicy",
        "web",
        "hosts: [web.example]\nhttp:\n- match: [{headers: {x: {exact: a, prefix: b}}}]\n  route: [{service: web}]",
    )
    assert (
        "set exactly one of exact, prefix, regex, present (got exact, prefix)" in problems(route)[0]
    )


def test_full_route_policy() -> None:
    route = doc(
        "RoutePolicy",
        "web",
        """
        hosts: [web.example, "*.web.example"]
        http:
        - name: canary
          match:
          - path: {prefix: /api}
            headers: {x-canary: {exact: "true"}, x-debug: {present: true}}
            queryParams: {v: {regex: "^[0-9]+$"}}
            method: GET
          route: [{service: web, subset: v2}]
          timeout: 2s
          retries: {attempts: 3, perTryTimeout: 500ms, retryOn: [5xx, reset]}
          fault: {delay: {fixedDelay: 100ms, percent: 5}, abort: {httpStatus: 503, percent: 1.5}}
          mirror: {service: web, subset: v1, percent: 10}
          headers:
            request: {set: {x-a: b}, add: {x-c: d}, remove: [x-e]}
            response: {set: {x-served-by: ubiq}}
          rewrite: {uri: /v2/api, authority: web.internal}
        - match: [{path: {exact: /old}}]
          redirect: {uri: /new, responseCode: 308}
        - directResponse: {status: 404, body: nope}
        """,
    )
    rule = load(route).route_policies["web"].spec.http[0]
    assert rule.fault is not None and rule.fault.abort is not None
    assert rule.fault.abort.percent == 1.5
    assert rule.retries is not None and rule.retries.per_try_timeout == 500
    assert rule.match[0].method == "GET"


def test_traffic_policy_fields() -> None:
    tp = doc(
        "TrafficPolicy",
        "web",
        """
        service: web
        connectTimeout: 250ms
        connectionPool: {maxConnections: 10, maxPendingRequests: 1, maxRequests: 5, maxRetries: 2}
        outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 10s, maxEjectionPercent: 50}
        loadBalancer: {algorithm: RING_HASH, hashKey: {cookie: {name: sid, ttl: 1h}}, minimumRingSize: 64}
        locality: {failoverRegions: [eu-west, us-west]}
        """,
    )
    spec = load(tp).traffic_policies["web"].spec
    assert (spec.service, spec.subset, spec.connect_timeout) == ("web", None, 250)
    pool = spec.connection_pool
    assert pool is not None
    assert (pool.max_connections, pool.max_pending_requests, pool.max_requests) == (10, 1, 5)
    assert (pool.max_retries, pool.max_requests_per_connection) == (2, None)
    od = spec.outlier_detection
    assert od is not None
    assert (od.consecutive_5xx_errors, od.interval, od.base_ejection_time) == (3, 1000, 10_000)
    assert (od.max_ejection_percent, od.consecutive_gateway_errors, od.min_health_percent) == (
        50,
        None,
        0,
    )
    lb = spec.load_balancer
    assert lb is not None and (lb.algorithm, lb.minimum_ring_size) == ("RING_HASH", 64)
    assert lb.hash_key is not None and lb.hash_key.cookie is not None
    assert (lb.hash_key.cookie.name, lb.hash_key.cookie.ttl, lb.hash_key.cookie.path) == (
        "sid",
        3_600_000,
        None,
    )
    assert (lb.hash_key.header, lb.hash_key.source_ip, lb.hash_key.query_parameter) == (
        None,
        False,
        None,
    )
    locality = spec.locality
    assert locality is not None and locality.enabled
    assert locality.failover_regions == ("eu-west", "us-west")
    assert (locality.failover, locality.distribute) == ((), ())


@pytest.mark.parametrize(
    ("lb", "message"),
    [
        ("{algorithm: MAGLEV}", "algorithm MAGLEV needs hashKey"),
        (
            "{algorithm: ROUND_ROBIN, hashKey: {sourceIp: true}}",
            "hashKey needs algorithm RING_HASH or MAGLEV",
        ),
        (
            "{algorithm: FASTEST}",
            "expected 'ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'RING_HASH' or 'MAGLEV', got 'FASTEST'",
        ),
    ],
)
def test_load_balancer_rules(lb: str, message: str) -> None:
    tp = doc("TrafficPolicy", "web", f"service: web\nloadBalancer: {lb}")
    assert message in problems(tp)[0]


def test_locality_distribute_excludes_failover() -> None:
    tp = doc(
        "TrafficPolicy",
        "web",
        "service: web\nlocality: {failoverRegions: [eu-west], distribute: [{from: eu-west, to: {eu-west: 100}}]}",
    )
    assert "either distribute or failover" in problems(tp)[0]


def test_placement_strategy_rules() -> None:
    bad = doc("Placement", "web", "service: web\nstrategy: {type: failover}")
    assert "strategy failover needs order" in problems(bad)[0]
    bad = doc("Placement", "web", "service: web\nstrategy: {type: lowestCost}")
    assert "strategy lowestCost needs slo" in problems(bad)[0]


def test_global_service_rules() -> None:
    outside = doc(
        "GlobalService", "web", "name: web.other.example\nzone: gtm.example\nservice: web"
    )
    assert "is not inside zone" in problems(outside)[0]
    no_fallback = doc(
        "GlobalService",
        "web",
        "name: web.gtm.example\nzone: gtm.example\nservice: web\nallDown: fallback",
    )
    assert "allDown fallback needs fallback addresses" in problems(no_fallback)[0]
    bad_cidr = doc(
        "GlobalService",
        "web",
        "name: web.gtm.example\nzone: gtm.example\nservice: web\nclientGroups: [{name: eu, cidrs: [10.0.0.0/33]}]",
    )
    assert "expected a network such as 203.0.113.0/24, got '10.0.0.0/33'" in problems(bad_cidr)[0]


def test_global_service_full() -> None:
    gs = doc(
        "GlobalService",
        "web",
        """
        name: web.gtm.example
        zone: gtm.example
        service: web
        strategy: lowestLatency
        ttl: 10s
        maxAnswers: 2
        clientGroups: [{name: europe, cidrs: [203.0.113.0/24], region: eu-west}]
        latency: {europe: {eu-west: 12ms, us-west: 140ms}}
        healthCheck: {tcp: {port: 8080}, interval: 1s, timeout: 200ms, unhealthyThreshold: 3}
        allDown: fallback
        fallback: [192.0.2.1]
        """,
    )
    spec = load(gs).global_services["web"].spec
    assert spec.latency["europe"]["us-west"] == 140
    assert spec.ttl == 10_000


def test_canary_rules() -> None:
    bad = doc(
        "Canary",
        "web",
        "service: web\nroutePolicy: web\nstableSubset: v1\ncanarySubset: v2\nsteps: [10, 5]",
    )
    assert "steps must increase, got [10, 5]" in problems(bad)[0]


def test_names_must_be_dns_names() -> None:
    bad = "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {name: Eu_West}\nspec: {region: eu}\n"
    assert problems(bad) == [
        "extra0.yaml:3: metadata.name: must be a lower-case DNS name (a-z, 0-9, '-', '.'), got 'Eu_West'"
    ]


def test_label_selector_semantics() -> None:
    sel = LabelSelector.model_validate(
        {
            "matchLabels": {"tier": "primary"},
            "matchExpressions": [
                {"key": "continent", "operator": "In", "values": ["europe", "asia"]},
                {"key": "deprecated", "operator": "DoesNotExist"},
            ],
        }
    )
    assert sel.matches({"tier": "primary", "continent": "europe"})
    assert not sel.matches({"tier": "primary", "continent": "america"})
    assert not sel.matches({"tier": "primary", "continent": "asia", "deprecated": "1"})
    assert not sel.matches({"continent": "asia"})


def test_model_is_immutable() -> None:
    model = load()
    with pytest.raises(Exception, match="frozen"):
        model.services["web"].spec.ports[0].port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        model.services["other"] = model.services["web"]  # type: ignore[index]
    assert BASE


def test_durations_that_no_consumer_can_use_are_refused() -> None:
    base = "hosts: [web.example]\nhttp:\n- route: [{service: web}]\n  timeout: "
    for value, message in (
        (".inf", "expected a duration such as 500ms, 2s or 1m, got inf"),
        ("99999999999999999h", "must be at most 10 years"),
    ):
        (problem,) = problems(doc("RoutePolicy", "web", base + value))
        assert message in problem, problem


def test_health_checks_need_positive_intervals_and_real_status_codes() -> None:
    svc = doc(
        "Service",
        "api",
        "ports: [{port: 80}]\nhealthCheck: {http: {expectedStatuses: [0]}, interval: 0s}",
    )
    assert problems(svc) == [
        "extra0.yaml:6: spec.healthCheck.http.expectedStatuses[0]: must be 100..599, got 0",
        "extra0.yaml:6: spec.healthCheck.interval: must be more than 0",
    ]


def test_addresses_must_be_ip_addresses() -> None:
    bad = "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {name: x}\nspec: {region: x, gateway: {address: gw.example.com}}\n"
    assert problems(bad) == [
        "extra0.yaml:4: spec.gateway.address: expected an IPv4 or IPv6 address, got 'gw.example.com'"
    ]
    svc = doc(
        "Service", "api", "ports: [{port: 80}]\nendpoints: [{cluster: eu-west, address: db.local}]"
    )
    assert "expected an IPv4 or IPv6 address, got 'db.local'" in problems(svc)[0]


def test_gtm_ttl_is_whole_seconds_and_bounded() -> None:
    for ttl, message in (
        ("1500ms", "ttl is whole seconds in DNS, got 1500ms"),
        ("2147483648s", "must be at most 10 years"),
    ):
        gs = doc(
            "GlobalService",
            "g",
            f"name: web.gtm.example\nzone: gtm.example\nservice: web\nttl: {ttl}",
        )
        assert message in problems(gs)[0]
