"""Ubiq's observability artefacts: its own process metrics, Grafana dashboards and alert rules.

The metrics of each part live beside it (``xds/metrics.py``, ``gtm/metrics.py``,
``gtm/health.py``); this package adds the process-wide ones and generates the dashboards that read
them. Metric names and labels are documented in docs/observability.md.
"""
