"""The ``gtm.answers.changed`` line names only the answers that moved, and at most a few of them."""

from __future__ import annotations

from controlplane.gtm.runtime import LOGGED_ANSWERS, _moved_answers
from controlplane.gtm.types import Decision


def _decisions(answers: dict[tuple[str, str], tuple[str, ...]]) -> dict[tuple[str, str], Decision]:
    return {(n, g): Decision(name=n, group=g, addresses=a) for (n, g), a in answers.items()}


def test_only_moved_new_and_gone_answers_are_listed() -> None:
    before = _decisions(
        {("a", "eu"): ("10.0.0.1",), ("b", "eu"): ("10.0.0.2",), ("c", "eu"): ("10.0.0.3",)}
    )
    after = _decisions(
        {("a", "eu"): ("10.0.0.1",), ("b", "eu"): ("10.0.0.9",), ("d", "eu"): ("10.0.0.4",)}
    )
    assert _moved_answers(before, after) == [
        (("b", "eu"), ("10.0.0.9",)),
        (("c", "eu"), ()),
        (("d", "eu"), ("10.0.0.4",)),
    ]
    assert _moved_answers(after, after) == []


def test_the_first_plan_lists_everything_and_the_line_is_bounded() -> None:
    many = _decisions({(f"n{i:03}", "eu"): ("10.0.0.1",) for i in range(200)})
    moved = _moved_answers(None, many)
    assert len(moved) == 200
    assert len(moved) > LOGGED_ANSWERS
