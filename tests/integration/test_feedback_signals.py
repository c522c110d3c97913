"""Signals from a real Prometheus (1 s scrape) scraping real Envoys fed by Ubiq's xDS.

Two Ubiq clusters, eu-west-1 and us-west-1, each with a gateway Envoy; ``locality: {enabled:
false}`` makes both Envoys spread every service over both regions, so each region's numbers are
the sum over both Envoys of what that region's endpoints answered. One service per test keeps
the rate windows of one test out of another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from controlplane.feedback.poller import FeedbackMetrics, FeedbackPoller, PollerSettings
from controlplane.feedback.signals import RegionSignal, Signals
from controlplane.policy.loader import load_texts
from controlplane.ports import free_port
from controlplane.prometheus.config import envoy_job
from controlplane.prometheus.process import (
    PrometheusProcess,
    start_prometheus,
    wait_for_series,
    wait_ready,
)
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.compiler import CompileOptions, NodeIdentity, compile_node_resources
from controlplane.xds.node import group_key
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import Snapshot
from tests.support.backends import Backend, backends
from tests.support.envoy import envoy
from tests.support.poll import wait_until
from tests.support.prometheus import prometheus
from tests.support.xds_rig import xds_server_thread

pytestmark = pytest.mark.integration

NODES = {
    "eu-west-1": NodeIdentity("eu-west-1", "eu-west", "eu-west-1a"),
    "us-west-1": NodeIdentity("us-west-1", "us-west", "us-west-1a"),
}
ZONES = {"eu-west-1a": "eu-west", "us-west-1a": "us-west"}
SERVICES = ("errors", "slow", "idle", "steady", "retried")
RETRIES = {"retried": ", retries: {attempts: 2, retryOn: [5xx]}"}
SETTINGS = PollerSettings(interval=0.5, window="5s", scrape_interval=1.0, poll_timeout=4.0)


def policy(b: dict[str, Backend]) -> str:
    docs = [
        f"""apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {{name: {name}}}
spec: {{region: {node.region}, zone: {node.zone}}}
"""
        for name, node in NODES.items()
    ]
    for service in SERVICES:
        endpoints = ", ".join(
            f"{{cluster: {c}, address: 127.0.0.1, port: {b[f'{service}-{c}'].port}, "
            "labels: {version: v1}}"
            for c in NODES
        )
        docs.append(f"""apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: {service}}}
spec:
  ports: [{{port: 8080}}]
  endpoints: [{endpoints}]
  subsets: [{{name: v1, labels: {{version: v1}}}}]
""")
        docs.append(f"""apiVersion: ubiq.io/v1alpha1
kind: TrafficPolicy
metadata: {{name: {service}}}
spec: {{service: {service}, locality: {{enabled: false}}}}
""")
        docs.append(f"""apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {{name: {service}}}
spec:
  hosts: [{service}.test]
  http: [{{route: [{{service: {service}, subset: v1}}]{RETRIES.get(service, "")}}}]
