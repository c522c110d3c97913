"""The API's response (and request) models: camelCase keys, so /openapi.json describes them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from controlplane.canary.analysis import Outcome
from controlplane.canary.controller import Phase
from controlplane.placement.decision import Rule, Verdict


class ApiModel(BaseModel):
    """Fields are snake_case in Python and camelCase on the wire (as in the policy language)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ErrorItem(ApiModel):
    """One thing wrong: a field path and, for policy problems, the file and line."""

    pointer: str | None = Field(None, description="field path, e.g. spec.routes[0].weight")
    file: str | None = None
    line: int | None = None
    message: str
    location: str | None = Field(
        None, description="the `ubiq validate` line: FILE:LINE: FIELD: MESSAGE"
    )


class ProblemDetails(ApiModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ErrorItem] | None = None


class PolicyStatus(ApiModel):
    ok: bool
    model_hash: str
    generation: int
    loaded_at: float
    last_error_at: float | None = None
    rejected: int
    problems: list[str]
    watching: bool
    watch_error: str | None = None


class PolicyItem(ApiModel):
    """One policy document as stored, with the version a writer passes back in ``If-Match``."""

    kind: str
    name: str
    resource_version: str = Field(description="opaque; send it back as If-Match to update")
    source: str | None = Field(None, description="where it is stored (FILE:LINE or etcd key)")
    document: dict[str, Any]


class ListMeta(ApiModel):
    continue_: str | None = Field(
        None,
        alias="continue",
        description="pass as ?continue= for the next page; absent on the last page",
    )
    remaining_item_count: int = 0


class PolicyList(ApiModel):
    kind: Literal["PolicyList"] = "PolicyList"
    metadata: ListMeta
    items: list[PolicyItem]


class XdsChange(ApiModel):
    """xDS resources of one node group that a change adds, changes or removes."""

    group: str
    type: str = Field(description="CDS, EDS, LDS or RDS")
    added: list[str] = []
    changed: list[str] = []
    removed: list[str] = []


class DnsChange(ApiModel):
    """A GTM name whose answer to one client group would change (health as it is now)."""

    name: str
    client_group: str
    before: list[str]
    after: list[str]


class DocumentChange(ApiModel):
    kind: str
    name: str
    change: Literal["added", "changed", "removed"]


class PolicyDiff(ApiModel):
    documents: list[DocumentChange]
    xds: list[XdsChange]
    dns: list[DnsChange]


class WriteResult(ApiModel):
    """What a PUT or DELETE did (or, with ``dryRun``, would do)."""

    kind: str
    name: str
    dry_run: bool
    action: Literal["created", "replaced", "deleted", "unchanged"]
    resource_version: str | None = Field(
        None, description="the new version (absent after a delete or a dry run)"
    )
    served: bool = Field(
        description="the running server serves a model with this change (false for a dry run,"
        " or when it did not within 10 s: see /v1/policy/status)"
    )
    diff: PolicyDiff | None = Field(None, description="with ?dryRun=true: what would change")


class OpenModel(ApiModel):
    """A runtime record: the fields listed are always there; others may be added."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class LastNack(OpenModel):
    type_url: str
    version_info: str
    names: list[str]
    message: str
    at: float


class ProxyRow(OpenModel):
    """One connected proxy, with its sync state per xDS type (as ``ubiq status`` shows it)."""

    stream_id: int
    node_id: str
    cluster: str
    locality: str
    group: str
    mode: str = Field(description="sotw or delta")
    connected_since: float
    acked: dict[str, str] = Field(description="type URL -> version ACKed")
    responses_sent: dict[str, int]
    nacks: int
    last_nack: LastNack | None
    sync: dict[str, str] = Field(description="CDS/EDS/LDS/RDS -> SYNCED, STALE, NACKED, NOT SENT")
    expected: dict[str, str] = Field(description="CDS/EDS/LDS/RDS -> the snapshot's version")
    problem: str | None
    state: str


class GtmTarget(OpenModel):
    """One GTM health-check target."""

    cluster: str
    region: str
    address: str
    port: int
    kind: str
    healthy: bool | None = Field(description="null: not decided yet (answered as healthy)")
    successes: int
    failures: int
    last_error: str | None
    last_change: float | None
    last_probe: float | None
    probes: int


class StatusReply(ApiModel):
    policy: PolicyStatus
    proxies: list[ProxyRow]
    gtm: list[GtmTarget]


# --- GTM explain ---------------------------------------------------------------------------------


class ExplainGroup(OpenModel):
    """The client group the client falls in (longest prefix, else the default group)."""

    name: str
    region: str | None
    networks: list[str]
    geo_preference: list[str]


class ExplainPolicy(OpenModel):
    """The GlobalService's steering settings, defaults written out."""

    strategy: str
    ttl: int
    max_answers: int
    all_down: str
    fallback: list[str]
    sticky: bool
    service: str = Field(
        description="the Service steered to; its Placement's Decision (damping included)"
        " bounds the answers"
    )


class ExplainAnswer(OpenModel):
    """What DNS answers this client group now."""

    addresses: list[str]
    regions: list[str]
    servfail: bool
    all_down: bool = Field(description="no target was healthy: the allDown behaviour answered")
    depends_on_client: bool = Field(description="false: the answer is the same for every client")
    epoch: int
    since_epoch: int
    since: float
    answered_for_s: float | None
    dwell_until: float | None
    dwell_ends_in_s: float | None


