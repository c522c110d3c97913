"""``ubiq bootstrap``."""

from __future__ import annotations

import argparse

from controlplane.cli.common import write_output


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from controlplane.serve import parse_hostport
    from controlplane.xds.bootstrap import render_bootstrap, render_grpc_bootstrap

    host, port = parse_hostport(args.xds)
    if args.grpc:
        text = render_grpc_bootstrap(args.node_id, args.cluster, args.region, args.zone, host, port)
        return write_output(text, args.output)
    text = render_bootstrap(
        node_id=args.node_id,
        cluster=args.cluster,
        region=args.region,
        zone=args.zone,
        xds_host=host,
        xds_port=port,
        admin_port=args.admin_port,
        mode="ads-delta" if args.delta else "ads-sotw",
    )
    return write_output(text, args.output)
