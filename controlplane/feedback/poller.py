"""Polls Prometheus for the signals and hands each ``Signals`` to a callback (the I/O edge).

Queries go through ``prometheus-api-client`` (``requests`` underneath), on one worker thread so
the event loop never blocks: per-request timeouts, a deadline for the whole poll, no client-side
retries (the next poll is the retry), a cap on the bytes read per answer. Prometheus unreachable,
slow, erroring, answering nonsense, or without a fresh Envoy scrape -> ``Signals(stale=True,
error=...)``, ``ubiq_feedback_poll_errors_total`` counts it, and placement holds its decisions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
import structlog
from prometheus_api_client import PrometheusConnect
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from urllib3.util.retry import Retry

from controlplane.feedback.parse import evaluation_time, stale, to_signals
from controlplane.feedback.queries import (
    DEFAULT_JOB,
    DEFAULT_WINDOW,
    FRESHNESS,
    QueryPlan,
    build_plan,
    zones_from_model,
)
from controlplane.feedback.signals import Signals

if TYPE_CHECKING:
    from controlplane.policy.model import Model

log = structlog.get_logger(__name__)

SignalsCallback = Callable[[Signals], Any]  # may return an awaitable
ClientLatency = Callable[[], Mapping[tuple[str, str], float]]


class ResponseTooLarge(requests.RequestException):
    pass


class QueryFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class PollerSettings:
    """Every default written out (docs/placement.md "Signals")."""

    interval: float = 2.0  # seconds between polls
    window: str = DEFAULT_WINDOW  # rate() window
    job: str = DEFAULT_JOB  # Prometheus job scraping the Envoys
    scrape_interval: float = 1.0  # of that job, seconds
    stale_after_scrapes: int = 3  # no successful Envoy scrape in this many intervals -> stale
    query_timeout: float = 2.0  # per query (connect and each read), and Prometheus's own timeout
    poll_timeout: float = 5.0  # the whole poll
    max_response_bytes: int = 16 << 20  # per answer

    @property
    def max_age(self) -> float:
        return self.stale_after_scrapes * self.scrape_interval


class PrometheusQuerier:
    """Blocking instant queries through ``prometheus-api-client``; call from a worker thread."""

    def __init__(self, url: str, *, max_response_bytes: int = 16 << 20) -> None:
        session = requests.Session()
        session.hooks["response"].append(_bounded_body(max_response_bytes))
        # no retries: the first connect or read error is raised as it is (the next poll retries)
        self._client = PrometheusConnect(url=url, session=session, retry=Retry(total=False))

    def query(self, promql: str, timeout: float, at: float | None = None) -> Any:
        """The answer's ``data.result`` (evaluated at ``at``, default now); raises on transport,
        HTTP and JSON errors."""
        params = {"timeout": f"{max(1, int(timeout * 1000))}ms"}  # Prometheus: no "1.5s"
        if at is not None:
            params["time"] = repr(at)
        return self._client.custom_query(promql, params=params, timeout=timeout)

    def close(self) -> None:
        self._client.close()


def _bounded_body(limit: int) -> Callable[..., requests.Response]:
    """A response hook that reads the body itself, refusing more than ``limit`` bytes.

    Hooks run before ``requests`` reads the body, so an oversized answer is never held whole.
    """

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise ResponseTooLarge(f"answer of {declared} bytes, limit {limit}")
        body = response.raw.read(limit + 1, decode_content=True)
        if len(body) > limit:
            response.close()
            raise ResponseTooLarge(f"answer larger than the limit of {limit} bytes")
        response._content = body
        response._content_consumed = True
        return response

    return hook


class FeedbackMetrics:
    """The poller's own metrics; one set per registry (the default registry: one per process)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.poll_errors = Counter(
            "ubiq_feedback_poll_errors",
            "Polls of Prometheus that gave no usable signals (unreachable, slow, bad answer, stale)",
            registry=registry,
        )
        self.last_success = Gauge(
            "ubiq_feedback_last_success_timestamp_seconds",
            "Wall-clock time of the last poll that gave fresh signals",
            registry=registry,
        )
        self.stale = Gauge(
            "ubiq_feedback_stale", "1 while the last poll gave stale signals", registry=registry
        )


