"""A swapped-in model is frozen out of the cyclic GC's scans, and what is frozen and dies does not
pile up: a swap after the frozen set grew by half since the last full collection collects it, and
a swap before that does not scan the process."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.policy import store as store_module
from controlplane.policy.store import DirectoryStore

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
    monkeypatch.setattr(store_module, "_frozen_at_collect", 0)  # the first swap collects
    store.load()
    assert store_module._frozen_at_collect > 0
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
    alive = [Cycle() for _ in range(store_module._frozen_at_collect)]  # more than half again
    store.load()
    assert dead() is None  # this swap unfroze, collected, froze again
    assert store.model.clusters["c1"].spec.region == "s"
    assert all(gc.is_tracked(c) for c in alive)
