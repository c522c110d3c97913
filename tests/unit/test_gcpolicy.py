"""A swapped-in model is frozen out of the cyclic GC's scans, and what is frozen and dies does not
pile up: a swap after the frozen set grew by half since the last full collection collects it, and
a swap before that does not scan the process. ``ubiq serve`` applies this to its store's swaps."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane import gcpolicy
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


def test_a_swap_freezes_the_model_and_a_later_one_collects_what_died(
    tmp_path: Path, unfrozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "clusters.yaml").write_text(CLUSTER)
    store = DirectoryStore(tmp_path)
    store.subscribe(lambda _model: gcpolicy.keep_long_lived())  # as serve does
    monkeypatch.setattr(gcpolicy, "_frozen_at_collect", 0)  # the first swap collects
    store.load()
    assert gcpolicy._frozen_at_collect > 0
    cycle = Cycle()
    dead = weakref.ref(cycle)
    (tmp_path / "clusters.yaml").write_text(CLUSTER.replace("region: r", "region: s"))
    model = store.load()
    assert gc.is_tracked(model.clusters["c1"])
    assert gc.get_freeze_count() > 0  # the model (and the cycle) are in the permanent generation
    del cycle
    gc.collect()
    assert dead() is not None  # frozen: no collection looks at it
    store.load()  # a swap that adds little to the frozen set: freezes, collects nothing
    assert dead() is not None
    alive = [Cycle() for _ in range(gcpolicy._frozen_at_collect)]  # more than half again
    store.load()
    assert dead() is None  # this swap unfroze, collected, froze again
    assert store.model.clusters["c1"].spec.region == "s"
    assert all(gc.is_tracked(c) for c in alive)


def test_serve_freezes_each_model_its_store_swaps_in_the_first_included(
    tmp_path: Path, unfrozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "clusters.yaml").write_text(CLUSTER)
    ubiq = Ubiq(ServeOptions(directory=tmp_path, dns=(), api=None))
    monkeypatch.setattr(gcpolicy, "_frozen_at_collect", 0)
    gc.unfreeze()
    model = ubiq.store.load()
    assert gcpolicy._frozen_at_collect > 0 and gc.get_freeze_count() > 0
    assert model.clusters["c1"].spec.region == "r"
