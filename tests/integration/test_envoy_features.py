"""Every RoutePolicy / TrafficPolicy feature, compiled by Ubiq and proven on real Envoys.

One rig per ADS mode (SotW, Delta), shared by the module: an XdsServer fed with the compiler's
output, an Envoy in eu-west and one in us-west, and loopback backends that say who served them.
Statistical checks use binomial bounds of about 4.5 standard deviations.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controlplane.policy.loader import load_texts
from controlplane.xds.bootstrap import Mode
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.compiler import CompileOptions, NodeIdentity, compile_node_resources
from controlplane.xds.node import group_key
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import StatusRegistry
from tests.support import policy
from tests.support.backends import Backend, backends
from tests.support.envoy import EnvoyProcess, envoy
from tests.support.policy import doc, join
from tests.support.poll import wait_until
from tests.support.procs import free_port
from tests.support.xds_rig import wait_acked, xds_server_thread

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("reset_backends")]

NODES = {"eu-west": NodeIdentity("eu-west", "eu-west", "eu-west-1a"),
         "us-west": NodeIdentity("us-west", "us-west", "us-west-1a")}  # fmt: skip
BACKENDS = (
    "web-v1", "web-v2", "flaky", "slow", "shadow", "cb", "od-good", "od-bad",
    "geo-eu", "geo-us", "vault-eu", "vault-us", "hash-a", "hash-b",
    "codes", "fo-eu", "fo-us", "shadow2", "warm", "pool", "life", "zone-a", "zone-b",
    "fr-eu", "fr-us", "fr-sa",
)  # fmt: skip

HEALTH = "healthCheck: {http: {path: /healthz}, interval: 300ms, timeout: 250ms, unhealthyThreshold: 2, healthyThreshold: 1}"


def policy_text(b: dict[str, Backend], envoy_port: int, default_subset: str = "v1") -> str:
    def ep(name: str, cluster: str = "eu-west", labels: str = "{}") -> str:
        return f"{{cluster: {cluster}, address: 127.0.0.1, port: {b[name].port}, labels: {labels}}}"

    # Envoy's own listener speaks HTTP/2 (codec AUTO): the upstream of the h2 upgrade test
    h2up = f"{{cluster: eu-west, address: 127.0.0.1, port: {envoy_port}}}"

    def service(name: str, *eps: str, extra: str = "") -> str:
        return "---\n" + policy.service(name, "[{port: 8080}]", f"[{', '.join(eps)}]", extra)

    def route(name: str, rules: str) -> str:
        return "---\n" + doc("RoutePolicy", name, f"hosts: [{name}.test]\nhttp: {rules}")

    def traffic(name: str, spec: str) -> str:
        return "---\n" + doc("TrafficPolicy", name, f"{{service: {name}, {spec}}}")

    clusters = "---\n" + join(
        policy.cluster("eu-west", "eu-west-1a"), policy.cluster("us-west", "us-west-1a")
    )
    web_rules = f"""
  - {{name: exact, match: [{{path: {{exact: /exact}}}}], route: [{{service: web, subset: v2}}]}}
  - {{name: regex, match: [{{path: {{regex: "^/re/[0-9]+$"}}}}], route: [{{service: web, subset: v2}}]}}
  - {{name: header, match: [{{headers: {{x-canary: {{exact: "true"}}}}}}], route: [{{service: web, subset: v2}}]}}
  - {{name: query, match: [{{queryParams: {{version: {{exact: "2"}}}}}}], route: [{{service: web, subset: v2}}]}}
  - {{name: method, match: [{{method: POST}}], route: [{{service: web, subset: v2}}]}}
  - {{name: old, match: [{{path: {{exact: /old}}}}], redirect: {{uri: /new, responseCode: 301}}}}
  - {{name: teapot, match: [{{path: {{exact: /teapot}}}}], directResponse: {{status: 418, body: "short and stout"}}}}
  - name: api
    match: [{{path: {{prefix: /api}}}}]
    route: [{{service: web, subset: v1}}]
    rewrite: {{uri: /internal, authority: backend.internal}}
    headers:
      request: {{set: {{x-req-set: "yes"}}, add: {{x-req-add: "a"}}, remove: [x-drop]}}
      response: {{set: {{x-resp: ubiq}}, remove: [content-type]}}
  - {{name: default, route: [{{service: web, subset: {default_subset}}}]}}"""
    v1 = ep("web-v1", labels="{version: v1}")
    v2 = ep("web-v2", labels="{version: v2}")
    return "".join(
        [
            clusters,
            service("web", v1, v2, extra="subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]"),
            service("flaky", ep("flaky")),
            service("slow", ep("slow")),
            service("shadow", ep("shadow")),
            service("cb", ep("cb")),
            service("od", ep("od-good"), ep("od-bad")),
            service("geo", ep("geo-eu"), ep("geo-us", "us-west"), extra=HEALTH),
            service("vault", ep("vault-eu"), ep("vault-us", "us-west"), extra=HEALTH),
            service("hash", ep("hash-a"), ep("hash-b")),
            service("codes", ep("codes")),
            service("fo", ep("fo-eu"), ep("fo-us", "us-west")),  # one endpoint per region
            service("shadow2", ep("shadow2")),
            service("warm", ep("warm")),
            service("pool", ep("pool")),
            service("life", ep("life")),
            service("h2up", h2up),
            """---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: eu-west-b}
