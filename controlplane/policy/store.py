"""A directory of policy files, watched: every valid change swaps the model, an invalid one never does.

The store holds the last good Model. Changes are debounced, the whole set is re-validated off the
event loop (files whose content did not change come parsed and validated from the store's
``FileCache``, which also keeps each document's cross-check problems and warnings until the
document or a fact its check read changes: ``policy.docmemo``), and only a set that
passes every check replaces the model (one attribute assignment,
so readers see the old model or the new one, never a mix). A failed load is logged, counted and
kept in ``status`` for the API; the model that was serving keeps serving.

The watch follows the directory itself, not only its files: when the directory is removed (or
replaced, ``rm -rf DIR; cp -r saved DIR``) the watch is re-armed on the new one, and until it is
``status.watching`` is false with the reason, ``/readyz`` says not ready, and the log says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog
import watchfiles

from controlplane.errors import PolicyError, Problem, SourceError
from controlplane.policy.loader import FileCache, is_policy_file, load_directory
from controlplane.policy.model import Model

log = structlog.get_logger("ubiq.policy")

Listener = Callable[[Model], None]


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """What the API shows about the policy source."""

    ok: bool
    model_hash: str
    generation: int
    loaded_at: float
    last_error_at: float | None = None
    problems: tuple[Problem, ...] = ()
    rejected: int = 0
    watching: bool = False  # changes are being picked up right now
    watch_error: str | None = None  # why not, when not


class PolicySource(Protocol):
    """Where the model comes from. ``DirectoryStore`` today; a shared store (etcd) for several
    replicas implements the same contract: ``load`` once, then ``watch`` until ``stop``, calling
    subscribers with each new valid model and never with an invalid one."""

    @property
    def model(self) -> Model: ...

    @property
    def status(self) -> StoreStatus: ...

    def subscribe(self, listener: Listener) -> None: ...

    def load(self) -> Model: ...

    async def watch(self) -> None: ...

    def stop(self) -> None: ...


def _relevant(change: watchfiles.Change, path: str) -> bool:
    """Policy files, directories (a moved or removed directory, dotted names included) and a
    ConfigMap's ``..data`` link; hidden and editor temp files never count."""
    p = Path(path)
    if p.name == "..data":  # a ConfigMap volume swapped to new content (kubelet's atomic writer)
        return True
    if p.name.startswith((".", "#")) or p.name.endswith("~"):
        return False
    return is_policy_file(p) or p.is_dir() or not p.exists()


class ModelKeeper:
    """The last good model, its status and its subscribers: what every PolicySource shares.

    ``source`` names where models come from in logs (a directory, an etcd URL)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._listeners: list[Listener] = []
        self._model = Model.empty()
        self._status = StoreStatus(False, self._model.hash, 0, time.time())
        self._watching = False
        self._watch_error: str | None = "not watching yet"

    @property
    def model(self) -> Model:
        return self._model

    @property
    def status(self) -> StoreStatus:
        return dataclasses.replace(
            self._status, watching=self._watching, watch_error=self._watch_error
        )

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(model)`` after every successful swap (and not for rejected changes)."""
        self._listeners.append(listener)

    async def _offer(self, load: Callable[[], Model]) -> bool:
        """Run ``load`` off the event loop and swap its model in; True when a new model was
        swapped in. Never raises for bad input: whatever goes wrong while loading is a rejected
        change, and the model stays."""
        try:
            model = await asyncio.to_thread(load)
        except PolicyError as exc:
            self._reject(exc.problems)
            return False
        except SourceError as exc:
            self._reject((Problem(self.source, None, "", str(exc)),))
            return False
        except Exception as exc:  # a loader bug must not end the watch
            log.exception("policy.load.failed", source=self.source)
            self._reject((Problem(self.source, None, "", f"internal error: {exc!r}"),))
            return False
        if model.hash == self._model.hash and self._status.ok:
            return False
        self._swap(model)
        return True

    def _reject(self, problems: tuple[Problem, ...]) -> None:
        s = self._status
        self._status = StoreStatus(
            False, s.model_hash, s.generation, s.loaded_at, time.time(), problems, s.rejected + 1
        )
        log.warning(
            "policy.reload.rejected",
            detail="keeping the last good model",
            source=self.source,
            problems=[str(p) for p in problems[:20]],
            count=len(problems),
            serving=s.model_hash[:12],
        )

    def _swap(self, model: Model) -> None:
        self._model = model
        s = self._status
        self._status = StoreStatus(
            True, model.hash, s.generation + 1, time.time(), rejected=s.rejected
        )
        log.info("policy.loaded", source=self.source, hash=model.hash[:12], **model.summary())
        for listener in self._listeners:
            try:
                listener(model)
            except Exception:
                log.exception("policy.listener.failed", listener=repr(listener))


