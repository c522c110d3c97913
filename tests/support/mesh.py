"""A small live mesh for observability tests: Ubiq (xDS, GTM, API) in-process, one real Envoy per
cluster on its own gateway address, real HTTP backends, and a real Prometheus scraping every
Envoy's /stats/prometheus and Ubiq's /metrics once a second.

Two clusters in two regions (eu-west, us-west); ``checkout`` has subsets v1/v2 split 90/10, a
connection pool and outlier detection; ``catalog`` is plain; ``checkout.gtm.example`` is a
GlobalService health-checked through the gateways. Every port is free-drawn, and the gateways
take random 127.x.y.1 addresses, so several runs (and other tests) share the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import httpx

from controlplane.demo.envoys import EnvoyProcess, start_envoy
from controlplane.demo.envoys import wait_ready as wait_envoy
from controlplane.ports import free_port
from controlplane.prometheus.config import ScrapeJob, ScrapeTarget, envoy_job, render_config
from controlplane.prometheus.process import (
    PrometheusProcess,
    start_prometheus,
    wait_for_series,
)
from controlplane.prometheus.process import wait_ready as wait_prometheus
from controlplane.serve import ServeOptions, Ubiq
from controlplane.xds.compiler.options import CompileOptions
from tests.support.backends import Backend
from tests.support.procs import require_binary
from tests.support.prometheus import prometheus

REGIONS = ("eu-west", "us-west")
GTM_NAME = "checkout.gtm.example"
UBIQ_JOB = "ubiq"
RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "rules" / "ubiq.rules.yml"

POLICY = """\
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {{name: eu-west}}
spec: {{region: eu-west, zone: eu-west-1a, costWeight: {eu_cost}, labels: {{tier: primary}}, gateway: {{address: {eu_gw}, port: {eu_port}}}}}
---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {{name: us-west}}
spec: {{region: us-west, zone: us-west-1a, costWeight: {us_cost}, labels: {{tier: primary}}, gateway: {{address: {us_gw}, port: {us_port}}}}}
---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: checkout}}
spec:
  ports: [{{name: http, port: 8080, protocol: HTTP}}]
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  endpoints:
  - {{cluster: eu-west, address: 127.0.0.1, port: {checkout_eu_v1}, labels: {{version: v1}}}}
  - {{cluster: eu-west, address: 127.0.0.1, port: {checkout_eu_v2}, labels: {{version: v2}}}}
  - {{cluster: us-west, address: 127.0.0.1, port: {checkout_us_v1}, labels: {{version: v1}}}}
  - {{cluster: us-west, address: 127.0.0.1, port: {checkout_us_v2}, labels: {{version: v2}}}}
---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: catalog}}
spec:
  ports: [{{name: http, port: 8080, protocol: HTTP}}]
  endpoints:
  - {{cluster: eu-west, address: 127.0.0.1, port: {catalog_eu}}}
  - {{cluster: us-west, address: 127.0.0.1, port: {catalog_us}}}
---
apiVersion: ubiq.io/v1alpha1
kind: TrafficPolicy
metadata: {{name: checkout}}
spec:
  service: checkout
  connectionPool: {{maxConnections: 100, maxPendingRequests: 50, maxRequests: 200, maxRetries: 3}}
  outlierDetection: {{consecutive5xxErrors: 5, interval: 5s, baseEjectionTime: 30s, maxEjectionPercent: 50}}
---
apiVersion: ubiq.io/v1alpha1
kind: GlobalService
metadata: {{name: checkout}}
spec:
  name: {gtm_name}
  zone: gtm.example
  service: checkout
  strategy: lowestLatency
  ttl: 5s
  maxAnswers: 1
  clientGroups:
  - {{name: europe, cidrs: [203.0.113.0/24], region: eu-west}}
  - {{name: america, cidrs: [192.0.2.0/24], region: us-west}}
  latency:
    europe: {{eu-west: 12ms, us-west: 140ms}}
    america: {{eu-west: 135ms, us-west: 10ms}}
  healthCheck: {{http: {{path: /healthz, host: checkout.mesh.example}}, interval: 1s, timeout: 500ms, unhealthyThreshold: 2}}
"""

_ROUTES = """\
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: checkout}}
spec:
  hosts: [checkout.mesh.example]
  http:
  - name: health
    match: [{{path: {{exact: /healthz}}}}]
    route: [{{service: checkout}}]
  - name: api
    route:
    - {{service: checkout, subset: v1, weight: {v1}}}
    - {{service: checkout, subset: v2, weight: {v2}}}
