"""The demo's closing "where to look" block: the API and Prometheus URLs, the API token and the
Grafana dashboards, with what happens to them when the demo ends (pure: it builds the text)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HEADER = "== where to look"


@dataclass(frozen=True, slots=True)
class DemoPlaces:
    api: str  # http://HOST:PORT
    token: str
    token_file: Path
    prometheus: str | None  # its URL; None when it did not start
    dashboards: Path  # the directory of generated dashboard JSON
    dashboard_files: int


def where_to_look(places: DemoPlaces, *, keep_running: bool) -> str:
    """One line per place, names aligned, then what happens to them when the demo ends."""
    p = places
    prometheus = (
        f"{p.prometheus}  (scrape targets: {p.prometheus}/targets, alerts: {p.prometheus}/alerts)"
        if p.prometheus
        else "not running (see 'Prometheus not started' above; apt-get install prometheus)"
    )
    lines = [
        HEADER,
        f"API         {p.api}  (OpenAPI: {p.api}/openapi.json, docs: {p.api}/docs)",
        f"API token   {p.token}  (scopes read,write; in {p.token_file};"
        f" header 'Authorization: Bearer <token>', or ubiq ... --token-file {p.token_file})",
        f"Prometheus  {prometheus}",
        f"Dashboards  {p.dashboards}  ({p.dashboard_files} Grafana dashboards as JSON; provision"
        " them with deploy/grafana/provisioning, datasource URL set to the Prometheus above;"
        " see docs/observability.md)",
    ]
    if keep_running:
        lines.append("All of it runs until Ctrl-C.")
    else:
        lines.append(
            "All of it stops when the demo ends, next, and its working directory is removed:"
            " `ubiq demo --keep-running` (make demo DEMO_ARGS=--keep-running) keeps it up;"
            " `python -m controlplane.observability.dashboards -o DIR` writes the dashboards"
            " anywhere."
        )
    return "\n".join(lines)
