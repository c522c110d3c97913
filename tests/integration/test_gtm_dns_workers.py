"""`ubiq serve --dns-workers 2`: UDP answered by worker processes from the tables the main process
ships, their counts in /metrics, a killed worker restarted, no worker outliving ubiq serve, and a
health change reaching every worker as a table delta.

Each query comes from a fresh source port, so the kernel spreads them over both workers'
SO_REUSEPORT sockets; "every one of 20 queries" therefore covers both workers.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx

from tests.support.backends import Backend
from tests.support.dns import dig
from tests.support.gtm_helpers import TWO_REGIONS
from tests.support.poll import wait_until
from tests.support.ubiq_serve import EU, US, query, serving, write_policy

QUERIES = 20


def workers_of(pid: int) -> set[int]:
    """The DNS worker processes among ``pid``'s children."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children.update(int(c) for c in (task / "children").read_text().split())
    found = set()
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"controlplane.gtm.dns.worker" in cmdline:
            found.add(child)
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie (an orphan may wait for a reaper that never comes here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def counter(api: str, labels: str) -> float:
    text = httpx.get(f"{api}/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(labels)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


UDP_A = 'ubiq_dns_responses_total{proto="udp",rcode="NOERROR",type="A"}'


def answers(port: int) -> set[str]:
    return {",".join(query(port, timeout=2)) for _ in range(QUERIES)}


def test_workers_answer_follow_changes_count_restart_and_stop(tmp_path: Path) -> None:
    root = tmp_path / "policy"
    write_policy(root)
    with serving(root, tmp_path, "--dns-workers", "2") as served:
        workers = workers_of(served.proc.pid)
        assert len(workers) == 2, workers

        # every query answered from the shipped table, and each one counted by the first scrape
        before = counter(served.api, UDP_A)
        assert answers(served.dns_port) == {EU}
        assert counter(served.api, UDP_A) - before == QUERIES

        # a policy change reaches every worker: EU falls behind US
        policy = root / "policy.yaml"
        target = f"{{cluster: eu-west, address: {EU}, port: 8080}}"
        head, _, tail = policy.read_text().rpartition(target)  # the GlobalService's target
        policy.write_text(head + target[:-1] + ", tier: 2}" + tail)
        wait_until(lambda: answers(served.dns_port) == {US}, 20, "every worker answers US")

        # a worker that dies is restarted with the newest table; the counts do not go back
        killed = min(workers)
        counted = counter(served.api, UDP_A)
        os.kill(killed, signal.SIGKILL)
        wait_until(
            lambda: len(workers_of(served.proc.pid) - {killed}) == 2,
            30,
            "a new worker in its place",
        )
        wait_until(
            lambda: counter(served.api, "ubiq_dns_worker_restarts_total") == 1,
            10,
            "restart counted",
        )
        assert answers(served.dns_port) == {US}
        assert counter(served.api, UDP_A) >= counted + QUERIES
        assert "ubiq_dns_workers 2.0" in httpx.get(f"{served.api}/metrics", timeout=5).text

        # explain is the main process's, unchanged
        explained = httpx.get(
            f"{served.api}/v1/gtm/explain",
            params={"name": "app.gtm.example", "client": "127.0.0.1"},
        ).json()
        assert explained["answer"]["addresses"] == [US]

        # a clean stop takes the workers along
        workers = workers_of(served.proc.pid)
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(30) == 0, served.log_text()[-2000:]
    assert not any(alive(w) for w in workers)
    assert '"dns.worker.exited"' not in served.log_text().split('"dns.worker.restarted"')[-1]


def test_workers_exit_when_the_main_process_is_killed(tmp_path: Path) -> None:
    root = tmp_path / "policy"
    write_policy(root)
    with serving(root, tmp_path, "--dns-workers", "2") as served:
        workers = workers_of(served.proc.pid)
        assert len(workers) == 2
        served.proc.kill()
        served.proc.wait(10)
        wait_until(lambda: not any(alive(w) for w in workers), 10, "orphaned workers to exit")


HEALTH_POLICY = (
    TWO_REGIONS
    + """\
apiVersion: ubiq.io/v1alpha1
kind: GlobalService
metadata: {{name: app}}
spec:
  name: app.gtm.example
  zone: gtm.example
  service: app
  ttl: 5s
  targets:
  - {{cluster: eu-west, address: {eu}, port: {eu_port}}}
  - {{cluster: us-west, address: {us}, port: {us_port}, tier: 1}}
  healthCheck: {{http: {{path: /healthz}}, interval: 300ms, timeout: 300ms, unhealthyThreshold: 1, healthyThreshold: 1}}
---
apiVersion: ubiq.io/v1alpha1
kind: GlobalService
metadata: {{name: other}}
spec:
  name: other.gtm.example
  zone: gtm.example
  service: app
  ttl: 5s
  aliases: [shop.gtm.example]
  targets:
  - {{cluster: us-west, address: {us}, port: 9}}
"""
)


def dug(port: int, name: str) -> set[str]:
    """The A answers of ``QUERIES`` dig runs (each from its own source port)."""
    return {",".join(sorted(dig("127.0.0.1", port, name, "A").rdata("A"))) for _ in range(QUERIES)}


def test_a_health_change_reaches_every_worker_as_a_delta(tmp_path: Path) -> None:
    """One target's health moves one name's answers in every worker (real dig, real probes);
    the workers get the change as a table delta, and the other names answer as before, though
    the same queries, repeated, are answered from the workers' packet caches."""
    root = tmp_path / "policy"
    root.mkdir()
    eu, us = Backend("eu", EU).start(), Backend("us", US).start()
    try:
        text = HEALTH_POLICY.format(eu=EU, us=US, eu_port=eu.port, us_port=us.port)
        (root / "policy.yaml").write_text(text)
        with serving(root, tmp_path, "--dns-workers", "2", "--log-level", "debug") as served:
            port = served.dns_port
            wait_until(lambda: dug(port, "app.gtm.example") == {EU}, 30, "every worker on EU")
            assert dug(port, "shop.gtm.example") == {US}

            eu.status = 503  # EU's probe fails: app fails over to US
            wait_until(lambda: dug(port, "app.gtm.example") == {US}, 30, "every worker on US")
            assert dug(port, "other.gtm.example") == {US}

            eu.status = 200  # and back
            wait_until(lambda: dug(port, "app.gtm.example") == {EU}, 30, "every worker on EU")
            assert dug(port, "shop.gtm.example") == {US}
            assert counter(served.api, "ubiq_dns_worker_restarts_total") == 0
            # the same query bytes again (dig sends a new EDNS cookie each run, a resolver the
            # same one): answered from the workers' packet caches, which every health change
            # above emptied (a new table) since the answers moved with it
            before = counter(served.api, "ubiq_dns_packet_cache_hits_total")
            for _ in range(QUERIES):
                assert query(port, timeout=5, name="app.gtm.example") == [EU]
            assert counter(served.api, "ubiq_dns_packet_cache_hits_total") >= before + QUERIES // 2
            assert counter(served.api, "ubiq_dns_packet_cache_misses_total") >= 3 * QUERIES
        log = served.log_text()
        assert '"delta": true' in log, "no table delta was shipped"
        assert "dns.worker.table_rejected" not in log
        assert "dns.worker.exited" not in log
    finally:
        eu.close()
        us.close()
