"""The placement engine: model + health + signals + previous decisions + now -> one Decision per service.

Pure: no I/O, the clock is the ``now`` argument (seconds). ``decide_all`` runs the batch tick
(``controlplane.placement.batch``: smoothing, judging and ranking for every service x region pair
at once) and falls back, per service, to the reference path (``controlplane.placement.single``)
for whatever the batch does not cover; both give equal Decisions (tests/unit/
test_placement_batch.py). ``decide`` decides one service on the reference path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controlplane.feedback.signals import Signals
from controlplane.placement.batch import decide_batch
from controlplane.placement.decision import Decision
from controlplane.placement.single import Health, decide
from controlplane.policy.model import Model

__all__ = ["Health", "decide", "decide_all", "next_wakeup"]


def decide_all(
    model: Model,
    *,
    now: float,
    signals: Signals | None = None,
    health: Health | None = None,
    previous: Mapping[str, Decision] | None = None,
    services: Iterable[str] | None = None,
) -> dict[str, Decision]:
    """One Decision per service of the model (or per name in ``services``).

    A service whose inputs did not change since its previous Decision (same plan, same down
    clusters, equal signals, no timer due) keeps that Decision object: unchanged services cost a
    comparison, and consumers can tell "nothing changed" by identity.
    """
    names = model.services if services is None else services
    return decide_batch(
        model, now=now, signals=signals, health=health, previous=previous or {}, names=names
    )


def next_wakeup(decisions: Mapping[str, Decision]) -> float | None:
    """The earliest ``next_decision_at``: when the runtime must tick even without new signals."""
    return min(
        (d.next_decision_at for d in decisions.values() if d.next_decision_at is not None),
        default=None,
    )
