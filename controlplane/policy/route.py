"""``RoutePolicy``: hosts and ordered HTTP rules, in Gateway API / Istio terms."""

from __future__ import annotations

from typing import Literal

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


class Destination(Spec):
    service: Name
    subset: Label | None = None
    port: Port | None = None
    weight: Weight | None = None


class Retries(Spec):
    attempts: int = Field(ge=0, le=10)
    per_try_timeout: Millis | None = None
    retry_on: tuple[RetryOn, ...] = ("5xx", "reset", "connect-failure")


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


class HeaderOps(Spec):
    set: dict[str, str] = Field(default_factory=dict)
    add: dict[str, str] = Field(default_factory=dict)
    remove: tuple[str, ...] = ()


class Headers(Spec):
    request: HeaderOps | None = None
    response: HeaderOps | None = None


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
    headers: Headers | None = None

    @model_validator(mode="after")
    def _one_action(self) -> HttpRule:
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


class RoutePolicySpec(Spec):
    hosts: tuple[Hostname, ...] = Field(min_length=1)
    http: tuple[HttpRule, ...] = Field(min_length=1)