<api-extra>---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: catalog}}
spec:
  hosts: [catalog.mesh.example]
  http:
  - route: [{{service: catalog}}]
"""


def routes_template(api_extra: str = "") -> str:
    """The two RoutePolicies, a template to format with the ``v1``/``v2`` weights; ``api_extra``:
    YAML lines (braces doubled) that end the weighted ``api`` rule, such as its ``retries``."""
    return _ROUTES.replace("<api-extra>", api_extra)


ROUTES = routes_template()


@dataclass
class Mesh:
    root: Path
    ubiq: Ubiq
    loop: asyncio.AbstractEventLoop
    gateways: dict[str, tuple[str, int]]  # cluster -> (address, port)
    dns: tuple[str, int]
    api: str
    envoys: list[EnvoyProcess] = field(default_factory=list)
    backends: dict[str, Backend] = field(default_factory=dict)
    prom: PrometheusProcess | None = None
    token_file: Path | None = None  # the API's read,write token (``api_token=True``)

    def restart_prometheus(self) -> PrometheusProcess:
        """Stop Prometheus, then start it again on the same port, config and data directory (the
        feedback loop's URL stays valid); the rig's teardown stops the new one."""
        old = self.prom
        assert old is not None
        old.stop()
        self.prom = start_prometheus(old.workdir, old.config.read_text(), port=old.port)
        wait_prometheus(self.prom)
        return self.prom

    def set_weights(self, v1: int, v2: int) -> None:
        (self.root / "routes.yaml").write_text(ROUTES.format(v1=v1, v2=v2))

    def send_traffic(self, requests: int = 60) -> None:
        """A bounded burst through every gateway: checkout (some 5xx) and catalog."""
        for address, port in self.gateways.values():
            with httpx.Client(base_url=f"http://{address}:{port}", timeout=5) as client:
                for i in range(requests):
                    client.get("/api/cart", headers={"host": "checkout.mesh.example"})
                    if i % 2 == 0:
                        client.get("/", headers={"host": "catalog.mesh.example"})

    def ask_gtm(self, queries: int = 20) -> None:
        """A bounded burst of DNS queries for both client groups, and one NXDOMAIN."""
        host, port = self.dns
        for i in range(queries):
            subnet = ("203.0.113.0/24", "192.0.2.0/24")[i % 2]
            query = dns.message.make_query(
                GTM_NAME, "A", use_edns=0, options=[dns.edns.ECSOption.from_text(subnet)]
            )
            dns.query.udp(query, host, port=port, timeout=2)
        dns.query.udp(
            dns.message.make_query("nope.gtm.example", "AAAA"), host, port=port, timeout=2
        )


def _loop_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="ubiq", daemon=True)
    thread.start()
    return loop, thread


BACKENDS = (
    "checkout_eu_v1",
    "checkout_eu_v2",
    "checkout_us_v1",
    "checkout_us_v2",
    "catalog_eu",
    "catalog_us",
)


def pick_gateways() -> dict[str, tuple[str, int]]:
    """cluster -> (address, port): each cluster's gateway on its own random 127.x.y.1 address."""
    net = random.Random().randint(100, 250)
    return {
        region: (gw, free_port(gw))
        for region, gw in zip(REGIONS, (f"127.{net}.1.1", f"127.{net}.2.1"), strict=True)
    }


def write_policies(
    root: Path,
    gateways: dict[str, tuple[str, int]],
    ports: dict[str, int],
    *,
    costs: tuple[float, float] = (1.0, 1.0),
    routes: str = ROUTES,
    weights: tuple[int, int] = (90, 10),
) -> None:
    """The mesh's policy set in ``root``: ``mesh.yaml`` (clusters, services, the GTM name) with
    the backends' ``ports`` by name, and ``routes.yaml`` (``routes`` with the v1/v2 weights)."""
    (root / "mesh.yaml").write_text(
        POLICY.format(
            eu_gw=gateways["eu-west"][0],
            eu_port=gateways["eu-west"][1],
            us_gw=gateways["us-west"][0],
            us_port=gateways["us-west"][1],
            gtm_name=GTM_NAME,
            eu_cost=costs[0],
            us_cost=costs[1],
            **ports,
        )
    )
    (root / "routes.yaml").write_text(routes.format(v1=weights[0], v2=weights[1]))


@contextlib.contextmanager
def mesh(
    workdir: Path,
    *,
    feedback: bool = False,
    extra_policy: str = "",
    api_token: bool = False,
    costs: tuple[float, float] = (1.0, 1.0),
    extra_backends: tuple[str, ...] = (),
) -> Iterator[Mesh]:
    """The whole rig, torn down in reverse order when the block ends. ``feedback``: Ubiq runs
    its feedback loop on this Prometheus (``--prometheus``), polling every second.
    ``api_token``: the API takes a read,write token from ``Mesh.token_file`` (writes such as
    canary commands need one). ``costs``: the ``costWeight`` of eu-west and us-west.
    ``extra_backends``: more backends by name (in ``Mesh.backends``), for policy documents a test
    writes into ``Mesh.root``."""
    require_binary("envoy")
    require_binary("prometheus")
    gateways = pick_gateways()
    names = (*BACKENDS, *extra_backends)
    root = workdir / "policies"
    root.mkdir(parents=True)
    loop, thread = _loop_thread()
    with contextlib.ExitStack() as stack:
        backends = stack.enter_context(started_backends(names))
        write_policies(root, gateways, {n: b.port for n, b in backends.items()}, costs=costs)
        if extra_policy:
            (root / "extra.yaml").write_text(extra_policy)
        prom: PrometheusProcess | None = None
        if feedback:  # Prometheus first: Ubiq is told its URL; the Envoys are added below
            prom = stack.enter_context(prometheus(workdir, []))
        dns_port = free_port(udp_too=True)
        api_port = free_port()
        token_file = None
        if api_token:
            token_file = workdir / "api-tokens"
            token_file.write_text(f"{secrets.token_urlsafe(24)} read,write\n")
            token_file.chmod(0o600)
        options = ServeOptions(
            directory=root,
            xds=("127.0.0.1", 0),
            dns=(("127.0.0.1", dns_port),),
            api=("127.0.0.1", api_port),
            compile=CompileOptions(
                listener_addresses={c: a for c, (a, _) in gateways.items()},
                listener_ports={c: p for c, (_, p) in gateways.items()},
            ),
            debounce_ms=50,
            prometheus=prom.url if prom is not None else None,
            feedback_interval=1.0,
            api_token_file=token_file,
        )
        ubiq = Ubiq(options)
        asyncio.run_coroutine_threadsafe(ubiq.start(), loop).result(30)
        stack.callback(_stop, ubiq, loop, thread)
        rig = Mesh(
            root,
            ubiq,
            loop,
            gateways,
            ("127.0.0.1", dns_port),
            f"http://127.0.0.1:{api_port}",
            backends=backends,
            token_file=token_file,
        )
        assert ubiq.xds_port is not None
        for region in REGIONS:
            envoy = start_region_envoy(workdir, region, ubiq.xds_port)
            stack.callback(envoy.stop)
            rig.envoys.append(envoy)
        for envoy in rig.envoys:
            wait_envoy(envoy)
        jobs = scrape_jobs(rig.envoys, api_port)
        rules = [str(RULES)]  # the shipped alerting and recording rules, evaluated live
        if prom is None:
            rig.prom = stack.enter_context(prometheus(workdir, jobs, rule_files=rules))
        else:
            prom.config.write_text(render_config(jobs, rule_files=rules))
            prom.reload()
            rig.prom = prom
        stack.callback(lambda: rig.prom.stop() if rig.prom is not None else None)  # restarted
        # ready once every target has been scraped: traffic from now on shows up as a rate
        wait_for_series(rig.prom, f"count(up == 1) == {len(rig.envoys) + 1}", timeout=30)
        yield rig


def start_region_envoy(workdir: Path, region: str, xds_port: int) -> EnvoyProcess:
    """The gateway Envoy of ``region`` (its cluster is named after it), started, not yet ready."""
    return start_envoy(
        workdir, cluster=region, region=region, zone=f"{region}-1a", xds_port=xds_port
    )


def scrape_jobs(envoys: Iterable[EnvoyProcess], api_port: int) -> list[ScrapeJob]:
    """Every Envoy's stats, labelled with its cluster (which is its region), and Ubiq's."""
    return [
        envoy_job({f"127.0.0.1:{e.admin_port}": (e.cluster, e.cluster) for e in envoys}),
        ScrapeJob(UBIQ_JOB, (ScrapeTarget(f"127.0.0.1:{api_port}"),)),
    ]


@contextlib.contextmanager
def started_backends(names: Iterable[str] = BACKENDS) -> Iterator[dict[str, Backend]]:
    """A started Backend per name, closed when the block ends."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(_backend(name)) for name in names}


@contextlib.contextmanager
def _backend(name: str) -> Iterator[Backend]:
    backend = Backend(name).start()
    try:
        yield backend
    finally:
        backend.close()


def _stop(ubiq: Ubiq, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(ubiq.stop(), loop).result(15)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
