"""Decision: ``xds-protos`` (protobuf, upb backend) for Envoy types, not ``envoy-data-plane``
(betterproto2 + pydantic) (docs/decisions.md).

Each side builds and serializes the same resources: N EDS Clusters and N ClusterLoadAssignments
(three endpoints in one locality each), the unit of work of every snapshot build. The two
sides' bytes are compared by digest, so the timing is of equal output.

envoy-data-plane is not a dependency of Ubiq and this benchmark installs nothing. Without it
the benchmark reports the xds-protos row and says how to measure the other one:

    python3 -m venv /tmp/edp && /tmp/edp/bin/pip install envoy-data-plane
    .venv/bin/python -m bench.decision_protos --edp-python /tmp/edp/bin/python

The envoy-data-plane side then runs in that interpreter (this file needs only the standard
library there).

    .venv/bin/python -m bench.decision_protos [--n 1000] [--repeat 3] [--edp-python PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bench._common import save

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = 3
INSTALL = (
    "envoy-data-plane is not installed here (it is no dependency of Ubiq). To measure it:\n"
    "  python3 -m venv /tmp/edp && /tmp/edp/bin/pip install envoy-data-plane\n"
    "  .venv/bin/python -m bench.decision_protos --edp-python /tmp/edp/bin/python"
)


def address(i: int, j: int) -> str:
    return f"10.{j}.{i // 250}.{i % 250 + 1}"


def build_xds_protos(n: int) -> list[bytes]:
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
    from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec_pb2
    from envoy.config.endpoint.v3 import endpoint_pb2
    from google.protobuf import duration_pb2, wrappers_pb2

    out: list[bytes] = []
    for i in range(n):
        name = f"svc-{i}"
        cluster = cluster_pb2.Cluster(
            name=name,
            type=cluster_pb2.Cluster.EDS,
            connect_timeout=duration_pb2.Duration(seconds=1),
            eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
                eds_config=config_source_pb2.ConfigSource(
                    ads=config_source_pb2.AggregatedConfigSource(),
                    resource_api_version=config_source_pb2.V3,
                )
            ),
        )
        endpoints = [
            ec_pb2.LbEndpoint(
                endpoint=ec_pb2.Endpoint(
                    address=address_pb2.Address(
                        socket_address=address_pb2.SocketAddress(
                            address=address(i, j), port_value=8080
                        )
                    )
                ),
                load_balancing_weight=wrappers_pb2.UInt32Value(value=j + 1),
            )
            for j in range(ENDPOINTS)
        ]
        assignment = endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                ec_pb2.LocalityLbEndpoints(
                    locality=base_pb2.Locality(region="eu-west", zone="eu-west-1a"),
                    lb_endpoints=endpoints,
                )
            ],
        )
        out.append(cluster.SerializeToString(deterministic=True))
        out.append(assignment.SerializeToString(deterministic=True))
    return out


def build_envoy_data_plane(n: int) -> list[bytes]:
    from envoy_data_plane.envoy.config.cluster.v3 import (  # type: ignore[import-not-found]
        Cluster,
        ClusterDiscoveryType,
        ClusterEdsClusterConfig,
    )
    from envoy_data_plane.envoy.config.core.v3 import (  # type: ignore[import-not-found]
        Address,
        AggregatedConfigSource,
        ApiVersion,
        ConfigSource,
        Locality,
        SocketAddress,
    )
    from envoy_data_plane.envoy.config.endpoint.v3 import (  # type: ignore[import-not-found]
        ClusterLoadAssignment,
        Endpoint,
        LbEndpoint,
        LocalityLbEndpoints,
    )

    out: list[bytes] = []
    for i in range(n):
        name = f"svc-{i}"
        cluster = Cluster(
            name=name,
            type=ClusterDiscoveryType.EDS,
            connect_timeout=timedelta(seconds=1),
            eds_cluster_config=ClusterEdsClusterConfig(
                eds_config=ConfigSource(
                    ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3
                )
            ),
        )
        endpoints = [
            LbEndpoint(
                endpoint=Endpoint(
                    address=Address(
                        socket_address=SocketAddress(address=address(i, j), port_value=8080)
                    )
                ),
                load_balancing_weight=j + 1,
            )
            for j in range(ENDPOINTS)
        ]
        assignment = ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                LocalityLbEndpoints(
                    locality=Locality(region="eu-west", zone="eu-west-1a"),
                    lb_endpoints=endpoints,
                )
            ],
        )
        out.append(bytes(cluster))
        out.append(bytes(assignment))
    return out


SIDES: dict[str, Callable[[int], list[bytes]]] = {
    "xds-protos": build_xds_protos,
    "envoy-data-plane": build_envoy_data_plane,
}


def measure(side: str, n: int, repeat: int) -> dict[str, object]:
    build = SIDES[side]
    digest = hashlib.sha256(b"".join(build(n))).hexdigest()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        build(n)
        times.append(time.perf_counter() - started)
    return {"case": side, "seconds": min(times), "digest": digest}


def measure_elsewhere(python: str, n: int, repeat: int) -> dict[str, object]:
    """The envoy-data-plane side in another interpreter (a scratch venv that has it)."""
    argv = [python, "-m", "bench.decision_protos", "--side", "envoy-data-plane"]
    argv += ["--n", str(n), "--repeat", str(repeat)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    row: dict[str, object] = json.loads(out.stdout)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000, help="clusters (and as many assignments)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--edp-python", help="an interpreter that has envoy-data-plane")
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side is not None:  # child: one side, as JSON
        print(json.dumps(measure(args.side, args.n, args.repeat)))
        return

    rows = [measure("xds-protos", args.n, args.repeat)]
    if importlib.util.find_spec("envoy_data_plane") is not None:
        rows.append(measure("envoy-data-plane", args.n, args.repeat))
    elif args.edp_python:
        rows.append(measure_elsewhere(args.edp_python, args.n, args.repeat))
    else:
        print(INSTALL, file=sys.stderr)
    base = float(rows[0]["seconds"])  # type: ignore[arg-type]
    for row in rows:
        row["ratio"] = float(row["seconds"]) / base  # type: ignore[arg-type]
        row["same_bytes"] = row["digest"] == rows[0]["digest"]
    print(
        f"{args.n} clusters + {args.n} load assignments ({ENDPOINTS} endpoints), best of {args.repeat}"
    )
    print(f"{'case':<20} {'seconds':>9} {'ratio':>8}  bytes equal to xds-protos")
    for row in rows:
        print(
            f"{row['case']:<20} {row['seconds']:>9.3f} {row['ratio']:>7.1f}x  {row['same_bytes']}"
        )
    save("decision_protos", args, rows=rows)


if __name__ == "__main__":
    main()
