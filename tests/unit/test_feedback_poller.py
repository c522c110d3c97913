"""The poller against a misbehaving HTTP server: every failure is a stale poll, counted, and the
event loop never blocks. (A real Prometheus is in tests/integration/test_feedback_signals.py;
this server plays the answers a real one cannot be made to give.)"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controlplane.feedback.poller import FeedbackMetrics, FeedbackPoller, PollerSettings
from controlplane.feedback.signals import Signals

Answer = Callable[[str], tuple[int, bytes, float]]  # query -> (status, body, delay)
SETTINGS = PollerSettings(
    interval=0.05, query_timeout=0.5, poll_timeout=1.0, max_response_bytes=4096
)


def ok(result: Any) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


def fresh_then(result: Any) -> Answer:
    def answer(query: str) -> tuple[int, bytes, float]:
        if query.startswith("time() - max(timestamp(up"):
            return 200, ok([{"metric": {}, "value": [time.time(), "0.5"]}]), 0.0
        return 200, ok(result), 0.0

    return answer


@contextlib.contextmanager
def fake_prometheus(answer: Answer, paths: list[str] | None = None) -> Iterator[str]:
    """A fake Prometheus answering with ``answer(query)``; every request path goes in ``paths``."""
    paths = [] if paths is None else paths

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            from urllib.parse import parse_qs, urlparse

            query = parse_qs(urlparse(self.path).query).get("query", [""])[0]
            paths.append(self.path)
            status, body, delay = answer(query)
            time.sleep(delay)
            with contextlib.suppress(OSError):
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def poll(url: str, registry: CollectorRegistry | None = None) -> Signals:
    poller = FeedbackPoller(
        url,
        lambda s: None,
        zones={"eu-west-1a": "eu-west"},
        settings=SETTINGS,
        metrics=FeedbackMetrics(registry or CollectorRegistry()),
    )
    try:
        return await poller.poll_once()
    finally:
        await poller.stop()


async def test_fresh_answers_give_signals() -> None:
    labels = {"ubiq_service": "web", "ubiq_region": "eu-west"}
    with fake_prometheus(fresh_then([{"metric": labels, "value": [1, "0.5"]}])) as url:
        registry = CollectorRegistry()
        signals = await poll(url, registry)
    assert not signals.stale, signals.error
    assert signals.get("web", "eu-west") is not None
    assert registry.get_sample_value("ubiq_feedback_poll_errors_total") == 0
    assert registry.get_sample_value("ubiq_feedback_last_success_timestamp_seconds") == signals.at


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda q: (500, b"boom", 0.0), "query freshness: PrometheusApiClientException"),
        (lambda q: (200, b"{not json", 0.0), "query freshness"),
        (lambda q: (200, b"x" * 10_000, 0.0), "ResponseTooLarge"),
        (lambda q: (200, b'{"data": 5}', 0.0), "query freshness: TypeError"),
        (fresh_then({"oops": 1}), "result must be a list"),
        (fresh_then([{"metric": {}, "value": [1, "1"]}] * 300), "ResponseTooLarge"),
        (lambda q: (200, ok([]), 0.0), "no Envoy target"),
    ],
)
async def test_bad_answers_are_stale_and_counted(answer: Answer, message: str) -> None:
    with fake_prometheus(answer) as url:
        registry = CollectorRegistry()
        signals = await poll(url, registry)
    assert signals.stale and signals.error is not None and message in signals.error, signals.error
    assert registry.get_sample_value("ubiq_feedback_poll_errors_total") == 1
    assert registry.get_sample_value("ubiq_feedback_stale") == 1


async def test_unreachable_prometheus_is_stale() -> None:
    with fake_prometheus(fresh_then([])) as url:
        pass  # closed: nothing listens there any more
    signals = await poll(url)
    assert signals.stale and signals.error is not None and "ConnectionError" in signals.error


async def test_a_slow_prometheus_is_stale_and_the_loop_keeps_running() -> None:
    with fake_prometheus(lambda q: (200, ok([]), 3.0)) as url:
        polling = asyncio.create_task(poll(url))
        for _ in range(3):  # a poll that blocked the loop would be done after its first step
            await asyncio.sleep(0)
        assert not polling.done()  # the event loop is free while the query waits
        signals = await polling
    assert signals.stale and signals.error is not None
    assert "ReadTimeout" in signals.error or "took over" in signals.error, signals.error


async def test_run_hands_every_poll_to_the_callback_and_survives_its_errors() -> None:
    seen: list[Signals] = []

    def callback(signals: Signals) -> None:
        seen.append(signals)
        raise RuntimeError("a broken consumer does not stop the poller")

    with fake_prometheus(fresh_then([])) as url:
        poller = FeedbackPoller(
            url,
            callback,
            zones={},
            settings=SETTINGS,
            metrics=FeedbackMetrics(CollectorRegistry()),
            client_latency=lambda: {("eu-clients", "eu-west"): 20.0},
        )
        poller.start()
        for _ in range(100):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.05)
        await poller.stop()
    assert len(seen) >= 3
    assert all(not s.stale for s in seen)
    assert seen[0].client_latency_ms == {("eu-clients", "eu-west"): 20.0}


async def test_a_failing_latency_source_does_not_break_the_poll() -> None:
    def broken() -> dict[tuple[str, str], float]:
        raise RuntimeError("table gone")

    with fake_prometheus(fresh_then([])) as url:
        poller = FeedbackPoller(
            url,
            lambda s: None,
            zones={},
            settings=SETTINGS,
            metrics=FeedbackMetrics(CollectorRegistry()),
            client_latency=broken,
        )
        signals = await poller.poll_once()
        await poller.stop()
    assert not signals.stale and signals.client_latency_ms == {}


async def test_follow_model_takes_zones_and_services() -> None:
    from controlplane.policy.loader import load_texts

    model = load_texts(
        [
            (
                "m.yaml",
                """apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {name: eu-1}
