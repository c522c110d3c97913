"""Grafana dashboards from code: ``python -m controlplane.observability.dashboards -o DIR``.

The panels (PromQL, units, descriptions) are data in ``panels/``; this module lays them out on
Grafana's 24-column grid and renders each dashboard through the jinja2 template
``templates/grafana/dashboard.json.j2``. The JSON is generated at deploy time into the directory
Grafana's dashboard provider reads (deploy/grafana/provisioning/dashboards/ubiq.yaml); it is not
committed. Why jinja2 rather than grafana-foundation-sdk: docs/observability.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controlplane.observability.panels import Dashboard, Panel, Row, all_dashboards
from controlplane.templating import render

TEMPLATE = "grafana/dashboard.json.j2"
DATASOURCE_UID = "ubiq-prometheus"  # the provisioned datasource (deploy/grafana/provisioning)
GRID_WIDTH = 24

_OPTIONS: dict[str, dict[str, Any]] = {
    "timeseries": {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    },
    "stat": {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "textMode": "auto",
    },
    "table": {"showHeader": True, "cellHeight": "sm"},
    "state-timeline": {
        "showValue": "auto",
        "mergeValues": True,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
    },
}


def layout(dashboard: Dashboard) -> list[dict[str, Any]]:
    """Rows and panels with ids and grid positions: panels fill each row left to right."""
    items: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row in dashboard.rows:
        items.append(_row(row, next_id, y))
        next_id, y = next_id + 1, y + 1
        x, row_height = 0, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            items.append(_panel(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return items


def _row(row: Row, id_: int, y: int) -> dict[str, Any]:
    return {"row": row, "id": id_, "grid": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}}


def _panel(panel: Panel, id_: int, x: int, y: int) -> dict[str, Any]:
    grid = {"h": panel.height, "w": panel.width, "x": x, "y": y}
    return {"panel": panel, "id": id_, "grid": grid}


def render_dashboard(dashboard: Dashboard, datasource_uid: str = DATASOURCE_UID) -> dict[str, Any]:
    text = render(
        TEMPLATE,
        d=dashboard,
        layout=layout(dashboard),
        options=_OPTIONS,
        datasource_uid=datasource_uid,
    )
    result: dict[str, Any] = json.loads(text)
    return result


def write_dashboards(directory: Path, datasource_uid: str = DATASOURCE_UID) -> list[Path]:
    """Write every dashboard as ``<uid>.json`` into ``directory``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in all_dashboards():
        path = directory / f"{dashboard.uid}.json"
        model = render_dashboard(dashboard, datasource_uid)
        path.write_text(json.dumps(model, indent=2, sort_keys=False) + "\n")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m controlplane.observability.dashboards",
        description="Write Ubiq's Grafana dashboards (JSON) into a directory.",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="directory to write")
    parser.add_argument(
        "--datasource-uid",
        default=DATASOURCE_UID,
        help=f"uid of the Prometheus datasource (default {DATASOURCE_UID})",
    )
    args = parser.parse_args(argv)
    for path in write_dashboards(args.output, args.datasource_uid):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
