"""The stream's shortcuts for the usual ACK give exactly what the full path gives.

A SotW request that names what the stream already subscribes to skips the subscription
bookkeeping (``_same_subscription``), and streams share the tuples of a read-only mapping
(``_tuples``). Differential: the same random SotW sequence (names with ``*``, empty lists,
repeats, ACKs, NACKs, stale nonces, snapshot changes) runs on a stream with the shortcut and on
one without; every response, event and the state the stream keeps per type must match."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from controlplane.errors import XdsRequestError
from controlplane.xds import stream as stream_module
from controlplane.xds.events import Step
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.stream import XdsStream, _tuples
from tests.support.fuzz import fuzz_settings
from tests.support.xds_replay import decode_sotw, sample_snapshots, sotw

FUZZ = fuzz_settings(150)
SNAPSHOTS = sample_snapshots()
TYPES = [CLUSTER, ENDPOINT, LISTENER, ROUTE]
names = st.lists(st.sampled_from(["a", "b", "*", "main", "listener"]), max_size=3)
ops = st.lists(
    st.tuples(
        st.sampled_from(["ack", "ack", "request", "request", "nack", "stale", "snapshot"]),
        st.sampled_from(TYPES),
        names,
        st.integers(0, len(SNAPSHOTS) - 1),
    ),
    max_size=30,
)


@contextmanager
def no_shortcut() -> Iterator[None]:
    saved = stream_module._same_subscription
    stream_module._same_subscription = lambda st, requested: False
    try:
        yield
    finally:
        stream_module._same_subscription = saved


def state(stream: XdsStream) -> dict[str, Any]:
    return {
        t: (
            st.watched, st.wildcard, st.legacy_wildcard, st.names, dict(st.acked), dict(st.nacked),
            st.forced, st.awaiting, st.last_nonce, st.must_respond, st.acked_version, st.settled_at,
            None if st.in_flight is None else (st.in_flight.version_info, dict(st.in_flight.entries)),
        )
        for t, st in stream._types.items()
    }  # fmt: skip


def outcome(step: Step) -> tuple[Any, ...]:
    return (
        tuple((decode_sotw(r).SerializeToString(deterministic=True), r.names) for r in step.responses),
        step.events,
    )  # fmt: skip


def replay(sequence: list[Any]) -> list[Any]:
    stream = XdsStream(delta=False)
    subscribed: dict[str, list[str]] = {t: [] for t in TYPES}
    sent: dict[str, tuple[str, str]] = {}  # type -> (nonce, version) of the last response
    trace: list[Any] = []
    try:
        for kind, type_url, requested, snap in sequence:
            nonce, version = sent.get(type_url, ("", ""))
            if kind == "request":
                subscribed[type_url] = requested
            try:
                if kind == "snapshot":
                    step = stream.on_snapshot(SNAPSHOTS[snap])
                elif kind == "request":
                    step = stream.on_request(sotw(type_url, requested, nonce=nonce))
                else:
                    error = "rejected" if kind == "nack" else None
                    nonce = "stale-nonce" if kind == "stale" else nonce
                    request = sotw(
                        type_url, subscribed[type_url], nonce=nonce, version=version, error=error
                    )
                    step = stream.on_request(request)
            except XdsRequestError as exc:
                trace.append(("refused", str(exc)))
                break
            for r in step.responses:
                sent[r.type_url] = (r.nonce, r.version_info)
            trace.append((outcome(step), state(stream)))
    finally:
        stream.close()
    return trace


@FUZZ
@given(ops)
@example([("request", CLUSTER, ["*", "a"], 0), ("request", CLUSTER, ["a"], 0)])
@example([("request", ENDPOINT, ["*"], 0), ("snapshot", ENDPOINT, [], 1), ("ack", ENDPOINT, [], 0)])
def test_sotw_shortcut_changes_nothing(sequence: list[Any]) -> None:
    with_shortcut = replay(sequence)
    with no_shortcut():
        assert replay(sequence) == with_shortcut


def test_usual_ack_takes_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    """The case the shortcut exists for does take it (so the test above compares something)."""
    stream = XdsStream(delta=False)
    stream.on_request(sotw(ENDPOINT, ["a", "b"]))
    response = stream.on_snapshot(SNAPSHOTS[0]).responses[0]
    taken: list[bool] = []
    real = stream_module._same_subscription

    def spy(st: Any, requested: frozenset[str]) -> bool:
        taken.append(real(st, requested))
        return taken[-1]

    monkeypatch.setattr(stream_module, "_same_subscription", spy)
    stream.on_request(
        sotw(ENDPOINT, ["b", "a"], nonce=response.nonce, version=response.version_info)
    )
    assert taken == [True]
    assert stream.acked_version(ENDPOINT) == response.version_info
    stream.close()


def test_shared_tuples_follow_the_mapping() -> None:
    """Tuples are remembered only for read-only mappings, by identity: an equal mapping or a
    dict that changed never gets another mapping's tuples."""
    ts = SNAPSHOTS[0].get(CLUSTER)
    names, entries = _tuples(ts.entries)
    assert names == tuple(ts.entries) and entries == tuple(ts.entries.values())
    assert _tuples(ts.entries)[0] is names  # made once
    own = dict(ts.entries)
    assert _tuples(own)[0] == names
    own.pop(names[0])
    assert _tuples(own)[0] == names[1:]
