"""`ubiq serve --dns-workers 2`: UDP answered by worker processes from the tables the main process
ships, their counts in /metrics, a killed worker restarted, and no worker outliving ubiq serve.

Each query comes from a fresh source port, so the kernel spreads them over both workers'
SO_REUSEPORT sockets; "every one of 20 queries" therefore covers both workers.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx

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
