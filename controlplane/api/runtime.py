"""What the API reads from the running process: a narrow Protocol ``Ubiq`` implements."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client.registry import CollectorRegistry


class RuntimeView(Protocol):
    registry: CollectorRegistry

    def policy_status(self) -> Mapping[str, Any]: ...

    def proxies(self) -> list[Mapping[str, Any]]: ...

    def gtm_health(self) -> list[Mapping[str, Any]]: ...

    def explain(self, name: str, client: str) -> Mapping[str, Any] | None: ...

    def placement(self) -> Mapping[str, Any]: ...

    def canaries(self) -> Mapping[str, Any]: ...

    def canary_command(self, name: str, action: str) -> Mapping[str, Any]: ...

    async def gather_metrics(self) -> None:
        """Bring counts kept elsewhere (DNS worker processes) into ``registry`` before a scrape."""


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value
