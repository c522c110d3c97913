"""Deterministic weighted choice: weighted rendezvous (highest random weight) hashing.

Every (key, candidate) pair gets a pseudo-random score from a stable hash, scaled by the
candidate's weight (``-w / ln(u)``, the weighted HRW of Schindelhauer and Schomaker). Ranking by
score gives each key an ordering of the candidates in which a candidate comes first with
probability ``w / sum(w)``. Because a key's scores do not depend on the other candidates, removing
a candidate (it went unhealthy) only moves the keys that had it first, and bringing it back moves
exactly those keys back: client groups stay on their answer while unrelated targets flap.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

_SCALE = float(1 << 64)


def stable_unit(*parts: object) -> float:
    """A number in (0, 1) that depends only on ``parts`` (not on the process's hash seed)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def rendezvous_score(key: str, candidate_id: str, weight: float) -> float:
    """Larger wins. ``weight`` must be positive (steering weighs zero-weight targets as 1)."""
    return -weight / math.log(stable_unit(key, candidate_id))


def rank(key: str, candidates: Sequence[tuple[str, float, T]]) -> list[T]:
    """Order ``(candidate_id, weight, value)`` triples for ``key``, best first.

    Equal scores (practically impossible) keep the input order.
    """
    scored = [
        (rendezvous_score(key, cid, weight), -index, value)
        for index, (cid, weight, value) in enumerate(candidates)
    ]
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [value for _, _, value in scored]