class FeedbackPoller:
    """Every ``settings.interval`` seconds: query, parse, hand ``Signals`` to ``on_signals``."""

    def __init__(
        self,
        url: str,
        on_signals: SignalsCallback,
        *,
        zones: Mapping[str, str],
        settings: PollerSettings | None = None,
        services: Collection[str] | None = None,
        client_latency: ClientLatency | None = None,
        metrics: FeedbackMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or PollerSettings()
        self._querier = PrometheusQuerier(url, max_response_bytes=self.settings.max_response_bytes)
        self._on_signals = on_signals
        self._plan = build_plan(zones, window=self.settings.window, job=self.settings.job)
        self._services = services
        self._client_latency = client_latency
        self._metrics = metrics or FeedbackMetrics()
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "ubiq-feedback")
        self._running: concurrent.futures.Future[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.last: Signals | None = None

    def set_inventory(self, zones: Mapping[str, str], services: Collection[str] | None) -> None:
        """After a model change: the zone -> region table and the services to keep."""
        self._plan = build_plan(zones, window=self.settings.window, job=self.settings.job)
        self._services = services

    def follow_model(self, model: Model) -> None:
        """``set_inventory`` from a model: its Clusters' zones and its Services. Raises
        ``QueryError`` (a zone in two regions) and keeps the previous plan."""
        self.set_inventory(zones_from_model(model), frozenset(model.services))

    async def poll_once(self) -> Signals:
        """One poll; never raises for Prometheus trouble (that is a stale ``Signals``)."""
        at = self._clock()
        latency = self._measured_latency()
        if self._running is not None and not self._running.done():
            signals = stale(at, "previous poll still running", latency)
        else:
            plan = self._plan
            self._running = self._executor.submit(self._query_all, plan)
            try:
                answers = await asyncio.wait_for(
                    asyncio.wrap_future(self._running), self.settings.poll_timeout
                )
            except TimeoutError:
                signals = stale(at, f"poll took over {self.settings.poll_timeout:g}s", latency)
            except QueryFailed as exc:
                signals = stale(at, f"prometheus {exc}", latency)
            except Exception as exc:
                signals = stale(at, f"prometheus: {_describe(exc)}", latency)
            else:
                signals = to_signals(
                    {k: v for k, v in answers.items() if k in plan.queries},
                    answers[FRESHNESS],
                    at=at,
                    max_age=self.settings.max_age,
                    services=self._services,
                    client_latency_ms=latency,
                )
        self._record(signals)
        return signals

    def _measured_latency(self) -> Mapping[tuple[str, str], float]:
        if self._client_latency is None:
            return {}
        try:
            return self._client_latency()
        except Exception as exc:
            log.error("feedback.client_latency.failed", error=_describe(exc))
            return {}

    def _query_all(self, plan: QueryPlan) -> dict[str, Any]:
        """Runs on the worker thread; stops at the poll deadline. Every query is evaluated at the
        instant Prometheus evaluated the freshness probe at, so one poll is one snapshot."""
        deadline = time.monotonic() + self.settings.poll_timeout
        answers: dict[str, Any] = {}
        at: float | None = None
        for name, promql in [(FRESHNESS, plan.freshness), *plan.queries.items()]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"poll deadline passed before query {name}")
            try:
                answers[name] = self._querier.query(
                    promql, min(self.settings.query_timeout, left), at
                )
            except Exception as exc:
                raise QueryFailed(f"query {name}: {_describe(exc)}") from exc
            if name == FRESHNESS:
                at = evaluation_time(answers[name])
                if at is None:  # no Envoy scraped (or a bad answer): stale, nothing more to ask
                    break
        return answers

    def _record(self, signals: Signals) -> None:
        """Metrics for every poll; a log line only when the state or the error changes."""
        previous, self.last = self.last, signals
        if signals.stale:
            self._metrics.poll_errors.inc()
            self._metrics.stale.set(1)
            if previous is None or not previous.stale or previous.error != signals.error:
                log.warning("feedback.poll.stale", error=signals.error)
        else:
            self._metrics.last_success.set(signals.at)
            self._metrics.stale.set(0)
            if previous is not None and previous.stale:
                log.info("feedback.poll.fresh", series=len(signals.values))

    async def _deliver(self, signals: Signals) -> None:
        try:
            result = self._on_signals(signals)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.error("feedback.callback.failed", error=_describe(exc))

    async def run(self) -> None:
        """Poll until cancelled, one poll per interval (a slow poll delays the next)."""
        while not self._stopping:
            started = time.monotonic()
            await self._deliver(await self.poll_once())
            await asyncio.sleep(max(0.0, self.settings.interval - (time.monotonic() - started)))

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="feedback-poller")
        return self._task

    async def stop(self) -> None:
        """Cancel the polling task and wait for it, bounded. Python 3.11's ``asyncio.wait_for``
        swallows a cancel that lands just as the poll's future completes (seen when Prometheus
        had just gone away: polls fail at once); the ``_stopping`` flag then ends the loop within
        one interval."""
        self._stopping = True
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            bound = self.settings.interval + self.settings.poll_timeout + 1.0
            await asyncio.wait({task}, timeout=bound)
            if not task.done():
                log.error("feedback.poller.stop.timeout", waited_s=bound)
            elif not task.cancelled() and (failure := task.exception()) is not None:
                log.error("feedback.poller.failed", error=_describe(failure))
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._querier.close()


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


def _describe(exc: BaseException) -> str:
    """One short line: the exception's type and the gist (requests' messages repeat the URL)."""
    name = type(exc).__name__
    if isinstance(exc, requests.RequestException) and not isinstance(exc, ResponseTooLarge):
        errno = _ERRNO.search(str(exc))
        return f"{name}: {errno.group(0)}" if errno else name
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{name}: {text[:200]}" if text else name
