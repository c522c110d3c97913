"""``ubiq demo``: the bundled three-region example, for real, on loopback.

Starts demo backends for every endpoint in the policy, Ubiq itself (xDS, GTM, API), and one real
Envoy per cluster listening on that cluster's gateway address; then shows routing, the canary
split, fault injection, a redirect, GTM answers for two client subnets, and a GTM failover.

Any stop signal (SIGINT, SIGTERM, SIGHUP) ends the demo cleanly: every Envoy (each in its own
process group) is stopped, the in-process parts close, the working directory is removed, and
one line says so; no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.edns
import dns.message
import dns.rdatatype
import httpx

from controlplane.demo.backends import DemoBackend
from controlplane.demo.envoys import EnvoyProcess, start_envoy, wait_ready
from controlplane.demo.loop import show_loop, show_region_back, show_region_left
from controlplane.demo.observability import (
    scrape_demo,
    start_demo_prometheus,
    write_demo_dashboards,
)
from controlplane.demo.summary import DemoPlaces, where_to_look
from controlplane.errors import UbiqError
from controlplane.policy.cluster import ClusterSpec
from controlplane.policy.loader import load_directory
from controlplane.policy.model import Model
from controlplane.ports import free_port
from controlplane.prometheus.process import PrometheusProcess
from controlplane.serve import ServeOptions, Ubiq, parse_hostport
from controlplane.xds.compiler.options import CompileOptions


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def show(command: str, result: str) -> None:
    print(f"$ {command}\n{result.rstrip()}", flush=True)


def backends_for(model: Model) -> list[DemoBackend]:
    out = []
    for name, service in model.services.items():
        default_port = service.spec.ports[0].port
        for ep in service.spec.endpoints:
            version = ep.labels.get("version", "v1")
            out.append(DemoBackend(name, ep.cluster, version, ep.address, ep.port or default_port))
    return out


async def dig(server: tuple[str, int], name: str, subnet: str | None) -> list[str]:
    options = [dns.edns.ECSOption.from_text(subnet)] if subnet else []
    query = dns.message.make_query(name, dns.rdatatype.A, use_edns=0, options=options)
    reply = await dns.asyncquery.udp(query, server[0], port=server[1], timeout=2)
    return sorted(str(r) for rrset in reply.answer for r in rrset)


@dataclass(frozen=True, slots=True)
class DemoAddresses:
    """Where the demo's Ubiq listens; port 0 (the default) takes a free port."""

    xds: tuple[str, int] = ("127.0.0.1", 0)
    dns: tuple[str, int] = ("127.0.0.1", 0)
    api: tuple[str, int] = ("127.0.0.1", 0)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoAddresses:
        return cls(
            xds=parse_hostport(args.xds), dns=parse_hostport(args.dns), api=parse_hostport(args.api)
        )


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_demo(args: argparse.Namespace) -> int:
    addresses = DemoAddresses.from_args(args)
    return asyncio.run(
        _until_stop_signal(
            _demo(
                Path(args.directory),
                keep_running=args.keep_running,
                at=addresses,
                loop=args.loop,
            )
        )
    )


