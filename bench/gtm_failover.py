"""GTM failover and recovery time: from a backend's death to a changed DNS answer, and back.

    .venv/bin/python -m bench.gtm_failover [--rounds 5] [--interval 1] [--threshold 3]

Two real HTTP backends on loopback stand for two regions (eu-west preferred, us-west tier 1);
a policy written by the bench names them as GTM targets with an HTTP health check; a
``GtmService`` (the same object ``ubiq serve`` runs) checks them and answers DNS. dnspython asks
every 50 ms. Each round waits a random fraction of an interval (so the kill lands at a random
phase of the probe schedule), stops the eu backend, times until the answer moves to us-west,
waits another random fraction, starts it again and times until the answer comes back.

Baseline, in the same run: the theoretical detection time interval x unhealthyThreshold
(recovery: interval x healthyThreshold); the ratio says how close the loop runs to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rdatatype
import structlog
from prometheus_client import CollectorRegistry

from controlplane.policy.loader import load_directory
from controlplane.serve import GtmService
from tests.support.gtm_helpers import TWO_REGIONS

RESULTS = Path(__file__).parent / "results"
NAME = "app.gtm.example"
EU_HOST, US_HOST = "127.0.0.21", "127.0.0.22"
POLL = 0.05
ROUND_LIMIT = 30.0  # seconds; a round that takes longer is reported as failed

POLICY = (
    TWO_REGIONS
    + """\
apiVersion: ubiq.io/v1alpha1
kind: GlobalService
metadata: {{name: app}}
spec:
  name: {name}
  zone: gtm.example
  service: app
  strategy: failover
  ttl: 1s
  targets:
  - {{cluster: eu-west, address: {eu}, port: {eu_port}, tier: 0}}
  - {{cluster: us-west, address: {us}, port: {us_port}, tier: 1}}
  healthCheck:
    http: {{path: /healthz}}
    interval: {interval_ms}ms
    timeout: {timeout_ms}ms
    unhealthyThreshold: {threshold}
    healthyThreshold: {healthy}
"""
)


async def _ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    writer.close()


class Backend:
    """A loopback HTTP server that can die and come back on the same address and port."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(_ok, self.host, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def kill(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def _answer(port: int) -> tuple[str, ...]:
    query = dns.message.make_query(f"{NAME}.", dns.rdatatype.A)
    try:
        response = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=1.0)
    except dns.exception.Timeout:
        return ("timeout",)
    return tuple(sorted(rr.address for rrset in response.answer for rr in rrset))


async def _until(port: int, want: tuple[str, ...], started: float) -> float:
    """Seconds from ``started`` until DNS answers ``want`` (polled every POLL s); inf on timeout."""
    while time.monotonic() - started < ROUND_LIMIT:
        if await _answer(port) == want:
            return time.monotonic() - started
        await asyncio.sleep(POLL)
    return float("inf")


async def run(rounds: int, interval: float, threshold: int, healthy: int) -> dict[str, Any]:
    eu, us = Backend(EU_HOST), Backend(US_HOST)
    await eu.start()
    await us.start()
    with tempfile.TemporaryDirectory(prefix="ubiq-bench-") as tmp:
        policy = Path(tmp) / "global.yaml"
        policy.write_text(
            POLICY.format(
                eu=EU_HOST, us=US_HOST, eu_port=eu.port, us_port=us.port, name=NAME,
                interval_ms=int(interval * 1000), timeout_ms=int(min(interval, 1.0) * 500),
                threshold=threshold, healthy=healthy,
            )
        )  # fmt: skip
        model = load_directory(tmp)
    runtime = GtmService([("127.0.0.1", 0)], registry=CollectorRegistry())
    await runtime.start(model)
    assert runtime.server is not None
    port = runtime.server.addresses[0][2]
    failover: list[float] = []
    recovery: list[float] = []
    rng = random.Random(7)
    try:
        if await _until(port, (EU_HOST,), time.monotonic()) == float("inf"):
            raise SystemExit("the GTM never answered the eu backend")
        for i in range(rounds):
            await asyncio.sleep(rng.uniform(0, interval))  # a random phase of the probe schedule
            await eu.kill()
            failover.append(await _until(port, (US_HOST,), time.monotonic()))
            await asyncio.sleep(rng.uniform(0, interval))
            await eu.start()
            recovery.append(await _until(port, (EU_HOST,), time.monotonic()))
            print(f"round {i + 1}: failover {failover[-1]:.2f}s, recovery {recovery[-1]:.2f}s")
    finally:
        await runtime.stop()
        await eu.kill()
        await us.kill()
    return {
        "failover": failover,
        "recovery": recovery,
        "theory_failover": interval * threshold,
        "theory_recovery": interval * healthy,
    }


def _row(case: str, values: list[float], theory: float) -> dict[str, Any]:
    p50 = statistics.median(values)
    worst = max(values)
    return {
        "case": case,
        "rounds": len(values),
        "p50_s": p50,
        "max_s": worst,
        "theory_s": theory,
        "p50_ratio": p50 / theory,
        "max_ratio": worst / theory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0, help="health check interval, s")
    parser.add_argument("--threshold", type=int, default=3, help="unhealthyThreshold")
    parser.add_argument("--healthy", type=int, default=2, help="healthyThreshold")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 50:
        parser.error("--rounds must be 1..50")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    got = asyncio.run(run(args.rounds, args.interval, args.threshold, args.healthy))
    rows = [
        _row("failover (backend dies -> answer moves)", got["failover"], got["theory_failover"]),
        _row("recovery (backend back -> answer back)", got["recovery"], got["theory_recovery"]),
    ]
    print()
    print(
        f"interval {args.interval:g}s, unhealthyThreshold {args.threshold}, "
        f"healthyThreshold {args.healthy}, DNS polled every {POLL * 1000:.0f} ms"
    )
    print(
        f"{'case':42} {'rounds':>6} {'p50 s':>7} {'max s':>7} {'theory s':>9} "
        f"{'p50/theory':>11} {'max/theory':>11}"
    )
    for r in rows:
        print(
            f"{r['case']:42} {r['rounds']:6d} {r['p50_s']:7.2f} {r['max_s']:7.2f} "
            f"{r['theory_s']:9.2f} {r['p50_ratio']:10.2f}x {r['max_ratio']:10.2f}x"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "gtm_failover.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "gtm_failover",
                "machine": platform.platform(),
                "python": platform.python_version(),
                "args": vars(args),
                "rows": rows,
                "raw": got,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")
    if any(v == float("inf") for v in got["failover"] + got["recovery"]):
        raise SystemExit(f"a round did not finish within {ROUND_LIMIT:.0f}s")


if __name__ == "__main__":
    main()