class ExplainTarget(OpenModel):
    label: str
    cluster: str
    region: str
    address: str
    port: int
    weight: int
    tier: int
    healthy: bool
    checked: bool = Field(description="health checks have decided (false: assumed healthy)")
    detail: str | None = Field(description="why it is unhealthy")
    latency_ms: float | None
    answered: bool


class GtmExplanation(OpenModel):
    """``GET /v1/gtm/explain``: why NAME answers CLIENT as it does (``ubiq dns explain``)."""

    name: str
    alias: str | None = Field(description="the name asked for, when it is a CNAME to `name`")
    client: str | None
    group: ExplainGroup
    policy: ExplainPolicy
    answer: ExplainAnswer
    reasons: list[str]
    targets: list[ExplainTarget]


# --- placement -----------------------------------------------------------------------------------


class PlacementReason(OpenModel):
    rule: Rule
    summary: str
    details: list[str]
    thresholds: dict[str, float | str | None]


class PlacementRegion(OpenModel):
    """One candidate region as the engine saw it: inputs and the verdict against thresholds."""

    region: str
    clusters: list[str]
    healthy: bool
    verdict: Verdict
    weight: int = Field(description="percent of the service's traffic now")
    target: int = Field(description="percent the engine is moving toward")
    judged: bool = Field(description="enough requests this poll to judge the region")
    requests: float | None
    success_rate: float | None
    latency_ms: float | None
    cost: float
    capacity: float | None
    note: str


class PlacedClusterItem(OpenModel):
    cluster: str
    region: str
    weight: int
    priority: int


class PlacementDecision(OpenModel):
    """One service's decision, the one both Envoy (EDS) and the GTM are given."""

    service: str
    strategy: str
    weights: dict[str, int] = Field(description="region -> percent now")
    target: dict[str, int] = Field(description="region -> percent being moved toward")
    reason: PlacementReason
    regions: list[PlacementRegion]
    placed: list[PlacedClusterItem]
    made_at: float
    since: float
    changed_at: float
    dwell_until: float
    next_decision_at: float | None
    stale: bool
    signals_at: float | None
    breached: dict[str, float] = Field(description="region -> when it broke the SLO")


class XdsGiven(OpenModel):
    """What the xDS compiler was given for one service: its Decision's placed clusters."""

    decision_made_at: float | None = Field(
        description="madeAt of the Decision these were taken from (a later Decision with the"
        " same placement is not handed on again)"
    )
    placed: list[PlacedClusterItem]


class GroupRegion(OpenModel):
    region: str
    weight: int


class GroupChoiceState(OpenModel):
    """The regions one client group of a GTM name is answered with, from its service's
    Decision (``placement.groups``)."""

    service: str
    group: str
    regions: list[GroupRegion] = Field(description="answered, best first")
    fallback: list[str] = Field(description="the Decision's other serving regions, best first")
    reason: PlacementReason
    decision_rule: str = Field(description="the rule of the Decision this choice was made from")
    decision_made_at: float | None = Field(description="madeAt of that Decision")
    made_at: float
    since: float
    dwell_until: float
    held_until: float | None = Field(description="when a minimum dwell holding it ends")
    latency_ms: dict[str, float] = Field(description="region -> the group's latency, the input")


class ReplicaStatus(OpenModel):
    name: str
    role: Literal["leader", "follower"]
    leader: str | None
    lease_ttl_seconds: int
    published_revision: int


class SignalsState(OpenModel):
    at: float | None = Field(description="when the last poll was answered")
    stale: bool
    error: str | None
    series: int


class PlacementReply(OpenModel):
    """``GET /v1/placement``: every decided service's Decision, what each consumer was given
    from it, and the feedback source."""

    loop: Literal["on", "static"] = Field(
        description="on: signals from --prometheus; static: decided from the model and health"
    )
    replica: ReplicaStatus | None = Field(None, description="with --etcd: this replica's role")
    decisions: dict[str, PlacementDecision]
    xds: dict[str, XdsGiven] = Field(
        default_factory=dict,
        description="service -> what the xDS compiler was given (services Envoy follows the"
        " Decision of: loop-driven, while measured)",
    )
    gtm: dict[str, dict[str, GroupChoiceState]] = Field(
        default_factory=dict, description="GTM name -> client group -> the group's choice"
    )
    signals: SignalsState | None


# --- canaries ------------------------------------------------------------------------------------


class CanaryCheck(OpenModel):
    metric: str
    value: float | None
    threshold: float
    comparison: Literal[">=", "<="]
    ok: bool | None = Field(description="null: could not be evaluated")


class CanaryEvent(OpenModel):
    at: float
    kind: str
    message: str


class CanaryState(OpenModel):
    """One canary's status: step, metric values against thresholds, why, its event log."""

    name: str
    service: str
    phase: Phase
    step: int
    weight: int = Field(description="percent of the rule's traffic on the canary subset")
    stable_weight: int
    step_started_at: float
    next_analysis_at: float | None
    failures: int
    inconclusive: int
    outcome: Outcome | None
    checks: list[CanaryCheck]
    why: str
    updated_at: float
    events: list[CanaryEvent]


# --- endpoint registration -----------------------------------------------------------------------


class RegisteredEndpoint(OpenModel):
    """One live registration (it leaves when heartbeats stop for ``ttl`` seconds)."""

    service: str
    id: str
    cluster: str
    address: str
    port: int | None
    labels: dict[str, str]
    weight: int
    ttl: int = Field(description="seconds")


class HeartbeatReply(OpenModel):
    service: str
    id: str
    ttl: int = Field(description="seconds until it expires without another heartbeat")
