"""Response-rate limiting in DNS worker processes (``ubiq serve --dns-workers 2``): a real dnsperf
floods from one loopback source over several sockets, so the kernel spreads it over both
workers, which charge one shared account; the limiters' counters reach the main process's /metrics, and a real dig from the
flooded prefix still gets its answer (over TCP, after a slipped response)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.support.dns import dig
from tests.support.poll import wait_until
from tests.support.procs import require_binary
from tests.support.ubiq_serve import EU, NAME, serving, write_policy

FLOODER = "127.0.1.1"
QUERIES = 400  # at 5/s per prefix with a 60 s window: most of them limited


def rrl_metrics(api: str) -> dict[str, float]:
    """The ubiq_dns_rrl_* samples, and ``udp``: every UDP query counted (answered or not)."""
    out = {"udp": 0.0}
    for line in httpx.get(f"{api}/metrics", timeout=5).text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("ubiq_dns_rrl_"):
            out[name] = float(value)
        elif name.startswith('ubiq_dns_requests_total{proto="udp"'):
            out["udp"] += float(value)
    return out


def test_worker_limiters_count_into_serve_metrics(tmp_path: Path) -> None:
    require_binary("dnsperf")
    write_policy(tmp_path / "policies")
    flags = (
        "--dns-workers", "2", "--dns-rrl-rate", "5", "--dns-rrl-window", "60",
        "--dns-rrl-exempt", "none",
    )  # fmt: skip
    with serving(tmp_path / "policies", tmp_path, *flags) as served:
        before = rrl_metrics(served.api)
        assert before["ubiq_dns_rrl_limited_total"] == 0
        data = tmp_path / "queries.txt"
        data.write_text(f"{NAME} A\n" * QUERIES)
        perf = subprocess.run(
            ["dnsperf", "-s", "127.0.0.1", "-p", str(served.dns_port), "-a", FLOODER,
             "-d", str(data), "-n", "1", "-c", "8", "-t", "1", "-q", str(QUERIES)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert "Queries sent:         400" in perf.stdout, perf.stdout
        # the workers push their counts; a scrape asks them first, so they are all there
        wait_until(
            lambda: rrl_metrics(served.api)["udp"] >= QUERIES,
            timeout=20,
            what="the flood's queries counted in /metrics",
        )
        after = rrl_metrics(served.api)
        limited = after["ubiq_dns_rrl_limited_total"]
        assert limited >= QUERIES // 2  # a burst of 5 and 5/s refill, for both workers
        assert limited == after["ubiq_dns_rrl_slipped_total"] + after["ubiq_dns_rrl_dropped_total"]
        assert after["ubiq_dns_rrl_slipped_total"] > 0 and after["ubiq_dns_rrl_dropped_total"] > 0
        # the prefix's, in the table both share (two if both workers made it at one instant)
        assert 1 <= after["ubiq_dns_rrl_accounts"] <= 2
        # a real resolver in the flooded prefix: limited (slipped or dropped), dig retries; it is
        # answered in the end over TCP, which is never limited
        result = dig("127.0.0.1", served.dns_port, NAME, "A", "-b", FLOODER, "+tries=5")
        assert result.status == "NOERROR" and result.rdata("A") == [EU]
