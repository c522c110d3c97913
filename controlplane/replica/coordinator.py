"""Which replica runs the feedback loop, and how the others follow it.

Every replica campaigns (``LeaderElection``). The leader runs the loop (``lead``), and publishes
its decisions and canary statuses under ``PREFIX/decisions/`` in fenced transactions whenever they
change. The others watch that prefix and serve what was published (``apply``). When leadership
is lost the loop stops (``follow``) and the replica campaigns again; the next leader reads the
published state first and resumes from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from controlplane.canary.controller import CanaryStatus
from controlplane.etcd.client import EtcdClient, EtcdError, RangeResult
from controlplane.etcd.follow import RETRY_S, follow_range
from controlplane.placement.decision import Decision
from controlplane.replica.leader import (
    DEFAULT_TTL_S,
    LeaderElection,
    Leadership,
    NotLeader,
    decisions_prefix,
    leader_key,
    publish_state,
)
from controlplane.replica.state import (
    CANARIES,
    PLACEMENT,
    Published,
    decode_decisions,
    encode_canary,
    encode_decision,
)

log = structlog.get_logger("ubiq.replica")

PUBLISH_CHECK_S = 0.1  # how often the leader looks for a changed state to publish

LoopState = tuple[Mapping[str, Decision], Mapping[str, CanaryStatus]]


def published_from(result: RangeResult, prefix: str) -> Published:
    start = len(decisions_prefix(prefix))
    values: dict[str, Any] = {}
    for kv in result.kvs:
        try:
            values[kv.key[start:]] = json.loads(kv.value)
        except ValueError:
            log.warning("replica.published.unreadable", key=kv.key)
    try:
        decisions = decode_decisions(values.get(PLACEMENT, {}))
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("replica.published.unreadable", key=PLACEMENT, error=repr(exc))
        decisions = {}
    canaries = values.get(CANARIES, {})
    return Published(decisions, canaries if isinstance(canaries, dict) else {}, result.revision)


def encode_state(state: LoopState) -> dict[str, str]:
    decisions, canaries = state
    return {
        PLACEMENT: json.dumps(
            {n: encode_decision(d) for n, d in sorted(decisions.items())}, sort_keys=True
        ),
        CANARIES: json.dumps(
            {n: encode_canary(s) for n, s in sorted(canaries.items())}, sort_keys=True
        ),
    }


class Coordinator:
    """Leader election around the loop; the published state for followers."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        name: str,
        *,
        lead: Callable[[Published], Awaitable[None]],
        follow: Callable[[], Awaitable[None]],
        apply: Callable[[Published], None],
        state: Callable[[], LoopState],
        ttl_s: int = DEFAULT_TTL_S,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.name = name
        self.election = LeaderElection(client, prefix, name, ttl_s=ttl_s)
        self._lead, self._follow, self._apply, self._state = lead, follow, apply, state
        self.leader: str | None = None  # as last seen in etcd
        self.leading = False
        self.published = Published()
        self._tasks: list[asyncio.Task[None]] = []

    async def read_published(self) -> Published:
        result = await self.client.range(decisions_prefix(self.prefix), prefix=True)
        self.published = published_from(result, self.prefix)
        return self.published

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(
                follow_range(
                    self.client, leader_key(self.prefix), prefix=False, on_read=self._leader_seen
                )
            ),
            asyncio.create_task(self._run()),
        ]
        for task in self._tasks:
            task.add_done_callback(_ended)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._resign()
        self.leading = False
        await self.client.aclose()

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": "leader" if self.leading else "follower",
            "leader": self.leader,
            "leaseTtlSeconds": self.election.ttl_s,
            "publishedRevision": self.published.revision,
        }

    def _leader_seen(self, result: RangeResult) -> None:
        self.leader = result.kvs[0].value.decode(errors="replace") if result.kvs else None

    def _published_seen(self, result: RangeResult) -> None:
        if self.leading:
            return
        self.published = published_from(result, self.prefix)
        self._apply(self.published)

    async def _run(self) -> None:
        while True:
            watcher = asyncio.create_task(
                follow_range(
                    self.client,
                    decisions_prefix(self.prefix),
                    prefix=True,
                    on_read=self._published_seen,
                )
            )
            try:
                leadership = await self._campaign()
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            self.leading = True
            self.leader = self.name
            failed = False
            try:
                published = await self.read_published()
                log.info("replica.leading", name=self.name, resumed_from=published.revision)
                await self._lead(published)
                await self._publish_while_leading(leadership)
            except EtcdError as exc:
                failed = True
                log.warning("replica.leading.failed", error=str(exc)[:200])
            except Exception:  # a bug while leading: hand leadership on, keep serving
                failed = True
                log.exception("replica.leading.failed")
            finally:
                self.leading = False
                log.warning("replica.following", name=self.name)
                await self._resign()  # stopping (SIGTERM) included: the next one leads at once
                await self._follow()
            if failed:
                await asyncio.sleep(RETRY_S[-1])

    async def _resign(self) -> None:
        if self.election.leadership is not None:
            with contextlib.suppress(EtcdError):
                await self.election.resign()

    async def _campaign(self) -> Leadership:
        failures = 0
        while True:
            try:
                return await self.election.campaign()
            except EtcdError as exc:
                delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                log.warning("replica.campaign.failed", error=str(exc)[:200], retry_in_s=delay)
                await asyncio.sleep(delay)

    async def _publish_while_leading(self, leadership: Leadership) -> None:
        written: dict[str, str] = {}
        last: LoopState | None = None
        while not self.election.lost.is_set():
            state = self._state()
            if last is None or state[0] is not last[0] or state[1] is not last[1]:
                values = encode_state(state)
                changed = {k: v for k, v in values.items() if written.get(k) != v}
                if changed:
                    try:
                        revision = await publish_state(
                            self.client, self.prefix, leadership, changed
                        )
                    except NotLeader:
                        await self.election.resign()
                        return
                    except EtcdError as exc:
                        log.warning("replica.publish.failed", error=str(exc)[:200])
                        await asyncio.sleep(RETRY_S[-1])
                        continue
                    written.update(changed)
                    self.published = Published(state[0], {}, revision)
                last = state
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PUBLISH_CHECK_S):
                    await self.election.lost.wait()


def _ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("replica.coordinator.stopped", error=repr(task.exception()))
