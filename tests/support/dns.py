"""DNS test helpers: a sample GTM table, an in-process server thread, and real clients (dig, kdig, unbound)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from controlplane.gtm.dns.server import DnsServer
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.dns.zone import StaticRecord, Zone
from controlplane.gtm.groups import ClientGroups
from controlplane.gtm.types import ClientGroup, Decision, SteeringPolicy, Target
from tests.support.procs import require_binary, running, wait_for_port

ORIGIN = "gtm.example"
EU_V4, US_V4, EU_V6 = "198.51.100.1", "198.51.100.2", "2001:db8::1"


def sample_groups() -> ClientGroups:
    net = ipaddress.ip_network
    return ClientGroups(
        [
            ClientGroup(
                "eu", (net("127.0.0.2/32"), net("10.1.0.0/16"), net("2001:db8:e::/48")), "eu-west"
            ),
            ClientGroup("us", (net("127.0.0.3/32"), net("10.2.0.0/16")), "us-east"),
        ]
    )


def sample_zone(*, nameserver_ip: str = "127.0.0.1") -> Zone:
    big = " ".join(f'"{"x" * 200}-{i}"' for i in range(4))  # > 512 bytes: forces TC over plain UDP
    return Zone(
        origin=ORIGIN,
        nameservers=(f"ns1.{ORIGIN}", f"ns2.{ORIGIN}"),
        glue={f"ns1.{ORIGIN}": (nameserver_ip, "::1"), f"ns2.{ORIGIN}": (nameserver_ip,)},
        records=(
            StaticRecord(f"static.{ORIGIN}", "A", "192.0.2.1"),
            StaticRecord(f"static.{ORIGIN}", "MX", f"10 mail.{ORIGIN}."),
            StaticRecord(f"leaf.ent.{ORIGIN}", "A", "192.0.2.2"),
            StaticRecord(f"www.{ORIGIN}", "CNAME", f"app.{ORIGIN}."),
            StaticRecord(f"ext.{ORIGIN}", "CNAME", "www.elsewhere.test."),
            StaticRecord(f"big.{ORIGIN}", "TXT", big),
        ),
    )


def sample_policy() -> SteeringPolicy:
    return SteeringPolicy(
        name=f"app.{ORIGIN}",
        zone=ORIGIN,
        strategy="geo",
        targets=(
            Target("eu-west-1", "eu-west", EU_V4, 8443),
            Target("eu-west-1", "eu-west", EU_V6, 8443),
            Target("us-east-1", "us-east", US_V4, 8080, weight=2),
        ),
        ttl=10,
    )


def sample_decisions() -> list[Decision]:
    app = f"app.{ORIGIN}"
    return [
        Decision(app, "eu", (EU_V4, EU_V6), regions=("eu-west",), reasons=("geo: eu clients",)),
        Decision(app, "us", (US_V4,), regions=("us-east",)),
        Decision(app, "default", (EU_V4, US_V4), regions=("eu-west", "us-east")),
        Decision(f"down.{ORIGIN}", "default", (), servfail=True),
        Decision(f"same.{ORIGIN}", "eu", (US_V4,), depends_on_client=False),
        Decision(f"same.{ORIGIN}", "default", (US_V4,), depends_on_client=False),
    ]


def sample_table(
    *, generation: int = 1, allow_transfer: Sequence[str] = (), nameserver_ip: str = "127.0.0.1"
) -> AnswerTable:
    return AnswerTable.build(
        [sample_zone(nameserver_ip=nameserver_ip)],
        sample_decisions(),
        sample_groups(),
        [sample_policy()],
        generation=generation,
        allow_transfer=[ipaddress.ip_network(n) for n in allow_transfer],
    )


@contextlib.contextmanager
def serve_in_thread(
    table: AnswerTable, listen: Sequence[tuple[str, int]], **kwargs: object
) -> Iterator[DnsServer]:
    """A DnsServer on its own event loop in a daemon thread, for clients run from the test."""
    loop = asyncio.new_event_loop()
    server = DnsServer(table, listen=list(listen), **kwargs)  # type: ignore[arg-type]
    started = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:
            errors.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="dns-server", daemon=True)
    thread.start()
    started.wait(10)
    if errors:
        raise errors[0]
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@dataclass(frozen=True)
class DigResult:
    status: str
    flags: frozenset[str]
    answer: list[str]  # "name ttl class type rdata" lines
    authority: list[str]
    ecs_scope: int | None
    raw: str

    def rdata(self, rtype: str) -> list[str]:
        return [line.split(None, 4)[4] for line in self.answer if line.split()[3] == rtype]


def dig(
    server: str, port: int, name: str, rtype: str = "A", *options: str, binary: str = "dig"
) -> DigResult:
    """Run dig (or kdig) against the server and parse its output."""
    path = require_binary(binary)
    limits = ["+timeout=2", "+retry=0"] if binary == "kdig" else ["+time=2", "+tries=1"]
    argv = [path, f"@{server}", "-p", str(port), name, rtype, "+norec", *limits, *options]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    out = done.stdout or done.stderr
    return parse_dig(out)


def parse_dig(out: str) -> DigResult:
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r"[Ff]lags: ([a-z ]+);", out)
    scope = re.search(r"CLIENT-SUBNET: [0-9a-f.:]+/\d+/(\d+)", out)
    sections: dict[str, list[str]] = {"ANSWER": [], "AUTHORITY": []}
    current = None
    for line in out.splitlines():
        head = re.match(r";; (\w+) SECTION:", line)
        if head:
            current = head.group(1)
            continue
        if not line.strip() or line.startswith(";"):
            if not line.strip():
                current = None
            continue
        if current in sections:
            sections[current].append(" ".join(line.split()))
    return DigResult(
        status=status.group(1) if status else "NONE",
        flags=frozenset(flags.group(1).split()) if flags else frozenset(),
        answer=sections["ANSWER"],
        authority=sections["AUTHORITY"],
        ecs_scope=int(scope.group(1)) if scope else None,
        raw=out,
    )


UNBOUND_CONF = """server:
    interface: 127.0.0.1
    port: {port}
    access-control: 127.0.0.0/8 allow
    do-ip6: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    logfile: ""
    use-syslog: no
    verbosity: 1
    do-daemonize: no
    num-threads: 1
    do-not-query-localhost: no
    module-config: "subnetcache validator iterator"
    send-client-subnet: 127.0.0.0/8
    client-subnet-always-forward: yes
    max-client-subnet-ipv4: 32
    max-client-subnet-ipv6: 128
    qname-minimisation: no
    harden-referral-path: no
    domain-insecure: "{origin}"
    trust-anchor-file: ""
remote-control:
    control-enable: no
stub-zone:
    name: "{origin}"
    stub-addr: 127.0.0.1@{upstream}
"""


@contextlib.contextmanager
def unbound(workdir: Path, port: int, upstream_port: int, origin: str = ORIGIN) -> Iterator[None]:
    """A recursive unbound on 127.0.0.1:port that sends ECS and stubs ``origin`` to our server."""
    binary = require_binary("unbound")
    conf = workdir / "unbound.conf"
    text = UNBOUND_CONF.format(port=port, dir=workdir, origin=origin, upstream=upstream_port)
    conf.write_text(text.replace('    trust-anchor-file: ""\n', ""))
    with running([binary, "-d", "-c", str(conf)], log=workdir / "unbound.log"):
        wait_for_port("127.0.0.1", port)
        yield
