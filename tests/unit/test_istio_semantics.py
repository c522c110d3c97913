"""Issue 7: the traffic semantics Istio users expect, at the model, compiler and CLI level.

Each behaviour is also proven through real Envoy (tests/integration/test_envoy_features.py) or a
real grpcio client (tests/integration/test_xds_proxyless_grpc_features.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from controlplane.policy.route import HttpMatch, Retries
from controlplane.policy.route_order import effective_order, may_overlap
from controlplane.xds.compiler.routes import CORS_FILTER
from tests.support.policy import doc, load, problems
from tests.support.xds_expected import duration, model, route_policy, routes_of

ROOT = Path(__file__).resolve().parents[2]


# --- 1. retry on status codes ------------------------------------------------------------------


def test_retry_on_takes_istio_status_codes() -> None:
    r = Retries.model_validate({"attempts": 2, "retryOn": ["5xx", "503", 409]})
    assert r.retry_on == ("5xx", "retriable-status-codes")
    assert r.retriable_status_codes == (503, 409)
    istio = Retries.model_validate({"attempts": 2, "retryOn": "gateway-error,connect-failure,409"})
    assert istio.conditions() == ("gateway-error", "connect-failure", "retriable-status-codes")
    explicit = Retries.model_validate({"attempts": 1, "retriableStatusCodes": [502]})
    assert explicit.conditions() == ("5xx", "reset", "connect-failure", "retriable-status-codes")


def test_retry_policy_compiles_retriable_status_codes() -> None:
    (route,) = routes_of(
        model(
            route_policy(
                '- {route: [{service: web}], retries: {attempts: 2, retryOn: [5xx, "503", "409"]}}'
            )
        )
    )
    policy = route.route.retry_policy
    assert policy.retry_on == "5xx,retriable-status-codes"
    assert list(policy.retriable_status_codes) == [409, 503]


def test_retriable_status_codes_without_codes_is_a_located_error() -> None:
    out = problems(
        doc(
            "RoutePolicy",
            "r",
            "hosts: [r.example]\nhttp:\n- route: [{service: web}]\n  retries: {attempts: 2, retryOn: [retriable-status-codes]}",
        )
    )
    assert out == [
        "extra0.yaml:8: spec.http[0].retries: retryOn has retriable-status-codes but no status"
        ' code: list the codes in retryOn (e.g. [5xx, "503"]) or in retriableStatusCodes'
    ]


def test_a_bad_retry_on_entry_is_still_located() -> None:
    out = problems(
        doc(
            "RoutePolicy",
            "r",
            'hosts: [r.example]\nhttp:\n- route: [{service: web}]\n  retries: {attempts: 2, retryOn: [5xx, "503", bogus]}',
        )
    )
    assert len(out) == 1 and out[0].startswith("extra0.yaml:8: spec.http[0].retries.retryOn[2]:")


# --- 2. default route timeout ------------------------------------------------------------------


def test_every_route_states_its_timeout_and_none_means_disabled() -> None:
    routes = routes_of(
        model(
            route_policy("""
            - {match: [{path: {prefix: /slow}}], route: [{service: web}], timeout: 2s}
            - {route: [{service: web}]}
            """)
        )
    )
    assert [(r.name, r.route.timeout) for r in routes] == [
        ("web/0", duration(2000)),
        ("web/1", duration(0)),
    ]
    assert all(r.route.HasField("timeout") for r in routes)
    assert not routes[0].route.HasField("max_stream_duration")  # HTTP: Envoy's timeout only


# --- 5. rule order -----------------------------------------------------------------------------

ISTIO_ORDER = """
- {name: canary, match: [{headers: {x-canary: {exact: "true"}}}], route: [{service: web, subset: v2}]}
- {name: api, match: [{path: {prefix: /api}}], route: [{service: web, subset: v1}]}
- {name: old, match: [{path: {exact: /old}}], route: [{service: web, subset: v1}]}
"""


def test_precedence_is_the_default_and_first_match_keeps_the_written_order() -> None:
    precedence = routes_of(model(route_policy(ISTIO_ORDER)))
    assert [r.name for r in precedence] == ["web/old", "web/api", "web/canary"]
    first = routes_of(
        model(route_policy(ISTIO_ORDER).replace("  http:", "  ruleOrder: firstMatch\n  http:"))
    )
    assert [r.name for r in first] == ["web/canary", "web/api", "web/old"]


def test_validate_warns_where_precedence_changes_the_outcome(tmp_path: Path) -> None:
    m = load(
        doc("RoutePolicy", "r", "hosts: [r.example]\nhttp:" + ISTIO_ORDER.replace("\n-", "\n  -"))
    )
    assert [str(w) for w in m.warnings] == [
        "extra0.yaml:8: spec.http[1]: r/api is tried before r/canary, written above it: rules go"
        " by precedence, the most specific first (effective order: r/old, r/api, r/canary);"
        " set ruleOrder: firstMatch to keep the written order"
    ]
    quiet = load(
        doc(
            "RoutePolicy",
            "r",
            "hosts: [r.example]\nruleOrder: firstMatch\nhttp:"
            + ISTIO_ORDER.replace("\n-", "\n  -"),
        )
    )
    assert quiet.warnings == ()


def test_reordering_that_cannot_change_a_request_is_not_warned() -> None:
    exact, prefix = (
        HttpMatch.model_validate({"path": {"exact": "/old"}}),
        HttpMatch.model_validate({"path": {"prefix": "/api"}}),
    )
    assert not may_overlap(prefix, exact)
    assert may_overlap(HttpMatch.model_validate({"path": {"exact": "/api/x"}}), prefix)
    m = load(
        doc(
            "RoutePolicy",
            "r",
            "hosts: [r.example]\nhttp:\n- {match: [{path: {prefix: /api}}], route: [{service: web}]}\n- {match: [{path: {exact: /old}}], route: [{service: web}]}",
        )
    )
    assert [e.name for e in effective_order(m.route_policies["r"])] == ["r/1", "r/0"]
    assert m.warnings == ()


def test_render_shows_the_effective_order(tmp_path: Path) -> None:
    (tmp_path / "set.yaml").write_text(
        (ROOT / "tests/support/policy.py").read_text().split('BASE = """\\\n')[1].split('"""')[0]
        + "---\n"
        + doc("RoutePolicy", "r", "hosts: [r.example]\nhttp:" + ISTIO_ORDER.replace("\n-", "\n  -"))
    )
    out = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "render", "--cluster", "eu-west", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=True, cwd=ROOT,
    )  # fmt: skip
    import json

    order = json.loads(out.stdout)["routeOrder"]["r"]
    assert order == {
        "ruleOrder": "precedence",
        "effective": ["r/old", "r/api", "r/canary"],
        "written": ["r/canary", "r/api", "r/old"],
    }
    check = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "validate", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=True, cwd=ROOT,
    )  # fmt: skip
    assert check.stderr.startswith(f"warning: {tmp_path}/set.yaml:")
    assert "set ruleOrder: firstMatch" in check.stderr


# --- 6. failoverPriority renamed ---------------------------------------------------------------


def test_failover_priority_is_an_error_naming_failover_regions() -> None:
    out = problems(
        doc("TrafficPolicy", "t", "service: web\nlocality: {failoverPriority: [us-west]}")
    )
    assert out == [
        "extra0.yaml:6: spec.locality.failoverPriority: renamed to failoverRegions (an ordered"
        " list of regions); Istio's failoverPriority is a list of label keys, which Ubiq does"
        " not use"
    ]


# --- 4. proxyless gRPC: what they ignore is warned -------------------------------------------

GRPC = """\
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {name: pay}
spec:
  ports: [{port: 9000, protocol: GRPC}]
  endpoints: [{cluster: eu-west, address: 127.0.1.9}]
