"""`ubiq serve` as a subprocess with a small GTM policy, and the probes hostile-input tests use.

The policy serves ``app.gtm.example`` (two targets, no health checks, so the answer is known at
once); ``serving`` starts the process on free loopback ports and returns once the API answers.
``three_regions`` and ``eu_checkout_backends`` are the example mesh the Envoy e2e tests serve.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
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

from controlplane.demo.backends import DemoBackend
from tests.support.gtm_helpers import TWO_REGIONS
from tests.support.loop import loop_thread
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


EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"
EU_CHECKOUT = ("127.0.2.1", "127.0.2.2")  # the example's eu-west checkout endpoints, v1 and v2


def three_regions(root: Path, checkout_port: int) -> None:
    """The three-regions example in ``root``, its eu-west checkout endpoints on
    ``checkout_port`` (the example's 18001 may be taken) and no health checks: no gateways run
    here, so the GTM steers by the latency table alone."""
    shutil.copytree(EXAMPLE, root)
    services = root / "services.yaml"
    for address in EU_CHECKOUT:
        old = f"address: {address}, port: 18001,"
        assert old in services.read_text()
        services.write_text(
            services.read_text().replace(old, f"address: {address}, port: {checkout_port},")
        )
    gs = root / "global.yaml"
    gs.write_text("\n".join(x for x in gs.read_text().splitlines() if "healthCheck" not in x))


@contextlib.contextmanager
def eu_checkout_backends(port: int) -> Iterator[list[DemoBackend]]:
    """The eu-west checkout backends of ``three_regions`` (v1, v2) on ``port``."""
    backends = [
        DemoBackend("checkout", "eu-west", version, address, port)
        for version, address in zip(("v1", "v2"), EU_CHECKOUT, strict=True)
    ]
    with loop_thread("checkout-backends") as lt:
        for b in backends:
            lt.run(b.start(), 5)
        yield backends
        for b in backends:
            lt.run(b.stop(), 5)


def versions(client: httpx.Client, n: int) -> set[str]:
    """Which checkout versions (``x-ubiq-version``, else the HTTP status) answered ``n``
    header-canary requests sent through ``client`` (an Envoy listener serving ``three_regions``)."""
    seen = set()
    for _ in range(n):
        r = client.get("/api/x", headers={"host": "checkout.mesh.example", "x-canary": "true"})
        seen.add(r.headers.get("x-ubiq-version", str(r.status_code)))
    return seen


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
    api_ca: Path | None = None  # the CA of the API's certificate (--api-tls-*); None: plain HTTP

    @property
    def api(self) -> str:
        scheme = "http" if self.api_ca is None else "https"
        return f"{scheme}://127.0.0.1:{self.api_port}"

    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client of the API verifies its certificate with."""
        return True if self.api_ca is None else ssl.create_default_context(cafile=self.api_ca)

    def status(self) -> dict[str, object]:
        url = f"{self.api}/v1/policy/status"
        result: dict[str, object] = httpx.get(url, timeout=5, verify=self.verify()).json()
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
    root: Path,
    workdir: Path,
    *extra_args: str,
    log_format: str = "json",
    api_ca: Path | None = None,
) -> Iterator[Served]:
    """``ubiq serve root`` on free loopback ports with ``extra_args``, until /readyz answers 200
    (over TLS verified by ``api_ca`` when ``extra_args`` give the API a certificate)."""
    dns_port, api_port, xds_port = free_udp_tcp_port(), free_port(), free_port()
    argv = [
        sys.executable, "-m", "controlplane.cli", "--log-format", log_format, "serve", str(root),
        "--xds", f"127.0.0.1:{xds_port}", "--api", f"127.0.0.1:{api_port}",
        "--dns", f"127.0.0.1:{dns_port}", "--debounce-ms", "20", *extra_args,
    ]  # fmt: skip
    log = workdir / f"ubiq-{dns_port}.log"
    with running(argv, log=log) as proc:
        served = Served(proc, log, dns_port, api_port, xds_port, api_ca)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"ubiq serve exited: {served.log_text()[-2000:]}")
            # ready, not only alive: the policy directory is watched, so an edit is seen
            ready = httpx.get(f"{served.api}/readyz", timeout=1, verify=served.verify())
            return ready.status_code == 200

        wait_until(ready, 30, "ubiq serve to answer /readyz")
        yield served