spec: {region: eu-west, zone: eu-west-1a}
---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 8080}], endpoints: [{cluster: eu-1, address: 127.0.0.1, port: 1}]}
""",
            )
        ]
    )
    labels = {"ubiq_service": "web", "ubiq_region": "eu-west"}
    other = {"ubiq_service": "gone", "ubiq_region": "eu-west"}
    answer = [{"metric": labels, "value": [1, "0.5"]}, {"metric": other, "value": [1, "0.5"]}]
    with fake_prometheus(fresh_then(answer)) as url:
        poller = FeedbackPoller(
            url,
            lambda s: None,
            zones={},
            settings=SETTINGS,
            metrics=FeedbackMetrics(CollectorRegistry()),
        )
        poller.follow_model(model)
        signals = await poller.poll_once()
        await poller.stop()
    assert [k.service for k in signals.values] == ["web"]


def test_query_timeout_is_sent_as_a_duration_prometheus_parses() -> None:
    from controlplane.feedback.poller import PrometheusQuerier

    seen: list[str] = []
    with fake_prometheus(lambda _query: (200, ok([]), 0.0), seen) as url:
        querier = PrometheusQuerier(url)
        querier.query("up", 1.66246, at=1700000000.25)
        querier.close()
    assert "timeout=1662ms" in seen[0] and "time=1700000000.25" in seen[0]


async def test_stop_ends_polling_even_when_a_cancel_is_swallowed() -> None:
    """Python 3.11's asyncio.wait_for returns the result instead of raising when the cancel lands
    as its future completes; stop() must still end the loop (seen in `ubiq demo --loop`, whose
    Prometheus stops first)."""
    poller = FeedbackPoller(
        "http://127.0.0.1:9",
        lambda s: None,
        zones={},
        settings=PollerSettings(interval=0.05),
        metrics=FeedbackMetrics(CollectorRegistry()),
    )
    polling = asyncio.Event()

    async def swallowing() -> Signals:
        polling.set()
        with contextlib.suppress(asyncio.CancelledError):  # what wait_for can do
            await asyncio.Event().wait()
        return Signals(at=0.0, stale=True, error="cancel swallowed")

    poller.poll_once = swallowing  # type: ignore[method-assign]
    task = poller.start()
    await asyncio.wait_for(polling.wait(), 5)
    await asyncio.wait_for(poller.stop(), 5)
    assert task.done()