spec: {region: eu-west, zone: eu-west-1b}
""",
            service("zones", ep("zone-a"), ep("zone-b", "eu-west-b")),
            """---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: sa-east}
spec: {region: sa-east, zone: sa-east-1a}
""",
            # without failoverRegions, eu-west would fail over to sa-east (Placement order: names)
            service("fr", ep("fr-eu"), ep("fr-us", "us-west"), ep("fr-sa", "sa-east")),
            traffic("fr", "outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m}, locality: {failoverRegions: [us-west, sa-east]}"),
            traffic("zones", "locality: {distribute: [{from: eu-west, to: {eu-west/eu-west-1a: 80, eu-west/eu-west-1b: 20}}]}"),
            traffic("cb", "connectionPool: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 1}"),
            traffic("od", "outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50}"),
            traffic("hash", "loadBalancer: {algorithm: RING_HASH, hashKey: {header: x-user-id}}"),
            # Istio's locality-failover DestinationRule: no maxEjectionPercent
            traffic("fo", "outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m}"),
            traffic("warm", "loadBalancer: {algorithm: ROUND_ROBIN, warmupDuration: 10s}"),
            traffic("pool", "connectionPool: {idleTimeout: 300ms, tcpKeepalive: {time: 10s, interval: 5s, probes: 3}}"),
            traffic("life", "connectionPool: {maxConnectionDuration: 300ms, idleTimeout: 60s}"),
            traffic("h2up", "connectionPool: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 50}"),
            "---\n" + doc("Placement", "vault", "{service: vault, residency: {regions: [eu-west]}}"),
            route("web", web_rules),
            route("split", "[{route: [{service: web, subset: v1, weight: 90}, {service: web, subset: v2, weight: 10}]}]"),
            route("retry", "[{route: [{service: flaky}], retries: {attempts: 3, retryOn: [5xx]}}]"),
            route("noretry", "[{route: [{service: flaky}]}]"),
            route("timeout", "[{route: [{service: slow}], timeout: 300ms}]"),
            route("abort", "[{route: [{service: web, subset: v1}], fault: {abort: {httpStatus: 503, percent: 50}}}]"),
            route("delay", "[{route: [{service: web, subset: v1}], fault: {delay: {fixedDelay: 400ms, percent: 100}}}]"),
            route("mirror", "[{route: [{service: web, subset: v1}], mirror: {service: shadow, percent: 100}}]"),
            route("cb", "[{route: [{service: cb}]}]"),
            route("od", "[{route: [{service: od}]}]"),
            route("geo", "[{route: [{service: geo}]}]"),
            route("vault", "[{route: [{service: vault}]}]"),
            route("hash", "[{route: [{service: hash}]}]"),
            route("codes", '[{route: [{service: codes}], retries: {attempts: 2, retryOn: [reset, "409"]}}]'),
            route("nocodes", "[{route: [{service: codes}]}]"),
            route("forever", "[{route: [{service: slow}]}]"),
            route("fo", "[{route: [{service: fo}]}]"),
            route("warm", "[{route: [{service: warm}]}]"),
            route("pool", "[{route: [{service: pool}]}]"),
            route("life", "[{route: [{service: life}]}]"),
            route("h2up", "[{route: [{service: h2up}], rewrite: {authority: web.test}}]"),
            route("zones", "[{route: [{service: zones}]}]"),
            route("fr", "[{route: [{service: fr}]}]"),
            route("mirrors", "[{route: [{service: web, subset: v1}], mirrors: [{service: shadow, percent: 100}, {service: shadow2, percent: 50}]}]"),
            ORDERED.format(name="ordered", order="firstMatch"),
            ORDERED.format(name="precedence", order="precedence"),
            route("extras", EXTRAS),
            """---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {name: authority}