"""


def test_validate_warns_what_proxyless_grpc_clients_ignore() -> None:
    m = load(
        GRPC,
        doc(
            "RoutePolicy",
            "pay",
            """
            hosts: [pay.example]
            http:
            - route: [{service: pay}]
              retries: {attempts: 2, retryOn: [unavailable, 5xx], perTryTimeout: 1s}
              mirror: {service: pay}
              fault: {abort: {httpStatus: 503, percent: 1}}
              timeout: 2s
            """,
        ),
        doc(
            "TrafficPolicy",
            "pay",
            "service: pay\noutlierDetection: {consecutive5xxErrors: 2}\nloadBalancer: {algorithm: MAGLEV, hashKey: {sourceIp: true}}",
        ),
    )
    warnings = [str(w) for w in m.warnings]
    assert warnings == [
        "extra1.yaml:8: spec.http[0].retries.retryOn: proxyless gRPC clients ignore retryOn 5xx (they retry on gRPC status names)",
        "extra1.yaml:8: spec.http[0].retries.perTryTimeout: proxyless gRPC clients ignore perTryTimeout",
        "extra1.yaml:9: spec.http[0].mirror: proxyless gRPC clients ignore mirroring",
        "extra2.yaml:6: spec.outlierDetection: proxyless gRPC clients ignore consecutive-error ejection (they implement failurePercentage)",
        "extra2.yaml:7: spec.loadBalancer.algorithm: proxyless gRPC clients ignore MAGLEV",
        "extra2.yaml:7: spec.loadBalancer.hashKey: proxyless gRPC clients ignore hash keys other than header",
    ]


def test_grpc_routes_carry_the_deadline_for_proxyless_clients() -> None:
    m = load(
        GRPC,
        doc(
            "RoutePolicy",
            "pay",
            "hosts: [pay.example]\nhttp:\n- {route: [{service: pay}], timeout: 2s}",
        ),
    )
    from controlplane.xds.compiler import NodeIdentity, compile_node_resources
    from controlplane.xds.resources import ROUTE

    (config,) = compile_node_resources(m, NodeIdentity("eu-west", "eu-west"))[ROUTE].values()
    (vhost,) = [v for v in config.virtual_hosts if v.name == "pay"]  # type: ignore[attr-defined]
    action = vhost.routes[0].route
    assert action.timeout == duration(2000)
    assert action.max_stream_duration.max_stream_duration == duration(2000)  # gRFC A31


# --- more of Istio's surface -----------------------------------------------------------------


def test_cors_mirrors_and_headers_per_destination_compile() -> None:
    (route,) = routes_of(
        model(
            route_policy("""
            - route:
              - {service: web, subset: v1, weight: 60, headers: {request: {set: {x-dest: v1}}}}
              - {service: web, subset: v2, weight: 40}
              mirrors: [{service: web, subset: v2, percent: 10}, {service: web, percent: 1.5}]
              corsPolicy: {allowOrigins: [{prefix: "https://"}], allowMethods: [GET], maxAge: 24h}
            """)
        )
    )
    (v1, v2) = route.route.weighted_clusters.clusters
    assert [h.header.key for h in v1.request_headers_to_add] == ["x-dest"]
    assert not v2.request_headers_to_add
    assert [
        (m.cluster, m.runtime_fraction.default_value.numerator)
        for m in route.route.request_mirror_policies
    ] == [
        ("web|v2", 100_000),
        ("web", 15_000),
    ]
    assert CORS_FILTER in route.typed_per_filter_config


def test_mirror_and_mirrors_together_is_an_error() -> None:
    out = problems(
        doc(
            "RoutePolicy",
            "r",
            "hosts: [r.example]\nhttp:\n- route: [{service: web}]\n  mirror: {service: web}\n  mirrors: [{service: web}]",
        )
    )
    assert out == ["extra0.yaml:7: spec.http[0]: set mirror or mirrors, not both"]


def test_ignore_uri_case_with_a_regex_is_an_error() -> None:
    out = problems(
        doc(
            "RoutePolicy",
            "r",
            'hosts: [r.example]\nhttp:\n- match: [{path: {regex: "^/a$"}, ignoreUriCase: true}]\n  route: [{service: web}]',
        )
    )
    assert out == [
        "extra0.yaml:7: spec.http[0].match[0]: ignoreUriCase applies to exact and prefix paths; write (?i) in a regex"
    ]


def test_distribute_to_zones_within_a_region() -> None:
    from controlplane.xds.compiler import NodeIdentity, compile_node_resources
    from controlplane.xds.resources import ENDPOINT

    zones = """\
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: eu-west-b}
spec: {region: eu-west, zone: eu-west-1b}
---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: eu-west-a}
spec: {region: eu-west, zone: eu-west-1a}
---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {name: z}
spec:
  ports: [{port: 80}]
  endpoints:
  - {cluster: eu-west-a, address: 127.0.2.1}
  - {cluster: eu-west-b, address: 127.0.2.2}
  - {cluster: eu-west-b, address: 127.0.2.3}
  - {cluster: us-west, address: 127.0.2.4}
