"""Small message makers shared by the resource builders."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from controlplane.policy.common import StringMatch


def make_duration(ms: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def make_any(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def make_percent(percent: float) -> percent_pb2.FractionalPercent:
    """Always per MILLION, so 1.5% is exact (15000) and equal inputs give equal bytes."""
    return percent_pb2.FractionalPercent(
        numerator=round(percent * 10_000),
        denominator=percent_pb2.FractionalPercent.MILLION,
    )


def make_ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def make_regex(pattern: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=pattern)


def make_string_matcher(match: StringMatch) -> string_pb2.StringMatcher:
    """exact / prefix / regex of a StringMatch (``present`` is handled by the caller)."""
    if match.exact is not None:
        return string_pb2.StringMatcher(exact=match.exact)
    if match.prefix is not None:
        return string_pb2.StringMatcher(prefix=match.prefix)
    assert match.regex is not None
    return string_pb2.StringMatcher(safe_regex=make_regex(match.regex))


def make_header_option(key: str, value: str, *, append: bool) -> base_pb2.HeaderValueOption:
    action = (
        base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
        if append
        else base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    )
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value), append_action=action
    )
