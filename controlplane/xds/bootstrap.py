"""Envoy bootstrap YAML pointing a proxy at Ubiq's ADS server (SotW or Delta)."""

from __future__ import annotations

import ipaddress
import json
from functools import cache
from pathlib import Path
from typing import Literal

import jinja2

from controlplane.xds.node import CLUSTER_KEY, DEFAULT_ROLE, PROXYLESS_ROLE, ROLE_KEY

TEMPLATE = "envoy-bootstrap.yaml.j2"
Mode = Literal["ads-sotw", "ads-delta"]
_API_TYPES: dict[str, str] = {"ads-sotw": "GRPC", "ads-delta": "DELTA_GRPC"}


def templates_dir() -> Path:
    """The repository's templates/ or, when installed, controlplane/_templates."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "templates", package / "_templates"):
        if (candidate / TEMPLATE).is_file():
            return candidate
    raise FileNotFoundError(f"{TEMPLATE} not found next to {package}")


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


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
) -> str:
    """Bootstrap YAML. ``listenerless`` leaves out LDS (clusters only, e.g. a proxyless peer)."""
    if mode not in _API_TYPES:
        raise ValueError(f"mode must be one of {sorted(_API_TYPES)}, not {mode!r}")
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            node_id=node_id,
            cluster=cluster,
            region=region,
            zone=zone,
            role=role,
            xds_host=xds_host,
            xds_port=xds_port,
            xds_discovery="STATIC" if _is_ip(xds_host) else "STRICT_DNS",
            admin_host=admin_host,
            admin_port=admin_port,
            api_type=_API_TYPES[mode],
            listenerless=listenerless,
        )
    )


def render_grpc_bootstrap(
    node_id: str, cluster: str, region: str, zone: str, xds_host: str, xds_port: int
) -> str:
    """JSON bootstrap for a proxyless gRPC client (``GRPC_XDS_BOOTSTRAP``; targets ``xds:///HOST``).

    The node's role is ``grpc``, so Ubiq gives it API listeners (one per gRPC host) instead of
    Envoy's socket listener; gRPC's xDS client speaks State-of-the-World only.
    """
    return (
        json.dumps(
            {
                "xds_servers": [
                    {
                        "server_uri": f"{xds_host}:{xds_port}",
                        "channel_creds": [{"type": "insecure"}],
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
