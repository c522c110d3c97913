"""``TrafficPolicy``: how Envoy talks to a service (or one subset): pools, ejection, balancing, locality."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from controlplane.policy.common import LABEL_RE, Label, Millis, Name, PositiveMillis, Spec, Weight


class TcpKeepalive(Spec):
    """Istio's connectionPool.tcp.tcpKeepalive; an unset field keeps the operating system's value."""

    time: PositiveMillis | None = None
    interval: PositiveMillis | None = None
    probes: int | None = Field(default=None, ge=1)


class ConnectionPool(Spec):
    """Envoy circuit breakers (default priority) and upstream connection settings."""

    max_connections: int | None = Field(default=None, ge=1)
    max_pending_requests: int | None = Field(default=None, ge=1)
    max_requests: int | None = Field(default=None, ge=1)
    max_retries: int | None = Field(default=None, ge=0)
    max_requests_per_connection: int | None = Field(default=None, ge=1)
    tcp_keepalive: TcpKeepalive | None = None
    idle_timeout: PositiveMillis | None = None
    max_connection_duration: PositiveMillis | None = None
    max_concurrent_streams: int | None = Field(default=None, ge=1, le=2_147_483_647)
    #: Istio's h2UpgradePolicy: UPGRADE speaks HTTP/2 to the endpoints of an HTTP port too
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] = "DEFAULT"


class FailurePercentage(Spec):
    """Eject a host whose share of failed requests in an ``interval`` reaches ``threshold`` %,
    once the cluster has ``minimumHosts`` hosts with ``requestVolume`` requests each (the kind
    of outlier detection proxyless gRPC clients implement, gRFC A50)."""

    threshold: int = Field(ge=0, le=100)
    minimum_hosts: int = Field(default=5, ge=0)
    request_volume: int = Field(default=50, ge=0)


class OutlierDetection(Spec):
    """Consecutive-error ejection. ``alwaysEjectOneHost`` (default true) lets one host be ejected
    whatever ``maxEjectionPercent`` says: with fewer than 10 endpoints Envoy's 10 % would forbid
    every ejection, and a locality failover with one endpoint per region would never fail over."""

    consecutive_5xx_errors: int | None = Field(default=5, ge=0, alias="consecutive5xxErrors")
    consecutive_gateway_errors: int | None = Field(default=None, ge=0)
    interval: PositiveMillis = 10_000
    base_ejection_time: PositiveMillis = 30_000
    max_ejection_percent: int = Field(default=10, ge=0, le=100)
    always_eject_one_host: bool = True
    min_health_percent: int = Field(default=0, ge=0, le=100)
    failure_percentage: FailurePercentage | None = None


class CookieHash(Spec):
    name: str
    ttl: Millis | None = None
    path: str | None = None


class HashKey(Spec):
    header: str | None = None
    cookie: CookieHash | None = None
    source_ip: bool = False
    query_parameter: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> HashKey:
        set_ = [
            k
            for k, v in (
                ("header", self.header),
                ("cookie", self.cookie),
                ("sourceIp", self.source_ip),
                ("queryParameter", self.query_parameter),
            )
            if v
        ]
        if len(set_) != 1:
            raise ValueError(
                "set exactly one of header, cookie, sourceIp, queryParameter"
                f" (got {', '.join(set_) or 'none'})"
            )
        return self


Algorithm = Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"]
SLOW_START = ("ROUND_ROBIN", "LEAST_REQUEST")


class LoadBalancer(Spec):
    algorithm: Algorithm = "ROUND_ROBIN"
    hash_key: HashKey | None = None
    minimum_ring_size: int | None = Field(default=None, ge=1, le=8_388_608)
    #: Istio's warmupDurationSecs: a new endpoint's share of traffic ramps up over this time
    warmup_duration: PositiveMillis | None = None

    @model_validator(mode="after")
    def _hash_fits_algorithm(self) -> LoadBalancer:
        hashing = self.algorithm in ("RING_HASH", "MAGLEV")
        if hashing and self.hash_key is None:
            raise ValueError(f"algorithm {self.algorithm} needs hashKey")
        if not hashing and self.hash_key is not None:
            raise ValueError(f"hashKey needs algorithm RING_HASH or MAGLEV, not {self.algorithm}")
        if self.minimum_ring_size is not None and self.algorithm != "RING_HASH":
            raise ValueError("minimumRingSize applies to RING_HASH only")
        if self.warmup_duration is not None and self.algorithm not in SLOW_START:
            raise ValueError(
                f"warmupDuration applies to ROUND_ROBIN and LEAST_REQUEST, not {self.algorithm}"
            )
        return self


class LocalityFailover(Spec):
    from_: Label = Field(alias="from")
    to: Label


def _locality(value: str) -> str:
    parts = value.split("/")
    if not 1 <= len(parts) <= 2 or not all(LABEL_RE.match(p) for p in parts):
        raise ValueError(f"must be a region or region/zone (DNS labels), got {value!r}")
    return value


#: a region (``eu-west``) or a zone of one (``eu-west/eu-west-1b``), like Istio's locality strings
LocalityName = Annotated[str, AfterValidator(_locality)]


class LocalityDistribute(Spec):
    """Weighted spread from the clients of a region (or of one zone: ``region/zone``, which wins
    over its region's rule) to regions or zones; a zone's weight is shared by its clusters'
    endpoints, a region's by all of the region's."""

    from_: LocalityName = Field(alias="from")
    to: dict[LocalityName, Weight]


class Locality(Spec):
    """Where traffic goes beyond the client's own region (Istio's localityLbSetting, by region).

    ``failoverRegions`` is an ordered list of regions. (Istio's ``failoverPriority`` is a list of
    label keys, so Ubiq does not use that name: writing it is an error naming the new field.)"""

    enabled: bool = True
    failover: tuple[LocalityFailover, ...] = ()
    failover_regions: tuple[Label, ...] = ()
    distribute: tuple[LocalityDistribute, ...] = ()

    @model_validator(mode="after")
    def _failover_or_distribute(self) -> Locality:
        if self.distribute and (self.failover or self.failover_regions):
            raise ValueError("set either distribute or failover/failoverRegions, not both")
        return self


class ClientTls(Spec):
    """How a service's Envoys reach its endpoints in other clusters (Istio DestinationRule
    ``trafficPolicy.tls``): ``ISTIO_MUTUAL`` through the remote cluster's east-west gateway over
    mTLS with certificates Ubiq issues and delivers over SDS; ``DISABLE`` in plaintext."""

    mode: Literal["DISABLE", "ISTIO_MUTUAL"] = "DISABLE"


class TrafficPolicySpec(Spec):
    service: Name
    subset: Label | None = None
    connect_timeout: Millis | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    load_balancer: LoadBalancer | None = None
    locality: Locality | None = None
    tls: ClientTls | None = None
