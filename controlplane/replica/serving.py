"""A replica of ``ubiq serve`` on etcd with the feedback loop: the loop runs only on the leader.

The leader runs the ``PlacementLoop`` and the Prometheus poller; its state is published
(``Coordinator``). A follower serves the published state: the store's model with the published
canary weights (xDS routes, GTM) and the published placement decisions (EDS weights, GTM regions).
Both serve through the same host callbacks, so leader and followers hand Envoy the same
resources and versions.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any, Protocol

import structlog

from controlplane.canary.controller import CanaryStatus
from controlplane.canary.routes import apply_canaries
from controlplane.etcd.client import EtcdClient
from controlplane.loop import PlacementLoop
from controlplane.placement.decision import Decision
from controlplane.policy.model import Model
from controlplane.replica.coordinator import Coordinator, LoopState
from controlplane.replica.state import Published, restore_canaries

log = structlog.get_logger("ubiq.replica")


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Host(Protocol):
    """What ``ubiq serve`` offers a replica: where to hand models and decisions."""

    def serve_model(self, model: Model) -> None: ...

    def serve_decisions(self, model: Model, decisions: Mapping[str, Decision]) -> None: ...

    def start_poller(self, model: Model) -> None: ...

    def follow_model(self, model: Model) -> None: ...

    async def stop_poller(self) -> None: ...


def canary_specs(model: Model) -> dict[str, Any]:
    return {n: c.spec for n, c in model.canaries.items()}


def served_view(model: Model, published: Published) -> tuple[Model, dict[str, CanaryStatus]]:
    """The model a follower serves: the store's, with the published canary weights."""
    canaries = restore_canaries(canary_specs(model), published.canaries)
    return apply_canaries(model, canaries), canaries


class ReplicaServing:
    def __init__(
        self,
        host: Host,
        loop: PlacementLoop,
        client: EtcdClient,
        prefix: str,
        *,
        name: str = "",
        ttl_s: int,
    ) -> None:
        self.host = host
        self.loop = loop
        self.model = Model.empty()  # the store's newest model
        self._health: dict[str, bool] | None = None
        self._served_key: tuple[object, ...] | None = None
        self._decided: tuple[str, dict[str, Decision]] | None = None  # last handed on
        self.coordinator = Coordinator(
            client,
            prefix,
            name or default_name(),
            lead=self._lead,
            follow=self._follow,
            apply=self._apply,
            state=self._state,
            ttl_s=ttl_s,
        )

    @property
    def leading(self) -> bool:
        return self.coordinator.leading

    async def first_model(self, model: Model) -> Model:
        """The model to start serving: the store's with the published canary weights."""
        self.model = model
        published = await self.coordinator.read_published()
        served, canaries = served_view(model, published)
        self.loop.decisions, self.loop.canaries = dict(published.decisions), canaries
        self._served_key = (model.hash, _weights(canaries))
        return served

    def start(self) -> None:
        self.coordinator.start()

    async def stop(self) -> None:
        await self.coordinator.stop()

    def status(self) -> dict[str, Any]:
        return self.coordinator.status()

    def on_model(self, model: Model) -> None:
        self.model = model
        if self.leading:
            self.host.follow_model(model)
            self.loop.update_model(model)
        else:
            self._apply(self.coordinator.published)

    def on_health(self, health: Mapping[str, bool]) -> None:
        self._health = dict(health)
        if self.leading:
            self.loop.update_health(health)

    # --- Coordinator callbacks ------------------------------------------------------------------

    async def _lead(self, published: Published) -> None:
        canaries = restore_canaries(canary_specs(self.model), published.canaries)
        self.host.start_poller(self.model)
        self.loop.restore(self.model, published.decisions, canaries)
        if self._health is not None:
            self.loop.update_health(self._health)
        self._served_key, self._decided = None, None

    async def _follow(self) -> None:
        self.loop.stop()
        await self.host.stop_poller()

    def _apply(self, published: Published) -> None:
        served, canaries = served_view(self.model, published)
        self.loop.decisions, self.loop.canaries = dict(published.decisions), canaries
        served_key = (self.model.hash, _weights(canaries))
        if served_key != self._served_key:
            self._served_key = served_key
            self.host.serve_model(served)
        # any renewed Decision (not only moved weights: the GTM's group choices read its rule,
        # verdicts and dwell too) is handed on, as the leader's loop does
        decided = (served.hash, dict(published.decisions))
        if decided != self._decided:
            self._decided = decided
            self.host.serve_decisions(served, published.decisions)

    def _state(self) -> LoopState:
        return self.loop.decisions, self.loop.canaries


def _weights(canaries: Mapping[str, CanaryStatus]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((n, s.weight) for n, s in canaries.items()))