"""
    spec = "service: z\nlocality: {distribute: [{from: eu-west/eu-west-1a, to: {eu-west/eu-west-1b: 30, us-west: 70}}, {from: eu-west, to: {eu-west: 100}}]}"
    m = load(zones, doc("TrafficPolicy", "z", spec))
    node = NodeIdentity("eu-west-a", "eu-west", "eu-west-1a")
    cla = compile_node_resources(m, node)[ENDPOINT]["z"]
    weights = {g.locality.sub_zone: g.load_balancing_weight.value for g in cla.endpoints}  # type: ignore[attr-defined]
    assert weights == {"eu-west-b": 30_000, "us-west": 70_000}  # the zone's rule wins
    other = compile_node_resources(m, NodeIdentity("eu-west", "eu-west", "eu-west-1c"))[ENDPOINT][
        "z"
    ]
    shares = {g.locality.sub_zone: g.load_balancing_weight.value for g in other.endpoints}  # type: ignore[attr-defined]
    assert shares == {"eu-west-a": 33_333, "eu-west-b": 66_667}  # the region's, by endpoint weight


def test_a_zone_no_cluster_is_in_is_a_located_error() -> None:
    spec = "service: web\nlocality: {distribute: [{from: eu-west, to: {eu-west/eu-west-9z: 100}}]}"
    assert problems(doc("TrafficPolicy", "t", spec)) == [
        "extra0.yaml:6: spec.locality.distribute[0].to.eu-west/eu-west-9z: no cluster of region"
        " 'eu-west' is in zone 'eu-west-9z' (zones: none)"
    ]
