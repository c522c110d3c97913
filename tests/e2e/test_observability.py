"""Every dashboard panel proven live: real Envoys fed by Ubiq's xDS carry real traffic, the GTM
answers real DNS queries, a policy change is pushed and a broken one refused, and a real
Prometheus (1 s scrape) scraping every Envoy and Ubiq's /metrics returns at least one series for
each panel's PromQL, with the dashboard variables substituted. Ubiq's /metrics passes
``promtool check metrics``."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controlplane.errors import UbiqError
from controlplane.observability.panels import CONTRACT_METRICS, Dashboard, all_dashboards
from controlplane.prometheus.process import PrometheusProcess, wait_for_series
from tests.support.dashboards import VALUES, substitute
from tests.support.mesh import GTM_NAME, Mesh, mesh
from tests.support.poll import wait_until
from tests.support.procs import require_binary

pytestmark = pytest.mark.integration

DASHBOARDS = all_dashboards()
# the feedback loop runs (--prometheus) so the placement and canary gauges exist: a Placement
# with an SLO no region breaks (nothing moves) and a canary on its own RoutePolicy (so the weight
# changes the tests make to the `checkout` routes are not rewritten by it)
LOOP = """\
apiVersion: ubiq.io/v1alpha1
kind: Placement
metadata: {name: checkout}
spec:
  service: checkout
  strategy: {type: static, slo: {successRate: 0.1}}
---
apiVersion: ubiq.io/v1alpha1
kind: RoutePolicy
metadata: {name: checkout-canary}
spec:
  hosts: [canary.checkout.mesh.example]
  http:
  - route:
    - {service: checkout, subset: v1, weight: 100}
    - {service: checkout, subset: v2, weight: 0}
---
apiVersion: ubiq.io/v1alpha1
kind: Canary
metadata: {name: checkout-v2}
spec: {service: checkout, routePolicy: checkout-canary, stableSubset: v1, canarySubset: v2,
       steps: [10, 50, 100], interval: 10m}