""")
    return "---\n".join(docs)


@dataclass
class Rig:
    backends: dict[str, Backend]
    listeners: dict[str, int]
    admin: dict[str, int]
    prom: PrometheusProcess
    workdir: Path

    def poller(
        self, registry: CollectorRegistry, sink: list[Signals] | None = None
    ) -> FeedbackPoller:
        return FeedbackPoller(
            self.prom.url,
            (sink.append if sink is not None else lambda s: None),
            zones=ZONES,
            settings=SETTINGS,
            services=SERVICES,
            metrics=FeedbackMetrics(registry),
        )

    @contextlib.contextmanager
    def traffic(
        self, service: str, max_requests: int = 20_000, max_seconds: float = 60.0
    ) -> Iterator[None]:
        """Requests to ``service`` through both Envoys, in a thread, until the block ends (bounded
        in count and time either way)."""
        stop = threading.Event()

        def drive() -> None:
            clients = [
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
                for port in self.listeners.values()
            ]
            deadline = time.monotonic() + max_seconds
            try:
                for i in range(max_requests):
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    with contextlib.suppress(httpx.HTTPError):
                        clients[i % len(clients)].get("/", headers={"host": f"{service}.test"})
            finally:
                for c in clients:
                    c.close()

        thread = threading.Thread(target=drive, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(15)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    workdir = tmp_path_factory.mktemp("feedback")
    names = [f"{s}-{c}" for s in SERVICES for c in NODES]
    cache = SnapshotCache()
    listeners = {c: free_port() for c in NODES}
    with (
        backends(*names) as started,
        xds_server_thread(XdsServer(cache)) as xds,
        contextlib.ExitStack() as stack,
    ):
        model = load_texts([("feedback.yaml", policy(started))])
        options = CompileOptions(listener_address="127.0.0.1", listener_ports=listeners)
        for cluster, node in NODES.items():
            snapshot = Snapshot.build(compile_node_resources(model, node, options))
            cache.set_snapshot(group_key(cluster), snapshot)
        admin = {}
        for cluster, node in NODES.items():
            proxy = stack.enter_context(
                envoy(
                    workdir,
                    xds_port=xds.port,
                    node_id=f"gw-{cluster}",
                    cluster=cluster,
                    region=node.region,
                    zone=node.zone,
                )
            )
            admin[cluster] = proxy.admin_port
        for service in SERVICES:
            for port in listeners.values():
                wait_until(
                    lambda port=port, service=service: (
                        httpx.get(
                            f"http://127.0.0.1:{port}/", headers={"host": f"{service}.test"}
                        ).status_code
                        == 200
                    ),
                    20,
                    f"{service} served on {port}",
                )
        job = envoy_job({f"127.0.0.1:{p}": (c, NODES[c].region) for c, p in admin.items()})
        prom = stack.enter_context(prometheus(workdir, [job]))
        wait_for_series(prom, 'up{job="envoy"} == 1')
        for b in started.values():
            b.reset()
        yield Rig(started, listeners, admin, prom, workdir)


# A counter series Envoy creates mid-window (the first 5xx) loses its first increment to rate():
# judge a window only once it lies wholly after the traffic started, plus two scrapes.
SETTLE = 5.0 + 2 * SETTINGS.scrape_interval


def poll_until(
    poller: FeedbackPoller, predicate: object, what: str, timeout: float = 40.0, settle: float = 0.0
) -> Signals:
    """Poll (bounded in time) until ``predicate(signals)`` holds, not before ``settle`` seconds
    from now; returns those signals."""
    start = time.monotonic()
    deadline = start + timeout
    last: Signals | None = None
    while time.monotonic() < deadline:
        last = asyncio.run(poller.poll_once())
        settled = time.monotonic() - start >= settle
        if settled and not last.stale and predicate(last):  # type: ignore[operator]
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not seen in {timeout}s; last signals: {last}")


def both(service: str, signals: Signals, subset: str = "") -> tuple[RegionSignal, RegionSignal]:
    return (
        signals.get(service, "eu-west", subset) or RegionSignal(),
        signals.get(service, "us-west", subset) or RegionSignal(),
    )


def volume(minimum: float, service: str) -> object:
    def enough(signals: Signals) -> bool:
        eu, us = both(service, signals)
        return (eu.requests or 0) >= minimum and (us.requests or 0) >= minimum

    return enough


def test_a_failing_region_shows_its_success_rate_and_the_other_stays_whole(rig: Rig) -> None:
    rig.backends["errors-us-west-1"].fail_ratio = 0.3
    poller = rig.poller(CollectorRegistry())
    with rig.traffic("errors"):
        signals = poll_until(
            poller, volume(100, "errors"), "100 requests per region", settle=SETTLE
        )
    eu, us = both("errors", signals)
    assert eu.success_rate is not None and eu.success_rate > 0.99, eu
    assert us.success_rate is not None and 0.6 < us.success_rate < 0.8, us
    assert eu.request_rate and us.request_rate and eu.request_rate > 0 and us.request_rate > 0
    # the subset's own series agree with the whole service (all traffic goes to v1)
    eu_v1, us_v1 = both("errors", signals, "v1")
    assert eu_v1.success_rate is not None and eu_v1.success_rate > 0.99
    assert us_v1.success_rate is not None and 0.6 < us_v1.success_rate < 0.8
    # proxy-side signals, keyed by the region of the Envoy that reports them
    assert eu.healthy_endpoint_share == 1.0 and us.healthy_endpoint_share == 1.0
    assert eu.active_connections is not None and eu.active_connections >= 1
    assert eu.circuit_breaker_overflows == 0.0
    assert eu.outlier_ejections is None  # no outlierDetection: Envoy keeps no such counter
    poller_close(poller)


def test_success_is_the_outcome_the_client_saw_after_retries(rig: Rig) -> None:
    """us-west fails 30 % of attempts, but each failure is retried on another host (Envoy's
    previous_hosts predicate) and succeeds: clients saw no error, so neither region's success
    rate shows one; the hidden failures are Envoy's per-cluster retry counters."""
    rig.backends["retried-us-west-1"].fail_ratio = 0.3
    poller = rig.poller(CollectorRegistry())
    with rig.traffic("retried"):
        signals = poll_until(
            poller, volume(100, "retried"), "100 requests per region", settle=SETTLE
        )
    eu, us = both("retried", signals)
    assert eu.success_rate == 1.0 and us.success_rate == 1.0, (eu, us)
    retried = sum(
        float(s["value"][1])
        for s in rig.prom.query(
            'envoy_cluster_retry_upstream_rq_xx{envoy_cluster_name="retried|v1"}'
        )
    )
    assert retried >= 10  # the failures happened, and were retried
    poller_close(poller)


