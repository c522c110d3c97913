"""Fixtures shared across test packages (helpers live in tests/support/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controlplane.xds.bootstrap import Mode


@pytest.fixture(scope="module", params=["ads-sotw", "ads-delta"])
def ads_mode(request: pytest.FixtureRequest) -> Mode:
    """Each ADS flavour in turn, for module-scoped rigs of real Envoys."""
    mode: Mode = request.param
    return mode


@pytest.fixture(scope="module")
def rig_dir(ads_mode: Mode, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(ads_mode)


@pytest.fixture
def reset_backends(rig: Any) -> None:
    """Zero the counters of a module rig's backends before each test (``usefixtures``)."""
    for backend in rig.backends.values():
        backend.reset()
