"""Hypothesis settings for the fuzz and property tests: ``FUZZ_EXAMPLES`` in the environment
overrides every default (a longer run: ``FUZZ_EXAMPLES=2000 make test``)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def fuzz_settings(examples: int, *extra_checks: HealthCheck) -> settings:
    """``examples`` cases (or ``FUZZ_EXAMPLES``), no deadline, slow data generation allowed."""
    return settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", str(examples))),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, *extra_checks],
    )
