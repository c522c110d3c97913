"""Prometheus answers -> Signals: no data is None, bad answers are a stale poll, never a raise."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.feedback.parse import (
    AnswerError,
    evaluation_time,
    parse_vector,
    sample_value,
    signal_values,
    to_signals,
)
from controlplane.feedback.signals import RegionSignal, SignalKey

FRESH = [{"metric": {}, "value": [1700000000.5, "0.4"]}]


def series(service: str, region: str, value: str, subset: str = "") -> dict[str, Any]:
    labels = {"ubiq_service": service, "ubiq_region": region}
    if subset:
        labels["ubiq_subset"] = subset
    return {"metric": labels, "value": [1700000000.5, value]}


@pytest.mark.parametrize("text", ["NaN", "+Inf", "-Inf", "nan", "1e400"])
def test_non_finite_values_are_no_data(text: str) -> None:
    assert sample_value([1.0, text]) is None


def test_numbers_parse() -> None:
    assert sample_value([1.0, "0.25"]) == 0.25
    assert sample_value([1.0, "0"]) == 0.0


@pytest.mark.parametrize(
    "raw",
    [None, "1", [1.0], [1.0, 2.0], [1.0, "x"], [1.0, "1", 2], {"a": 1}, [1.0, "9" * 100]],
)
def test_bad_sample_values_are_errors(raw: Any) -> None:
    with pytest.raises(AnswerError):
        sample_value(raw)


@pytest.mark.parametrize(
    "raw",
    [
        {"resultType": "vector"},
        "a string",
        None,
        42,
        ["not an object"],
        [{"metric": "x", "value": [1, "1"]}],
        [{"metric": {"a": 1}, "value": [1, "1"]}],
        [{"value": [1, "1"]}],
        [{"metric": {}}],
        [{"metric": {}, "values": [[1, "1"]]}],  # a range vector (matrix)
    ],
)
def test_wrong_shapes_are_errors(raw: Any) -> None:
    with pytest.raises(AnswerError):
        parse_vector(raw)


def test_oversized_answers_are_errors() -> None:
    with pytest.raises(AnswerError, match="limit"):
        parse_vector([series("a", "eu", "1")] * 11, limit=10)


def test_values_by_key_with_subsets_and_no_data() -> None:
    values = signal_values(
        {
            "success_rate": [
                series("web", "eu", "1"),
                series("web", "us", "NaN"),  # 0/0: no completed request
                series("web", "us", "0.7", subset="v1"),
            ],
            "request_rate": [series("web", "eu", "12.5"), series("web", "us", "0")],
        }
    )
    assert values[SignalKey("web", "eu")] == RegionSignal(request_rate=12.5, success_rate=1.0)
    assert values[SignalKey("web", "us")] == RegionSignal(request_rate=0.0, success_rate=None)
    assert values[SignalKey("web", "us", "v1")].success_rate == 0.7
    assert values[SignalKey("web", "us", "v1")].request_rate is None  # no series: no data


def test_series_of_unknown_zones_and_other_services_are_left_out() -> None:
    answers = {
        "request_rate": [
            series("web", "", "3"),  # zone not in the zone -> region table
            series("", "eu", "3"),
            series("other", "eu", "3"),
            series("web", "eu", "3"),
        ]
    }
    assert list(signal_values(answers, services={"web"})) == [SignalKey("web", "eu")]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("success_rate", "1.5", "outside 0..1"),
        ("healthy_endpoint_share", "-0.1", "outside 0..1"),
        ("request_rate", "-1", "negative"),
        ("nonsense", "1", "not a signal field"),
    ],
)
def test_impossible_values_are_errors_naming_the_query(
    field: str, value: str, message: str
) -> None:
    with pytest.raises(AnswerError, match=message) as caught:
        signal_values({field: [series("web", "eu", value)]})
    assert str(caught.value).startswith(field)


def test_ratio_float_noise_is_clamped() -> None:
    values = signal_values({"success_rate": [series("web", "eu", "1.0000000000002")]})
    assert values[SignalKey("web", "eu")].success_rate == 1.0


def test_two_series_for_one_key_is_an_error() -> None:
    with pytest.raises(AnswerError, match="two series"):
        signal_values({"request_rate": [series("web", "eu", "1"), series("web", "eu", "2")]})


def test_fresh_answers_make_signals() -> None:
    signals = to_signals({"request_rate": [series("web", "eu", "2")]}, FRESH, at=10.0, max_age=3.0)
    assert not signals.stale and signals.error is None and signals.at == 10.0
    assert signals.get("web", "eu") == RegionSignal(request_rate=2.0)


@pytest.mark.parametrize(
    ("freshness", "message"),
    [
        ([], "no Envoy target"),
        ([{"metric": {}, "value": [1.0, "7.5"]}], "7.5s old"),
        ("garbage", "freshness"),
    ],
)
def test_stale_when_no_fresh_scrape(freshness: Any, message: str) -> None:
    signals = to_signals(
        {"request_rate": [series("web", "eu", "2")]}, freshness, at=10.0, max_age=3.0
    )
    assert signals.stale and signals.values == {}
    assert signals.error is not None and message in signals.error


def test_a_bad_answer_makes_the_whole_poll_stale() -> None:
    signals = to_signals(
        {"request_rate": [series("web", "eu", "2")], "success_rate": {"oops": 1}},
        FRESH,
        at=1.0,
        max_age=3.0,
        client_latency_ms={("eu-clients", "eu"): 12.0},
    )
    assert signals.stale and signals.values == {}
    assert signals.error is not None and signals.error.startswith("success_rate:")
    assert signals.client_latency_ms == {("eu-clients", "eu"): 12.0}


def test_evaluation_time() -> None:
    assert evaluation_time(FRESH) == 1700000000.5
    for raw in (
        [],
        None,
        [{"value": ["x", "1"]}],
        [{"value": [math.inf, "1"]}],
        [{"value": [True, "1"]}],
    ):
        assert evaluation_time(raw) is None


# --- hostile shapes --------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
numeric_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["NaN", "+Inf", "-Inf", "0", "1", "-0", "1e400", "abc", ""]),
)
well_formed = st.lists(
    st.builds(
        lambda service, region, subset, value: series(service, region, value, subset),
        st.sampled_from(["web", "api", ""]),
        st.sampled_from(["eu", "us", ""]),
        st.sampled_from(["", "v1"]),
        numeric_text,
    ),
    max_size=6,
)
FIELDS = [f.name for f in fields(RegionSignal)]


def check_invariants(signals: Any) -> None:
    if signals.stale:
        assert isinstance(signals.error, str) and signals.error
        assert signals.values == {}
        return
    for signal in signals.values.values():
        for name in FIELDS:
            value = getattr(signal, name)
            assert value is None or (isinstance(value, float) and math.isfinite(value))
            if value is not None and name in ("success_rate", "healthy_endpoint_share"):
                assert 0.0 <= value <= 1.0


@settings(max_examples=300, deadline=None)
@given(
    answers=st.dictionaries(st.sampled_from([*FIELDS, "junk"]), json_values, max_size=4),
    freshness=json_values,
)
def test_hostile_json_never_raises(answers: dict[str, Any], freshness: Any) -> None:
    check_invariants(to_signals(answers, freshness, at=0.0, max_age=3.0))


@settings(max_examples=300, deadline=None)
@given(answers=st.dictionaries(st.sampled_from(FIELDS), well_formed, max_size=5))
def test_non_finite_values_never_become_zero_or_one(answers: dict[str, Any]) -> None:
    signals = to_signals(answers, FRESH, at=0.0, max_age=3.0)
    check_invariants(signals)
    if signals.stale:
        return
    for name, raw in answers.items():
        for item in raw:
            labels, text = item["metric"], item["value"][1]
            key = SignalKey(
                labels["ubiq_service"], labels["ubiq_region"], labels.get("ubiq_subset", "")
            )
            if key not in signals.values:
                continue
            try:
                finite = math.isfinite(float(text))
            except ValueError:
                finite = False
            if not finite:
                assert getattr(signals.values[key], name) is None
