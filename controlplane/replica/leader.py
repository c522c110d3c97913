"""One leader among the replicas, elected with an etcd lease; decisions published under its fence.

Only etcd decides: a candidate creates ``PREFIX/leader`` bound to its own lease in a transaction
that succeeds only while the key does not exist (``create_revision == 0``). The winner keeps its
lease alive; when its process dies the lease expires after its TTL, etcd deletes the key, and
the candidates watching it try again. The key's create revision is the leader's *fence*: every
write the leader makes (``publish_decision``) is a transaction that also compares it, so a
leader that lost its lease (paused, partitioned) can never overwrite its successor's state.

A leader steps down by itself when it cannot confirm its lease for a whole TTL (etcd may still
hold it a little longer: stepping down early is the safe side).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from controlplane.errors import UbiqError
from controlplane.etcd.client import (
    EtcdClient,
    EtcdError,
    KeyValue,
    create_revision_is,
    put_op,
    range_op,
)

log = structlog.get_logger("ubiq.replica.leader")

DEFAULT_TTL_S = 5


class NotLeader(UbiqError):
    """A write under a fence that no longer holds: another replica leads now."""


@dataclass(frozen=True, slots=True)
class Leadership:
    name: str
    lease: int
    fence: int  # create revision of the leader key this replica created


def leader_key(prefix: str) -> str:
    return f"{prefix}/leader"


def decisions_prefix(prefix: str) -> str:
    return f"{prefix}/decisions/"


class LeaderElection:
    """Campaign, keep the lease alive, notice when leadership is lost."""

    def __init__(
        self, client: EtcdClient, prefix: str, name: str, *, ttl_s: int = DEFAULT_TTL_S
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.name = name
        self.ttl_s = ttl_s
        self.key = leader_key(prefix)
        self.leadership: Leadership | None = None
        self.lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    async def leader(self) -> str | None:
        """The current leader's name (None while there is none)."""
        kv = await self.client.get(self.key)
        return kv.value.decode() if kv is not None else None

    async def campaign(self) -> Leadership:
        """Return once this replica leads (keeping its lease alive from then on)."""
        while True:
            lease = await self.client.grant(self.ttl_s)
            result = await self.client.txn(
                [create_revision_is(self.key, 0)],
                [put_op(self.key, self.name, lease), range_op(self.key)],
                [range_op(self.key)],
            )
            held = _range_kv(result.responses[-1])
            if result.succeeded and held is not None:
                self.leadership = Leadership(self.name, lease, held.create_revision)
                self.lost.clear()
                self._keeper = asyncio.create_task(self._keep_alive(lease))
                log.info("replica.leader.elected", name=self.name, fence=held.create_revision)
                return self.leadership
            await self.client.revoke(lease)
            await self._wait_for_vacancy(result.revision)

    async def _wait_for_vacancy(self, revision: int) -> None:
        """Until the leader key is deleted (lease expired or resigned), at most one TTL: then
        the caller tries again anyway, so a missed event costs one TTL, not forever."""
        with contextlib.suppress(TimeoutError, EtcdError):
            async with asyncio.timeout(self.ttl_s):
                async for batch in self.client.watch(self.key, start_revision=revision + 1):
                    if any(e.type == "DELETE" for e in batch.events):
                        return
        await asyncio.sleep(0.05)

    async def _keep_alive(self, lease: int) -> None:
        confirmed = time.monotonic()
        interval = max(self.ttl_s / 3, 0.2)
        while True:
            try:
                if await self.client.keep_alive(lease) <= 0:
                    self._step_down("lease expired")
                    return
                confirmed = time.monotonic()
            except EtcdError as exc:
                if time.monotonic() - confirmed >= self.ttl_s:
                    self._step_down(f"lease not confirmed for {self.ttl_s}s: {exc}")
                    return
            await asyncio.sleep(interval)

    def _step_down(self, why: str) -> None:
        log.warning("replica.leader.lost", name=self.name, reason=why)
        self.leadership = None
        self.lost.set()

    async def resign(self) -> None:
        """Give leadership up now (revoking the lease deletes the key: the next one takes over)."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self.leadership is not None:
            with contextlib.suppress(EtcdError):
                await self.client.revoke(self.leadership.lease)
            self._step_down("resigned")


def _range_kv(response: Mapping[str, Any]) -> KeyValue | None:
    kvs = response.get("response_range", {}).get("kvs", [])
    return KeyValue.from_json(kvs[0]) if kvs else None


async def publish_decision(
    client: EtcdClient, prefix: str, leadership: Leadership, name: str, value: Mapping[str, Any]
) -> int:
    """Write one decision as JSON, only while ``leadership`` still holds (NotLeader otherwise);
    returns the new revision."""
    result = await client.txn(
        [create_revision_is(leader_key(prefix), leadership.fence)],
        [put_op(f"{decisions_prefix(prefix)}{name}", json.dumps(value, sort_keys=True))],
    )
    if not result.succeeded:
        raise NotLeader(f"{leadership.name} no longer leads; decision {name!r} not written")
    return result.revision


async def read_decisions(client: EtcdClient, prefix: str) -> tuple[int, dict[str, Any]]:
    """Every published decision by name, and the revision they were read at."""
    result = await client.range(decisions_prefix(prefix), prefix=True)
    start = len(decisions_prefix(prefix))
    return result.revision, {kv.key[start:]: json.loads(kv.value) for kv in result.kvs}


async def publish_state(
    client: EtcdClient, prefix: str, leadership: Leadership, values: Mapping[str, str]
) -> int:
    """Write several published values (name -> JSON text) in one transaction under the fence
    (NotLeader when it no longer holds); returns the new revision."""
    result = await client.txn(
        [create_revision_is(leader_key(prefix), leadership.fence)],
        [
            put_op(f"{decisions_prefix(prefix)}{name}", text)
            for name, text in sorted(values.items())
        ],
    )
    if not result.succeeded:
        raise NotLeader(f"{leadership.name} no longer leads; state not published")
    return result.revision
