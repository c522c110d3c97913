"""What TrafficPolicy ``tls: {mode: ISTIO_MUTUAL}`` compiles to (pure), the secrets a node group
gets, and the serve options of the workload CA."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from controlplane.errors import UbiqError
from controlplane.pki.certs import Authority, create_ca, uri_sans
from controlplane.policy.loader import load_texts
from controlplane.policy.model import Model
from controlplane.serve import ServeOptions, Ubiq, WorkloadCa, workload_ca_from_args
from controlplane.xds.compiler import NodeIdentity
from controlplane.xds.compiler.generate import compile_node_resources
from controlplane.xds.compiler.mtls import workload_secret_names
from controlplane.xds.compiler.options import CompileOptions
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER
from controlplane.xds.workload_certs import WorkloadCerts

POLICY = """\
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {{name: eu}}
spec: {{region: eu, gateway: {{address: 10.0.1.1, port: 443, mtlsPort: 15443}}}}
---
apiVersion: ubiq.io/v1alpha1
kind: Cluster
metadata: {{name: us}}
spec: {{region: us, gateway: {{address: 10.0.2.1, port: 443{us_mtls}}}}}
---
apiVersion: ubiq.io/v1alpha1
kind: Service
metadata: {{name: pay}}
spec:
  ports: [{{port: 8080}}]
  endpoints:
  - {{cluster: eu, address: 10.1.0.1}}
  - {{cluster: us, address: 10.2.0.1, weight: 3}}
  - {{cluster: us, address: 10.2.0.2, weight: 2}}
