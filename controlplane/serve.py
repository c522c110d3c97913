"""``ubiq serve``: the long-running process -- policy store, xDS server, GTM, API.

Wiring only: the store announces each new valid model; the xDS runtime compiles and publishes
snapshots, the GTM planner recomputes its answer table. A rejected change reaches neither.
``GtmService`` owns the GTM's I/O around the planner: the DNS listeners, the health checker and
the rotation timer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from prometheus_client import CollectorRegistry

from controlplane.endpoints.memory import MemoryRegistry
from controlplane.endpoints.model import merge_registered
from controlplane.endpoints.registry import EndpointRegistry
from controlplane.errors import ListenError, UbiqError
from controlplane.gcpolicy import keep_long_lived, manage
from controlplane.gtm.dns.dot import (
    HANDSHAKE_TIMEOUT,
    DotSettings,
    ReloadingContext,
    add_dot_arguments,
    dot_from_args,
)
from controlplane.gtm.dns.metrics import DnsMetrics
from controlplane.gtm.dns.rrl import ResponseRateLimiter, RrlConfig
from controlplane.gtm.dns.rrl_options import add_rrl_arguments, rrl_config_from_args
from controlplane.gtm.dns.server import DnsServer
from controlplane.gtm.dns.workers import DnsWorkers, WorkerCollector
from controlplane.gtm.health.checker import HealthChecker
from controlplane.gtm.plan import DecidedPlan, GtmConfig
from controlplane.gtm.runtime import GtmRuntime, glue_addresses
from controlplane.gtm.types import HealthView
from controlplane.heaptrace import HeapTrace
from controlplane.loop import PlacementLoop
from controlplane.malloctrim import trim_forever
from controlplane.observability.process import PolicyCollector, register_process_metrics
from controlplane.pki.files import file_pair
from controlplane.placement.consumers import xds_decisions
from controlplane.placement.decision import Decision, compiler_decisions
from controlplane.placement.static import PlacedCluster
from controlplane.policy.model import Model
from controlplane.policy.sources import open_source
from controlplane.policy.store import PolicySource
from controlplane.replica.leader import DEFAULT_TTL_S
from controlplane.replica.serving import ReplicaServing
from controlplane.xds.bootstrap import XDS_CLUSTER
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.compiler.options import CompileOptions
from controlplane.xds.metrics import MeteredStatus
from controlplane.xds.runtime import XdsRuntime
from controlplane.xds.server import XdsServer
from controlplane.xds.sync_state import overall, proxy_sync
from controlplane.xds.tls import ReloadingTls, TlsFiles

if TYPE_CHECKING:  # imported where used: the API stack (FastAPI, its OpenAPI models) only with
    # --api on, etcd with an etcd store, the Prometheus poller with --prometheus, cryptography
    # with a workload CA
    from controlplane.api.dryrun import DiffContext
    from controlplane.api.server import ApiServer
    from controlplane.feedback.poller import FeedbackPoller
    from controlplane.xds.workload_certs import WorkloadCerts

log = structlog.get_logger("ubiq.serve")

T = TypeVar("T")


def parse_hostport(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = default_host, value
    host = host.strip("[]") or default_host
    try:
        number = int(port)
    except ValueError:
        raise UbiqError(f"expected HOST:PORT, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise UbiqError(f"port must be 0..65535, got {number}")
    return host, number


def env_default(name: str, fallback: str) -> str:
    """A flag's default: the environment variable when set, else ``fallback``."""
    return os.environ.get(name) or fallback


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--xds",
        default=env_default("UBIQ_XDS", "127.0.0.1:18000"),
        help="xDS (ADS) gRPC address (env UBIQ_XDS)",
    )
    p.add_argument(
        "--dns",
        action="append",
        help="DNS listen address, repeatable (default: $UBIQ_DNS, comma-separated, else"
        " 127.0.0.1:5353); 'off' disables the GTM",
    )
    p.add_argument(
        "--dns-workers",
        default=env_default("UBIQ_DNS_WORKERS", "auto"),
        metavar="N",
        help="processes answering DNS over UDP (SO_REUSEPORT); 0 answers in the main process;"
        " auto: one per CPU this process may use but one, at least 1"
        " (env UBIQ_DNS_WORKERS; default auto)",
    )
    p.add_argument(
        "--ns-label",
        default="ns1",
        help="label of the GTM's NS name in each zone (ns1 -> ns1.ZONE)",
    )
    p.add_argument(
        "--ns-address",
        action="append",
        help="address published as the NS glue, repeatable (default: the --dns addresses);"
        " list every replica's public address",
    )
    p.add_argument(
        "--allow-transfer",
        action="append",
        default=[],
        metavar="CIDR",
        help="networks allowed to AXFR the GTM's zones, repeatable (default: refused to all)",
    )
    p.add_argument(
        "--api",
        default=env_default("UBIQ_API", "127.0.0.1:8081"),
        help="HTTP API address; 'off' disables it (env UBIQ_API)",
    )
    p.add_argument(
        "--api-token-file",
        type=Path,
        default=os.environ.get("UBIQ_API_TOKEN_FILE") or None,
        metavar="FILE",
        help="API bearer tokens, one 'TOKEN SCOPE[,SCOPE]' per line (scopes: read, write);"
        " $UBIQ_API_TOKEN adds one read,write token; without any token reads are open and"
        " writes refused (env UBIQ_API_TOKEN_FILE)",
    )
    p.add_argument(
        "--api-allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a Host the API answers, repeatable; '*' allows any (default: localhost,"
        " 127.0.0.1, ::1 and the --api host); others get 421",
    )
    p.add_argument(
        "--api-tls-cert",
        type=Path,
        metavar="PEM",
        help="serve the API over TLS with this certificate",
    )
    p.add_argument(
        "--api-tls-key", type=Path, metavar="PEM", help="the --api-tls-cert's private key"
    )
    p.add_argument("--listener-port", type=int, default=10000, help="Envoy HTTP listener port")
    p.add_argument(
        "--listener-address", default="0.0.0.0", help="address Envoy's HTTP listener binds"
    )
    p.add_argument(
        "--xds-vhds",
        action="store_true",
        help="send Envoys their virtual hosts over VHDS, one resource each (default: off, every"
        " host inside the RouteConfiguration)",
    )
    p.add_argument("--debounce-ms", type=int, default=100, help="wait this long after a change")
    p.add_argument(
        "--store",
        metavar="etcd://HOST:PORT[,HOST:PORT...]/PREFIX",
        help="read policies from etcd instead of a directory (replicas share one store)",
    )
    p.add_argument(
        "--prometheus",
        default=os.environ.get("UBIQ_PROMETHEUS") or None,
        metavar="URL",
        help="Prometheus scraping the Envoys: closes the feedback loop (metric-driven placement,"
        " canaries); without it placement decides from the model and health and no canary"
        " runs (env UBIQ_PROMETHEUS)",
    )
    p.add_argument(
        "--feedback-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="seconds between Prometheus polls",
    )
    p.add_argument(
        "--replica-name",
        default=env_default("UBIQ_REPLICA_NAME", ""),
        metavar="NAME",
        help="this replica's name in the leader election (with --store etcd:// and --prometheus;"
        " default: HOSTNAME-PID; env UBIQ_REPLICA_NAME)",
    )
    p.add_argument(
        "--leader-ttl",
        type=int,
        default=DEFAULT_TTL_S,
        metavar="SECONDS",
        help=f"lease TTL of the elected leader: a new one leads within it when the leader dies"
        f" (default {DEFAULT_TTL_S})",
    )
    add_rrl_arguments(p)
    add_dot_arguments(p)
    add_xds_tls_arguments(p)
    add_workload_ca_arguments(p)