spec:
  hosts: [authority.test, alt.authority.test]
  http:
  - {match: [{authority: {prefix: alt.}}], route: [{service: web, subset: v2}]}
  - {route: [{service: web, subset: v1}]}
""",
        ]
    )  # fmt: skip


# the same two rules in Istio's habit: the header rule first, the longer prefix second
ORDERED = """---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: {name}}}
spec:
  hosts: [{name}.test]
  ruleOrder: {order}
  http:
  - {{name: canary, match: [{{headers: {{x-canary: {{exact: "true"}}}}}}], route: [{{service: web, subset: v2}}]}}
  - {{name: api, match: [{{path: {{prefix: /api}}}}], route: [{{service: web, subset: v1}}]}}
"""

EXTRAS = """
  - name: nocase
    match: [{path: {prefix: /CaSe}, ignoreUriCase: true}]
    route: [{service: web, subset: v2}]
  - name: cors
    match: [{path: {prefix: /cors}}]
    route: [{service: web, subset: v1}]
    corsPolicy: {allowOrigins: [{exact: "https://app.example"}], allowMethods: [GET, POST], allowHeaders: [x-token], exposeHeaders: [x-backend], maxAge: 1m, allowCredentials: true}
  - name: split
    route:
    - {service: web, subset: v1, weight: 50, headers: {request: {set: {x-dest: v1}}, response: {set: {x-dest-resp: one}}}}
    - {service: web, subset: v2, weight: 50, headers: {request: {set: {x-dest: v2}}}}"""


class Rig:
    def __init__(self, mode: Mode, cache: SnapshotCache, status: StatusRegistry,
                 backends: dict[str, Backend], ports: dict[str, int]) -> None:  # fmt: skip
        self.mode = mode
        self.cache = cache
        self.status = status
        self.backends = backends
        self.ports = ports
        self.options = CompileOptions(listener_address="127.0.0.1", listener_ports=ports)
        self.envoys: dict[str, EnvoyProcess] = {}
        self.clients: dict[str, httpx.Client] = {}

    def publish(self, **kwargs: str) -> dict[str, Snapshot]:
        text = policy_text(self.backends, self.ports["eu-west"], **kwargs)
        model = load_texts([("features.yaml", text)])
        out = {}
        for cluster, node in NODES.items():
            snapshot = Snapshot.build(compile_node_resources(model, node, self.options))
            snapshot.check_consistent()
            self.cache.set_snapshot(group_key(cluster), snapshot)
            out[cluster] = snapshot
        return out

    def wait_acked(self, snapshots: dict[str, Snapshot]) -> None:
        for cluster, snapshot in snapshots.items():
            wait_acked(self.status, self.envoys[cluster].node_id, snapshot)

    def get(
        self, host: str, path: str = "/", cluster: str = "eu-west", **kw: object
    ) -> httpx.Response:
        return self.request("GET", host, path, cluster, **kw)

    def request(self, method: str, host: str, path: str = "/", cluster: str = "eu-west",
                **kw: object) -> httpx.Response:  # fmt: skip
        headers = {"host": f"{host}.test", **kw.pop("headers", {})}  # type: ignore[dict-item]
        return self.clients[cluster].request(method, path, headers=headers, **kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def make_rig(tmp_path: Path, mode: Mode) -> Iterator[Rig]:
    cache, status = SnapshotCache(), StatusRegistry()
    ports = {cluster: free_port() for cluster in NODES}
    with (
        backends(*BACKENDS) as started,
        xds_server_thread(XdsServer(cache, status=status)) as xds,
        contextlib.ExitStack() as stack,
    ):
        rig = Rig(mode, cache, status, started, ports)
        snapshots = rig.publish()
        for cluster, node in NODES.items():
            rig.envoys[cluster] = stack.enter_context(
                envoy(
                    tmp_path,
                    xds_port=xds.port,
                    mode=mode,
                    node_id=f"{cluster}-{mode}",
                    cluster=cluster,
                    region=node.region,
                    zone=node.zone,
                )
            )
            rig.clients[cluster] = stack.enter_context(
                httpx.Client(base_url=f"http://127.0.0.1:{ports[cluster]}", timeout=10)
            )
        rig.wait_acked(snapshots)
        wait_until(lambda: rig.get("web").status_code == 200, 20, "listener serving")
        yield rig


@pytest.fixture(scope="module")
def rig(ads_mode: Mode, rig_dir: Path) -> Iterator[Rig]:
    with make_rig(rig_dir, ads_mode) as r:
        yield r


def served_by(reply: httpx.Response) -> str:
    return str(reply.headers.get("x-backend", ""))


def within(count: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    sd = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= sigmas * sd


def test_routing_by_path_header_query_method(rig: Rig) -> None:
    assert served_by(rig.get("web", "/")) == "web-v1"
    assert served_by(rig.get("web", "/exact")) == "web-v2"
    assert served_by(rig.get("web", "/exact/not")) == "web-v1"
    assert served_by(rig.get("web", "/re/42")) == "web-v2"
    assert served_by(rig.get("web", "/re/x")) == "web-v1"
    assert served_by(rig.get("web", "/", headers={"x-canary": "true"})) == "web-v2"
    assert served_by(rig.get("web", "/", headers={"x-canary": "no"})) == "web-v1"
    assert served_by(rig.get("web", "/?version=2")) == "web-v2"
    assert served_by(rig.get("web", "/?version=1")) == "web-v1"
    assert served_by(rig.request("POST", "web", "/")) == "web-v2"
    assert rig.get("nowhere").status_code == 404


def test_redirect_direct_response_rewrite_and_headers(rig: Rig) -> None:
    moved = rig.get("web", "/old")
    assert moved.status_code == 301
    assert moved.headers["location"].endswith("/new")
    teapot = rig.get("web", "/teapot")
    assert (teapot.status_code, teapot.text) == (418, "short and stout")

    reply = rig.get("web", "/api/orders", headers={"x-drop": "1", "x-req-add": "z"})
    seen = reply.json()
    assert served_by(reply) == "web-v1"
    assert seen["path"] == "/internal/orders"
    assert seen["host"] == "backend.internal"
    assert seen["headers"]["x-req-set"] == "yes"
    assert seen["headers"]["x-req-add"] == "z,a"  # appended, not replaced
    assert "x-drop" not in seen["headers"]
    assert reply.headers["x-resp"] == "ubiq"
    assert "content-type" not in reply.headers


def test_weighted_split_90_10(rig: Rig) -> None:
    n = 1000
    counts = {"web-v1": 0, "web-v2": 0}
    for _ in range(n):
        counts[served_by(rig.get("split"))] += 1
    assert counts["web-v1"] + counts["web-v2"] == n
    assert within(counts["web-v2"], n, 0.10), counts


def test_retries_hide_a_flaky_backend(rig: Rig) -> None:
    rig.backends["flaky"].fail_every = 2
    control = [rig.get("noretry").status_code for _ in range(20)]
    assert control.count(503) == 10  # every other request fails without retries
    replies = [rig.get("retry").status_code for _ in range(40)]
    assert replies == [200] * 40
    assert rig.envoys["eu-west"].stat("cluster.flaky.upstream_rq_retry") >= 20


def test_timeout_gives_504(rig: Rig) -> None:
    rig.backends["slow"].delay = 1.5
    reply = rig.get("timeout")
    assert reply.status_code == 504
    assert "upstream request timeout" in reply.text


def test_abort_fault_at_half(rig: Rig) -> None:
    n = 400
    statuses = [rig.get("abort").status_code for _ in range(n)]
    assert set(statuses) <= {200, 503}
    assert within(statuses.count(503), n, 0.5), statuses.count(503)


def test_delay_fault(rig: Rig) -> None:
    for _ in range(3):
        started = time.monotonic()
        assert rig.get("delay").status_code == 200
        # Envoy's timers tick in whole milliseconds: allow 20 ms below the configured 400 ms
        assert time.monotonic() - started >= 0.38
    assert rig.envoys["eu-west"].stat("http.ubiq_http.fault.delays_injected") >= 3


def test_mirroring(rig: Rig) -> None:
    for _ in range(20):
        assert served_by(rig.get("mirror")) == "web-v1"
    wait_until(lambda: rig.backends["shadow"].count >= 20, 10, "20 mirrored requests")
    assert rig.backends["web-v1"].count == 20


def test_circuit_breaker_overflow(rig: Rig) -> None:
    rig.backends["cb"].delay = 0.5
    port = rig.ports["eu-west"]

    def one(_: int) -> int:
        with httpx.Client(timeout=10) as client:
            url = f"http://127.0.0.1:{port}/"
            return client.get(url, headers={"host": "cb.test"}).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(one, range(12)))
    assert 200 in statuses and 503 in statuses, statuses
    assert rig.envoys["eu-west"].stat("cluster.cb.upstream_rq_pending_overflow") > 0


def test_outlier_detection_ejects_failing_endpoint(rig: Rig) -> None:
    rig.backends["od-bad"].status = 500
    proxy = rig.envoys["eu-west"]
    for _ in range(40):
        rig.get("od")
        if proxy.stat("cluster.od.outlier_detection.ejections_enforced_total") >= 1:
            break
    assert proxy.stat("cluster.od.outlier_detection.ejections_enforced_total") >= 1
    replies = [rig.get("od") for _ in range(20)]
    assert {(r.status_code, served_by(r)) for r in replies} == {(200, "od-good")}


def test_ring_hash_is_sticky_per_key(rig: Rig) -> None:
    seen: dict[str, set[str]] = {}
    for user in range(20):
        for _ in range(5):
            reply = rig.get("hash", headers={"x-user-id": f"user-{user}"})
            seen.setdefault(f"user-{user}", set()).add(served_by(reply))
    assert all(len(backends) == 1 for backends in seen.values()), seen
    assert set().union(*seen.values()) == {"hash-a", "hash-b"}


def test_failover_to_another_region_and_back(rig: Rig) -> None:
    assert served_by(rig.get("geo")) == "geo-eu"
    assert served_by(rig.get("geo", cluster="us-west")) == "geo-us"
    rig.backends["geo-eu"].status = 503
    wait_until(lambda: served_by(rig.get("geo")) == "geo-us", 15, "failover to us-west")
    assert [served_by(rig.get("geo")) for _ in range(10)] == ["geo-us"] * 10
    rig.backends["geo-eu"].status = 200
    wait_until(lambda: served_by(rig.get("geo")) == "geo-eu", 15, "return to eu-west")


def test_residency_never_fails_over(rig: Rig) -> None:
    assert served_by(rig.get("vault")) == "vault-eu"
    assert rig.get("vault", cluster="us-west").status_code == 503  # outside the boundary
    rig.backends["vault-eu"].status = 503
    proxy = rig.envoys["eu-west"]
    wait_until(
        lambda: proxy.stat("cluster.vault.membership_healthy") == 0, 15, "vault-eu unhealthy"
    )
    replies = [rig.get("vault") for _ in range(10)]
    assert {r.status_code for r in replies} == {503}
    assert rig.backends["vault-us"].count == 0


def test_live_update_without_restart(rig: Rig) -> None:
    proxy = rig.envoys["eu-west"]
    uptime = proxy.stat("server.uptime")
    try:
        rig.wait_acked(rig.publish(default_subset="v2"))
        wait_until(lambda: served_by(rig.get("web")) == "web-v2", 15, "default route to v2")
        assert proxy.stat("server.uptime") >= uptime
        assert proxy.stat("server.hot_restart_generation") == 0
    finally:
        rig.wait_acked(rig.publish())
    wait_until(lambda: served_by(rig.get("web")) == "web-v1", 15, "default route back to v1")


def test_retry_on_a_status_code_istio_style(rig: Rig) -> None:
    rig.backends["codes"].fail_every = 2
    rig.backends["codes"].fail_status = 409
    control = [rig.get("nocodes").status_code for _ in range(10)]
    assert control.count(409) == 5  # every other request fails without retries
    replies = [rig.get("codes").status_code for _ in range(20)]
    assert replies == [200] * 20
    assert rig.envoys["eu-west"].stat("cluster.codes.upstream_rq_retry") >= 10


def route_timeouts(proxy: EnvoyProcess) -> dict[str, str]:
    """Route name -> the timeout Envoy holds for it, read from Envoy's own config dump."""
    dump = proxy.config_dump("dynamic_route_configs")
    out: dict[str, str] = {}
    for config in dump["configs"]:
        for vhost in config["route_config"]["virtual_hosts"]:
            for r in vhost["routes"]:
                if "route" in r:
                    out[r["name"]] = r["route"].get("timeout", "unset")
    return out


