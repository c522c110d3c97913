"""The running xDS side: follows the policy model, compiles per cluster, publishes snapshots.

I/O edge. Compilation (pure) and the consistency check run off the event loop; the cache then swaps each group's
snapshot atomically and only groups whose content changed are pushed. A group that has no snapshot
yet (cold start) is published the moment it is built, before the other groups are compiled. Each group keeps its last
good compilation and snapshot, so the next model is compiled incrementally from the documents
that changed (``diff``) and only changed resources are serialized again. A compile or consistency
failure is logged and counted; every group keeps the snapshot it had. Models and placement
decisions arriving during a compile are coalesced: the next compile takes the newest model with
the newest decisions. A group that drops out of the model is served an empty snapshot.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from controlplane import gcpolicy
from controlplane.errors import InconsistentSnapshotError
from controlplane.placement.static import PlacedCluster
from controlplane.policy.diff import ModelDiff, diff
from controlplane.policy.model import Model
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.compiler.effective import Decisions
from controlplane.xds.compiler.generate import NodeCompilation, compile_node
from controlplane.xds.compiler.incremental import recompile_node
from controlplane.xds.compiler.memo import CompileCache
from controlplane.xds.compiler.mtls import workload_secret_names
from controlplane.xds.compiler.options import CompileOptions, NodeIdentity
from controlplane.xds.compiler.shared import RoundShare
from controlplane.xds.metrics import MeteredStatus, register_metrics
from controlplane.xds.node import DEFAULT_ROLE, PROXYLESS_ROLE, group_key
from controlplane.xds.resources import SECRET, Resources
from controlplane.xds.server import XdsServer
from controlplane.xds.snapshot import EntryMemo, Snapshot
from controlplane.xds.status import StatusRegistry
from controlplane.xds.workload_certs import WorkloadCerts

log = structlog.get_logger("ubiq.xds")

_EMPTY = Snapshot.build({})


@dataclass(frozen=True, slots=True)
class GroupBuild:
    """A node group's compilation and the snapshot built from it."""

    compilation: NodeCompilation
    snapshot: Snapshot


def build_groups(
    model: Model,
    options: CompileOptions,
    previous: Mapping[str, GroupBuild] | None = None,
    cache: CompileCache | None = None,
    decisions: Decisions | None = None,
    secrets: WorkloadCerts | None = None,
    on_built: Callable[[str, GroupBuild], None] | None = None,
) -> dict[str, GroupBuild]:
    """One compilation + snapshot per Ubiq cluster, incremental from ``previous`` where it has
    the same node and options; ``decisions`` (service -> placed clusters, from the placement
    engine) override the static Placement of the services they name; pure. Every snapshot is checked (InconsistentSnapshotError), so
    the caller publishes with ``set_snapshot(..., checked=True)``; ``on_built(key, build)`` is
    called with each checked group as soon as it is built (in the calling thread). The cyclic
    GC is paused meanwhile (``gcpolicy.paused``: the compile's objects are long-lived)."""
    with gcpolicy.paused():
        return _build_groups(model, options, previous, cache, decisions, secrets, on_built)


def _build_groups(
    model: Model,
    options: CompileOptions,
    previous: Mapping[str, GroupBuild] | None,
    cache: CompileCache | None,
    decisions: Decisions | None,
    secrets: WorkloadCerts | None,
    on_built: Callable[[str, GroupBuild], None] | None,
) -> dict[str, GroupBuild]:
    diffs: dict[int, ModelDiff] = {}
    memo = EntryMemo()  # groups sharing compiled messages serialize them once
    shared = RoundShare(model, decisions, options)  # ... and compile node-independent units once
    out: dict[str, GroupBuild] = {}
    roles = (DEFAULT_ROLE, PROXYLESS_ROLE) if model.grpc_services else (DEFAULT_ROLE,)
    for (name, cluster), role in itertools.product(model.clusters.items(), roles):
        node = NodeIdentity(
            cluster=name, region=cluster.spec.region, zone=cluster.spec.zone or "", role=role
        )
        key = group_key(name, role)
        before = (previous or {}).get(key)
        if (
            before is None
            or before.compilation.node != node
            or before.compilation.options != options
        ):
            compilation = compile_node(
                model, node, options, decisions=decisions, cache=cache, shared=shared
            )
            snapshot = Snapshot.build(_with_secrets(compilation, secrets), memo=memo)
        else:
            old = before.compilation
            changes = diffs.get(id(old.model))
            if changes is None:
                changes = diffs[id(old.model)] = diff(old.model, model)
            compilation = recompile_node(
                old, model, changes, decisions=decisions, cache=cache, shared=shared
            )
            snapshot = Snapshot.build(
                _with_secrets(compilation, secrets),
                previous=before.snapshot,
                previous_resources=old.resources,
                memo=memo,
            )
        snapshot.check_consistent(previous=before.snapshot if before is not None else None)
        out[key] = GroupBuild(compilation, snapshot)
        if on_built is not None:
            on_built(key, out[key])
    return out