# --- xDS mTLS and workload CA options (docs/security.md) ---------------------------------------------------------


#: (flag, type, metavar, default, help) of each option, in --help order
_Flag = tuple[str, type, str, object, str]

_XDS_TLS_FLAGS: tuple[_Flag, ...] = (
    (
        "--xds-tls-cert",
        Path,
        "PEM",
        None,
        "serve xDS over TLS with this certificate (chain); re-read when it changes."
        " Needs --xds-tls-key and --xds-tls-client-ca (default: plaintext xDS)",
    ),
    ("--xds-tls-key", Path, "PEM", None, "the private key of --xds-tls-cert"),
    (
        "--xds-tls-client-ca",
        Path,
        "PEM",
        None,
        "CA bundle xDS clients' certificates must chain to; each certificate's"
        " spiffe://TD/cluster/CLUSTER/node/NODE must match the node it serves",
    ),
)

_WORKLOAD_CA_FLAGS: tuple[_Flag, ...] = (
    (
        "--workload-ca-cert",
        Path,
        "PEM",
        None,
        "CA that issues workload certificates for TrafficPolicy tls ISTIO_MUTUAL (served"
        " over SDS); needs --workload-ca-key (default: none, mutual services get no remote"
        " endpoints)",
    ),
    ("--workload-ca-key", Path, "PEM", None, "the private key of --workload-ca-cert"),
    (
        "--workload-cert-ttl",
        float,
        "SECONDS",
        3600.0,
        "lifetime of each workload certificate; re-issued and pushed at half of it",
    ),
)


