"""The API's response (and request) models: camelCase keys, so /openapi.json describes them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


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