---
apiVersion: ubiq.io/v1alpha1
kind: TrafficPolicy
metadata: {{name: pay}}
spec: {{service: pay, tls: {{mode: {mode}}}}}
"""
EU = NodeIdentity("eu", "eu")
US = NodeIdentity("us", "us")
TD = CompileOptions(workload_trust_domain="mesh.test")


def model(mode: str = "ISTIO_MUTUAL", us_mtls: str = ", mtlsPort: 15443") -> Model:
    return load_texts([("p.yaml", POLICY.format(mode=mode, us_mtls=us_mtls))])


def addresses(resources: dict, name: str = "pay") -> list[tuple[str, int, int]]:  # type: ignore[type-arg]
    cla = resources[ENDPOINT][name]
    return [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value,
         e.load_balancing_weight.value)
        for group in cla.endpoints for e in group.lb_endpoints
    ]  # fmt: skip


def test_remote_endpoints_go_through_the_gateway_over_mtls() -> None:
    resources = compile_node_resources(model(), US, TD)
    assert addresses(resources) == [("10.2.0.1", 8080, 3), ("10.2.0.2", 8080, 2),
                                    ("10.0.1.1", 15443, 1)]  # fmt: skip
    cla = resources[ENDPOINT]["pay"]
    remote = cla.endpoints[1].lb_endpoints[0]
    assert remote.metadata.filter_metadata["envoy.transport_socket_match"]["ubiq.tls"] == "mutual"
    (match,) = resources[CLUSTER]["pay"].transport_socket_matches
    upstream = tls_pb2.UpstreamTlsContext()
    match.transport_socket.typed_config.Unpack(upstream)
    assert upstream.sni == "outbound_.8080_._.pay.ubiq"
    sans = upstream.common_tls_context.combined_validation_context.default_validation_context
    assert (
        sans.match_typed_subject_alt_names[0].matcher.exact == "spiffe://mesh.test/ns/ubiq/sa/pay"
    )
    # eu sees us' two endpoints as one gateway endpoint weighing their sum
    assert addresses(compile_node_resources(model(), EU, TD))[1:] == [("10.0.2.1", 15443, 5)]


def test_east_west_listener_and_inbound_cluster_where_endpoints_are() -> None:
    resources = compile_node_resources(model(), US, TD)
    assert set(resources[LISTENER]) == {"ubiq-east-west", "ubiq-http"}
    listener = resources[LISTENER]["ubiq-east-west"]
    assert listener.address.socket_address.port_value == 15443
    (chain,) = listener.filter_chains
    assert list(chain.filter_chain_match.server_names) == ["outbound_.8080_._.pay.ubiq"]
    downstream = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(downstream)
    assert downstream.require_client_certificate.value is True
    inbound = resources[CLUSTER]["inbound|pay"]
    hosts = [e.endpoint.address.socket_address.address
             for e in inbound.load_assignment.endpoints[0].lb_endpoints]  # fmt: skip
    assert hosts == ["10.2.0.1", "10.2.0.2"]  # only its own cluster's endpoints
    assert workload_secret_names(model(), US, TD) == [
        "ubiq-gateway-identity", "ubiq-workload-ca", "ubiq-workload|pay"
    ]  # fmt: skip


def test_fail_closed_without_a_gateway_port_or_a_trust_domain() -> None:
    no_port = compile_node_resources(model(us_mtls=""), EU, TD)
    assert addresses(no_port) == [("10.1.0.1", 8080, 1)]  # us has no mtlsPort: not plaintext
    no_ca = compile_node_resources(model(), EU, CompileOptions())
    assert addresses(no_ca) == [("10.1.0.1", 8080, 1)]
    assert "ubiq-east-west" not in no_ca[LISTENER]
    assert workload_secret_names(model(), EU, CompileOptions()) == []


def test_disable_compiles_as_before() -> None:
    plain = compile_node_resources(model("DISABLE"), EU, TD)
    assert addresses(plain) == [("10.1.0.1", 8080, 1), ("10.2.0.1", 8080, 3), ("10.2.0.2", 8080, 2)]
    assert not plain[CLUSTER]["pay"].transport_socket_matches
    assert set(plain[LISTENER]) == {"ubiq-http"}


def test_workload_certs_are_reissued_at_half_life() -> None:
    ca = create_ca("mesh.test")
    now = [1_000_000.0]
    certs = WorkloadCerts(
        Authority.load(ca.cert_pem, ca.key_pem), ttl=dt.timedelta(seconds=10), clock=lambda: now[0]
    )
    names = ["ubiq-gateway-identity", "ubiq-workload-ca", "ubiq-workload|pay"]
    first = certs.secrets("us", names)
    pem = first["ubiq-workload|pay"].tls_certificate.certificate_chain.inline_bytes
    assert uri_sans(x509.load_pem_x509_certificate(pem)) == ["spiffe://mesh.test/ns/ubiq/sa/pay"]
    now[0] += 4.9
    assert certs.secrets("us", names) == first and certs.issued == 2  # same objects, not due
    assert certs.next_refresh() == 1_000_005.0
    now[0] += 0.2
    again = certs.secrets("us", names)
    assert again["ubiq-workload|pay"] is not first["ubiq-workload|pay"] and certs.issued == 4
    assert again["ubiq-workload-ca"] is first["ubiq-workload-ca"]


def test_serve_options(tmp_path: Path) -> None:
    half = argparse.Namespace(workload_ca_cert=Path("c.pem"), workload_ca_key=None,
                              workload_cert_ttl=3600.0)  # fmt: skip
    with pytest.raises(UbiqError, match="--workload-ca-key: required"):
        workload_ca_from_args(half)
    ca = create_ca("mesh.test")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "ca-key.pem").write_bytes(ca.key_pem)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "p.yaml").write_text(POLICY.format(mode="ISTIO_MUTUAL", us_mtls=""))
    options = ServeOptions(
        directory=tmp_path / "p", dns=(), api=None,
        workload_ca=WorkloadCa(tmp_path / "ca.pem", tmp_path / "ca-key.pem", 60.0),
    )  # fmt: skip
    ubiq = Ubiq(options)
    assert ubiq.xds.options.workload_trust_domain == "mesh.test"
    assert ubiq.xds.workload_certs is not None
    bad = ServeOptions(
        directory=tmp_path / "p", dns=(), api=None,
        workload_ca=WorkloadCa(tmp_path / "ca.pem", tmp_path / "ca.pem", 60.0),
    )  # fmt: skip
    with pytest.raises(UbiqError, match="--workload-ca-cert"):
        Ubiq(bad)


def test_validate_warns_when_mutual_endpoints_have_no_gateway_port() -> None:
    warnings = [str(w) for w in model(us_mtls="").warnings]
    assert warnings == [
        "p.yaml:24: spec.tls.mode: ISTIO_MUTUAL: the endpoints of 'pay' in us are unreachable"
        " from other clusters (their Cluster's gateway has no mtlsPort)"
    ]
    assert model().warnings == ()


def test_a_moved_gateway_is_followed_through_the_compile_cache() -> None:
    from controlplane.xds.compiler.memo import CompileCache

    cache = CompileCache()
    before = compile_node_resources(model(), EU, TD, cache=cache)
    assert addresses(before)[1:] == [("10.0.2.1", 15443, 5)]
    moved = load_texts([("p.yaml", POLICY.format(mode="ISTIO_MUTUAL", us_mtls=", mtlsPort: 15443")
                         .replace("10.0.2.1", "10.0.9.9"))])  # fmt: skip
    assert addresses(compile_node_resources(moved, EU, TD, cache=cache))[1:] == [
        ("10.0.9.9", 15443, 5)
    ]