def test_a_route_without_timeout_waits_longer_than_envoys_15s_default(rig: Rig) -> None:
    timeouts = route_timeouts(rig.envoys["eu-west"])
    assert timeouts["forever/0"] == "0s" and timeouts["timeout/0"] == "0.300s"
    assert "unset" not in timeouts.values()  # every route states its timeout
    rig.backends["slow"].delay = 15.5  # Envoy's default would answer 504 at 15 s
    reply = rig.get("forever", timeout=30)
    assert (reply.status_code, served_by(reply)) == (200, "slow")


def test_outlier_detection_fails_over_with_one_endpoint_per_region(rig: Rig) -> None:
    proxy = rig.envoys["eu-west"]
    assert served_by(rig.get("fo")) == "fo-eu"
    rig.backends["fo-eu"].status = 500
    # the first 500 ejects fo-eu (Envoy applies the ejection on its main thread, so a request or
    # two may still reach it); with 2 hosts, 10 % would forbid it: always_eject_one_host allows it
    wait_until(lambda: served_by(rig.get("fo")) == "fo-us", 10, "failover to us-west")
    assert proxy.stat("cluster.fo.outlier_detection.ejections_enforced_total") == 1
    assert proxy.stat("cluster.fo.outlier_detection.ejections_overflow") == 0
    assert [served_by(rig.get("fo")) for _ in range(10)] == ["fo-us"] * 10


