"""Grafana dashboards: valid against Grafana's dashboard schema, laid out on the grid, every
variable declared and used; provisioning files agree with the generator."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from controlplane.observability import dashboards
from controlplane.observability.panels import CONTRACT_METRICS, Dashboard, all_dashboards
from tests.support.dashboards import decision_annotations, title_labels

ROOT = Path(__file__).parents[2]
SCHEMA = json.loads((ROOT / "tests/support/grafana/dashboard.jsonschema.json").read_text())
BUILTIN = {"__rate_interval", "__interval", "__range", "datasource"}
DASHBOARDS = all_dashboards()


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_valid_against_grafanas_dashboard_schema(dashboard: Dashboard) -> None:
    model = dashboards.render_dashboard(dashboard)
    jsonschema.Draft7Validator(SCHEMA).validate(model)
    assert model["uid"] == dashboard.uid and model["title"].startswith("Ubiq / ")
    targets = [t for p in model["panels"] for t in p.get("targets", [])]
    assert targets and all(t["expr"] for t in targets)


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_panels_fill_the_grid_without_overlap(dashboard: Dashboard) -> None:
    panels = dashboards.render_dashboard(dashboard)["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_every_variable_is_declared_and_used(dashboard: Dashboard) -> None:
    model = dashboards.render_dashboard(dashboard)
    declared = {v["name"] for v in model["templating"]["list"]}
    exprs = [t["expr"] for p in model["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in model["annotations"]["list"] if "expr" in a]
    used = {m for e in exprs for m in re.findall(r"\$([A-Za-z_]\w*)", e)}
    assert used - BUILTIN <= declared
    assert declared - {"datasource"} <= used


def test_service_and_region_variables() -> None:
    service = dashboards.render_dashboard(next(d for d in DASHBOARDS if d.uid == "ubiq-service"))
    variables = {v["name"]: v for v in service["templating"]["list"]}
    assert variables["service"]["query"].startswith("label_values(envoy_cluster_upstream_rq_total")
    assert variables["service"]["regex"] == "/^([^|]+)$/"  # subsets' clusters are folded in
    assert variables["region"]["multi"] and variables["region"]["allValue"] == ".*"


def test_contract_panels_are_the_placement_and_canary_ones() -> None:
    pending = {(d.uid, p.title) for d in DASHBOARDS for p in d.panels() if p.pending}
    assert pending == {
        ("ubiq-placement", "Placement weight by cluster"),
        ("ubiq-placement", "Canary weight by subset"),
        ("ubiq-placement", "Canary step"),
    }
    assert {"ubiq_placement_weight", "ubiq_canary_weight", "ubiq_canary_step"} == CONTRACT_METRICS


def test_decision_annotations_are_the_ones_the_feedback_e2e_proves() -> None:
    """Each is run live where a decision is made (tests/e2e/test_feedback_loop.py and
    test_feedback_canaries.py): a new one must be proven there too."""
    annotations = decision_annotations()
    assert set(annotations) == {"Placement decisions", "Canary steps"}
    assert title_labels(annotations["Placement decisions"]) == {"cluster"}
    assert title_labels(annotations["Canary steps"]) == {"canary"}


def test_generator_writes_one_file_per_dashboard_for_the_provisioned_datasource(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dashboards.main(["-o", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{d.uid}.json" for d in DASHBOARDS)
    assert capsys.readouterr().out.count(".json") == len(DASHBOARDS)
    provisioning = ROOT / "deploy/grafana/provisioning"
    datasources: dict[str, Any] = yaml.safe_load(
        (provisioning / "datasources/ubiq.yaml").read_text()
    )
    assert datasources["datasources"][0]["uid"] == dashboards.DATASOURCE_UID
    model = json.loads((tmp_path / "out/ubiq-mesh.json").read_text())
    assert model["templating"]["list"][0]["current"]["value"] == dashboards.DATASOURCE_UID
    providers = yaml.safe_load((provisioning / "dashboards/ubiq.yaml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"]