"""


def prom_of(rig: Mesh) -> PrometheusProcess:
    assert rig.prom is not None
    return rig.prom


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with mesh(tmp_path_factory.mktemp("observability"), feedback=True, extra_policy=LOOP) as rig:
        ubiq = rig.ubiq
        get = ubiq.registry.get_sample_value
        for address, port in rig.gateways.values():
            url = f"http://{address}:{port}/api/cart"
            wait_until(
                lambda u=url: (
                    httpx.get(u, headers={"host": "checkout.mesh.example"}).status_code == 200
                ),
                20,
                f"Envoy routing at {address}:{port}",
            )
        rows = ubiq.gtm_health
        wait_until(lambda: rows() and all(r["healthy"] for r in rows()), 20, "gateways healthy")
        rig.backends["checkout_eu_v1"].fail_every = 4  # some 5xx for the success-rate panels
        rig.send_traffic()
        rig.ask_gtm()

        change_policy(rig, weights=(70, 30))
        wait_until(
            lambda: (get("ubiq_xds_convergence_duration_seconds_count") or 0) >= 1,
            20,
            "the weight change converged on every Envoy",
        )

        prom = prom_of(rig)
        for expr in (
            "ubiq_xds_convergence_duration_seconds_count > 0",
            'ubiq_policy_reloads_total{result="rejected"} > 0',
        ):
            wait_for_series(prom, expr, timeout=30)
        window = VALUES["__rate_interval"]
        fresh(
            rig,
            f"sum(rate(envoy_cluster_upstream_rq_total[{window}])) > 0",
            f"sum(rate(ubiq_dns_answers_total[{window}])) > 0",
        )
        yield rig


def change_policy(rig: Mesh, weights: tuple[int, int]) -> None:
    """A change that reaches every Envoy (pushes, ACKs, convergence), then a broken one that is
    refused, then repaired."""
    store = rig.ubiq.store
    accepted, rejected = store.status.generation, store.status.rejected
    rig.set_weights(*weights)
    wait_until(lambda: store.status.generation > accepted, 20, "the weight change accepted")
    bad = rig.root / "broken.yaml"
    bad.write_text("apiVersion: ubiq.io/v1alpha1\nkind: Service\nmetadata: {name: x}\nspec: {}\n")
    wait_until(lambda: store.status.rejected > rejected, 20, "the broken change rejected")
    bad.unlink()
    wait_until(lambda: store.status.ok, 20, "the repaired set accepted")


def fresh(rig: Mesh, *exprs: str, bursts: int = 3) -> None:
    """Traffic and DNS queries until Prometheus shows them as rates (a loaded machine can miss
    a scrape or two); at most ``bursts`` bursts, each given 10 s to show up."""
    prom = prom_of(rig)
    for burst in range(bursts):
        rig.send_traffic()
        rig.ask_gtm()
        try:
            for expr in exprs:
                wait_for_series(prom, expr, timeout=10)
            return
        except UbiqError:
            if burst == bursts - 1:
                raise


def test_annotations_mark_policy_changes(live: Mesh) -> None:
    """An accepted and a rejected change, then each annotation's query finds them (they look one
    minute back)."""
    change_policy(live, weights=(60, 40))
    annotations = {a.expr for d in DASHBOARDS for a in d.annotations if not a.pending}
    assert annotations
    for expr in annotations:
        wait_for_series(prom_of(live), substitute(expr), timeout=20)


def test_ubiq_metrics_pass_promtool(live: Mesh) -> None:
    text = httpx.get(f"{live.api}/metrics", timeout=5).text
    checked = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked.stdout
    for family in ("ubiq_build_info", "process_cpu_seconds_total", "python_info"):
        assert f"\n{family}" in text
    # every family Ubiq exports is documented, and every documented one is exported
    exported = set(re.findall(r"^# TYPE (ubiq_\w+) ", text, re.M))
    exported = {name for name in exported if not name.endswith("_created")}
    docs = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()
    documented = set(re.findall(r"^\| `(ubiq_\w+)` \|", docs, re.M))  # the loop's too: it runs
    assert exported == documented


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_every_panel_has_data(live: Mesh, dashboard: Dashboard) -> None:
    prom = prom_of(live)
    empty = []
    proven = 0
    for panel in dashboard.panels():
        if panel.pending:
            continue
        for query in panel.queries:
            expr = substitute(query.expr)
            try:
                wait_for_series(prom, expr, timeout=10)
                proven += 1
            except Exception as exc:
                empty.append(f"{panel.title!r}: {expr}\n    {exc}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    assert proven > 0


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_every_variable_has_values(live: Mesh, dashboard: Dashboard) -> None:
    prom = prom_of(live)
    for variable in dashboard.variables:
        if variable.metric.split("{")[0] in CONTRACT_METRICS:
            continue
        series = wait_for_series(
            prom, f"count by ({variable.label_name}) ({variable.metric})", timeout=10
        )
        values = {s["metric"].get(variable.label_name, "") for s in series}
        expected = {"service": "checkout", "region": "eu-west", "name": GTM_NAME}
        if variable.name == "service":
            values = {v.split("|")[0] for v in values}
        assert expected[variable.name] in values, (variable.name, values)


def test_error_budget_rules_read_the_live_envoy_labels(live: Mesh) -> None:
    """The shipped recording rules, evaluated by the live Prometheus: checkout (a backend failing
    every 4th request) has a 5xx ratio, catalog records 0, the xDS cluster is no service."""
    prom = prom_of(live)
    series = wait_for_series(
        prom, 'service:ubiq_upstream_errors:ratio_rate5m{service="checkout"} > 0'
    )
    assert 0 < float(series[0]["value"][1]) < 0.5
    catalog = wait_for_series(prom, 'service:ubiq_upstream_errors:ratio_rate5m{service="catalog"}')
    assert float(catalog[0]["value"][1]) == 0
    assert prom.query('service:ubiq_upstream_errors:ratio_rate5m{service="ubiq_xds"}') == []


def test_every_shipped_rule_evaluates_cleanly_on_live_data(live: Mesh) -> None:
    """Prometheus loaded deploy/prometheus/rules and evaluated each rule without an error."""
    prom = prom_of(live)

    def rules() -> list[dict[str, object]]:
        body = httpx.get(f"{prom.url}/api/v1/rules", timeout=5).json()
        return [r for g in body["data"]["groups"] for r in g["rules"]]

    wait_until(
        lambda: rules() and all(r.get("health") != "unknown" for r in rules()),
        20,
        "every rule evaluated once",
    )
    loaded = rules()
    assert len(loaded) == 17
    assert [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"] == []


def test_contract_panels_have_data_from_the_loop(live: Mesh) -> None:
    """The placement/canary panels (``CONTRACT_METRICS``) read the gauges the feedback loop
    exports under --prometheus: each of their queries returns a series from the live Prometheus,
    and the canary variable lists the running canary. (Nothing is decided here; the decision
    annotations are proven where decisions are made: tests/e2e/test_feedback_loop.py and
    test_feedback_canaries.py, with tests.support.dashboards.prove_annotation.)"""
    prom = prom_of(live)
    contract = [p for d in DASHBOARDS for p in d.panels() if p.pending]
    assert len(contract) == 3
    empty = []
    for panel in contract:
        for query in panel.queries:
            expr = substitute(query.expr)
            try:
                wait_for_series(prom, expr, timeout=20)
            except Exception as exc:
                empty.append(f"{panel.title!r}: {expr}\n    {exc}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    canaries = wait_for_series(prom, "count by (canary) (ubiq_canary_weight)", timeout=10)
    assert {s["metric"]["canary"] for s in canaries} == {"checkout-v2"}
    placed = wait_for_series(prom, 'ubiq_placement_weight{service="checkout"}', timeout=10)
    assert sum(float(s["value"][1]) for s in placed) == 100
