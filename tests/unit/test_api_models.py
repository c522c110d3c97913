"""The API's response models: ``/openapi.json`` gives every JSON answer a typed schema, and the
records the runtime produces (placement decisions, canary statuses, GTM explanations, replica
state) validate against them as the API sends them (camelCase)."""

from __future__ import annotations

from typing import Any, cast

from controlplane.api.app import create_app
from controlplane.api.keys import camelize
from controlplane.api.models import (
    CanaryState,
    GtmExplanation,
    PlacementDecision,
    PlacementReply,
    ReplicaStatus,
)
from controlplane.api.runtime import RuntimeView, to_jsonable
from controlplane.gtm.explain import explain_dict
from controlplane.gtm.placed import place_groups
from controlplane.gtm.plan import GtmConfig, plan_from_model
from controlplane.gtm.steering import steer
from tests.support.policy import doc
from tests.unit.placement_helpers import model, signals
from tests.unit.test_canary import HEALTHY, run, setup, sig
from tests.unit.test_gtm_explain import GROUP, POLICY, _health_eu_down
from tests.unit.test_loop import SLO, Sink


def wire(value: Any) -> Any:
    """What the API handlers hand to the response model."""
    return camelize(to_jsonable(value))


def typed(schema: dict[str, Any]) -> bool:
    """A schema that names its shape: a model ($ref), or a list or map of models."""
    if "$ref" in schema:
        return True
    if schema.get("type") == "array":
        return typed(schema["items"])
    if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
        return typed(schema["additionalProperties"])
    return False


def test_every_json_answer_in_the_openapi_description_is_a_model() -> None:
    spec = create_app(cast(RuntimeView, object())).openapi()
    untyped = []
    answers = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                if not status.startswith("2") or "application/json" not in content:
                    continue
                answers += 1
                if not typed(content["application/json"]["schema"]):
                    untyped.append(f"{method.upper()} {path} {status}")
    assert untyped == []
    assert answers >= 15


def test_a_live_placement_decision_matches_the_model() -> None:
    sink, clock = Sink(), [1000.0]
    loop = sink.loop(clock)
    loop.effective_model(model("clusters: [a, b]\n" + SLO))
    loop.update_signals(signals(1001.0, {"ra": (0.999, 50.0), "rb": (0.70, 50.0)}))
    decision = wire(loop.decisions["web"].as_dict())
    parsed = PlacementDecision.model_validate(decision)
    assert parsed.weights == {"ra": 100} and parsed.reason.rule == "leave"
    assert {r.region: r.verdict for r in parsed.regions} == {"ra": "serving", "rb": "sloBreach"}
    assert parsed.reason.thresholds["sloSuccessRate"] == 0.95
    assert parsed.model_dump(by_alias=True, exclude_none=True)["madeAt"] == decision["madeAt"]
    # what the consumers were given: xDS the placed clusters, the GTM a choice per client group
    gs = doc(
        "GlobalService",
        "web",
        "name: web.gtm.example\nzone: gtm.example\nservice: web\n"
        "targets: [{cluster: a, address: 127.0.9.1}, {cluster: b, address: 127.0.9.2}]",
    )
    with_gtm = model("clusters: [a, b]\n" + SLO, gs)
    plan = plan_from_model(with_gtm, GtmConfig())
    choices = place_groups(plan, with_gtm, loop.decisions, now=1001.0)
    web = loop.decisions["web"]
    xds = {
        "web": {
            "decisionMadeAt": web.made_at,
            "placed": [
                {"cluster": p.name, "region": p.region, "weight": p.weight, "priority": p.priority}
                for p in web.placed
            ],
        }
    }
    gtm = {n: {g: wire(c.as_dict()) for g, c in per.items()} for n, per in choices.items()}

    reply = PlacementReply.model_validate(
        {
            "loop": "on",
            "replica": {
                "name": "r0",
                "role": "leader",
                "leader": "r0",
                "leaseTtlSeconds": 5,
                "publishedRevision": 7,
            },
            "decisions": {"web": decision},
            "xds": xds,
            "gtm": gtm,
            "signals": {"at": 1001.0, "stale": False, "error": None, "series": 2},
        }
    )
    assert isinstance(reply.replica, ReplicaStatus) and reply.decisions["web"].service == "web"
    assert reply.xds["web"].decision_made_at == web.made_at
    choice = reply.gtm["web.gtm.example"]["default"]
    assert [r.region for r in choice.regions] == ["ra"] and choice.decision_made_at == web.made_at
    static = PlacementReply.model_validate({"loop": "static", "decisions": {}, "signals": None})
    assert static.replica is None and static.xds == {} and static.gtm == {}


def test_a_promoted_canary_matches_the_model() -> None:
    _, spec = setup()
    status = run(spec, [sig(60 * i, HEALTHY) for i in range(1, 4)])[-1]
    parsed = CanaryState.model_validate(wire(status.as_dict()))
    assert parsed.phase == "promoted" and parsed.stable_weight == 0
    assert [e.kind for e in parsed.events][:2] == ["started", "analysis.pass"]
    assert parsed.checks and parsed.outcome == "pass"


def test_a_gtm_explanation_matches_the_model() -> None:
    health = _health_eu_down()
    decision = steer(POLICY, GROUP, health, epoch=4)
    data = explain_dict(POLICY, GROUP, health, decision, client="203.0.113.7", now=10.0)
    parsed = GtmExplanation.model_validate(wire(data))
    assert parsed.answer.addresses == ["192.0.2.2"]
    assert parsed.group.geo_preference == list(POLICY.geo.get(GROUP.name, ()))
    assert {t.cluster: t.healthy for t in parsed.targets} == {"eu-1": False, "us-1": True}
    assert parsed.model_dump(by_alias=True)["answer"]["answeredForS"] is not None
