"""The process's cyclic-GC policy around its long-lived policy model.

``ubiq serve`` calls ``manage()`` once at start, then ``keep_long_lived`` each time its policy
source swaps a new model in (the store's listeners, the first load included), before the compile
that follows. The policy load and the xDS compile run in ``paused()``: no automatic collection
while they allocate their long-lived objects, and the pause ends in a freeze in a managed process
(a plain ``gc.enable`` elsewhere).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

#: a full collection once this share of what was alive at the last one (or frozen by the first
#: freeze) has been frozen since
FROZEN_GROWTH = 0.5
_managed = False  # manage() was called: loads end in a freeze (``ubiq serve`` only)
_frozen_at_collect = 0  # objects kept by the last full collection, or frozen by the first freeze
_frozen_since = 0  # objects frozen since then (some have died since: an upper bound)


def manage() -> None:
    """Apply this policy to the whole process (``ubiq serve``): from now on a ``paused()`` block
    (a policy load, an xDS compile) ends in a freeze."""
    global _managed
    _managed = True


_pause_lock = threading.Lock()
_pauses = 0  # paused() blocks running now (the loader, the compile, the tick overlap in threads)
_enable_after = False  # the GC was enabled when the first of them began
_freeze_after = False  # a block that keeps what it made ended well during this pause
_failed = False  # a block raised during this pause


@contextlib.contextmanager
def paused(*, freeze: bool = True) -> Iterator[None]:
    """No automatic collection inside: loading a policy set or compiling every node group
    allocates millions of long-lived objects and little cyclic garbage, and the GC would rescan
    them again and again (more than half of a 10k-service load; 5-6 full passes, ~1.6 s, in a
    10k compile). Blocks may overlap across threads; the GC comes back when the last one ends.
    Then, in a managed process, if a block with ``freeze`` ended well and none raised, what they
    made is frozen (with the same bound as a swap) instead of the automatic pass that would
    otherwise scan every new object once; after an exception, or elsewhere (tests, the CLI's
    validate), the GC is only enabled again (a failed load's garbage, tracebacks included, is
    collected as usual). ``freeze=False``: a block whose objects are short-lived (a placement
    tick) pauses without asking for a freeze."""
    global _pauses, _enable_after, _freeze_after, _failed
    with _pause_lock:
        if _pauses == 0:
            _enable_after = gc.isenabled()
            _freeze_after = _failed = False
            gc.disable()
        _pauses += 1
    succeeded = False
    try:
        yield
        succeeded = True
    finally:
        with _pause_lock:
            _pauses -= 1
            _failed = _failed or not succeeded
            _freeze_after = _freeze_after or (succeeded and freeze)
            if _pauses == 0 and _enable_after:
                if _freeze_after and not _failed and _managed:
                    _freeze_new()
                gc.enable()


def keep_long_lived() -> None:
    """The model just swapped in lives until the next one: move everything alive to the GC's
    permanent generation (``gc.freeze``), so the compile that follows and every later collection
    do not rescan its millions of objects (``ubiq serve`` at 10,000 services: the first compile
    took 85 s with the GC rescanning the model, 35 s frozen, on a loaded machine;
    docs/benchmarks.md "Cold start").

    A full collection (unfreeze, collect, freeze) scans every object of the process: 80 ms with
    one service and 10 Envoys connected, 0.7-0.9 s at 10,000 services. A swap only freezes what
    is not frozen yet (counting it costs a walk over those objects only); an object that dies by
    reference count is freed although frozen, so what stays frozen and dead is cyclic garbage,
    and a full collection runs once the objects frozen since the last one reach half of what it
    kept: that garbage stays bounded by half the live set.

    The first freeze of the process (the cold start's load or first swap) does not collect: it
    takes what it froze as the live set it is measured against. What it freezes dead is the
    cyclic garbage of the start itself (imports, the first load: none found at 10,000 services,
    docs/benchmarks.md "Cold start, fourth round"), collected by the first full collection."""
    if gc.isenabled():
        _freeze_new()


def _freeze_new() -> None:
    global _frozen_at_collect, _frozen_since
    if not _frozen_at_collect:
        gc.freeze()
        _frozen_at_collect, _frozen_since = gc.get_freeze_count(), 0
        return
    _frozen_since += sum(len(gc.get_objects(generation)) for generation in range(3))
    if _frozen_since < FROZEN_GROWTH * _frozen_at_collect:
        gc.freeze()
        return
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _frozen_at_collect, _frozen_since = gc.get_freeze_count(), 0
