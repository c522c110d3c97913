"""A swapped-in model is frozen out of the cyclic GC's scans, and nothing frozen leaks: what was
alive at one swap and died since is collected at the next."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.policy.store import DirectoryStore

CLUSTER = "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\nspec: {region: r}\n"


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_a_swap_freezes_the_model_and_the_next_collects_what_died(
    tmp_path: Path, unfrozen: None
) -> None:
    (tmp_path / "clusters.yaml").write_text(CLUSTER)
    store = DirectoryStore(tmp_path)
    cycle = Cycle()
    dead = weakref.ref(cycle)
    model = store.load()
    assert gc.is_tracked(model.clusters["c1"])
    assert gc.get_freeze_count() > 0  # the model (and the cycle) are in the permanent generation
    del cycle
    gc.collect()
    assert dead() is not None  # frozen: no collection looks at it
    (tmp_path / "clusters.yaml").write_text(CLUSTER.replace("region: r", "region: s"))
    store.load()
    assert dead() is None  # the second swap unfroze, collected, froze again
    assert store.model.clusters["c1"].spec.region == "s"