def _add_flags(p: argparse.ArgumentParser, flags: Sequence[_Flag]) -> None:
    for flag, kind, metavar, default, text in flags:
        p.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)


def add_xds_tls_arguments(p: argparse.ArgumentParser) -> None:
    _add_flags(p, _XDS_TLS_FLAGS)


def add_workload_ca_arguments(p: argparse.ArgumentParser) -> None:
    _add_flags(p, _WORKLOAD_CA_FLAGS)


@dataclass(frozen=True, slots=True)
class WorkloadCa:
    cert: Path
    key: Path
    ttl_seconds: float = 3600.0


def workload_ca_from_args(args: argparse.Namespace) -> WorkloadCa | None:
    pair = file_pair(
        ("--workload-ca-cert", args.workload_ca_cert), ("--workload-ca-key", args.workload_ca_key)
    )
    if pair is None:
        return None
    if args.workload_cert_ttl < 2:
        raise UbiqError(f"--workload-cert-ttl: at least 2 seconds, got {args.workload_cert_ttl}")
    return WorkloadCa(*pair, args.workload_cert_ttl)


def load_workload_certs(ca: WorkloadCa) -> WorkloadCerts:
    from controlplane.pki.certs import Authority
    from controlplane.xds.workload_certs import WorkloadCerts

    pems = []
    for flag, path in (("--workload-ca-cert", ca.cert), ("--workload-ca-key", ca.key)):
        try:
            pems.append(path.read_bytes())
        except OSError as exc:
            raise UbiqError(f"{flag} {path}: {exc.strerror or exc}") from None
    authority = Authority.load(
        pems[0], pems[1], f"--workload-ca-cert {ca.cert} / --workload-ca-key"
    )
    return WorkloadCerts(authority, ttl=dt.timedelta(seconds=ca.ttl_seconds))


def xds_tls_from_args(args: argparse.Namespace) -> TlsFiles | None:
    given = {flag: getattr(args, flag[2:].replace("-", "_")) for flag, *_ in _XDS_TLS_FLAGS}
    if not any(given.values()):
        return None
    missing = [flag for flag, value in given.items() if value is None]
    if missing:
        raise UbiqError(
            f"{', '.join(missing)}: required with {', '.join(f for f in given if f not in missing)}"
            " (xDS over TLS needs a certificate, its key and the clients' CA)"
        )
    return TlsFiles(cert=args.xds_tls_cert, key=args.xds_tls_key, client_ca=args.xds_tls_client_ca)


# --- end of xDS mTLS and workload CA options ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServeOptions:
    directory: Path | None
    xds: tuple[str, int] = ("127.0.0.1", 18000)
    dns: tuple[tuple[str, int], ...] = (("127.0.0.1", 5353),)
    api: tuple[str, int] | None = ("127.0.0.1", 8081)
    gtm: GtmConfig | None = None  # default: NS glue from the DNS listen addresses
    compile: CompileOptions = field(default_factory=CompileOptions)
    debounce_ms: int = 100
    store: str | None = None  # etcd://... instead of the directory
    prometheus: str | None = None  # None: placement on the model and health, no canaries
    feedback_interval: float = 2.0
    api_token_file: Path | None = None
    api_allowed_hosts: tuple[str, ...] = ()  # empty: the defaults (localhost, loopback, --api host)
    api_tls: tuple[Path, Path] | None = None  # (certificate, key)
    replica_name: str = ""  # default: HOSTNAME-PID
    leader_ttl: int = DEFAULT_TTL_S
    rrl: RrlConfig = field(default_factory=RrlConfig)
    xds_tls: TlsFiles | None = None  # None: plaintext xDS
    workload_ca: WorkloadCa | None = None  # None: no workload certificates (SDS)
    dns_workers: int = 0  # UDP answered by this many worker processes; 0: in the main process
    dns_tls: DotSettings | None = None  # DNS over TLS listeners; None: off

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeOptions:
        from_env = [d.strip() for d in os.environ.get("UBIQ_DNS", "").split(",") if d.strip()]
        dns_args = args.dns or from_env or ["127.0.0.1:5353"]
        dns = () if dns_args == ["off"] else tuple(parse_hostport(d) for d in dns_args)
        gtm = None
        if args.ns_address or args.ns_label != "ns1" or args.allow_transfer:
            addresses = args.ns_address or list(glue_addresses(dns))
            for address in addresses:
                try:
                    ipaddress.ip_address(address)
                except ValueError:
                    raise UbiqError(
                        f"--ns-address: expected an IP address, got {address!r}"
                    ) from None
            for network in args.allow_transfer:
                try:
                    ipaddress.ip_network(network, strict=False)
                except ValueError:
                    raise UbiqError(
                        f"--allow-transfer: expected a network, got {network!r}"
                    ) from None
            gtm = GtmConfig(
                ns_label=args.ns_label,
                ns_addresses=tuple(dict.fromkeys(addresses)),
                allow_transfer=tuple(args.allow_transfer),
            )
        return cls(
            directory=args.directory,
            gtm=gtm,
            xds=parse_hostport(args.xds),
            dns=dns,
            api=None if args.api == "off" else parse_hostport(args.api),
            compile=CompileOptions(
                listener_port=args.listener_port,
                listener_address=args.listener_address,
                vhds_cluster=XDS_CLUSTER if args.xds_vhds else None,
            ),
            debounce_ms=args.debounce_ms,
            store=args.store,
            prometheus=args.prometheus,
            feedback_interval=args.feedback_interval,
            api_token_file=args.api_token_file,
            api_allowed_hosts=_allowed_hosts(args.api_allowed_host),
            api_tls=file_pair(
                ("--api-tls-cert", args.api_tls_cert), ("--api-tls-key", args.api_tls_key)
            ),
            replica_name=args.replica_name,
            leader_ttl=args.leader_ttl,
            rrl=rrl_config_from_args(args),
            xds_tls=xds_tls_from_args(args),
            workload_ca=workload_ca_from_args(args),
            dns_workers=dns_workers(args.dns_workers),
            dns_tls=_dot(args, dns),
        )