def test_a_slow_region_shows_a_higher_p99(rig: Rig) -> None:
    rig.backends["slow-us-west-1"].delay = 0.25  # mid-bucket (250..300 ms): binning can't blur it
    poller = rig.poller(CollectorRegistry())
    with rig.traffic("slow"):
        signals = poll_until(poller, volume(8, "slow"), "8 requests per region", settle=SETTLE)
    eu, us = both("slow", signals)
    assert eu.latency_p99_ms is not None and us.latency_p99_ms is not None
    assert us.latency_p99_ms > eu.latency_p99_ms, (eu, us)
    assert us.latency_p50_ms is not None
    assert (
        eu.latency_p50_ms is not None
        and eu.latency_p50_ms <= eu.latency_p90_ms <= eu.latency_p99_ms
    )  # type: ignore[operator]
    poller_close(poller)


def test_no_traffic_is_no_data_not_zero_or_full(rig: Rig) -> None:
    poller = rig.poller(CollectorRegistry())
    with rig.traffic("idle"):
        poll_until(poller, volume(20, "idle"), "traffic to idle")
    # the traffic stopped: once the window holds no request, the rate is a measured 0 and the
    # ratios and percentiles are "no data" (histograms reach Prometheus up to a flush later)
    signals = poll_until(
        poller,
        lambda s: all(r.request_rate == 0.0 and r.latency_p99_ms is None for r in both("idle", s)),
        "idle rate down to 0",
    )
    for region in both("idle", signals):
        assert region.requests == 0.0
        assert region.success_rate is None
        assert region.latency_p50_ms is None and region.latency_p99_ms is None
    # a service that never had a request has no signal at all
    assert signals.get("never-seen", "eu-west") is None
    poller_close(poller)


def test_fifty_regions_of_zones_make_valid_queries(rig: Rig) -> None:
    """A large zone table still gives queries Prometheus accepts, with the same numbers."""
    zones = {f"r{r}-z{z}": f"r{r}" for r in range(50) for z in range(3)} | ZONES
    registry = CollectorRegistry()
    poller = FeedbackPoller(
        rig.prom.url,
        lambda s: None,
        zones=zones,
        settings=SETTINGS,
        services=SERVICES,
        metrics=FeedbackMetrics(registry),
    )
    with rig.traffic("steady"):
        signals = poll_until(poller, volume(20, "steady"), "steady traffic seen with 50 regions")
    eu, us = both("steady", signals)
    assert eu.success_rate == 1.0 and us.success_rate == 1.0
    assert not any(key.region.startswith("r") for key in signals.values)  # no traffic there
    # a fresh poll means Prometheus accepted and answered every query of the plan
    assert not signals.stale
    poller_close(poller)


def test_prometheus_stopped_gives_stale_signals_and_counts_them_then_recovers(rig: Rig) -> None:
    workdir = rig.workdir / "own-prometheus"
    job = envoy_job({f"127.0.0.1:{p}": (c, NODES[c].region) for c, p in rig.admin.items()})
    config = rig.prom.config.read_text()
    prom = start_prometheus(workdir, config)
    registry = CollectorRegistry()
    seen: list[Signals] = []
    try:
        wait_ready(prom)
        wait_for_series(prom, 'up{job="envoy"} == 1')
        assert job.targets  # the same two Envoys as the rig's Prometheus

        async def scenario() -> None:
            poller = FeedbackPoller(
                prom.url,
                seen.append,
                zones=ZONES,
                settings=SETTINGS,
                services=SERVICES,
                metrics=FeedbackMetrics(registry),
            )
            poller.start()
            try:
                await wait_for(lambda: any(not s.stale for s in seen), "a fresh poll")
                errors_before = registry.get_sample_value("ubiq_feedback_poll_errors_total")
                assert registry.get_sample_value("ubiq_feedback_stale") == 0
                last_ok = registry.get_sample_value("ubiq_feedback_last_success_timestamp_seconds")
                assert last_ok is not None and last_ok > 0

                await asyncio.to_thread(prom.stop)
                mark = len(seen)
                await wait_for(lambda: any(s.stale for s in seen[mark:]), "a stale poll")
                stale = next(s for s in seen[mark:] if s.stale)
                assert stale.error and "prometheus" in stale.error and stale.values == {}
                assert registry.get_sample_value("ubiq_feedback_poll_errors_total") > (
                    errors_before or 0
                )  # type: ignore[operator]
                assert registry.get_sample_value("ubiq_feedback_stale") == 1

                restarted = await asyncio.to_thread(
                    start_prometheus, workdir, config, port=prom.port
                )
                prom.process = restarted.process
                await asyncio.to_thread(wait_ready, prom)
                mark = len(seen)
                await wait_for(lambda: any(not s.stale for s in seen[mark:]), "fresh again")
                assert registry.get_sample_value("ubiq_feedback_stale") == 0
                assert (
                    registry.get_sample_value("ubiq_feedback_last_success_timestamp_seconds")
                    > last_ok
                )  # type: ignore[operator]
            finally:
                await poller.stop()

        asyncio.run(scenario())
    finally:
        prom.stop()


async def wait_for(predicate: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not seen in {timeout}s")


def poller_close(poller: FeedbackPoller) -> None:
    asyncio.run(poller.stop())
