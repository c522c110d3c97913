"""Tables and deltas shipped in pieces: whatever the piece size, a DNS worker that takes the
pieces in one at a time ends with the table a full build gives, byte for byte; a delta for
another table, or a payload cut short, is refused."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.gtm.dns.delta import table_delta
from controlplane.gtm.dns.pieces import Assembly, to_pieces
from controlplane.gtm.dns.table import AnswerTable
from controlplane.gtm.plan import DecidedPlan, GtmPlan, decide
from controlplane.gtm.types import HealthView
from tests.unit.test_gtm_dns_table_incremental import (
    assert_same_answers,
    full_table,
    keys_of,
    unshuffled,
    worlds,
)


def held(table: AnswerTable) -> AnswerTable:
    """What a worker holds: the table as it crossed a process boundary before."""
    return Assembly(to_pieces(table)).run()


def assemble(payload: bytes, base: AnswerTable | None) -> AnswerTable:
    """One piece per step, as the worker does between answers."""
    assembly = Assembly(payload, base)
    steps = 1
    while not assembly.step():
        steps += 1
        assert not assembly.done
    assert assembly.done and assembly.step()  # a step after the end changes nothing
    assert steps == int.from_bytes(payload[:4])
    return assembly.result()


@settings(max_examples=40, deadline=None)
@given(worlds(), st.integers(1, 400))
def test_pieces_of_tables_and_deltas_rebuild_a_full_build_byte_for_byte(
    world: tuple[GtmPlan, list[tuple[str, int, float]]], piece: int
) -> None:
    plan, steps = world
    keys = keys_of(plan)
    healthy = set(keys)
    now = 1000.0
    with unshuffled():
        served = decide(plan, HealthView(frozenset(healthy), frozenset(keys)), epoch=1, serial=1)
        worker = assemble(to_pieces(served.table, piece), None)
        assert_same_answers(worker, full_table(served, 1))
        for epoch, (kind, index, seconds) in enumerate(steps, start=2):
            if kind == "flip":
                healthy ^= {keys[index % len(keys)]}
            now += seconds
            health = HealthView(frozenset(healthy), frozenset(keys))
            new: DecidedPlan = decide(
                plan,
                health,
                epoch=epoch,
                previous=served.decisions,
                serial=epoch,
                now=now,
                reuse=served,
            )
            delta = table_delta(served.table, new.table)
            payload = to_pieces(new.table if delta is None else delta, piece)
            worker = assemble(payload, worker)
            assert_same_answers(worker, full_table(new, epoch))
            assert worker.groups.names == new.table.groups.names
            assert worker.groups.default == new.table.groups.default
            served = new


def test_a_piece_holds_whole_names_of_about_the_answers_asked() -> None:
    plan, keys = _sample()
    table = decide(plan, HealthView(frozenset(keys), frozenset(keys)), epoch=1, serial=1).table
    payload = to_pieces(table, 1)  # every name its own piece
    owners = {key for key, _ in table.exact} | set(table.names)
    assert int.from_bytes(payload[:4]) == 1 + len(owners)
    assert int.from_bytes(to_pieces(table, 10**9)[:4]) == 2  # the header and one piece


def test_a_delta_for_another_table_or_a_cut_payload_is_refused() -> None:
    plan, keys = _sample()
    all_up = HealthView(frozenset(keys), frozenset(keys))
    one = decide(plan, all_up, epoch=1, serial=1)
    down = HealthView(frozenset(keys[1:]), frozenset(keys))
    two = decide(plan, down, epoch=2, previous=one.decisions, serial=2, reuse=one)
    three = decide(plan, all_up, epoch=3, previous=two.decisions, serial=3, reuse=two)
    delta = table_delta(two.table, three.table)
    assert delta is not None
    with pytest.raises(ValueError, match="generation 2 applied to generation 1"):
        Assembly(to_pieces(delta), held(one.table)).run()
    with pytest.raises(ValueError, match="generation 2 applied to none"):
        Assembly(to_pieces(delta)).run()
    payload = to_pieces(three.table)
    with pytest.raises(ValueError, match="cut short"):
        Assembly(payload[:-1]).run()
    with pytest.raises(ValueError, match="bytes after the last piece"):
        Assembly(payload + b"\0").run()
    with pytest.raises(ValueError, match="no table header"):
        Assembly((1).to_bytes(4) + len(b := pickle.dumps("x")).to_bytes(4) + b).run()
    with pytest.raises(ValueError, match="not every piece"):
        Assembly(payload).result()


def _sample() -> tuple[GtmPlan, list[tuple[str, str, int]]]:
    from tests.unit.test_gtm_dns_delta import PLAN

    return PLAN, sorted(keys_of(PLAN))