def _dot(args: argparse.Namespace, dns: tuple[tuple[str, int], ...]) -> DotSettings | None:
    settings = dot_from_args(args, parse_hostport)
    if settings is not None and not dns:
        raise UbiqError("--dns-tls: needs the GTM, which --dns off turns off")
    return settings


def _etcd_registry(location: Any) -> EndpointRegistry:
    from controlplane.endpoints.etcd_registry import EtcdRegistry
    from controlplane.etcd.client import EtcdClient

    return EtcdRegistry(EtcdClient(location.endpoints), location.prefix)


def _allowed_hosts(hosts: Sequence[str]) -> tuple[str, ...]:
    if not hosts:
        return ()
    from controlplane.api.auth import check_allowed_host

    return tuple(check_allowed_host(h) for h in hosts)


def dns_workers(value: str) -> int:
    """``--dns-workers``: a count, or ``auto`` = the CPUs this process may run on but one (the
    main process plans, probes and serves xDS and TCP on it), at least 1: on 2 cores one worker
    answered more, and more steadily, than two (docs/benchmarks.md)."""
    if value == "auto":
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        return max(1, cpus - 1)
    try:
        count = int(value)
    except ValueError:
        count = -1
    if not 0 <= count <= 256:
        raise UbiqError(f"--dns-workers: expected 0..256 or auto, got {value!r}")
    return count


