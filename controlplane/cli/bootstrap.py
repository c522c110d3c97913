"""``ubiq bootstrap``: an Envoy (or gRPC) bootstrap; checked against the policy when one is given."""

from __future__ import annotations

import argparse
from pathlib import Path

from controlplane.cli.common import write_output
from controlplane.errors import UbiqError
from controlplane.xds.bootstrap import XdsClientTls


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


def client_tls(args: argparse.Namespace) -> XdsClientTls | None:
    """The TLS part of the bootstrap, after checking that the certificate names this node."""
    from controlplane.pki.certs import load_cert, parse_node_spiffe_id, server_spiffe_id, uri_sans

    given = {
        "--xds-tls-cert": args.xds_tls_cert,
        "--xds-tls-key": args.xds_tls_key,
        "--xds-tls-ca": args.xds_tls_ca,
    }
    if not any(given.values()):
        if args.xds_tls_sds_file:
            raise UbiqError("--xds-tls-sds-file: needs --xds-tls-cert, --xds-tls-key, --xds-tls-ca")
        return None
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        raise UbiqError(f"{', '.join(missing)}: required for xDS over mTLS")
    try:
        pem = Path(args.xds_tls_cert).read_bytes()
    except OSError as exc:
        raise UbiqError(
            f"--xds-tls-cert {args.xds_tls_cert}: {exc.strerror or exc} (it is read to check it"
            " names --node-id and --cluster)"
        ) from None
    cert = load_cert(pem, f"--xds-tls-cert {args.xds_tls_cert}")
    identities = [i for i in map(parse_node_spiffe_id, uri_sans(cert)) if i is not None]
    if len(identities) != 1:
        raise UbiqError(
            f"--xds-tls-cert {args.xds_tls_cert}: no spiffe://TD/cluster/CLUSTER/node/NODE"
            " identity (issue it with `ubiq certs node`)"
        )
    (identity,) = identities
    if (identity.cluster, identity.node_id) != (args.cluster, args.node_id):
        raise UbiqError(
            f"--xds-tls-cert {args.xds_tls_cert}: issued for node {identity.node_id!r} in cluster"
            f" {identity.cluster!r}, not --node-id {args.node_id!r} --cluster {args.cluster!r};"
            " Ubiq would refuse the stream"
        )
    return XdsClientTls(
        cert=args.xds_tls_cert,
        key=args.xds_tls_key,
        ca=args.xds_tls_ca,
        server_id=server_spiffe_id(identity.trust_domain),
        sds_file=args.xds_tls_sds_file or "",
    )


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from controlplane.serve import parse_hostport
    from controlplane.xds.bootstrap import render_bootstrap, render_grpc_bootstrap

    (host, port), *more = [parse_hostport(a) for a in args.xds.split(",")]
    region, zone = node_locality(args)
    tls = client_tls(args)
    if args.grpc:
        text = render_grpc_bootstrap(args.node_id, args.cluster, region, zone, host, port, tls=tls)
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
        tls=tls,
    )
    if tls is not None and tls.sds_file:
        from controlplane.xds.bootstrap import render_client_sds

        try:
            Path(tls.sds_file).write_text(render_client_sds(tls))
        except OSError as exc:
            raise UbiqError(f"--xds-tls-sds-file {tls.sds_file}: {exc.strerror or exc}") from None
    return write_output(text, args.output)
