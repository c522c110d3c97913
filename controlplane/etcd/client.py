"""etcd v3 over its JSON gRPC gateway (``/v3/...``), with httpx: no extra dependency.

The gateway is part of every etcd server (3.4 and later) and maintained by the etcd project
itself; keys and values travel base64-encoded. The client knows several endpoints (the members
of one cluster) and moves to the next one when a member does not answer. Nothing here decides
anything: revision checks are etcd transactions and leases are etcd leases.

Why this client and not an asyncio gRPC one: see docs/operations.md ("etcd client") and
bench/etcd_client.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from controlplane.errors import UbiqError

DEFAULT_TIMEOUT_S = 5.0
#: a watch that hears nothing for this long is reopened (the caller re-reads first): a member cut
#: off without a reset (no FIN/RST reaches us) would otherwise hold a silent stream forever
WATCH_IDLE_S = 60.0


class EtcdError(UbiqError):
    """etcd answered with an error (or not at all: see EtcdUnavailable)."""


class EtcdUnavailable(EtcdError):
    """No endpoint of the cluster answered."""


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> str:
    """``range_end`` for every key starting with ``prefix`` (etcd's "prefix + 1")."""
    raw = bytearray(prefix.encode())
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return b64(bytes(raw[: i + 1]))
    return b64(b"\0")


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @classmethod
    def from_json(cls, kv: Mapping[str, Any]) -> KeyValue:
        return cls(
            key=unb64(kv.get("key")).decode(errors="replace"),
            value=unb64(kv.get("value")),
            create_revision=int(kv.get("create_revision", 0)),
            mod_revision=int(kv.get("mod_revision", 0)),
            version=int(kv.get("version", 0)),
            lease=int(kv.get("lease", 0)),
        )


@dataclass(frozen=True, slots=True)
class RangeResult:
    revision: int
    kvs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["PUT", "DELETE"]
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class WatchBatch:
    revision: int
    events: tuple[WatchEvent, ...]
    compacted: bool = False


def _revision(reply: Mapping[str, Any]) -> int:
    return int(reply.get("header", {}).get("revision", 0))


def range_body(key: str, *, prefix: bool = False, revision: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    if prefix:
        body["range_end"] = prefix_end(key)
    if revision:
        body["revision"] = str(revision)
    return body


def range_result(reply: Mapping[str, Any]) -> RangeResult:
    return RangeResult(
        _revision(reply), tuple(KeyValue.from_json(kv) for kv in reply.get("kvs", ()))
    )


def txn_result(reply: Mapping[str, Any]) -> TxnResult:
    return TxnResult(
        bool(reply.get("succeeded", False)), _revision(reply), tuple(reply.get("responses", ()))
    )


# --- transaction parts (etcd's Compare and RequestOp, as gateway JSON) ---------------------------


def mod_revision_is(key: str, revision: int) -> dict[str, Any]:
    """Compare: the key was last written at ``revision`` (0: the key does not exist)."""
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}


def create_revision_is(key: str, revision: int) -> dict[str, Any]:
    return {
        "key": b64(key),
        "target": "CREATE",
        "result": "EQUAL",
        "create_revision": str(revision),
    }


def put_op(key: str, value: str | bytes, lease: int = 0) -> dict[str, Any]:
    put: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def delete_op(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


def range_op(key: str) -> dict[str, Any]:
    return {"request_range": {"key": b64(key)}}


class EtcdClient:
    """Async calls for the watchers and writers; ``range_sync`` for a first load outside a loop."""

    def __init__(self, endpoints: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if not endpoints:
            raise EtcdError("no etcd endpoints given")
        self.endpoints = tuple(e.rstrip("/") for e in endpoints)
        self.timeout = timeout
        self._current = 0
        self._async: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _order(self) -> list[str]:
        """The endpoint that answered last first, then the others in turn."""
        n = len(self.endpoints)
        return [self.endpoints[(self._current + i) % n] for i in range(n)]

    def _answered(self, endpoint: str) -> None:
        self._current = self.endpoints.index(endpoint)

    @staticmethod
    def _checked(reply: httpx.Response, path: str) -> dict[str, Any]:
        try:
            data = reply.json()
        except ValueError:
            data = {}
        if reply.status_code != 200:
            message = data.get("message") or data.get("error") or reply.text[:200]
            raise EtcdError(f"etcd {path}: {message}")
        return dict(data)

    def _client(self) -> httpx.AsyncClient:
        """One connection pool per event loop (a pool cannot outlive the loop it was made on)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._loop is not loop:
            self._async = httpx.AsyncClient(timeout=self.timeout)
            self._loop = loop
        return self._async

    async def call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        errors: list[str] = []
        for endpoint in self._order():
            try:
                reply = await self._client().post(f"{endpoint}{path}", json=body)
            except httpx.TransportError as exc:
                errors.append(f"{endpoint}: {exc!r}")
                continue
            self._answered(endpoint)
            return self._checked(reply, path)
        raise EtcdUnavailable(f"etcd {path}: no endpoint answered ({'; '.join(errors)})")

    def call_sync(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        errors: list[str] = []
        with httpx.Client(timeout=self.timeout) as client:
            for endpoint in self._order():
                try:
                    reply = client.post(f"{endpoint}{path}", json=body)
                except httpx.TransportError as exc:
                    errors.append(f"{endpoint}: {exc!r}")
                    continue
                self._answered(endpoint)
                return self._checked(reply, path)
        raise EtcdUnavailable(f"etcd {path}: no endpoint answered ({'; '.join(errors)})")

    # --- KV -------------------------------------------------------------------------------------

    async def range(self, key: str, *, prefix: bool = False, revision: int = 0) -> RangeResult:
        return range_result(
            await self.call("/v3/kv/range", range_body(key, prefix=prefix, revision=revision))
        )

    def range_sync(self, key: str, *, prefix: bool = False, revision: int = 0) -> RangeResult:
        return range_result(
            self.call_sync("/v3/kv/range", range_body(key, prefix=prefix, revision=revision))
        )

    async def get(self, key: str) -> KeyValue | None:
        kvs = (await self.range(key)).kvs
        return kvs[0] if kvs else None

    async def put(self, key: str, value: str | bytes, *, lease: int = 0) -> int:
        body = put_op(key, value, lease)["request_put"]
        return _revision(await self.call("/v3/kv/put", body))

    async def txn(
        self,
        compare: Sequence[Mapping[str, Any]],
        success: Sequence[Mapping[str, Any]],
        failure: Sequence[Mapping[str, Any]] = (),
    ) -> TxnResult:
        body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
        return txn_result(await self.call("/v3/kv/txn", body))

    # --- leases ---------------------------------------------------------------------------------

    async def grant(self, ttl_s: int) -> int:
        """A new lease of ``ttl_s`` seconds; its id."""
        reply = await self.call("/v3/lease/grant", {"TTL": str(ttl_s)})
        if reply.get("error"):
            raise EtcdError(f"etcd lease grant: {reply['error']}")
        return int(reply["ID"])

    async def keep_alive(self, lease: int) -> int:
        """Refresh a lease once; its remaining TTL, 0 when it has already expired."""
        reply = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(reply.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        await self.call("/v3/lease/revoke", {"ID": str(lease)})

    # --- watch ----------------------------------------------------------------------------------

    async def watch(
        self, key: str, *, prefix: bool = False, start_revision: int = 0
    ) -> AsyncIterator[WatchBatch]:
        """Batches of events from ``start_revision`` on, from one endpoint, until the stream ends
        (the member went away: the caller re-reads and watches again) or the caller stops."""
        create: dict[str, Any] = {"key": b64(key)}
        if prefix:
            create["range_end"] = prefix_end(key)
        if start_revision:
            create["start_revision"] = str(start_revision)
        body = {"create_request": create}
        errors: list[str] = []
        for endpoint in self._order():
            try:
                async with self._client().stream(
                    "POST",
                    f"{endpoint}/v3/watch",
                    json=body,
                    timeout=httpx.Timeout(self.timeout, read=WATCH_IDLE_S),
                ) as reply:
                    if reply.status_code != 200:
                        raise EtcdError(f"etcd /v3/watch: HTTP {reply.status_code}")
                    self._answered(endpoint)
                    async for line in reply.aiter_lines():
                        batch = _watch_batch(line)
                        if batch is not None:
                            yield batch
                    return
            except httpx.ConnectError as exc:  # this member is down: try the next
                errors.append(f"{endpoint}: {exc!r}")
            except (httpx.TransportError, httpx.StreamError):
                return  # the stream broke after it started: the caller resumes from its revision
        raise EtcdUnavailable(f"etcd /v3/watch: no endpoint answered ({'; '.join(errors)})")

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None


def _watch_batch(line: str) -> WatchBatch | None:
    line = line.strip()
    if not line:
        return None
    message = json.loads(line)
    if "error" in message:
        raise EtcdError(f"etcd /v3/watch: {message['error']}")
    result = message.get("result", {})
    if result.get("compact_revision"):
        return WatchBatch(int(result["compact_revision"]), (), compacted=True)
    if result.get("canceled"):
        raise EtcdError(f"etcd watch canceled: {result.get('cancel_reason', 'no reason given')}")
    events = tuple(
        WatchEvent("DELETE" if e.get("type") == "DELETE" else "PUT", KeyValue.from_json(e["kv"]))
        for e in result.get("events", ())
    )
    return WatchBatch(_revision(result), events)