def _check_free(what: str, host: str, port: int) -> None:
    """gRPC reports a taken port as a RuntimeError after logging its own line: ask the kernel
    first, so the user sees one line naming the flag."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ListenError(f"{what}: cannot listen: {exc.strerror or exc}") from None


async def _bind(what: str, starting: Awaitable[T]) -> T:
    """A server that cannot listen is a one-line error naming the flag, not a traceback."""
    try:
        return await starting
    except OSError as exc:
        raise ListenError(f"{what}: cannot listen: {exc.strerror or exc}") from None
    except RuntimeError as exc:  # grpc: "Failed to bind to address ..."
        if "bind" not in str(exc):
            raise
        raise ListenError(f"{what}: cannot listen (address in use?)") from None
    except SystemExit:  # uvicorn exits when it cannot bind
        raise ListenError(f"{what}: cannot listen (address in use?)") from None


class GtmService:
    """The GTM as it runs: the planner (``GtmRuntime``), its DNS listeners, health checker and
    rotation timer. Each decided plan's table is swapped into the DNS server in one assignment;
    health changes and rotation boundaries ask the planner for a rebuild."""

    def __init__(
        self,
        listen: Sequence[tuple[str, int]],
        *,
        config: GtmConfig | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        on_health: Callable[[HealthView], None] | None = None,
        rrl: RrlConfig | None = None,
        workers: int = 0,
        dot: DotSettings | None = None,
    ) -> None:
        """``workers``: DNS worker processes answering UDP (0: UDP in this process); ``dot``: DNS
        over TLS listeners, served here with TCP."""
        self._rrl = rrl
        self._dot = dot
        self.dot_tls = ReloadingContext(dot.cert, dot.key) if dot is not None else None
        self.registry = registry if registry is not None else CollectorRegistry()
        self._listen = list(listen)
        self._worker_count = workers
        self._on_health = on_health
        self._clock = clock
        self.planner = GtmRuntime(
            config or GtmConfig(ns_addresses=glue_addresses(listen)),
            registry=self.registry,
            clock=clock,
            on_plan=self._serve_plan,
            on_targets=lambda targets: self.checker.set_targets(targets),
        )
        self.checker = HealthChecker((), self._health_changed, registry=self.registry)
        self.metrics = DnsMetrics(self.registry)
        self.metrics.watch_regions(self.planner.region_of)
        self.server: DnsServer | None = None
        self.workers: DnsWorkers | None = None
        self.registry.register(WorkerCollector(lambda: self.workers))
        self._rotator: asyncio.Task[None] | None = None

    async def start(self, model: Model) -> None:
        plan = await self.planner.start(model)
        rrl = self._rrl
        limiter = None
        if self._worker_count:
            # every UDP-path option of DnsServer reaches the workers through server_options;
            # the workers limit (RRL) on one account table the main process shares with them
            options = {"rrl_config": rrl} if rrl and rrl.enabled else {}
            self.workers = DnsWorkers(
                self._listen, self._worker_count, self.metrics, server_options=options
            )
            await self.workers.start(plan.table)
        elif rrl and rrl.enabled:
            limiter = ResponseRateLimiter(rrl, time.monotonic)
        # TCP always here; UDP here only without workers
        self.server = DnsServer(
            plan.table,
            self._listen,
            metrics=self.metrics,
            udp=self.workers is None,
            rrl=limiter,
            tls_listen=self._dot.listen if self._dot is not None else (),
            tls=self.dot_tls.context if self.dot_tls is not None else None,
            tls_handshake_timeout=HANDSHAKE_TIMEOUT,
        )
        await self.server.start()
        await self.checker.start()
        self._rotator = asyncio.get_running_loop().create_task(self._rotate())
        addresses = [*(self.workers.addresses if self.workers else ()), *self.server.addresses]
        log.info(
            "gtm.serving",
            listen=[f"{t}:{h}:{p}" for t, h, p in addresses],
            dns_workers=self._worker_count,
        )

    async def stop(self) -> None:
        await self.checker.stop()
        if self._rotator is not None:
            self._rotator.cancel()
            await asyncio.wait({self._rotator})
        await self.planner.stop()
        if self.server is not None:
            await self.server.stop()
        if self.workers is not None:
            await self.workers.stop()

    async def gather_counts(self) -> None:
        """Bring the DNS workers' query counts into ``metrics`` (before a scrape)."""
        if self.workers is not None:
            await self.workers.gather_counts()

    def update_model(self, model: Model) -> None:
        self.planner.update_model(model)

    def _health_changed(self, view: HealthView) -> None:
        self.planner.update_health(view)
        if self._on_health is not None:
            self._on_health(view)

    def _serve_plan(self, plan: DecidedPlan) -> None:
        if self.server is not None:
            self.server.swap_table(plan.table)
        if self.workers is not None:
            self.workers.publish(plan.table)

    async def _rotate(self) -> None:
        """Decide again at every rotation boundary of a rotating policy (roundRobin, non-sticky
        weighted) and when the earliest minimum dwell ends; looks again at least every second
        (a new plan may bring an earlier time)."""
        while True:
            when = self.planner.next_wake()
            wait = None if when is None else max(0.0, when - self._clock())
            if wait is None or wait > 1.0:
                await asyncio.sleep(1.0)
                continue
            # a hair past the boundary, so the rebuild sees the new slot / the dwell as ended
            await asyncio.sleep(wait + 0.001)
            self.planner.wake()

    def health(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.checker.rows()]

    def explain(self, name: str, client: str) -> dict[str, Any] | None:
        return self.planner.explain(name, client)

    def explain_text(self, name: str, client: str) -> str | None:
        return self.planner.explain_text(name, client)


