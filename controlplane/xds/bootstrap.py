"""Envoy bootstrap YAML pointing a proxy at Ubiq's ADS server (SotW or Delta)."""

from __future__ import annotations

import ipaddress
import json
import os.path
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from controlplane.templating import render
from controlplane.xds.node import CLUSTER_KEY, DEFAULT_ROLE, PROXYLESS_ROLE, ROLE_KEY

TEMPLATE = "envoy-bootstrap.yaml.j2"
#: the bootstrap's static cluster reaching Ubiq's xDS (ADS, and VHDS with ``serve --xds-vhds``)
XDS_CLUSTER = "ubiq_xds"
Mode = Literal["ads-sotw", "ads-delta"]
_API_TYPES: dict[str, str] = {"ads-sotw": "GRPC", "ads-delta": "DELTA_GRPC"}
#: Buckets (ms) of Envoy's ``upstream_rq_time`` histograms: steps of at most 25 % between 10 ms and
#: 1 s, where SLOs sit, so p99 interpolates within a narrow bucket (Envoy's own default jumps
#: 100 -> 250 -> 500 -> 1000). See docs/placement.md "Signals".
RQ_TIME_BUCKETS_MS = (
    1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 100, 125, 150, 200, 250, 300, 400, 500,
    600, 750, 1000, 1250, 1500, 2000, 3000, 5000, 10000, 30000, 60000,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class XdsClientTls:
    """The files an Envoy uses to reach Ubiq's xDS over mTLS (paths as the Envoy sees them),
    and the SPIFFE ID Ubiq's server certificate must carry."""

    cert: str
    key: str
    ca: str
    server_id: str
    #: file-based SDS secret holding the node certificate (``render_client_sds``); "" reads the
    #: files once at start (a new certificate then needs an Envoy restart)
    sds_file: str = ""


#: the SDS secret (in ``XdsClientTls.sds_file``) with the node certificate for Ubiq's xDS
SDS_SECRET_NAME = "ubiq_xds_client"


def render_client_sds(tls: XdsClientTls) -> str:
    """The file-based SDS response naming the node certificate and key; Envoy re-reads them when
    a file is renamed into their directory (``watched_directory``)."""
    secret = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": SDS_SECRET_NAME,
        "tls_certificate": {
            "certificate_chain": {"filename": tls.cert},
            "private_key": {"filename": tls.key},
            "watched_directory": {"path": os.path.dirname(os.path.abspath(tls.cert))},
        },
    }
    return json.dumps({"resources": [secret]}, indent=2) + "\n"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def render_bootstrap(
    node_id: str,
    cluster: str,
    region: str,
    zone: str,
    xds_host: str,
    xds_port: int,
    admin_port: int,
    mode: Mode = "ads-sotw",
    listenerless: bool = False,
    *,
    role: str = DEFAULT_ROLE,
    admin_host: str = "127.0.0.1",
    more_xds: Sequence[tuple[str, int]] = (),
    tls: XdsClientTls | None = None,
) -> str:
    """Bootstrap YAML. ``listenerless`` leaves out LDS (clusters only, e.g. a proxyless peer).

    ``more_xds`` lists the other replicas' xDS addresses: the ADS cluster then holds every
    replica, and Envoy's ADS stream reconnects to another one when the replica it used dies
    (every replica serves identical, content-versioned snapshots, so nothing is re-sent)."""
    if mode not in _API_TYPES:
        raise ValueError(f"mode must be one of {sorted(_API_TYPES)}, not {mode!r}")
    addresses = list(dict.fromkeys([(xds_host, xds_port), *more_xds]))
    return render(
        TEMPLATE,
        node_id=node_id,
        cluster=cluster,
        region=region,
        zone=zone,
        role=role,
        xds_addresses=addresses,
        xds_discovery="STATIC" if all(_is_ip(h) for h, _ in addresses) else "STRICT_DNS",
        admin_host=admin_host,
        admin_port=admin_port,
        api_type=_API_TYPES[mode],
        listenerless=listenerless,
        rq_time_buckets_ms=RQ_TIME_BUCKETS_MS,
        tls=tls,
        sds_secret_name=SDS_SECRET_NAME,
        xds_cluster=XDS_CLUSTER,
    )


def render_grpc_bootstrap(
    node_id: str,
    cluster: str,
    region: str,
    zone: str,
    xds_host: str,
    xds_port: int,
    *,
    tls: XdsClientTls | None = None,
) -> str:
    """JSON bootstrap for a proxyless gRPC client (``GRPC_XDS_BOOTSTRAP``; targets ``xds:///HOST``).

    The node's role is ``grpc``, so Ubiq gives it API listeners (one per gRPC host) instead of
    Envoy's socket listener; gRPC's xDS client speaks State-of-the-World only. With ``tls`` the
    channel uses gRPC's ``tls`` credentials (gRFC A65: files re-read every 10 minutes, by default)
    and checks the server's certificate against the CA; the host dialled must be in its SANs.
    """
    creds: dict[str, object] = {"type": "insecure"}
    if tls is not None:
        creds = {
            "type": "tls",
            "config": {
                "ca_certificate_file": tls.ca,
                "certificate_file": tls.cert,
                "private_key_file": tls.key,
                "refresh_interval": "600s",
            },
        }
    return (
        json.dumps(
            {
                "xds_servers": [
                    {
                        "server_uri": f"{xds_host}:{xds_port}",
                        "channel_creds": [creds],
                        "server_features": ["xds_v3"],
                    }
                ],
                "node": {
                    "id": node_id,
                    "cluster": cluster,
                    "locality": {"region": region, "zone": zone},
                    "metadata": {CLUSTER_KEY: cluster, ROLE_KEY: PROXYLESS_ROLE},
                },
            },
            indent=2,
        )
        + "\n"
    )
