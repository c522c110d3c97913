"""Prometheus answers -> ``Signals`` (pure).

Each answer is the ``data.result`` of an instant query (a vector: ``[{"metric": {...}, "value":
[ts, "1.5"]}, ...]``). NaN and infinities (a division by zero, a quantile of no requests) and
missing series are "no data" (``None``), never 0 or 1. An answer of the wrong shape, a value that
is not a number, a ratio outside 0..1, a negative rate or an oversized answer makes the whole poll
stale with an error that says which query and what was wrong: placement then holds its decisions
rather than act on half a picture. Nothing in here raises on hostile input.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Collection, Mapping
from dataclasses import fields
from typing import Any

from controlplane.feedback.queries import REGION_LABEL, SERVICE_LABEL, SUBSET_LABEL
from controlplane.feedback.signals import RegionSignal, SignalKey, Signals

MAX_SERIES = 100_000  # per answer; far above 1,000 services x 50 regions x a few subsets
RATIOS = frozenset({"success_rate", "healthy_endpoint_share"})
RATIO_SLACK = 1e-9  # float noise in a/b with a <= b
SIGNAL_FIELDS = frozenset(f.name for f in fields(RegionSignal))


class AnswerError(ValueError):
    """A Prometheus answer that does not have the shape or values an instant vector has."""


def sample_value(raw: Any) -> float | None:
    """A sample's value: ``[timestamp, "number"]``. NaN and +-Inf are "no data"."""
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise AnswerError(f"value must be [timestamp, string], got {_short(raw)}")
    text = raw[1]
    if not isinstance(text, str) or len(text) > 64:
        raise AnswerError(f"sample value must be a numeric string, got {_short(text)}")
    try:
        value = float(text)
    except ValueError:
        raise AnswerError(f"sample value is not a number: {_short(text)}") from None
    return value if math.isfinite(value) else None


def parse_vector(
    raw: Any, *, limit: int = MAX_SERIES
) -> list[tuple[Mapping[str, str], float | None]]:
    """(labels, value) per series of an instant vector."""
    if not isinstance(raw, list):
        raise AnswerError(f"result must be a list (an instant vector), got {type(raw).__name__}")
    if len(raw) > limit:
        raise AnswerError(f"{len(raw)} series, more than the limit of {limit}")
    out: list[tuple[Mapping[str, str], float | None]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise AnswerError(f"series must be an object, got {_short(item)}")
        labels = item.get("metric")
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise AnswerError(f"series labels must map strings to strings, got {_short(labels)}")
        out.append((labels, sample_value(item.get("value"))))
    return out


def _key(labels: Mapping[str, str]) -> SignalKey | None:
    """The series' key; ``None`` when it belongs to no known region (an unmapped zone)."""
    service = labels.get(SERVICE_LABEL, "")
    region = labels.get(REGION_LABEL, "")
    if not service or not region:
        return None
    return SignalKey(service, region, labels.get(SUBSET_LABEL, ""))


def _checked(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if name in RATIOS:
        if not -RATIO_SLACK <= value <= 1 + RATIO_SLACK:
            raise AnswerError(f"ratio {value!r} outside 0..1")
        return min(max(value, 0.0), 1.0)
    if value < 0:
        raise AnswerError(f"negative value {value!r}")
    return value


def signal_values(
    answers: Mapping[str, Any],
    *,
    services: Collection[str] | None = None,
    limit: int = MAX_SERIES,
) -> dict[SignalKey, RegionSignal]:
    """Per key, every field that an answer had a sample for. Raises ``AnswerError`` naming the
    query. ``services`` (when given) keeps only those services."""
    found: dict[SignalKey, dict[str, float | None]] = {}
    for name, raw in sorted(answers.items()):
        if name not in SIGNAL_FIELDS:
            raise AnswerError(f"{name}: not a signal field")
        try:
            seen: set[SignalKey] = set()
            for labels, value in parse_vector(raw, limit=limit):
                key = _key(labels)
                if key is None or (services is not None and key.service not in services):
                    continue
                if key in seen:
                    raise AnswerError(f"two series for {key}")
                seen.add(key)
                found.setdefault(key, {})[name] = _checked(name, value)
        except AnswerError as exc:
            raise AnswerError(f"{name}: {exc}") from None
    return {key: RegionSignal(**values) for key, values in sorted(found.items())}


def evaluation_time(raw: Any) -> float | None:
    """The timestamp Prometheus evaluated a one-sample answer at (its own clock), if any."""
    try:
        if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], dict):
            value = raw[0].get("value")
            if isinstance(value, list) and len(value) == 2:
                ts = value[0]
                if isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts):
                    return float(ts)
    except (TypeError, ValueError):
        return None
    return None


def freshness_age(raw: Any) -> float | None:
    """Seconds since the newest successful Envoy scrape; ``None`` when none ever succeeded."""
    series = parse_vector(raw, limit=1)
    return series[0][1] if series else None


def to_signals(
    answers: Mapping[str, Any],
    freshness: Any,
    *,
    at: float,
    max_age: float,
    services: Collection[str] | None = None,
    client_latency_ms: Mapping[tuple[str, str], float] | None = None,
) -> Signals:
    """One poll's answers -> ``Signals``; stale (with the reason) when they cannot be trusted."""
    latency = dict(client_latency_ms or {})
    try:
        age = freshness_age(freshness)
    except AnswerError as exc:
        return stale(at, f"freshness: {exc}", latency)
    if age is None:
        return stale(at, "no Envoy target has been scraped successfully", latency)
    if age > max_age:
        return stale(at, f"newest Envoy scrape is {age:.1f}s old (limit {max_age:g}s)", latency)
    try:
        values = signal_values(answers, services=services)
    except AnswerError as exc:
        return stale(at, str(exc), latency)
    return Signals(at=at, values=values, client_latency_ms=latency)


def stale(
    at: float, error: str, client_latency_ms: Mapping[tuple[str, str], float] | None = None
) -> Signals:
    return Signals(at=at, stale=True, error=error, client_latency_ms=dict(client_latency_ms or {}))


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 2, 40, 40, 3, 3


def _short(value: Any) -> str:
    """A bounded repr: hostile answers can be huge or deeply nested."""
    return _REPR.repr(value)
