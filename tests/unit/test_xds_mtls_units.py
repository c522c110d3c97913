"""Pure parts of xDS mTLS: SPIFFE identities, the node check, certificates, reloading files,
and the serve/bootstrap option errors."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from controlplane.errors import UbiqError
from controlplane.pki.certs import (
    Authority,
    CertError,
    create_ca,
    node_spiffe_id,
    parse_node_spiffe_id,
    uri_sans,
)
from controlplane.serve import xds_tls_from_args
from controlplane.xds.peer import refusal
from controlplane.xds.tls import ReloadingTls
from tests.support.pki import TestPki

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def node(node_id: str, cluster: str = "", metadata_cluster: str | None = None) -> base_pb2.Node:
    n = base_pb2.Node(id=node_id, cluster=cluster)
    if metadata_cluster is not None:
        meta = struct_pb2.Struct()
        meta.update({"ubiq.cluster": metadata_cluster})
        n.metadata.CopyFrom(meta)
    return n


def test_spiffe_ids_round_trip_with_awkward_names() -> None:
    uri = node_spiffe_id("td.example", "eu west/1", "envoy/a%b")
    assert uri == "spiffe://td.example/cluster/eu%20west%2F1/node/envoy%2Fa%25b"
    parsed = parse_node_spiffe_id(uri)
    assert parsed is not None and (parsed.cluster, parsed.node_id) == ("eu west/1", "envoy/a%b")
    for other in ("spiffe://td/ubiq/control-plane", "https://td/cluster/a/node/b", "spiffe:///x"):
        assert parse_node_spiffe_id(other) is None


def test_refusal_allows_exactly_the_certified_node() -> None:
    cert = [node_spiffe_id("td", "a", "n1")]
    assert refusal(node("n1", "a"), cert, {"td"}) is None
    assert refusal(node("n1", "", metadata_cluster="a"), cert, {"td"}) is None
    assert refusal(node("n1", "a"), cert, set()) is None  # no trust domain named: any
    cases = {
        "cluster": node("n1", "b"),
        "metadata": node("n1", "a", metadata_cluster="b"),
        "node id": node("n2", "a"),
        "node.cluster": node("n1", "b", metadata_cluster="a"),
    }
    for what, claimed in cases.items():
        reason = refusal(claimed, cert, {"td"})
        assert reason is not None and "certificate" in reason, what
    assert "trust domain" in (refusal(node("n1", "a"), cert, {"other"}) or "")
    assert "exactly one" in (refusal(node("n1", "a"), [], {"td"}) or "")
    assert "is not spiffe" in (refusal(node("n1", "a"), ["spiffe://td/x"], {"td"}) or "")


def test_issued_leaf_carries_its_identity_and_never_outlives_the_ca() -> None:
    ca = create_ca("td", days=10, now=NOW)
    authority = Authority.load(ca.cert_pem, ca.key_pem)
    leaf = authority.issue("spiffe://td/x", ttl=dt.timedelta(days=100), now=NOW)
    cert = x509.load_pem_x509_certificate(leaf.cert_pem)
    assert uri_sans(cert) == ["spiffe://td/x"]
    assert cert.not_valid_after_utc == authority.cert.not_valid_after_utc
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False


def test_authority_refuses_a_key_of_another_certificate() -> None:
    one, two = create_ca("td"), create_ca("td")
    with pytest.raises(CertError, match="does not belong"):
        Authority.load(one.cert_pem, two.key_pem)
    with pytest.raises(CertError, match="not a PEM certificate"):
        Authority.load(b"junk", one.key_pem)


def test_reload_keeps_the_last_good_files_when_new_ones_are_broken(tmp_path: Path) -> None:
    pki = TestPki(tmp_path)
    files = pki.server_files()
    tls = ReloadingTls(files)
    assert tls.fetch() is None  # nothing changed
    good_key = files.key.read_bytes()
    files.key.write_bytes(pki.server("other").key_pem)  # a key of another certificate
    assert tls.fetch() is None and tls.reloads == 0  # refused, the old pair keeps serving
    assert tls.fetch() is None  # and not re-read until the files change again
    files.key.write_bytes(good_key + b"\n")
    assert tls.fetch() is not None and tls.reloads == 1
    assert tls.trust_domains == frozenset({"ubiq.test"})


def test_a_server_does_not_start_with_bad_files(tmp_path: Path) -> None:
    pki = TestPki(tmp_path)
    files = pki.server_files()
    files.cert.write_text("not pem")
    with pytest.raises(CertError, match="--xds-tls-cert"):
        ReloadingTls(files)


def test_serve_tls_options_go_together() -> None:
    args = argparse.Namespace(xds_tls_cert=Path("c.pem"), xds_tls_key=None, xds_tls_client_ca=None)
    with pytest.raises(UbiqError, match="--xds-tls-key, --xds-tls-client-ca: required with"):
        xds_tls_from_args(args)
    none = argparse.Namespace(xds_tls_cert=None, xds_tls_key=None, xds_tls_client_ca=None)
    assert xds_tls_from_args(none) is None