async def _until_stop_signal(demo: Coroutine[Any, Any, int]) -> int:
    """Run ``demo``; a stop signal cancels it (its ``finally`` cleans up) and ends with 128+N."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(demo)
    received: list[int] = []

    def on_signal(sig: int) -> None:
        if not received:  # a second signal during cleanup changes nothing
            received.append(sig)
            task.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await task
    except asyncio.CancelledError:
        if not received:
            raise
        print(f"\ndemo stopped ({signal.Signals(received[0]).name}); cleaned up", file=sys.stderr)
        return 128 + received[0]
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def _demo(
    directory: Path,
    *,
    keep_running: bool,
    at: DemoAddresses = DemoAddresses(),
    loop: bool = False,
) -> int:
    model = load_directory(directory)
    work = Path(tempfile.mkdtemp(prefix="ubiq-demo-"))
    policies = work / "policies"
    shutil.copytree(directory, policies)
    print(f"Ubiq demo: {directory} (policy hash {model.hash[:12]}); working in {work}")
    clusters = {n: c.spec for n, c in model.clusters.items() if c.spec.gateway is not None}
    dns_host, dns_port = at.dns[0], at.dns[1] or free_port(at.dns[0], udp_too=True)
    token, token_file = write_demo_token(work)
    # Prometheus first: Ubiq is told its URL (the feedback loop); the Envoys are added later
    prom = await _start_prometheus(work)
    if loop and prom is None:
        shutil.rmtree(work, ignore_errors=True)
        raise UbiqError("--loop needs Prometheus (apt-get install prometheus)")
    options = ServeOptions(
        directory=policies,
        xds=at.xds,
        dns=((dns_host, dns_port),),
        api=(at.api[0], at.api[1] or free_port(at.api[0])),
        compile=CompileOptions(
            listener_addresses={n: c.gateway.address for n, c in clusters.items() if c.gateway},
            listener_ports={n: c.gateway.port for n, c in clusters.items() if c.gateway},
        ),
        debounce_ms=50,
        api_token_file=token_file,
        prometheus=prom.url if loop and prom is not None else None,
        feedback_interval=1.0,
    )
    backends = backends_for(model)
    envoys: list[EnvoyProcess] = []
    try:
        ubiq = Ubiq(options)
    except BaseException:
        if prom is not None:
            prom.stop()
        raise
    keep_logs = True
    try:
        step(f"starting {len(backends)} demo backends")
        for backend in backends:
            await backend.start()
        step(
            "starting Ubiq: xDS, GTM (DNS), API"
            + (f", feedback loop on {prom.url}" if options.prometheus and prom else "")
        )
        await ubiq.start()
        assert ubiq.xds_port is not None and options.api is not None
        api = f"http://{options.api[0]}:{options.api[1]}"
        print(f"xDS on {at.xds[0]}:{ubiq.xds_port}, DNS on {dns_host}:{dns_port}, API on {api}")
        print(
            f"API token (scopes read,write): {token}\n"
            f"  in {token_file}: ubiq ... --token-file {token_file};"
            f" curl -H 'Authorization: Bearer {token}' {api}/v1/policies"
        )
        step(f"starting {len(clusters)} real Envoys, one per cluster")
        for name, spec in clusters.items():
            envoys.append(
                start_envoy(
                    work,
                    cluster=name,
                    region=spec.region,
                    zone=spec.zone or "",
                    xds_port=ubiq.xds_port,
                )
            )
        for envoy in envoys:
            await asyncio.to_thread(wait_ready, envoy)
            gw = clusters[envoy.cluster].gateway
            assert gw is not None
            print(
                f"envoy {envoy.cluster:8} ready: gateway {gw.address}:{gw.port},"
                f" admin 127.0.0.1:{envoy.admin_port}"
            )
        await _scrape(work, prom, envoys, clusters, api)
        dashboards = _write_dashboards(work)
        await _show_routing(clusters)
        step(f"status: curl -H 'Authorization: Bearer {token}' {api}/v1/status")
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
            status = (await client.get(f"{api}/v1/status")).json()
        for proxy in status["proxies"]:
            sync = ", ".join(f"{t} {state}" for t, state in proxy["sync"].items())
            print(f"proxy {proxy['nodeId']:14} {proxy['mode']:5} {sync}")
        print(f"(the same as a table: ubiq status --api {api} --token-file {token_file})")
        await _wait_gtm_healthy(ubiq)
        await _show_gtm(ubiq, (dns_host, dns_port), f"{api} --token-file {token_file}")
        await show_loop(ubiq, api, clusters, token=token, token_file=token_file)
        await _failover(ubiq, (dns_host, dns_port), envoys, work, clusters)
        await _scrape(
            work, prom, envoys, clusters, api, quiet=True
        )  # the restarted Envoy's admin port
        places = DemoPlaces(api, token, token_file, prom.url if prom else None, *dashboards)
        print("\n" + where_to_look(places, keep_running=keep_running), flush=True)
        if keep_running:
            step("running; Ctrl-C to stop. Try the commands above.")
            await asyncio.Event().wait()  # until a stop signal cancels the demo
        print("\ndemo finished: every request above went through a real Envoy configured by Ubiq.")
        keep_logs = False
        return 0
    except asyncio.CancelledError:  # a stop signal: nothing to look at afterwards
        keep_logs = False
        raise
    finally:
        if prom is not None:
            prom.stop()
        for envoy in envoys:
            envoy.stop()
        await ubiq.stop()
        for backend in backends:
            await backend.stop()
        if keep_logs:  # the demo failed: its error may point at an Envoy log in there
            print(f"demo logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def write_demo_token(work: Path) -> tuple[str, Path]:
    """A fresh read,write API token in ``work/api-tokens`` (mode 0600)."""
    token = secrets.token_urlsafe(32)
    path = work / "api-tokens"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{token} read,write\n")
    return token, path


async def _start_prometheus(work: Path) -> PrometheusProcess | None:
    """Prometheus before Ubiq; the demo goes on without it when it cannot start (say why)."""
    step("starting Prometheus (1s scrape; the Envoys and Ubiq are added once they run)")
    try:
        prom = await asyncio.to_thread(start_demo_prometheus, work)
    except UbiqError as exc:
        print(f"Prometheus not started: {exc}")
        return None
    print(f"Prometheus on {prom.url} (alert rules loaded: {prom.url}/alerts)")
    return prom


async def _scrape(
    work: Path,
    prom: PrometheusProcess | None,
    envoys: list[EnvoyProcess],
    clusters: Mapping[str, ClusterSpec],
    api: str,
    *,
    quiet: bool = False,
) -> None:
    """Point Prometheus at every Envoy's /stats/prometheus and Ubiq's /metrics."""
    if prom is not None:
        regions = {name: spec.region for name, spec in clusters.items()}
        await asyncio.to_thread(scrape_demo, prom, envoys, regions, api.removeprefix("http://"))
        if not quiet:
            print(f"Prometheus scraping {len(envoys)} Envoys and Ubiq every 1s: {prom.url}/targets")


def _write_dashboards(work: Path) -> tuple[Path, int]:
    dashboards, written = write_demo_dashboards(work)
    print(
        f"Grafana dashboards: {dashboards} (provision them with deploy/grafana/provisioning,"
        " datasource pointing at this Prometheus; see docs/observability.md)"
    )
    return dashboards, written


async def _show_routing(clusters: Mapping[str, ClusterSpec]) -> None:
    eu = clusters.get("eu-west")
    if eu is None or eu.gateway is None:
        raise UbiqError("the demo expects a cluster 'eu-west' with a gateway")
    base = f"http://{eu.gateway.address}:{eu.gateway.port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        step("routing through the eu-west Envoy")
        await _wait_route(client)
        r = await client.get("/api/cart", headers={"host": "checkout.mesh.example"})
        show(f"curl -H 'Host: checkout.mesh.example' {base}/api/cart", f"{r.status_code} {r.text}")
        r = await client.get(
            "/api/cart", headers={"host": "checkout.mesh.example", "x-canary": "true"}
        )
        show(
            f"curl -H 'Host: checkout.mesh.example' -H 'x-canary: true' {base}/api/cart",
            f"{r.status_code} {r.text}",
        )
        step("canary split: 400 requests to checkout /api (policy: v1 90%, v2 10%; 1% abort fault)")
        versions: Counter[str] = Counter()
        for _ in range(400):
            r = await client.get("/api/pay", headers={"host": "checkout.mesh.example"})
            versions[r.headers.get("x-ubiq-version", f"HTTP {r.status_code}")] += 1
        print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(versions.items())))
        step("fault injection: catalog /search?debug=1 has a 200ms delay fault")
        started = time.perf_counter()
        r = await client.get(
            "/search", params={"debug": "1"}, headers={"host": "catalog.mesh.example"}
        )
        took = (time.perf_counter() - started) * 1000
        show(
            f"curl -H 'Host: catalog.mesh.example' '{base}/search?debug=1'",
            f"{r.status_code} {r.text.strip()}  ({took:.0f} ms)",
        )
        step("redirect and direct response")
        r = await client.get("/old-checkout", headers={"host": "checkout.mesh.example"})
        show(
            f"curl -i -H 'Host: checkout.mesh.example' {base}/old-checkout",
            f"{r.status_code} location: {r.headers.get('location')}",
        )
        r = await client.get("/", headers={"host": "payments.mesh.example"})
        show(f"curl -H 'Host: payments.mesh.example' {base}/", f"{r.status_code} {r.text}")


async def _wait_route(client: httpx.AsyncClient) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(15):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get("/healthz", headers={"host": "checkout.mesh.example"})
                    if r.status_code == 200:
                        return
                await asyncio.sleep(0.1)
    raise UbiqError("Envoy did not start routing within 15s")


async def _wait_gtm_healthy(ubiq: Ubiq) -> None:
    """Let the GTM's health checks see every gateway up before showing answers."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(15):
            while True:
                rows = ubiq.gtm_health()
                if rows and all(row["healthy"] is True for row in rows):
                    return
                await asyncio.sleep(0.1)
    raise UbiqError("GTM health checks did not see every gateway healthy within 15s")


