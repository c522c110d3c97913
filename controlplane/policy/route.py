"""``RoutePolicy``: hosts and ordered HTTP rules, in Gateway API / Istio terms."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from controlplane.policy.common import (
    Hostname,
    Label,
    Millis,
    Name,
    Percent,
    Port,
    Regex,
    Spec,
    StatusCode,
    StringMatch,
    Weight,
)

Method = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
RetryOn = Literal[
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
]


class PathMatch(Spec):
    exact: str | None = None
    prefix: str | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PathMatch:
        set_ = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(
                f"set exactly one of exact, prefix, regex (got {', '.join(set_) or 'none'})"
            )
        for key in ("exact", "prefix"):
            value = getattr(self, key)
            if value is not None and not value.startswith("/"):
                raise ValueError(f"{key} path must start with '/', got {value!r}")
        return self


class HttpMatch(Spec):
    """All conditions of one match must hold; a rule matches when any of its matches does."""

    path: PathMatch | None = None
    headers: dict[str, StringMatch] = Field(default_factory=dict)
    query_params: dict[str, StringMatch] = Field(default_factory=dict)
    method: Method | None = None
    authority: StringMatch | None = None
    ignore_uri_case: bool = False

    @model_validator(mode="after")
    def _case_fits_path(self) -> HttpMatch:
        if self.ignore_uri_case and self.path is not None and self.path.regex is not None:
            raise ValueError(
                "ignoreUriCase applies to exact and prefix paths; write (?i) in a regex"
            )
        if self.authority is not None and self.authority.present is not None:
            raise ValueError("authority: set exact, prefix or regex (every request has one)")
        return self


class HeaderOps(Spec):
    set: dict[str, str] = Field(default_factory=dict)
    add: dict[str, str] = Field(default_factory=dict)
    remove: tuple[str, ...] = ()


class Headers(Spec):
    request: HeaderOps | None = None
    response: HeaderOps | None = None


class Destination(Spec):
    service: Name
    subset: Label | None = None
    port: Port | None = None
    weight: Weight | None = None
    headers: Headers | None = None  # applied only to requests sent to this destination


STATUS_CODES = "retriable-status-codes"


def _is_status_code(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())


class Retries(Spec):
    """``retryOn`` takes Envoy's conditions and, as Istio does, HTTP status codes (``[5xx, "503"]``,
    or Istio's comma-separated string); a code stands for ``retriable-status-codes`` and joins
    ``retriableStatusCodes``."""

    attempts: int = Field(ge=0, le=10)
    per_try_timeout: Millis | None = None
    retry_on: tuple[RetryOn, ...] = ("5xx", "reset", "connect-failure")
    retriable_status_codes: tuple[StatusCode, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _codes_in_retry_on(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        key = "retryOn" if "retryOn" in data else "retry_on"
        items = data.get(key)
        if isinstance(items, str):
            items = [part.strip() for part in items.split(",") if part.strip()]
        if not isinstance(items, list | tuple):
            return data
        codes = [int(v) for v in items if _is_status_code(v)]
        if not codes:
            return {**data, key: items}
        written = data.get("retriableStatusCodes", data.get("retriable_status_codes", []))
        if not isinstance(written, list | tuple):
            return data  # let the field's own validation report it
        conditions: list[Any] = []
        for v in items:
            item = STATUS_CODES if _is_status_code(v) else v
            if item != STATUS_CODES or STATUS_CODES not in conditions:
                conditions.append(item)
        rest = {k: v for k, v in data.items() if k != "retriable_status_codes"}
        return {**rest, key: conditions, "retriableStatusCodes": [*written, *codes]}

    @model_validator(mode="after")
    def _codes_when_asked(self) -> Retries:
        if STATUS_CODES in self.retry_on and not self.retriable_status_codes:
            raise ValueError(
                "retryOn has retriable-status-codes but no status code: list the codes in retryOn"
                ' (e.g. [5xx, "503"]) or in retriableStatusCodes'
            )
        return self

    def conditions(self) -> tuple[str, ...]:
        """Envoy's ``retry_on`` conditions, without duplicates, with retriable-status-codes
        whenever codes are given."""
        out: list[str] = list(dict.fromkeys(self.retry_on))
        if self.retriable_status_codes and STATUS_CODES not in out:
            out.append(STATUS_CODES)
        return tuple(out)


class Delay(Spec):
    fixed_delay: Millis
    percent: Percent = 100.0


class Abort(Spec):
    http_status: int = Field(ge=200, le=599)
    percent: Percent = 100.0


class Fault(Spec):
    delay: Delay | None = None
    abort: Abort | None = None

    @model_validator(mode="after")
    def _something(self) -> Fault:
        if self.delay is None and self.abort is None:
            raise ValueError("set delay, abort or both")
        return self


class Mirror(Spec):
    service: Name
    subset: Label | None = None
    port: Port | None = None
    percent: Percent = 100.0


class CorsPolicy(Spec):
    """Istio's corsPolicy: Envoy's CORS filter answers preflights and adds the response headers."""

    allow_origins: tuple[StringMatch, ...] = Field(min_length=1)
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: Millis | None = None
    allow_credentials: bool = False


class Redirect(Spec):
    uri: str | None = None
    authority: str | None = None
    scheme: Literal["http", "https"] | None = None
    port: Port | None = None
    response_code: Literal[301, 302, 303, 307, 308] = 301


class DirectResponse(Spec):
    status: int = Field(ge=200, le=599)
    body: str = ""


class Rewrite(Spec):
    uri: str | None = None
    authority: str | None = None


class HttpRule(Spec):
    name: Label | None = None
    match: tuple[HttpMatch, ...] = ()
    route: tuple[Destination, ...] = ()
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    rewrite: Rewrite | None = None
    timeout: Millis | None = None
    retries: Retries | None = None
    fault: Fault | None = None
    mirror: Mirror | None = None
    mirrors: tuple[Mirror, ...] = ()
    headers: Headers | None = None
    cors_policy: CorsPolicy | None = None

    @model_validator(mode="after")
    def _one_action(self) -> HttpRule:
        if self.mirror is not None and self.mirrors:
            raise ValueError("set mirror or mirrors, not both")
        actions = [
            k
            for k, v in (
                ("route", self.route),
                ("redirect", self.redirect),
                ("directResponse", self.direct_response),
            )
            if v
        ]
        if len(actions) != 1:
            raise ValueError(
                "set exactly one of route, redirect, directResponse"
                f" (got {', '.join(actions) or 'none'})"
            )
        return self

    def weights(self) -> tuple[int, ...]:
        """Effective weights: a lone destination without a weight takes all traffic."""
        if len(self.route) == 1 and self.route[0].weight is None:
            return (100,)
        return tuple(d.weight or 0 for d in self.route)

    def all_mirrors(self) -> tuple[Mirror, ...]:
        return (self.mirror,) if self.mirror is not None else self.mirrors


RuleOrder = Literal["precedence", "firstMatch"]


class RoutePolicySpec(Spec):
    """``ruleOrder``: ``precedence`` (default; Gateway API: the most specific match wins) or
    ``firstMatch`` (Istio VirtualService: the first rule written that matches wins)."""

    hosts: tuple[Hostname, ...] = Field(min_length=1)
    http: tuple[HttpRule, ...] = Field(min_length=1)
    rule_order: RuleOrder = "precedence"
