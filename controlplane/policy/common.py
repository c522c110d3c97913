"""Building blocks shared by every policy kind: strict frozen models, durations, names, selectors."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, Any, Literal

import re2
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError


class Spec(BaseModel):
    """Base of every policy object: immutable, unknown fields rejected, camelCase in YAML."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=False,
    )


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}


MAX_DURATION_MS = 10 * 365 * 24 * 3_600_000  # ten years: far beyond any timeout, inside every limit


def _parse_duration(value: Any) -> int:
    """Durations are written like Kubernetes and Istio do ("250ms", "2s", "1m"); bare numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 2s or 1m")
    ms: float | None = None
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        ms = value * 1000
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            ms = float(m.group(1)) * _UNIT_MS[m.group(2)]
    if ms is None or not math.isfinite(ms):
        raise ValueError(f"expected a duration such as 500ms, 2s or 1m, got {value!r}")
    if ms > MAX_DURATION_MS:
        raise ValueError(f"must be at most 10 years, got {value!r}")
    return round(ms)


def _positive(ms: int) -> int:
    if ms <= 0:
        raise ValueError("must be more than 0")
    return ms


def _format_ms(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


Millis = Annotated[
    int,
    BeforeValidator(_parse_duration),
    PlainSerializer(_format_ms, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h)?$", "examples": ["2s"]}),
]
"""A duration, held as whole milliseconds."""

PositiveMillis = Annotated[Millis, AfterValidator(_positive)]
"""A duration that must be more than zero (intervals, timeouts Envoy requires to be set)."""

_LABEL_RE = LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_HOST_RE = re.compile(
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\.?$|^\*$"
)
_LABEL_KEY_RE = re.compile(r"^([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def _check(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"must be {what}, got {value!r}")
        return value

    return check


Name = Annotated[
    str, AfterValidator(_check(_SUBDOMAIN_RE, "a lower-case DNS name (a-z, 0-9, '-', '.')"))
]
Label = Annotated[str, AfterValidator(_check(_LABEL_RE, "a lower-case DNS label (a-z, 0-9, '-')"))]
Hostname = Annotated[
    str,
    BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v),
    AfterValidator(_check(_HOST_RE, "a host name, optionally starting with '*.'")),
]
LabelKey = Annotated[str, AfterValidator(_check(_LABEL_KEY_RE, "a label key"))]
Labels = dict[LabelKey, str]


def _in_range(lo: float, hi: float) -> Any:
    def check(value: float) -> float:
        if not lo <= value <= hi:
            shown = f"{value:g}" if abs(value) < 1e300 else "a number over 1e300"
            raise ValueError(f"must be {lo:g}..{hi:g}, got {shown}")
        return value

    return check


Port = Annotated[
    int,
    AfterValidator(_in_range(1, 65535)),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 65535}),
]
Percent = Annotated[
    float,
    AfterValidator(_in_range(0, 100)),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 100}),
]
Weight = Annotated[
    int,
    AfterValidator(_in_range(0, 100)),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 100}),
]


StatusCode = Annotated[
    int,
    AfterValidator(_in_range(100, 599)),
    WithJsonSchema({"type": "integer", "minimum": 100, "maximum": 599}),
]


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"expected a network such as 203.0.113.0/24, got {value!r}") from None


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: an IPv4 address exactly as ``ipaddress`` prints it (no leading zeros): accepted as written
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def _address(value: str) -> str:
    if _CANONICAL_IPV4.fullmatch(value):  # most endpoints; ipaddress costs 15x more per address
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"expected an IPv4 or IPv6 address, got {value!r}") from None


Network = Annotated[str, AfterValidator(_network)]
Address = Annotated[str, AfterValidator(_address)]


class Metadata(Spec):
    name: Name
    namespace: Label = "default"
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class LabelSelectorRequirement(Spec):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        needs = self.operator in ("In", "NotIn")
        if needs and not self.values:
            raise ValueError(f"operator {self.operator} needs values")
        if not needs and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(Spec):
    """Kubernetes label selector: every term must hold."""

    match_labels: Labels = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
            if req.operator == "In" and labels.get(req.key) not in req.values:
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
        return True


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def check_re2(pattern: str) -> str:
    """Envoy matches with RE2, so a pattern is checked with RE2 (no lookaround, no backrefs)."""
    try:
        re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"not a valid RE2 regex: {detail}") from None
    return pattern


Regex = Annotated[str, AfterValidator(check_re2)]


class StringMatch(Spec):
    """Exactly one of exact / prefix / regex (RE2) / present, like Envoy's StringMatcher."""

    exact: str | None = None
    prefix: str | None = None
    regex: Regex | None = None
    present: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StringMatch:
        set_ = [k for k in ("exact", "prefix", "regex", "present") if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(
                f"set exactly one of exact, prefix, regex, present (got {', '.join(set_) or 'none'})"
            )
        return self


SEVERAL_PROBLEMS = "ubiq_several_problems"


def several_problems(found: list[tuple[tuple[str, ...], str]]) -> PydanticCustomError:
    """A validator's several problems at once, each at a field below the validated model
    (``validate_document`` reports one Problem per item)."""
    summary = "; ".join(message for _, message in found)
    return PydanticCustomError(
        SEVERAL_PROBLEMS, "{summary}", {"summary": summary, "problems": found}
    )