def test_first_match_keeps_the_written_order(rig: Rig) -> None:
    both = {"x-canary": "true"}
    assert served_by(rig.get("ordered", "/api/x", headers=both)) == "web-v2"  # header rule first
    assert served_by(rig.get("precedence", "/api/x", headers=both)) == "web-v1"  # longer prefix
    assert served_by(rig.get("ordered", "/api/x")) == "web-v1"
    assert served_by(rig.get("precedence", "/other", headers=both)) == "web-v2"


def test_ignore_uri_case_and_authority_match(rig: Rig) -> None:
    assert served_by(rig.get("extras", "/case/x")) == "web-v2"
    assert served_by(rig.get("extras", "/CASE")) == "web-v2"
    assert served_by(rig.get("authority", headers={"host": "alt.authority.test"})) == "web-v2"
    assert served_by(rig.get("authority")) == "web-v1"


def test_cors_policy(rig: Rig) -> None:
    preflight = {
        "origin": "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "x-token",
    }
    reply = rig.request("OPTIONS", "extras", "/cors", headers=preflight)
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in reply.headers["access-control-allow-methods"]
    assert reply.headers["access-control-allow-headers"] == "x-token"
    assert reply.headers["access-control-max-age"] == "60"
    assert reply.headers["access-control-allow-credentials"] == "true"
    assert rig.backends["web-v1"].count == 0  # Envoy answered the preflight itself
    simple = rig.get("extras", "/cors", headers={"origin": "https://app.example"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert simple.headers["access-control-expose-headers"] == "x-backend"
    other = rig.get("extras", "/cors", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_header_changes_per_destination(rig: Rig) -> None:
    seen: dict[str, set[tuple[str, str]]] = {"web-v1": set(), "web-v2": set()}
    for _ in range(40):
        reply = rig.get("extras", "/split")
        seen[served_by(reply)].add(
            (reply.json()["headers"].get("x-dest", ""), reply.headers.get("x-dest-resp", ""))
        )
    assert seen == {"web-v1": {("v1", "one")}, "web-v2": {("v2", "")}}


def test_several_mirrors_with_percentages(rig: Rig) -> None:
    n = 200
    for _ in range(n):
        assert served_by(rig.get("mirrors")) == "web-v1"
    wait_until(lambda: rig.backends["shadow"].count >= n, 10, f"{n} mirrored requests")
    proxy = rig.envoys["eu-west"]
    wait_until(
        lambda: (
            proxy.stat("cluster.shadow2.upstream_rq_completed") == rig.backends["shadow2"].count
        ),
        10,
        "shadow2's mirrored requests completed",
    )
    assert within(rig.backends["shadow2"].count, n, 0.5), rig.backends["shadow2"].count


def test_slow_start_is_configured_and_serves(rig: Rig) -> None:
    dump = rig.envoys["eu-west"].config_dump("dynamic_active_clusters")
    (warm,) = [c["cluster"] for c in dump["configs"] if c["cluster"]["name"] == "warm"]
    assert warm["round_robin_lb_config"]["slow_start_config"]["slow_start_window"] == "10s"
    assert [served_by(rig.get("warm")) for _ in range(5)] == ["warm"] * 5


def test_upstream_idle_timeout_max_duration_and_keepalive(rig: Rig) -> None:
    proxy = rig.envoys["eu-west"]
    dump = proxy.config_dump("dynamic_active_clusters")
    (pool,) = [c["cluster"] for c in dump["configs"] if c["cluster"]["name"] == "pool"]
    keepalive = pool["upstream_connection_options"]["tcp_keepalive"]
    assert keepalive == {"keepalive_probes": 3, "keepalive_time": 10, "keepalive_interval": 5}
    assert served_by(rig.get("pool")) == "pool"
    wait_until(lambda: proxy.stat("cluster.pool.upstream_cx_idle_timeout") >= 1, 10, "idle close")
    assert served_by(rig.get("life")) == "life"
    wait_until(
        lambda: proxy.stat("cluster.life.upstream_cx_max_duration_reached") >= 1,
        10,
        "connection closed at its maximum duration",
    )


def test_h2_upgrade_and_max_concurrent_streams(rig: Rig) -> None:
    proxy = rig.envoys["eu-west"]
    reply = rig.get("h2up", "/")  # -> cluster h2up over HTTP/2 -> this Envoy again as web.test
    assert (reply.status_code, served_by(reply)) == (200, "web-v1")
    assert proxy.stat("cluster.h2up.upstream_cx_http2_total") >= 1
    assert proxy.stat("cluster.h2up.upstream_cx_http1_total") == 0
    dump = proxy.config_dump("dynamic_active_clusters")
    (h2up,) = [c["cluster"] for c in dump["configs"] if c["cluster"]["name"] == "h2up"]
    options = h2up["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert options["explicit_http_config"]["http2_protocol_options"] == {
        "max_concurrent_streams": 50
    }


def test_distribute_by_zone_within_a_region(rig: Rig) -> None:
    n = 1000
    in_b = sum(served_by(rig.get("zones")) == "zone-b" for _ in range(n))
    assert within(in_b, n, 0.20), in_b


def test_failover_regions_order_the_failover(rig: Rig) -> None:
    assert served_by(rig.get("fr")) == "fr-eu"
    rig.backends["fr-eu"].status = 500
    wait_until(lambda: served_by(rig.get("fr")) != "fr-eu", 10, "failover out of eu-west")
    assert [served_by(rig.get("fr")) for _ in range(10)] == ["fr-us"] * 10
    assert rig.backends["fr-sa"].count == 0
