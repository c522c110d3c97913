"""The threshold state machine and check configuration: counts in, states out, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.errors import GtmError
from controlplane.gtm.health.probes import _status
from controlplane.gtm.health.state import (
    HealthCheck,
    TargetHealth,
    checked_targets,
    health_view,
    observe,
)
from controlplane.gtm.types import SteeringPolicy, Target

CHECK = HealthCheck(healthy_threshold=2, unhealthy_threshold=3)


def run(results: list[bool], check: HealthCheck = CHECK) -> list[TargetHealth]:
    state = TargetHealth()
    states = []
    for i, ok in enumerate(results):
        state = observe(state, ok, None if ok else f"err{i}", float(i), check)
        states.append(state)
    return states


def test_undecided_until_a_threshold_is_reached() -> None:
    states = run([True])
    assert states[-1].healthy is None
    assert run([True, True])[-1].healthy is True
    assert [s.healthy for s in run([False, False, False])] == [None, None, False]


def test_unhealthy_after_n_consecutive_failures_only() -> None:
    states = run([True, True, False, False, True, False, False, False])
    assert [s.healthy for s in states] == [None, True, True, True, True, True, True, False]
    assert states[-1].failures == 3 and states[-1].successes == 0
    assert states[-1].last_change == 7.0
    assert states[-1].last_error == "err7"


def test_recovers_after_healthy_threshold() -> None:
    states = run([True, True, False, False, False, True, False, True, True])
    assert [s.healthy for s in states][4:] == [False, False, False, False, True]
    assert states[-1].last_change == 8.0
    assert states[-1].last_error == "err6"  # the last error stays for the API
    assert states[-1].probes == 9


def test_threshold_one_flips_on_every_result() -> None:
    check = HealthCheck(healthy_threshold=1, unhealthy_threshold=1)
    assert [s.healthy for s in run([True, False, True], check)] == [True, False, True]


def test_last_change_moves_only_on_change() -> None:
    states = run([True, True, True, True])
    assert {s.last_change for s in states[1:]} == {1.0}
    assert states[-1].last_probe == 3.0


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 4), st.integers(1, 4))
def test_state_is_decided_by_the_last_run_of_results(
    results: list[bool], up: int, down: int
) -> None:
    check = HealthCheck(healthy_threshold=up, unhealthy_threshold=down)
    state = TargetHealth()
    for ok in results:
        state = observe(state, ok, "e", 0.0, check)
    if results:
        tail = 0
        for ok in reversed(results):
            if ok != results[-1]:
                break
            tail += 1
        if results[-1] and tail >= up:
            assert state.healthy is True
        if not results[-1] and tail >= down:
            assert state.healthy is False
        assert (state.successes if results[-1] else state.failures) == tail


def test_detail_text() -> None:
    assert TargetHealth(False, failures=3, last_error="timeout after 1s").detail == (
        "3 failed probes: timeout after 1s"
    )
    assert TargetHealth(False, failures=1).detail == "1 failed probe"


def test_health_view_from_states() -> None:
    a, b, c = ("a", "192.0.2.1", 80), ("b", "192.0.2.2", 80), ("c", "192.0.2.3", 80)
    view = health_view(
        {
            a: TargetHealth(True),
            b: TargetHealth(False, failures=3, last_error="connection refused"),
            c: TargetHealth(),
        }
    )
    assert view.healthy == {a}
    assert view.known == {a, b}
    assert view.detail == {b: "3 failed probes: connection refused"}
    assert view.is_healthy(Target("c", "r", "192.0.2.3", 80))  # undecided counts as healthy
    assert not view.is_healthy(Target("b", "r", "192.0.2.2", 80))


def test_status_ranges() -> None:
    check = HealthCheck(expected_status=((200, 204), (301, 301)))
    assert check.status_ok(200) and check.status_ok(204) and check.status_ok(301)
    assert not check.status_ok(205) and not check.status_ok(302) and not check.status_ok(500)
    assert HealthCheck().status_ok(399) and not HealthCheck().status_ok(400)


@pytest.mark.parametrize(
    "kw",
    [
        {"interval": 0},
        {"timeout": -1},
        {"healthy_threshold": 0},
        {"unhealthy_threshold": 0},
        {"jitter": 1.0},
        {"path": "healthz"},
        {"expected_status": ()},
        {"expected_status": ((500, 200),)},
    ],
)
def test_bad_check_is_rejected(kw: dict[str, object]) -> None:
    with pytest.raises(GtmError, match="health check"):
        HealthCheck(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"HTTP/1.1 200 OK\r\n", 200),
        (b"HTTP/1.0 503 Service Unavailable\r\n", 503),
        (b"HTTP/1.1 204\r\n", 204),
        (b"HTTP/2 200\r\n", None),
        (b"SSH-2.0-OpenSSH\r\n", None),
        (b"HTTP/1.1 abc\r\n", None),
        (b"HTTP/1.1 999 Nope\r\n", None),
        (b"", None),
    ],
)
def test_status_line_parsing(line: bytes, status: int | None) -> None:
    assert _status(line) == status


def test_checked_targets_probe_shared_gateways_once() -> None:
    gw = Target("eu-1", "eu-west", "192.0.2.1", 443)
    us = Target("us-1", "us-west", "192.0.2.2", 443)
    ap = Target("ap-1", "ap-south", "192.0.2.3", 443)
    a = SteeringPolicy("a.gtm.example", "gtm.example", "failover", (gw, us), 10)
    b = SteeringPolicy("b.gtm.example", "gtm.example", "failover", (gw,), 10)
    c = SteeringPolicy("c.gtm.example", "gtm.example", "failover", (ap,), 10)
    tcp = HealthCheck(kind="tcp")
    got = checked_targets([a, b, c], {"a.gtm.example": CHECK, "b.gtm.example": tcp})
    assert [(ct.target.cluster, ct.check.kind) for ct in got] == [
        ("eu-1", "http"),
        ("us-1", "http"),
    ]
