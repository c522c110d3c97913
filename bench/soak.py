"""`make soak`: Ubiq under churn for ``SOAK_SECONDS`` (default 600), with real parts on loopback.

`ubiq serve` runs in its own process (so its memory, descriptors, sockets and threads can be read
from /proc) with two real Envoys (eu-west, us-west) on their own gateway addresses, six HTTP
backends and a real Prometheus that Ubiq's feedback loop polls. During the run:

- the routes' weights change every second (policy churn);
- an Envoy is stopped and started again every 45 s (the proxies reconnect and resync);
- Prometheus is stopped and started again every 90 s (on the same port);
- the eu-west backends fail (503, health checks included) for 30 s and recover;
- HTTP requests go through every Envoy that is up, and DNS queries to the GTM, all the time.

A request or query that fails outside a region failure (and its 15 s recovery) is a failure of
Ubiq; inside, the count is reported per phase. Every 5 s the server's RSS, open descriptors,
sockets, threads and asyncio tasks (``ubiq_asyncio_tasks``) are sampled; the RSS slope over the
run after warm-up is reported in MiB/hour. Writes bench/results/soak.json; exits 1 when a
steady-state request failed or a resource kept growing. The rig (gateway addresses, backends,
policies) is tests/support/mesh.py's. To see what grows, set ``UBIQ_TRACEMALLOC_DIR`` (the
server inherits it; ``python -m controlplane.heaptrace DIR`` diffs its snapshots).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import httpx

from bench._common import save

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
SAMPLE_EVERY = 5.0
GRACE = 15.0  # after a region fails or recovers: the time detection and failover may take
#: the api rule's retries (a restarted Envoy resets the requests it had in flight), added to the
#: routes of tests/support/mesh.py
API_RETRIES = (
    "    retries: {{attempts: 3, perTryTimeout: 1s, retryOn: [5xx, reset, connect-failure]}}\n"
)


# -- the server process ------------------------------------------------------------------------


def serve_child(config_path: str) -> None:
    """Child process: `ubiq serve` with per-cluster gateway listeners (not expressible as flags)."""
    from controlplane.gtm.dns.server import new_event_loop
    from controlplane.logging import configure_logging
    from controlplane.serve import ServeOptions, serve
    from controlplane.xds.compiler.options import CompileOptions

    configure_logging(level="warning", fmt="console")
    c = json.loads(Path(config_path).read_text())
    options = ServeOptions(
        directory=Path(c["directory"]),
        xds=("127.0.0.1", c["xds"]),
        dns=(("127.0.0.1", c["dns"]),),
        api=("127.0.0.1", c["api"]),
        compile=CompileOptions(
            listener_addresses={k: v[0] for k, v in c["gateways"].items()},
            listener_ports={k: v[1] for k, v in c["gateways"].items()},
        ),
        debounce_ms=50,
        prometheus=c["prometheus"],
        feedback_interval=1.0,
    )
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(options))


# -- measuring -----------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    rss_mib: float
    fds: int
    sockets: int
    threads: int
    tasks: int


def sample(pid: int, api: str, t: float) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    fds = sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            fds += 1
            sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    threads = len(os.listdir(f"/proc/{pid}/task"))
    tasks = -1
    with contextlib.suppress(httpx.HTTPError):
        for line in httpx.get(f"{api}/metrics", timeout=5).text.splitlines():
            if line.startswith("ubiq_asyncio_tasks "):
                tasks = int(float(line.split()[1]))
    return Sample(t, rss_kib / 1024, fds, sockets, threads, tasks)


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in points) / var * 3600


@dataclass
class Phases:
    """Which phase a moment belongs to: steady, or inside a region failure (+ recovery grace)."""

    faults: list[tuple[float, float]] = field(default_factory=list)  # (start, end + GRACE)

    def of(self, t: float) -> str:
        return "region-fault" if any(a <= t <= b for a, b in self.faults) else "steady"


@dataclass
class Tally:
    ok: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, phase: str, ok: bool, what: str = "") -> None:
        with self.lock:
            bucket = self.ok if ok else self.failed
            bucket[phase] = bucket.get(phase, 0) + 1
            if not ok and len(self.examples) < 20:
                self.examples.append(f"{phase}: {what}")


# -- the rig -------------------------------------------------------------------------------------


class Gateway:
    """One Envoy and the load through it; ``lock`` is held for each request, so stopping the
    Envoy never cuts a request in flight (a restart is ours, not a failure)."""

    def __init__(self, region: str, address: str, port: int) -> None:
        self.region, self.address, self.port = region, address, port
        self.up = False
        self.lock = threading.Lock()
        self.envoy: Any = None

    def stop_envoy(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()


def http_load(gw: Gateway, tally: Tally, phases: Phases, t0: float, stop: threading.Event) -> None:
    with httpx.Client(base_url=f"http://{gw.address}:{gw.port}", timeout=5) as client:
        while not stop.is_set():
            with gw.lock:
                if gw.up:
                    start = time.monotonic() - t0
                    try:
                        reply = client.get("/api/cart", headers={"host": "checkout.mesh.example"})
                        ok, what = reply.status_code == 200, f"{gw.region} HTTP {reply.status_code}"
                    except httpx.HTTPError as exc:
                        ok, what = False, f"{gw.region} {type(exc).__name__}"
                    tally.add(phases.of(start), ok, f"t={start:.0f}s {what}")
            stop.wait(0.05)


def dns_load(port: int, tally: Tally, phases: Phases, t0: float, stop: threading.Event) -> None:
    subnets = ("203.0.113.0/24", "192.0.2.0/24")
    i = 0
    while not stop.is_set():
        i += 1
        query = dns.message.make_query(
            "checkout.gtm.example",
            "A",
            use_edns=0,
            options=[dns.edns.ECSOption.from_text(subnets[i % 2])],
        )
        start = time.monotonic() - t0
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
            ok = reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)
            what = dns.rcode.to_text(reply.rcode())
        except dns.exception.Timeout:
            ok, what = False, "timeout"
        tally.add(phases.of(start), ok, f"t={start:.0f}s DNS {what}")
        stop.wait(0.02)


def restart_envoy(gw: Gateway, workdir: Path, xds_port: int) -> None:
    from controlplane.demo.envoys import wait_ready
    from tests.support.mesh import start_region_envoy

    with gw.lock:
        gw.up = False
    if gw.envoy is not None:
        gw.envoy.stop()
    gw.envoy = start_region_envoy(workdir, gw.region, xds_port)
    wait_ready(gw.envoy)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # up once its listener (from xDS) answers
        with contextlib.suppress(httpx.HTTPError):
            reply = httpx.get(
                f"http://{gw.address}:{gw.port}/healthz",
                headers={"host": "checkout.mesh.example"},
                timeout=2,
            )
            if reply.status_code < 500:
                break
        time.sleep(0.1)
    with gw.lock:
        gw.up = True


def stop_process(process: Any) -> None:
    process.terminate()
    process.wait(20)


def prometheus_config(gateways: list[Gateway], api_port: int) -> str:
    from controlplane.prometheus.config import render_config
    from tests.support.mesh import scrape_jobs

    jobs = scrape_jobs([g.envoy for g in gateways], api_port)
    return render_config(jobs, scrape_interval="1s")


def _quiet(request: object, address: object) -> None:
    return None


@contextlib.contextmanager
def backends() -> Iterator[dict[str, Any]]:
    from tests.support.mesh import started_backends

    with started_backends() as made:
        for backend in made.values():  # an Envoy stopped mid keep-alive resets: no traceback
            setattr(backend._server, "handle_error", _quiet)  # noqa: B010
        yield made


def schedule(seconds: int) -> tuple[list[float], list[float], tuple[float, float]]:
    """When Envoys restart, when Prometheus restarts, and the region failure (start, end)."""
    envoy = [float(t) for t in range(30, seconds - 20, 45)] or [seconds * 0.3]
    prom = [float(t) for t in range(60, seconds - 20, 90)] or [seconds * 0.5]
    start = seconds * 0.45
    return envoy, prom, (start, start + max(10.0, min(30.0, seconds * 0.1)))


def run(seconds: int) -> dict[str, Any]:
    from controlplane.ports import free_port
    from controlplane.prometheus.process import start_prometheus, wait_ready
    from tests.support.mesh import pick_gateways, routes_template, write_policies

    routes = routes_template(API_RETRIES)
    workdir = Path(tempfile.mkdtemp(prefix="ubiq-soak-"))
    root = workdir / "policies"
    root.mkdir()
    gateways = [Gateway(r, a, p) for r, (a, p) in pick_gateways().items()]
    xds, dns_port, api = free_port(), free_port(udp_too=True), free_port()
    prom_port = free_port()
    stop = threading.Event()
    tally_http, tally_dns, phases = Tally(), Tally(), Phases()
    samples: list[Sample] = []
    events: list[str] = []
    with backends() as bk, contextlib.ExitStack() as stack:
        write_policies(
            root,
            {g.region: (g.address, g.port) for g in gateways},
            {name: b.port for name, b in bk.items()},
            routes=routes,
        )
        prom = start_prometheus(workdir / "prometheus", "scrape_configs: []\n", port=prom_port)
        wait_ready(prom)
        config = workdir / "serve.json"
        config.write_text(
            json.dumps(
                {
                    "directory": str(root),
                    "xds": xds,
                    "dns": dns_port,
                    "api": api,
                    "prometheus": prom.url,
                    "gateways": {g.region: (g.address, g.port) for g in gateways},
                }
            )
        )
        log = (workdir / "ubiq.log").open("wb")
        import subprocess

        server = subprocess.Popen(
            [sys.executable, "-m", "bench.soak", "--serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parents[1],
        )
        stack.callback(stop_process, server)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{api}/readyz", timeout=1).status_code == 200:
                    break
            if server.poll() is not None:
                raise SystemExit(f"ubiq serve exited; see {workdir / 'ubiq.log'}")
            time.sleep(0.2)
        for g in gateways:
            restart_envoy(g, workdir, xds)
            stack.callback(g.stop_envoy)
        prom.config.write_text(prometheus_config(gateways, api))
        prom.reload()
        stack.callback(lambda: prom.stop())  # the prom of the moment: restarts replace it

        t0 = time.monotonic()
        threads = [
            threading.Thread(target=http_load, args=(g, tally_http, phases, t0, stop), daemon=True)
            for g in gateways
        ]
        threads.append(
            threading.Thread(
                target=dns_load, args=(dns_port, tally_dns, phases, t0, stop), daemon=True
            )
        )
        for t in threads:
            t.start()
        envoy_at, prom_at, (fault_start, fault_end) = schedule(seconds)
        phases.faults.append((fault_start, fault_end + GRACE))
        eu = [b for n, b in bk.items() if n.startswith("checkout_eu")]
        tick, next_sample, restarts, failed_region, recovered = 0, 0.0, 0, False, False
        while (now := time.monotonic() - t0) < seconds:
            if server.poll() is not None:
                raise SystemExit(f"ubiq serve died at t={now:.0f}s; see {workdir / 'ubiq.log'}")
            tick += 1
            v1 = (90, 80, 70, 100, 50)[tick % 5]
            (root / "routes.yaml").write_text(routes.format(v1=v1, v2=100 - v1))
            if envoy_at and now >= envoy_at[0]:
                envoy_at.pop(0)
                gw = gateways[restarts % len(gateways)]
                restarts += 1
                restart_envoy(gw, workdir, xds)
                prom.config.write_text(prometheus_config(gateways, api))
                with contextlib.suppress(httpx.HTTPError):
                    prom.reload()
                events.append(f"t={now:.0f}s envoy {gw.region} restarted")
            if prom_at and now >= prom_at[0]:
                prom_at.pop(0)
                prom.stop()
                prom = start_prometheus(
                    workdir / "prometheus", prometheus_config(gateways, api), port=prom_port
                )
                wait_ready(prom)
                events.append(f"t={now:.0f}s prometheus restarted")
            if not failed_region and not recovered and fault_start <= now < fault_end:
                failed_region = True
                for b in eu:
                    b.status = 503
                events.append(f"t={now:.0f}s eu-west backends fail (503)")
            if failed_region and now >= fault_end:
                failed_region, recovered = False, True
                for b in eu:
                    b.reset()
                events.append(f"t={now:.0f}s eu-west backends recover")
            if now >= next_sample:
                samples.append(sample(server.pid, f"http://127.0.0.1:{api}", now))
                next_sample = now + SAMPLE_EVERY
            time.sleep(max(0.0, 1.0 - ((time.monotonic() - t0) - now)))
        stop.set()
        for t in threads:
            t.join(10)
        samples.append(sample(server.pid, f"http://127.0.0.1:{api}", time.monotonic() - t0))
    return report(seconds, samples, tally_http, tally_dns, events, workdir)


def report(
    seconds: int,
    samples: list[Sample],
    http: Tally,
    dns_tally: Tally,
    events: list[str],
    workdir: Path,
) -> dict[str, Any]:
    warm = [s for s in samples if s.t >= seconds * 0.2] or samples
    first, last = warm[0], warm[-1]
    growth = {
        name: (getattr(first, name), getattr(last, name), max(getattr(s, name) for s in warm))
        for name in ("fds", "sockets", "threads", "tasks")
    }
    leaks = [
        name
        for name, (a, b, _) in growth.items()
        if b > a + max(5, a // 5)  # the end above the start of the steady run by >20 % and > 5
    ]
    out = {
        "seconds": seconds,
        "rss_mib": {
            "start": round(first.rss_mib, 1),
            "end": round(last.rss_mib, 1),
            "max": round(max(s.rss_mib for s in warm), 1),
            "slope_mib_per_hour": round(slope_per_hour([(s.t, s.rss_mib) for s in warm]), 1),
        },
        "growth_start_end_max": growth,
        "leaks": leaks,
        "http": {"ok": http.ok, "failed": http.failed, "examples": http.examples},
        "dns": {"ok": dns_tally.ok, "failed": dns_tally.failed, "examples": dns_tally.examples},
        "events": events,
        "workdir": str(workdir),
        "samples": [vars(s) for s in samples],
    }
    rss = out["rss_mib"]
    print(f"soak: {seconds} s, {len(samples)} samples (workdir {workdir})")
    print(f"  RSS MiB start {rss['start']} end {rss['end']} max {rss['max']}", end="")  # type: ignore[index]
    print(f"  slope {rss['slope_mib_per_hour']} MiB/h")  # type: ignore[index]
    for name, (a, b, m) in growth.items():
        print(f"  {name:8} start {a:5} end {b:5} max {m:5}")
    for name, tally in (("http", http), ("dns", dns_tally)):
        print(f"  {name:5} ok {tally.ok} failed {tally.failed}")
    for line in events:
        print(f"  {line}")
    for line in http.examples[:5] + dns_tally.examples[:5]:
        print(f"  failure: {line}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=SECONDS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_child(args.serve)
        return 0
    out = run(args.seconds)
    path = save("soak", args, **out)
    print(f"  written to {path}")
    steady_failed = out["http"]["failed"].get("steady", 0) + out["dns"]["failed"].get("steady", 0)
    return 1 if steady_failed or out["leaks"] else 0


if __name__ == "__main__":
    sys.exit(main())
