"""Measured latency per (client group, region): an EWMA per pair (pure; no clock, no I/O).

Fed by the access-log receiver (``access_logs``) with one observation per request; read by the
poller, which publishes the table as ``Signals.client_latency_ms``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

DEFAULT_ALPHA = 0.2  # weight of the newest request: ~10 requests carry 90 % of the average
DEFAULT_MAX_PAIRS = 100_000  # groups x regions; beyond it new pairs are not tracked


class ClientLatencyTable:
    def __init__(self, alpha: float = DEFAULT_ALPHA, max_pairs: int = DEFAULT_MAX_PAIRS) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.max_pairs = max_pairs
        self._ewma: dict[tuple[str, str], float] = {}
        self._count: dict[tuple[str, str], int] = {}

    def observe(self, group: str, region: str, ms: float) -> None:
        """One request of ``group`` served in ``region`` that took ``ms``; nonsense is ignored."""
        if not group or not region or not math.isfinite(ms) or ms < 0:
            return
        key = (group, region)
        previous = self._ewma.get(key)
        if previous is None:
            if len(self._ewma) >= self.max_pairs:
                return
            self._ewma[key] = ms
        else:
            self._ewma[key] = previous + self.alpha * (ms - previous)
        self._count[key] = self._count.get(key, 0) + 1

    def count(self, group: str, region: str) -> int:
        return self._count.get((group, region), 0)

    def snapshot(self) -> Mapping[tuple[str, str], float]:
        """(group, region) -> smoothed ms, a copy."""
        return dict(self._ewma)