class DirectoryStore(ModelKeeper):
    def __init__(self, root: Path | str, *, debounce_ms: int = 100) -> None:
        super().__init__(str(root))
        self.root = Path(root)
        self.debounce_ms = debounce_ms
        self.files = FileCache()  # each file parsed and validated, until its content changes
        self._stop = asyncio.Event()
        self.watch_ready = asyncio.Event()  # set once the first watch is registered

    def load(self) -> Model:
        """First load: raises PolicyError/SourceError when the directory is not a valid set."""
        model = load_directory(self.root, self.files)
        self._swap(model)
        return model

    async def reload(self) -> bool:
        """Re-read the directory; True when a new model was swapped in. Never raises for bad
        input: whatever goes wrong while loading is a rejected change, and the model stays."""
        return await self._offer(lambda: load_directory(self.root, self.files))

    async def watch(self) -> None:
        """Watch the directory until ``stop()``; each batch of changes triggers one reload. A
        removed or replaced directory re-arms the watch once it is back.

        ``watch_ready`` is set once the first watch is registered: a change made after that is seen."""
        try:
            while not self._stop.is_set():
                armed = self._identity()
                if armed is None:
                    self._lost(f"{self.root}: no such file or directory; waiting for it")
                    if not await self._until_root_exists():
                        break
                    log.info("policy.watch.rearmed", source=self.source)
                    await self.reload()
                    continue
                try:
                    await self._watch_armed(armed)
                except (OSError, RuntimeError):  # the directory vanished under the watcher
                    if self._identity() == armed:
                        raise
                if not self._stop.is_set():
                    self._lost(f"{self.root}: directory removed or replaced; re-arming the watch")
                    await self.reload()
        except BaseException as exc:
            self._watching = False
            self._watch_error = f"watch stopped: {exc!r}"
            if not isinstance(exc, asyncio.CancelledError):
                log.error("policy.watch.stopped", source=self.source, error=repr(exc))
            raise
        self._watching, self._watch_error = False, "watch stopped"

    async def _watch_armed(self, armed: tuple[int, int]) -> None:
        """One watch on the directory as it is now; returns when it is no longer that directory."""
        batches = watchfiles.awatch(
            self.root,
            watch_filter=_relevant,
            debounce=self.debounce_ms,
            # watchfiles yields a batch once a whole step passes with no new change, so the
            # step, not `debounce`, sets the latency of a single write (measured: 20 ms step ->
            # 27-34 ms to notice a write; 5 ms -> about 9 ms)
            step=5,
            stop_event=self._stop,
            recursive=True,
            # an empty batch each second: a directory replaced without events is still noticed
            rust_timeout=1000,
            yield_on_timeout=True,
        )
        try:
            while True:
                batch = asyncio.ensure_future(anext(batches))
                if not self._watching:
                    # the generator's first step registers the watch before its first await:
                    # only then is a change certain to be seen (status, /readyz, watch_ready)
                    await asyncio.sleep(0)
                    self._watching, self._watch_error = True, None
                    self.watch_ready.set()
                try:
                    changes = await batch
                except StopAsyncIteration:
                    return
                if changes:
                    log.debug("policy.files.changed", files=sorted({p for _, p in changes})[:10])
                    await self.reload()
                if self._identity() != armed:
                    return
        finally:
            await batches.aclose()

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.root)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _lost(self, reason: str) -> None:
        if self._watching or self._watch_error != reason:
            log.warning("policy.watch.lost", source=self.source, reason=reason)
        self._watching, self._watch_error = False, reason

    async def _until_root_exists(self, poll: float = 0.2) -> bool:
        """Poll for the directory to come back; False when stopped first."""
        while self._identity() is None:
            try:
                await asyncio.wait_for(self._stop.wait(), poll)
                return False
            except TimeoutError:
                continue
        return True

    def stop(self) -> None:
        self._stop.set()
