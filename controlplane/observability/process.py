"""Process-wide metrics: build info, process and platform collectors, policy reloads."""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Callable, Iterator
from importlib import metadata

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from controlplane.policy.store import StoreStatus

__all__ = ["AsyncioTasks", "BuildInfo", "PolicyCollector", "register_process_metrics", "version"]


def version() -> str:
    try:
        return metadata.version("ubiq")
    except metadata.PackageNotFoundError:
        return "unknown"


class BuildInfo(Collector):
    """``ubiq_build_info{version,python_version} 1`` (the Prometheus ``*_build_info`` idiom)."""

    def __init__(self) -> None:
        self._labels = [version(), platform.python_version()]  # looked up once

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "ubiq_build_info",
            "A metric with a constant 1 labelled by the version of Ubiq and of Python running it",
            labels=["version", "python_version"],
        )
        info.add_metric(self._labels, 1)
        yield info


class PolicyCollector(Collector):
    """Policy reloads, read from the policy source's status at scrape time.

    Named like Prometheus's own ``prometheus_config_last_reload_*`` families, so the same alert
    shapes apply. ``accepted`` counts every model that replaced the serving one (the first load
    included); ``rejected`` every change refused while the last good model kept serving.
    """

    def __init__(self, status: Callable[[], StoreStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        s = self._status()
        reloads = CounterMetricFamily(
            "ubiq_policy_reloads",
            "Policy set loads by result: accepted (the model was replaced) or rejected",
            labels=["result"],
        )
        reloads.add_metric(["accepted"], s.generation)
        reloads.add_metric(["rejected"], s.rejected)
        yield reloads
        yield GaugeMetricFamily(
            "ubiq_policy_last_reload_successful",
            "1 if the last load of the policy set was accepted, 0 if it was rejected",
            value=1 if s.ok else 0,
        )
        yield GaugeMetricFamily(
            "ubiq_policy_last_reload_success_timestamp_seconds",
            "Unix time of the last accepted policy load",
            value=s.loaded_at,
        )


class AsyncioTasks(Collector):
    """``ubiq_asyncio_tasks``: tasks alive on the event loop that serves the scrape (the API runs
    on the main loop), so a leak of tasks shows as a rising line. Absent off any loop."""

    def collect(self) -> Iterator[Metric]:
        try:
            tasks = asyncio.all_tasks()
        except RuntimeError:  # no running loop in this thread
            return
        yield GaugeMetricFamily(
            "ubiq_asyncio_tasks", "asyncio tasks alive on the serving event loop", value=len(tasks)
        )


def register_process_metrics(registry: CollectorRegistry) -> None:
    """Process (CPU, memory, file descriptors), platform (Python version), GC and build info."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(BuildInfo())
    registry.register(AsyncioTasks())
