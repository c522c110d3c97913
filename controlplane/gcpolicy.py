"""The process's cyclic-GC policy around its long-lived policy model.

``ubiq serve`` calls ``keep_long_lived`` each time its policy source swaps a new model in (the
store's listeners, the first load included), before the compile that follows.
"""

from __future__ import annotations

import gc

#: a full collection at a swap once this share of what was alive at the last one has been frozen
#: since
FROZEN_GROWTH = 0.5
_frozen_at_collect = 0  # objects frozen by the last full collection
_frozen_since = 0  # objects frozen by the swaps after it (some have died since: an upper bound)


def keep_long_lived() -> None:
    """The model just swapped in lives until the next one: move everything alive to the GC's
    permanent generation (``gc.freeze``), so the compile that follows and every later collection
    do not rescan its millions of objects (``ubiq serve`` at 10,000 services: the first compile
    took 85 s with the GC rescanning the model, 35 s frozen, on a loaded machine;
    docs/benchmarks.md "Cold start").

    A full collection (unfreeze, collect, freeze) scans every object of the process: 80 ms with
    one service and 10 Envoys connected, and it ran on every reload before the compile. A swap
    now only freezes what is not frozen yet (counting it costs a walk over those objects only);
    an object that dies by reference count is freed although frozen, so what stays frozen and
    dead is cyclic garbage, and a full collection runs once the objects frozen since the last
    one reach half of what it kept: that garbage stays bounded by half the live set."""
    global _frozen_at_collect, _frozen_since
    if not gc.isenabled():
        return
    if _frozen_at_collect:
        _frozen_since += sum(len(gc.get_objects(generation)) for generation in range(3))
        if _frozen_since < FROZEN_GROWTH * _frozen_at_collect:
            gc.freeze()
            return
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _frozen_at_collect, _frozen_since = gc.get_freeze_count(), 0
