"""The pure xDS stream under nonsense: random type URLs (served, unserved, empty, garbage),
resource names (unicode, huge, wildcard), versions, nonces (stale, made up, replayed) and error
details, SotW and Delta, between snapshot changes. Each request gives a Step or an
XdsRequestError (the server turns it into INVALID_ARGUMENT / RESOURCE_EXHAUSTED); every response
decodes; state stays bounded (one entry per served type); closing frees the shared name sets."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controlplane.errors import XdsRequestError
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE
from controlplane.xds.stream import MAX_NAME_CHARS, NAME_SETS, XdsStream
from tests.support.fuzz import fuzz_settings
from tests.support.xds_replay import (
    decode_delta,
    decode_sotw,
    delta,
    sample_snapshots,
    sotw,
)

FUZZ = fuzz_settings(150)
SNAPSHOTS = sample_snapshots()
type_urls = st.one_of(
    st.sampled_from([*PUSH_ORDER, "", "type.googleapis.com/envoy.nonsense", "x" * 300]),
    st.text(max_size=30),
)
names = st.lists(
    st.one_of(
        st.sampled_from(["a", "b", "c", "*", "main", "listener", ""]),
        st.text(max_size=20),
        st.just("n" * (MAX_NAME_CHARS + 1)),
    ),
    max_size=6,
)
nonces = st.one_of(st.just("LAST"), st.just(""), st.text(max_size=12))
requests = st.tuples(
    st.sampled_from(["request", "request", "request", "snapshot"]),
    type_urls,
    names,
    names,
    nonces,
    st.text(max_size=12),
    st.one_of(st.none(), st.text(max_size=30)),
    st.integers(0, len(SNAPSHOTS) - 1),
)


def run(delta_stream: bool, fixed: str | None, ops: list[Any]) -> None:
    before = NAME_SETS.names
    stream = XdsStream(delta=delta_stream, type_url=fixed)
    last_nonce: dict[str, str] = {}
    seen_nonces: set[str] = set()
    try:
        for kind, type_url, sub, unsub, nonce, version, error, snap in ops:
            if kind == "snapshot":
                step = stream.on_snapshot(SNAPSHOTS[snap])
            else:
                nonce = last_nonce.get(type_url, "") if nonce == "LAST" else nonce
                request = (
                    delta(type_url, sub, unsub, nonce=nonce, error=error)
                    if delta_stream
                    else sotw(type_url, sub, nonce=nonce, version=version, error=error)
                )
                try:
                    step = stream.on_request(request)
                except XdsRequestError as exc:
                    assert exc.status in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED") and str(exc)
                    return  # the server ends the stream with that status
            for response in step.responses:
                message = decode_delta(response) if delta_stream else decode_sotw(response)
                assert message.type_url in PUSH_ORDER
                assert message.nonce and message.nonce not in seen_nonces
                seen_nonces.add(message.nonce)
                last_nonce[message.type_url] = message.nonce
            assert len(stream._types) <= len(PUSH_ORDER)
    finally:
        stream.close()
        assert NAME_SETS.names == before


@FUZZ
@given(st.booleans(), st.lists(requests, max_size=25))
def test_ads_streams_under_nonsense(delta_stream: bool, ops: list[Any]) -> None:
    run(delta_stream, None, ops)


@FUZZ
@given(
    st.booleans(),
    st.sampled_from([CLUSTER, ENDPOINT, LISTENER, ROUTE]),
    st.lists(requests, max_size=15),
)
def test_per_type_streams_under_nonsense(delta_stream: bool, fixed: str, ops: list[Any]) -> None:
    run(delta_stream, fixed, ops)
