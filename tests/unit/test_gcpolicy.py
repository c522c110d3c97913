"""A swapped-in model is frozen out of the cyclic GC's scans, and what is frozen and dies does not
pile up: a swap after the frozen set grew by half since the last full collection (or the first
freeze) collects it, and a swap before that does not scan the process; the first freeze does not
collect. ``ubiq serve`` applies this to its store's swaps and ends its loads in a freeze."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane import gcpolicy
from controlplane.errors import PolicyError
from controlplane.policy.loader import load_texts
from controlplane.policy.store import DirectoryStore
from controlplane.serve import ServeOptions, Ubiq

CLUSTER = "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\nspec: {region: r}\n"


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process whose GC policy has not frozen anything yet (restored after the test)."""
    monkeypatch.setattr(gcpolicy, "_frozen_at_collect", 0)
    monkeypatch.setattr(gcpolicy, "_frozen_since", 0)
    monkeypatch.setattr(gcpolicy, "_managed", False)
    gc.unfreeze()


def frozen(obj: object) -> bool:
    """In the permanent generation: tracked, but in none of the three the GC scans."""
    return gc.is_tracked(obj) and not any(
        o is obj for generation in range(3) for o in gc.get_objects(generation)
    )


def test_a_swap_freezes_the_model_and_a_later_one_collects_what_died(
    tmp_path: Path, unfrozen: None, fresh: None
) -> None:
    (tmp_path / "clusters.yaml").write_text(CLUSTER)
    store = DirectoryStore(tmp_path)
    store.subscribe(lambda _model: gcpolicy.keep_long_lived())  # as serve does
    before = Cycle()
    dead_before = weakref.ref(before)
    del before
    store.load()  # the first swap freezes without collecting: the cycle from before stays
    assert gcpolicy._frozen_at_collect >= gc.get_freeze_count() > 0  # some died since
    assert dead_before() is not None and frozen(dead_before())
    cycle = Cycle()
    dead = weakref.ref(cycle)
    (tmp_path / "clusters.yaml").write_text(CLUSTER.replace("region: r", "region: s"))
    model = store.load()
    assert frozen(model.clusters["c1"])  # the model (and the cycle) are in the permanent generation
    del cycle
    gc.collect()
    assert dead() is not None and dead_before() is not None  # frozen: no collection looks at it
    store.load()  # a swap that adds little to the frozen set: freezes, collects nothing
    assert dead() is not None
    alive = [Cycle() for _ in range(gcpolicy._frozen_at_collect)]  # more than half again
    store.load()
    assert dead() is None and dead_before() is None  # this swap unfroze, collected, froze again
    assert store.model.clusters["c1"].spec.region == "s"
    assert all(frozen(c) for c in alive[:3])


def test_a_managed_load_ends_in_a_freeze_and_an_unmanaged_or_failed_one_does_not(
    unfrozen: None, fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [("clusters.yaml", CLUSTER)]
    model = load_texts(texts)
    assert gc.get_freeze_count() == 0 and not frozen(model.clusters["c1"])  # tests, the CLI
    gcpolicy.manage()
    with pytest.raises(PolicyError):
        load_texts([("bad.yaml", "kind: [")])
    assert gc.get_freeze_count() == 0 and gc.isenabled()  # its garbage is collected as usual
    model = load_texts(texts)
    assert gc.isenabled() and frozen(model.clusters["c1"])  # no pass over what the load made
    first = gcpolicy._frozen_at_collect
    assert first >= gc.get_freeze_count() > 0  # the first freeze is the reference
    cycle = Cycle()
    dead = weakref.ref(cycle)
    del cycle
    load_texts(texts)  # a load adding little: frozen with it, not collected
    assert dead() is not None and gcpolicy._frozen_at_collect == first
    alive = [Cycle() for _ in range(first)]
    load_texts(texts)  # the frozen set grew by more than half: one full collection
    assert dead() is None and gcpolicy._frozen_since == 0
    assert gc.isenabled() and len(alive) == first


def test_serve_freezes_each_model_its_store_swaps_in_the_first_included(
    tmp_path: Path, unfrozen: None, fresh: None
) -> None:
    (tmp_path / "clusters.yaml").write_text(CLUSTER)
    ubiq = Ubiq(ServeOptions(directory=tmp_path, dns=(), api=None))
    gc.unfreeze()
    model = ubiq.store.load()
    assert gcpolicy._frozen_at_collect > 0 and gc.get_freeze_count() > 0
    assert model.clusters["c1"].spec.region == "r"


def test_a_compile_runs_with_the_gc_paused_and_nested_pauses_end_once(
    unfrozen: None, fresh: None
) -> None:
    from controlplane.xds.compiler import CompileOptions
    from controlplane.xds.runtime import build_groups

    model = load_texts([("clusters.yaml", CLUSTER)])
    seen: list[bool] = []
    groups = build_groups(model, CompileOptions(), on_built=lambda *_: seen.append(gc.isenabled()))
    assert seen == [False] and gc.isenabled() and gc.get_freeze_count() == 0  # unmanaged
    gcpolicy.manage()
    with gcpolicy.paused():
        with gcpolicy.paused():
            pass
        assert not gc.isenabled()  # the inner block's end does not end the outer pause
        groups = build_groups(model, CompileOptions())
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    assert gc.isenabled() and frozen(
        next(iter(groups.values())).snapshot
    )  # managed: ends in a freeze
    with pytest.raises(RuntimeError), gcpolicy.paused():
        raise RuntimeError("a failed compile")
    assert gc.isenabled()


def test_a_tick_pause_overlapping_a_compile_neither_ends_it_early_nor_freezes_alone(
    unfrozen: None, fresh: None
) -> None:
    """The placement tick pauses through ``paused(freeze=False)``: inside a compile's pause it
    does not turn the GC back on, alone it ends without a freeze, and a block that raised keeps
    the window from freezing whatever else ended well in it."""
    gcpolicy.manage()
    with gcpolicy.paused(freeze=False):
        kept = Cycle()
    assert gc.isenabled() and not frozen(kept)  # a tick alone: no freeze
    with gcpolicy.paused():  # a compile ...
        with gcpolicy.paused(freeze=False):  # ... and a tick inside it
            pass
        assert not gc.isenabled()  # the tick's end does not end the compile's pause
        made = Cycle()
    assert gc.isenabled() and frozen(made)  # the compile ended well: frozen
    with pytest.raises(RuntimeError), gcpolicy.paused():
        with gcpolicy.paused():
            garbage = Cycle()
        raise RuntimeError("a failed load around a compile that ended well")
    assert gc.isenabled() and not frozen(garbage)