class Ubiq:
    """Every running part, and the RuntimeView the API reads."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.registry = CollectorRegistry()
        register_process_metrics(self.registry)
        self.store: PolicySource = open_source(
            options.directory, options.store, debounce_ms=options.debounce_ms
        )
        # first of the store's listeners: each new model is frozen before anything compiles it
        self.store.subscribe(lambda _model: keep_long_lived())
        self.registry.register(PolicyCollector(lambda: self.store.status))
        cache = SnapshotCache()
        status = MeteredStatus(cache, self.registry)
        tls = ReloadingTls(options.xds_tls) if options.xds_tls is not None else None
        server = XdsServer(cache, status=status, tls=tls)
        workload = load_workload_certs(options.workload_ca) if options.workload_ca else None
        compile_options = options.compile
        if workload is not None:
            compile_options = dc_replace(
                compile_options, workload_trust_domain=workload.trust_domain
            )
        self.xds = XdsRuntime(
            cache,
            status,
            server,
            compile_options,
            registry=self.registry,
            workload_certs=workload,
        )
        self.gtm = (
            GtmService(
                options.dns,
                config=options.gtm,
                registry=self.registry,
                on_health=self._on_health,
                rrl=options.rrl,
                workers=options.dns_workers,
                dot=options.dns_tls,
            )
            if options.dns
            else None
        )
        self.poller: FeedbackPoller | None = None
        self.replica: ReplicaServing | None = None
        location = getattr(self.store, "location", None)  # an etcd store: shared by replicas
        self.endpoints: EndpointRegistry = (
            _etcd_registry(location) if location is not None else MemoryRegistry()
        )
        self.endpoints.subscribe(self._endpoints_changed)
        self._store_model = Model.empty()
        self._xds_placed: dict[str, tuple[PlacedCluster, ...]] | None = None  # last handed to xDS
        self._xds_from: dict[str, float] = {}  # service -> made_at of the Decision handed to xDS
        # the placement step runs in both modes; without --prometheus on the model and health
        # alone (the same on every replica), and without canaries (nothing to analyse)
        self.loop = PlacementLoop(
            on_model=self._serve_model,
            on_decisions=self._serve_decisions,
            registry=self.registry,
            canaries=options.prometheus is not None,
        )
        if location is not None and options.prometheus is not None:
            # etcd with a feedback source: the loop runs on the elected leader only
            from controlplane.etcd.client import EtcdClient

            self.replica = ReplicaServing(
                self,
                self.loop,
                EtcdClient(location.endpoints),
                location.prefix,
                name=options.replica_name,
                ttl_s=options.leader_ttl,
            )
        self.api = self._api_server(options)
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self.failed = asyncio.Event()  # set when a part dies on its own: serve() then exits
        self.xds_port: int | None = None

    def _api_server(self, options: ServeOptions) -> ApiServer | None:
        if options.api is None:
            return None
        from controlplane.api.app import create_app
        from controlplane.api.auth import ApiSecurity, default_allowed_hosts, load_tokens
        from controlplane.api.server import ApiServer
        from controlplane.api.writers import backend_for

        host, port = options.api
        tokens = load_tokens(options.api_token_file)
        allowed = options.api_allowed_hosts or tuple(sorted(default_allowed_hosts(host)))
        security = ApiSecurity(tokens=tokens, allowed_hosts=frozenset(allowed))
        log.info(
            "api.security",
            tokens=len(tokens.tokens),
            token_sources=sorted({t.origin.rsplit(":", 1)[0] for t in tokens.tokens}),
            writes="enabled" if tokens else "refused (no token configured)",
            allowed_hosts=sorted(allowed),
            tls=options.api_tls is not None,
        )
        app = create_app(
            self,
            security=security,
            policies=backend_for(self.store),
            diff_context=self.diff_context,
        )
        return ApiServer(app, host, port, tls=options.api_tls)

    def diff_context(self) -> DiffContext:
        """How this server compiles and plans, for the API's dry runs."""
        from controlplane.api.dryrun import DiffContext

        gtm = None
        health = HealthView(frozenset())
        if self.gtm is not None:
            gtm = self.gtm.planner.config
            plan = self.gtm.planner.plan
            if plan is not None:
                health = plan.health
        return DiffContext(options=self.options.compile, gtm=gtm, health=health, now=time.time())

    async def start(self) -> None:
        """Start every part; if one cannot start, stop the ones that did and raise UbiqError."""
        self._store_model = self.store.load()
        await self.endpoints.load()
        model = self._merged(self._store_model)
        if self.replica is not None:
            model = await self.replica.first_model(model)
        else:
            model = self.loop.effective_model(model)
        host, port = self.options.xds
        try:
            _check_free(f"--xds {host}:{port}", host, port)
            self.xds_port = await _bind(
                f"--xds {host}:{port}", self.xds.start(f"{host}:{port}", model)
            )
            if self.gtm is not None:
                # the first table already answers from the first decisions
                self.gtm.planner.update_placement(self.loop.decisions, None)
                await _bind("--dns", self.gtm.start(model))
            if self.api is not None:
                await _bind("--api", self.api.start())
            if self.replica is None:
                self.start_poller(model)
            self._serve_decisions(model, self.loop.decisions)
        except BaseException:
            await self.stop()
            raise
        self.store.subscribe(self._on_store_model)
        await self.endpoints.start()
        if self.replica is not None:
            self.replica.start()
        self._watch = asyncio.create_task(self.store.watch())
        self._watch.add_done_callback(self._watch_ended)
        log.info(
            "serve.started",
            source=self.options.store or str(self.options.directory),
            model=model.hash[:12],
            xds=f"{host}:{self.xds_port}",
            dns=[f"{h}:{p}" for h, p in self.options.dns],
            dns_workers=self.options.dns_workers if self.gtm is not None else 0,
            api=f"{self.options.api[0]}:{self.options.api[1]}" if self.options.api else None,
        )

    def start_poller(self, model: Model) -> None:
        """The Prometheus poller feeding the loop (on the leader only, with replicas)."""
        if self.options.prometheus is None or self.poller is not None:
            return
        from controlplane.feedback.poller import FeedbackMetrics, FeedbackPoller, PollerSettings
        from controlplane.feedback.queries import zones_from_model

        self.poller = FeedbackPoller(
            self.options.prometheus,
            self.loop.update_signals,
            zones=zones_from_model(model),
            services=frozenset(model.services),
            settings=PollerSettings(interval=self.options.feedback_interval),
            metrics=FeedbackMetrics(self.registry),
        )
        self.poller.start()

    async def stop_poller(self) -> None:
        poller, self.poller = self.poller, None
        if poller is not None:
            await poller.stop()

    def follow_model(self, model: Model) -> None:
        if self.poller is not None:
            try:
                self.poller.follow_model(model)
            except Exception as exc:  # QueryError: a zone in two regions; keep the last plan
                log.error("feedback.model.rejected", error=str(exc))

    def _watch_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "policy.watcher.stopped",
                detail="changes are no longer picked up",
                error=repr(task.exception()),
            )
            self.failed.set()

    def store_model(self) -> Model:
        """The policy as the store holds it (registrations are checked against it)."""
        return self._store_model

    def _merged(self, model: Model) -> Model:
        try:
            return merge_registered(model, self.endpoints.registered())
        except Exception:  # a bug must not stop serving the policy itself
            log.exception("endpoints.merge.failed", detail="serving without registered endpoints")
            return model

    def _on_store_model(self, model: Model) -> None:
        self._store_model = model
        self._on_model(self._merged(model))

    def _endpoints_changed(self) -> None:
        self._on_model(self._merged(self._store_model))

    def _on_model(self, model: Model) -> None:
        """A new model from the store: through the loop (decisions, canary weights)."""
        if self.replica is not None:
            self.replica.on_model(model)
            return
        self.follow_model(model)
        self.loop.update_model(model)

    def _on_health(self, view: HealthView) -> None:
        known = {key[0] for key in view.known}
        healthy = {key[0] for key in view.healthy}
        health = {cluster: cluster in healthy for cluster in known}
        if self.replica is not None:
            self.replica.on_health(health)
        else:
            self.loop.update_health(health)

    def serve_decisions(self, model: Model, decisions: Mapping[str, Decision]) -> None:
        self._serve_decisions(model, decisions)

    def serve_model(self, model: Model) -> None:
        self._serve_model(model)

    def _serve_decisions(self, model: Model, decisions: Mapping[str, Decision]) -> None:
        """Hand the same placement Decisions to Envoy (EDS weights of the loop-driven services,
        while measured: ``consumers.xds_decisions``) and to the GTM (regions per client group)."""
        given = xds_decisions(model, decisions, measured=self._measured)
        placed = compiler_decisions(given)
        if placed != self._xds_placed:  # Envoy reads only the placed clusters: compile on change
            self._xds_placed = placed
            self._xds_from = {name: d.made_at for name, d in given.items()}
            task = asyncio.create_task(self.xds.update_decisions(placed))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self.gtm is not None:
            signals = self.loop.signals
            latency = signals.client_latency_ms if signals is not None else None
            self.gtm.planner.update_placement(decisions, latency)

    @property
    def _measured(self) -> bool:
        return self.options.prometheus is not None

    def _serve_model(self, model: Model) -> None:
        task = asyncio.create_task(self.xds.update_model(model))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.gtm is not None:
            self.gtm.update_model(model)

    async def stop(self) -> None:
        """Stop every part that runs, each on its own: one failing does not keep the others up."""
        self.store.stop()
        await self.endpoints.stop()
        if self.replica is not None:
            await self.replica.stop()  # a leader resigns: the next one takes over at once
        self.loop.stop()
        await self.stop_poller()
        pending = [t for t in (self._watch, *self._tasks) if t is not None]
        for task in pending:
            if task is not self._watch:
                task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        for part in (self.api, self.gtm, self.xds):
            if part is None:
                continue
            try:
                await part.stop()
            except Exception:
                log.exception("serve.stop.failed", part=type(part).__name__)

    # --- RuntimeView for the API ---------------------------------------------------------------

    async def gather_metrics(self) -> None:
        """Counts kept outside this process (DNS workers) merged in, before /metrics renders."""
        if self.gtm is not None:
            await self.gtm.gather_counts()

    def policy_status(self) -> Mapping[str, Any]:
        s = self.store.status
        return {
            "ok": s.ok,
            "modelHash": s.model_hash,
            "generation": s.generation,
            "loadedAt": s.loaded_at,
            "lastErrorAt": s.last_error_at,
            "rejected": s.rejected,
            "problems": [str(p) for p in s.problems],
            "watching": s.watching,
            "watchError": s.watch_error,
        }

    def proxies(self) -> list[Mapping[str, Any]]:
        from controlplane.api.runtime import to_jsonable

        cache = self.xds.cache
        groups = cache.groups()
        rows: list[Mapping[str, Any]] = []
        for proxy in self.xds.status.proxies():
            sync = proxy_sync(proxy, cache.get(proxy.group), groups)
            rows.append(
                {**to_jsonable(proxy), **sync, "state": overall(sync["sync"], sync["problem"])}
            )
        return rows

    def gtm_health(self) -> list[Mapping[str, Any]]:
        rows: list[Mapping[str, Any]] = [*self.gtm.health()] if self.gtm is not None else []
        return rows

    def explain(self, name: str, client: str) -> Mapping[str, Any] | None:
        if self.gtm is None:
            return None
        return self.gtm.explain(name, client)

    def placement(self) -> Mapping[str, Any]:
        """Every Decision, and what each consumer was given from it: ``xds`` (service -> the
        placed clusters Envoy's EDS weights come from), ``gtm`` (GTM name -> client group -> the
        group's choice, naming the Decision it was made from)."""
        signals = self.loop.signals
        decisions = self.loop.decisions
        choices = self.gtm.planner.choices if self.gtm is not None else {}
        xds = self._xds_placed or {}
        return {
            "loop": "on" if self._measured else "static",
            "replica": None if self.replica is None else self.replica.status(),
            "decisions": {n: d.as_dict() for n, d in sorted(decisions.items())},
            "xds": {
                service: {
                    "decisionMadeAt": self._xds_from.get(service),
                    "placed": [
                        {
                            "cluster": p.name,
                            "region": p.region,
                            "weight": p.weight,
                            "priority": p.priority,
                        }
                        for p in placed
                    ],
                }
                for service, placed in sorted(xds.items())
            },
            "gtm": {
                name: {group: c.as_dict() for group, c in sorted(per.items())}
                for name, per in sorted(choices.items())
            },
            "signals": None
            if signals is None
            else {
                "at": signals.at,
                "stale": signals.stale,
                "error": signals.error,
                "series": len(signals.values),
            },
        }

    def canaries(self) -> Mapping[str, Any]:
        return {n: s.as_dict() for n, s in sorted(self.loop.canaries.items())}

    def canary_command(self, name: str, action: str) -> Mapping[str, Any]:
        if not self._measured:
            raise KeyError(name)  # no canary runs without a feedback source
        if self.replica is not None and not self.replica.leading:
            leader = self.replica.status()["leader"] or "no replica yet"
            raise ValueError(
                f"this replica does not run the canaries; send it to the leader ({leader})"
            )
        command = {"pause": self.loop.pause, "resume": self.loop.resume, "abort": self.loop.abort}
        return command[action](name).as_dict()


async def serve(options: ServeOptions, *, ready: asyncio.Event | None = None) -> None:
    heap = HeapTrace.from_env(os.environ)  # UBIQ_TRACEMALLOC_DIR: leak hunting, off by default
    if heap is not None:
        heap.start()
    manage()  # loads and compiles end in a freeze (gcpolicy.paused), the first one uncollected
    ubiq = Ubiq(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    trimming = loop.create_task(trim_forever())  # RSS follows the C heap in use (malloctrim.py)
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await ubiq.start()
        if ready is not None:
            ready.set()
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(ubiq.failed.wait())
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failed.cancel()
        await ubiq.stop()
        log.info("serve.stopped", failed=ubiq.failed.is_set())
        if ubiq.failed.is_set():
            raise UbiqError("a part of Ubiq stopped unexpectedly; see the log")
    finally:
        trimming.cancel()
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        if heap is not None:
            await heap.stop()