def _with_secrets(compilation: NodeCompilation, secrets: WorkloadCerts | None) -> Resources:
    """The compiled resources plus the SDS secrets they reference (workload mTLS)."""
    node = compilation.node
    if secrets is None or node.role != DEFAULT_ROLE:
        return compilation.resources
    names = workload_secret_names(compilation.model, node, compilation.options)
    if not names:
        return compilation.resources
    return {**compilation.resources, SECRET: secrets.secrets(node.cluster, names)}


class XdsRuntime:
    """Follows the model: compiles it (off the event loop) and publishes each group's snapshot
    into ``cache``. It is given its parts: the cache it publishes to, the ``status`` registry
    (exported as metrics) and the ``server`` that serves the cache, if any."""

    def __init__(
        self,
        cache: SnapshotCache,
        status: StatusRegistry,
        server: XdsServer | None = None,
        options: CompileOptions | None = None,
        *,
        registry: CollectorRegistry | None = None,
        workload_certs: WorkloadCerts | None = None,
    ) -> None:
        self.options = options or CompileOptions()
        self.workload_certs = workload_certs
        self._renewer: asyncio.Task[None] | None = None
        self.registry = registry if registry is not None else CollectorRegistry()
        self.cache = cache
        self.status = status
        self.server = server
        self._compile_cache = CompileCache()
        self._groups: dict[str, GroupBuild] = {}  # last good build per group
        self._model: Model | None = None  # newest model handed in
        self._decisions: Decisions = {}  # newest placement decisions handed in
        self._pending = False  # the newest model or decisions are not yet taken by a compile
        self._compiling: asyncio.Task[None] | None = None
        self.port: int | None = None
        self._handed_in: float | None = None  # when the oldest model not yet compiled arrived
        # a MeteredStatus also times pushes and convergence; a plain registry only counts
        self._timing = status.timing if isinstance(status, MeteredStatus) else None
        register_metrics(self.status, self.cache, self.registry, self._timing)
        self._compiles = Counter(
            "ubiq_xds_compiles", "Model compilations by result", ["result"], registry=self.registry
        )
        for result in ("ok", "rejected"):
            self._compiles.labels(result)
        self._compile_seconds = Histogram(
            "ubiq_xds_compile_duration_seconds",
            "Time to compile the model into every group's snapshot",
            registry=self.registry,
        )

    async def start(self, address: str, model: Model) -> int:
        """Serve on ``address`` and publish ``model``; returns the bound port once every group of
        ``model`` is published. The port opens first: each group is served as soon as it is
        built (a proxy of the first group need not wait for the last)."""
        if self.server is None:
            raise RuntimeError("this XdsRuntime was given no server to start")
        self.port = await self.server.start(address)
        await self.update_model(model)
        if self.workload_certs is not None:
            self._renewer = asyncio.create_task(self._renew_workload_certs())
        return self.port

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.wait({self._renewer})
        if self.server is not None:
            await self.server.stop()

    async def _renew_workload_certs(self) -> None:
        """Re-issue workload certificates when due and push them (SDS): a compile of the same
        model, in which only the secrets changed. Looks again at least every second."""
        certs = self.workload_certs
        assert certs is not None
        while True:
            due = certs.next_refresh()
            wait = 1.0 if due is None else min(1.0, max(0.0, due - time.time()))
            await asyncio.sleep(wait)
            due = certs.next_refresh()
            if due is not None and due <= time.time() and self._model is not None:
                await self._request_compile()

    async def update_model(self, model: Model) -> None:
        """Compile and publish ``model``; returns once it, or a newer model given meanwhile, is
        published (or rejected). Models queued behind a running compile are not compiled in
        turn: the newest wins. The last decisions given to ``update_decisions`` stay in force."""
        self._model = model
        await self._request_compile()

    async def update_decisions(self, decisions: Mapping[str, tuple[PlacedCluster, ...]]) -> None:
        """Compile and publish the current model with these placement decisions (service ->
        placed clusters, ``placement.decision.compiler_decisions``), which replace the previous
        ones; a service not named goes back to its static Placement. Coalesced with
        ``update_model``: the newest of each wins. Before the first model, the decisions are only
        kept for it."""
        self._decisions = dict(decisions)
        if self._model is not None:
            await self._request_compile()

    async def _request_compile(self) -> None:
        self._pending = True
        if self._handed_in is None:
            self._handed_in = time.monotonic()
        if self._compiling is None or self._compiling.done():
            self._compiling = asyncio.create_task(self._compile_pending())
        # shield: a caller that gives up does not cancel the compile others wait for
        await asyncio.shield(self._compiling)

    async def _compile_pending(self) -> None:
        while self._pending and self._model is not None:
            self._pending = False
            model, decisions = self._model, self._decisions
            handed_in, self._handed_in = self._handed_in or time.monotonic(), None
            await self._compile(model, decisions, handed_in)
        # no await after the loop: a request sees this task done or sees its inputs taken

    async def _compile(self, model: Model, decisions: Decisions, handed_in: float) -> None:
        started = time.perf_counter()
        early: list[str] = []

        def publish_new_group(key: str, built: GroupBuild) -> None:
            """A group with no snapshot yet (cold start, a new cluster) has nothing to keep if a
            later group fails: it is served as soon as it is built (from the compile thread;
            the cache hands watchers over to their loop)."""
            if self.cache.get(key) is None and self.cache.set_snapshot(
                key, built.snapshot, checked=True
            ):
                early.append(key)

        try:
            groups = await asyncio.to_thread(
                build_groups,
                model,
                self.options,
                self._groups,
                self._compile_cache,
                decisions,
                self.workload_certs,
                publish_new_group,
            )
        except Exception as exc:  # never lose the last good config
            self._compiles.labels("rejected").inc()
            log.error(
                "xds.compile.rejected",
                detail="proxies keep their config",
                model=model.hash[:12],
                error=str(exc),
                exc_info=not isinstance(exc, InconsistentSnapshotError),
            )
            return
        self._groups = groups
        self._compile_cache.prune(model)
        snapshots = {key: built.snapshot for key, built in groups.items()}
        pushed = [
            g
            for g, s in sorted(snapshots.items())
            if self.cache.set_snapshot(g, s, checked=True) or g in early
        ]
        emptied = self._empty_dropped_groups(snapshots)
        if self._timing is not None:
            self._timing.published(handed_in, [*pushed, *emptied])
        elapsed = time.perf_counter() - started
        self._compiles.labels("ok").inc()
        self._compile_seconds.observe(elapsed)
        log.info(
            "xds.snapshots.published",
            model=model.hash[:12],
            decided=len(decisions),
            groups=len(snapshots),
            changed=pushed,
            emptied=emptied,
            compile_ms=round(elapsed * 1000, 1),
        )

    def _empty_dropped_groups(self, built: Mapping[str, Snapshot]) -> list[str]:
        """Groups no longer in the model (a deleted Cluster, ``<cluster>/grpc`` once the last
        GRPC port is gone) get an empty snapshot, so connected proxies drop what they hold."""
        emptied = [
            group
            for group in self.cache.groups()
            if group not in built and self.cache.set_snapshot(group, _EMPTY)
        ]
        for group in emptied:
            log.warning("xds.group.dropped", group=group, detail="serving it nothing")
        return emptied
