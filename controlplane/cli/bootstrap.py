"""``ubiq bootstrap``: an Envoy (or gRPC) bootstrap; checked against the policy when one is given."""

from __future__ import annotations

import argparse

from controlplane.cli.common import write_output
from controlplane.errors import UbiqError


def node_locality(args: argparse.Namespace) -> tuple[str, str]:
    """(region, zone): from the flags; with --policy, from the policy's Cluster, and a flag that
    contradicts it is an error (an Envoy would otherwise get a locality the policy does not know)."""
    if args.policy is None:
        if not args.region:
            raise UbiqError("--region: required without --policy (or $UBIQ_POLICY_DIR)")
        return args.region, args.zone or ""
    from controlplane.policy.loader import load_directory

    model = load_directory(args.policy)
    cluster = model.clusters.get(args.cluster)
    if cluster is None:
        known = ", ".join(model.clusters) or "none"
        raise UbiqError(
            f"--cluster: {args.cluster!r} is not a Cluster in {args.policy} (known: {known})"
        )
    region, zone = cluster.spec.region, cluster.spec.zone or ""
    if args.region and args.region != region:
        raise UbiqError(
            f"--region: {args.region!r} contradicts {args.policy}: cluster {args.cluster!r}"
            f" is in region {region!r}"
        )
    if args.zone and zone and args.zone != zone:
        raise UbiqError(
            f"--zone: {args.zone!r} contradicts {args.policy}: cluster {args.cluster!r}"
            f" is in zone {zone!r}"
        )
    return region, args.zone or zone


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from controlplane.serve import parse_hostport
    from controlplane.xds.bootstrap import render_bootstrap, render_grpc_bootstrap

    (host, port), *more = [parse_hostport(a) for a in args.xds.split(",")]
    region, zone = node_locality(args)
    if args.grpc:
        text = render_grpc_bootstrap(args.node_id, args.cluster, region, zone, host, port)
        return write_output(text, args.output)
    text = render_bootstrap(
        node_id=args.node_id,
        cluster=args.cluster,
        region=region,
        zone=zone,
        xds_host=host,
        xds_port=port,
        admin_port=args.admin_port,
        mode="ads-delta" if args.delta else "ads-sotw",
        more_xds=more,
    )
    return write_output(text, args.output)
