"""Pick the policy source ``ubiq serve`` reads: a directory (the default) or etcd."""

from __future__ import annotations

from pathlib import Path

from controlplane.errors import UbiqError
from controlplane.policy.store import DirectoryStore, PolicySource


def open_source(directory: Path | None, store: str | None, *, debounce_ms: int) -> PolicySource:
    if store is not None and directory is not None:
        raise UbiqError("give a policy DIRECTORY or --store etcd://..., not both")
    if store is not None:
        from controlplane.policy.etcd_store import EtcdStore

        return EtcdStore.from_url(store)
    if directory is None:
        raise UbiqError("serve: give a policy DIRECTORY or --store etcd://HOST:PORT/PREFIX")
    return DirectoryStore(directory, debounce_ms=debounce_ms)
