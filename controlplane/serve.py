"""``ubiq serve``: the long-running process -- policy store, xDS server, GTM, API.

Wiring only: the store announces each new valid model; the xDS runtime compiles and publishes
snapshots, the GTM runtime recomputes its answer table. A rejected change reaches neither.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog
from prometheus_client import CollectorRegistry

from controlplane.api.app import create_app
from controlplane.api.server import ApiServer
from controlplane.errors import UbiqError
from controlplane.gtm.plan import GtmConfig
from controlplane.gtm.runtime import GtmRuntime, glue_addresses
from controlplane.observability.process import PolicyCollector, register_process_metrics
from controlplane.policy.model import Model
from controlplane.policy.store import DirectoryStore, PolicySource
from controlplane.xds.compiler.options import CompileOptions
from controlplane.xds.runtime import XdsRuntime

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


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--xds", default="127.0.0.1:18000", help="xDS (ADS) gRPC address")
    p.add_argument(
        "--dns",
        action="append",
        help="DNS listen address, repeatable (default 127.0.0.1:5353); 'off' disables the GTM",
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
    p.add_argument("--api", default="127.0.0.1:8081", help="HTTP API address; 'off' disables it")
    p.add_argument("--listener-port", type=int, default=10000, help="Envoy HTTP listener port")
    p.add_argument(
        "--listener-address", default="0.0.0.0", help="address Envoy's HTTP listener binds"
    )
    p.add_argument("--debounce-ms", type=int, default=100, help="wait this long after a change")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    directory: Path
    xds: tuple[str, int] = ("127.0.0.1", 18000)
    dns: tuple[tuple[str, int], ...] = (("127.0.0.1", 5353),)
    api: tuple[str, int] | None = ("127.0.0.1", 8081)
    gtm: GtmConfig | None = None  # default: NS glue from the DNS listen addresses
    compile: CompileOptions = field(default_factory=CompileOptions)
    debounce_ms: int = 100

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeOptions:
        dns_args = args.dns or ["127.0.0.1:5353"]
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
                listener_port=args.listener_port, listener_address=args.listener_address
            ),
            debounce_ms=args.debounce_ms,
        )


async def _bind(what: str, starting: Awaitable[T]) -> T:
    """A server that cannot listen is a one-line error naming the flag, not a traceback."""
    try:
        return await starting
    except OSError as exc:
        raise UbiqError(f"{what}: cannot listen: {exc.strerror or exc}") from None
    except SystemExit:  # uvicorn exits when it cannot bind
        raise UbiqError(f"{what}: cannot listen (address in use?)") from None


class Ubiq:
    """Every running part, and the RuntimeView the API reads."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.registry = CollectorRegistry()
        register_process_metrics(self.registry)
        self.store: PolicySource = DirectoryStore(
            options.directory, debounce_ms=options.debounce_ms
        )
        self.registry.register(PolicyCollector(lambda: self.store.status))
        self.xds = XdsRuntime(options.compile, registry=self.registry)
        self.gtm = (
            GtmRuntime(options.dns, config=options.gtm, registry=self.registry)
            if options.dns
            else None
        )
        self.api = ApiServer(create_app(self), *options.api) if options.api is not None else None
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self.failed = asyncio.Event()  # set when a part dies on its own: serve() then exits
        self.xds_port: int | None = None

    async def start(self) -> None:
        """Start every part; if one cannot start, stop the ones that did and raise UbiqError."""
        model = self.store.load()
        host, port = self.options.xds
        try:
            self.xds_port = await _bind(
                f"--xds {host}:{port}", self.xds.start(f"{host}:{port}", model)
            )
            if self.gtm is not None:
                await _bind("--dns", self.gtm.start(model))
            if self.api is not None:
                await _bind("--api", self.api.start())
        except BaseException:
            await self.stop()
            raise
        self.store.subscribe(self._on_model)
        self._watch = asyncio.create_task(self.store.watch())
        self._watch.add_done_callback(self._watch_ended)
        log.info(
            "ubiq serving",
            directory=str(self.options.directory),
            model=model.hash[:12],
            xds=f"{host}:{self.xds_port}",
            dns=[f"{h}:{p}" for h, p in self.options.dns],
            api=f"{self.options.api[0]}:{self.options.api[1]}" if self.options.api else None,
        )

    def _watch_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "policy watcher stopped; changes are no longer picked up",
                error=repr(task.exception()),
            )
            self.failed.set()

    def _on_model(self, model: Model) -> None:
        task = asyncio.create_task(self.xds.update_model(model))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.gtm is not None:
            self.gtm.update_model(model)

    async def stop(self) -> None:
        """Stop every part that runs, each on its own: one failing does not keep the others up."""
        self.store.stop()
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
                log.exception("stopping failed", part=type(part).__name__)

    # --- RuntimeView for the API ---------------------------------------------------------------

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
        }

    def proxies(self) -> list[Mapping[str, Any]]:
        from controlplane.api.app import to_jsonable

        return [to_jsonable(p) for p in self.xds.status.snapshot()]

    def gtm_health(self) -> list[Mapping[str, Any]]:
        rows: list[Mapping[str, Any]] = [*self.gtm.health()] if self.gtm is not None else []
        return rows

    def explain(self, name: str, client: str) -> Mapping[str, Any] | None:
        if self.gtm is None:
            return None
        result = self.gtm.explain(name, client)
        return result if isinstance(result, dict) else None


async def serve(options: ServeOptions, *, ready: asyncio.Event | None = None) -> None:
    ubiq = Ubiq(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
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
        if ubiq.failed.is_set():
            raise UbiqError("a part of Ubiq stopped unexpectedly; see the log")
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