async def _show_gtm(ubiq: Ubiq, server: tuple[str, int], api: str) -> None:
    step("global traffic manager: two client subnets, two regions")
    name = "checkout.gtm.example"
    host, port = server
    for subnet, who in (("203.0.113.0/24", "europe"), ("192.0.2.0/24", "america")):
        answer = await dig(server, name, subnet)
        show(f"dig @{host} -p {port} {name} +subnet={subnet} +short   # {who}", "\n".join(answer))
    print(f"$ ubiq dns explain {name} --client 203.0.113.7 --api {api}")
    if ubiq.gtm is not None:
        print(ubiq.gtm.explain_text(name, "203.0.113.7"))


async def _failover(
    ubiq: Ubiq,
    server: tuple[str, int],
    envoys: list[EnvoyProcess],
    work: Path,
    clusters: Mapping[str, ClusterSpec],
) -> None:
    """Stop the eu-west Envoy (its gateway) until the answers move away, then start it again,
    so what runs afterwards (--keep-running) is the demo as it began."""
    step("failover: stop the eu-west Envoy (its gateway); health checks notice, answers change")
    name = "checkout.gtm.example"
    host, port = server
    index = next(i for i, e in enumerate(envoys) if e.cluster == "eu-west")
    before = await dig(server, name, "203.0.113.0/24")
    envoys[index].stop()
    after = await _dig_until_changed(server, name, before)
    print(
        f"europe clients: {', '.join(before)} -> {', '.join(after.answer)} after {after.took:.1f}s"
    )
    show(f"dig @{host} -p {port} {name} +subnet=203.0.113.0/24 +short", "\n".join(after.answer))
    await show_region_left(ubiq, "eu-west")
    step("restore: start the eu-west Envoy again, so every command above works again")
    spec = clusters["eu-west"]
    assert ubiq.xds_port is not None and spec.gateway is not None
    envoys[index] = start_envoy(
        work, cluster="eu-west", region=spec.region, zone=spec.zone or "", xds_port=ubiq.xds_port
    )
    await asyncio.to_thread(wait_ready, envoys[index])
    base = f"http://{spec.gateway.address}:{spec.gateway.port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        await _wait_route(client)
    await _wait_gtm_healthy(ubiq)
    print(
        f"envoy eu-west  ready again: gateway {spec.gateway.address}:{spec.gateway.port},"
        f" admin 127.0.0.1:{envoys[index].admin_port}; GTM health checks see it healthy"
    )
    await show_region_back(ubiq, "eu-west")
    now = await dig(server, name, "203.0.113.0/24")
    show(f"dig @{host} -p {port} {name} +subnet=203.0.113.0/24 +short", "\n".join(now))
    if ubiq.gtm is not None:
        data = ubiq.gtm.explain(name, "203.0.113.7")
        if isinstance(data, dict):
            print("why: " + "; ".join(data["reasons"]))


@dataclass(frozen=True, slots=True)
class _Changed:
    answer: list[str]
    took: float


async def _dig_until_changed(server: tuple[str, int], name: str, before: list[str]) -> _Changed:
    started = time.monotonic()
    after = before
    while after == before and time.monotonic() - started < 15:
        await asyncio.sleep(0.1)
        after = await dig(server, name, "203.0.113.0/24")
    if after == before:
        raise UbiqError(f"the GTM answer for {name} did not change within 15s")
    return _Changed(after, time.monotonic() - started)
