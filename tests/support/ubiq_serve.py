"""`ubiq serve` as a subprocess with a small GTM policy, and the probes hostile-input tests use.

The policy serves ``app.gtm.example`` (two targets, no health checks, so the answer is known at
once); ``serving`` starts the process on free loopback ports and returns once the API answers.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import httpx

from tests.support.gtm_helpers import TWO_REGIONS
from tests.support.procs import free_port, free_udp_tcp_port, running

NAME = "app.gtm.example"
EU, US = "127.0.0.21", "127.0.0.22"

GLOBAL = """\
apiVersion: ubiq.io/v1alpha1
kind: GlobalService
metadata: {{name: app}}
spec:
  name: {name}
  zone: gtm.example
  service: app
  strategy: {strategy}
  ttl: 5s
  targets:
  - {{cluster: eu-west, address: {eu}, port: 8080}}
  - {{cluster: us-west, address: {us}, port: 8080, tier: 1}}
{extra}"""


def write_policy(root: Path, extra: str = "", strategy: str = "failover") -> None:
    """The two-region GTM policy; ``extra`` lines are appended to the GlobalService spec."""
    root.mkdir(parents=True, exist_ok=True)
    text = TWO_REGIONS.format(eu=EU, us=US, eu_port=8080, us_port=8080)
    spec = GLOBAL.format(name=NAME, eu=EU, us=US, extra=extra, strategy=strategy)
    (root / "policy.yaml").write_text(text + spec)


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    log: Path
    dns_port: int
    api_port: int
    xds_port: int

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def status(self) -> dict[str, object]:
        result: dict[str, object] = httpx.get(f"{self.api}/v1/policy/status", timeout=5).json()
        return result

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def query(
    port: int, *, timeout: float, name: str = NAME, tcp: bool = False, subnet: str | None = None
) -> list[str]:
    """A/addresses answered for ``name`` (raises dns.exception.Timeout past ``timeout``);
    ``subnet`` (``"10.0.0.0/24"``) is sent as EDNS client-subnet."""
    options = []
    if subnet is not None:
        address, _, prefix = subnet.partition("/")
        options.append(dns.edns.ECSOption(address, int(prefix)))
    request = dns.message.make_query(name, "A", use_edns=0 if options else None, options=options)
    send = dns.query.tcp if tcp else dns.query.udp
    response = send(request, "127.0.0.1", port=port, timeout=timeout)
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
    return sorted(str(rr) for rrset in response.answer for rr in rrset)


def wait_until(check: object, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError):
            if check():  # type: ignore[operator]
                return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Asking:
    """Queries ``port`` back to back in a thread, each with its own ``timeout``, counting
    answers and timeouts, until the with-block ends."""

    def __init__(self, port: int, *, timeout: float, subnet: str | None = None) -> None:
        self.port, self.timeout, self.subnet = port, timeout, subnet
        self.answered = 0
        self.timeouts = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dns-asker", daemon=True)

    def _run(self) -> None:
        while not self._done.is_set() and self.answered + self.timeouts < 1_000_000:
            try:
                query(self.port, timeout=self.timeout, subnet=self.subnet)
                self.answered += 1
            except dns.exception.Timeout:
                self.timeouts += 1

    def more_answers(self, count: int, timeout: float = 20) -> None:
        """Wait (bounded) until ``count`` more queries than now have been answered."""
        target = self.answered + count
        wait_until(lambda: self.answered >= target, timeout, f"{count} more DNS answers")

    def __enter__(self) -> Asking:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(10)


@contextlib.contextmanager
def serving(
    root: Path, workdir: Path, *extra_args: str, log_format: str = "json"
) -> Iterator[Served]:
    dns_port, api_port, xds_port = free_udp_tcp_port(), free_port(), free_port()
    argv = [
        sys.executable, "-m", "controlplane.cli", "--log-format", log_format, "serve", str(root),
        "--xds", f"127.0.0.1:{xds_port}", "--api", f"127.0.0.1:{api_port}",
        "--dns", f"127.0.0.1:{dns_port}", "--debounce-ms", "20", *extra_args,
    ]  # fmt: skip
    log = workdir / f"ubiq-{dns_port}.log"
    with running(argv, log=log) as proc:
        served = Served(proc, log, dns_port, api_port, xds_port)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"ubiq serve exited: {served.log_text()[-2000:]}")
            # ready, not only alive: the policy directory is watched, so an edit is seen
            return httpx.get(f"{served.api}/readyz", timeout=1).status_code == 200

        wait_until(ready, 30, "ubiq serve to answer /readyz")
        yield served
