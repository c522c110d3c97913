"""``ubiq certs``: a CA, and certificates for Ubiq's xDS server and for xDS clients (nodes).

Every file is written to a temporary name and renamed over the target, so a server or Envoy
that re-reads it never sees half a file; keys are created mode 0600.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import tempfile
from pathlib import Path

from controlplane.errors import UbiqError
from controlplane.pki.certs import (
    Authority,
    Issued,
    create_ca,
    node_spiffe_id,
    server_spiffe_id,
)


def _write(path: Path, data: bytes, mode: int, force: bool) -> None:
    if path.exists() and not force:
        raise UbiqError(f"{path}: exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _save(prefix: str, issued: Issued, force: bool) -> tuple[Path, Path]:
    cert, key = Path(f"{prefix}.pem"), Path(f"{prefix}-key.pem")
    _write(key, issued.key_pem, 0o600, force)
    _write(cert, issued.cert_pem, 0o644, force)
    return cert, key


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UbiqError(f"{flag} {path}: {exc.strerror or exc}") from None


def _authority(args: argparse.Namespace) -> Authority:
    return Authority.load(
        _read(args.ca, "--ca"), _read(args.ca_key, "--ca-key"), f"--ca {args.ca} / --ca-key"
    )


def _days(value: int, flag: str) -> dt.timedelta:
    if value < 1:
        raise UbiqError(f"{flag}: expected at least 1 day, got {value}")
    return dt.timedelta(days=value)


def safe_stem(name: str) -> str:
    """A file name from a node id: characters other than letters, digits, '.', '_', '-' -> '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "node"


def cmd_certs_ca(args: argparse.Namespace) -> int:
    issued = create_ca(args.trust_domain, days=_days(args.days, "--days").days)
    cert, key = _save(args.out, issued, args.force)
    print(f"wrote {cert} and {key} (CA for spiffe://{args.trust_domain}; keep the key secret)")
    return 0


def cmd_certs_server(args: argparse.Namespace) -> int:
    ca = _authority(args)
    spiffe_id = server_spiffe_id(ca.trust_domain)
    issued = ca.issue(
        spiffe_id,
        ttl=_days(args.days, "--days"),
        server=True,
        client=False,
        dns_names=args.dns or [],
        ip_addresses=args.ip or [],
    )
    cert, key = _save(args.out, issued, args.force)
    print(f"wrote {cert} and {key} ({spiffe_id})")
    return 0


def cmd_certs_node(args: argparse.Namespace) -> int:
    ca = _authority(args)
    spiffe_id = node_spiffe_id(ca.trust_domain, args.cluster, args.node_id)
    issued = ca.issue(spiffe_id, ttl=_days(args.days, "--days"))
    cert, key = _save(args.out or safe_stem(args.node_id), issued, args.force)
    print(f"wrote {cert} and {key} ({spiffe_id})")
    return 0
