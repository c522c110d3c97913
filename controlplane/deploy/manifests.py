"""Every file under deploy/, rendered from templates/deploy/ (and the Envoy bootstrap template).

    python -m controlplane.deploy            # (re)write deploy/
    python -m controlplane.deploy --check    # exit 1 when deploy/ differs from the templates

The values below are the shipped defaults; each is also written into the manifests, so nothing is
inherited silently from Kubernetes, Karmada or systemd defaults that matter to Ubiq.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.policy.loader import policy_files
from controlplane.templating import render, templates_dir
from controlplane.xds.bootstrap import render_bootstrap

EXAMPLE_POLICIES = "examples/three-regions"
HEADER = (
    "# Generated from templates/deploy/ by `make deploy` (python -m controlplane.deploy):\n"
    "# edit the templates or controlplane/deploy/manifests.py, not this file.\n"
)


@dataclass(frozen=True, slots=True)
class Member:
    """A member cluster: its Ubiq cluster name, locality, and the control-plane xDS addresses
    its gateway dials (several: one per replica or per region's load balancer)."""

    name: str
    region: str
    zone: str
    xds: tuple[tuple[str, int], ...]
    control_plane: bool = False  # runs control-plane replicas too

    @property
    def xds_discovery(self) -> str:
        for host, _ in self.xds:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                return "STRICT_DNS"
        return "STATIC"


@dataclass(frozen=True, slots=True)
class EtcdMemberHost:
    name: str
    address: str


@dataclass(frozen=True, slots=True)
class DeployValues:
    namespace: str = "ubiq"
    image: str = "ghcr.io/ubiq-project/ubiq:0.1.0"
    envoy_image: str = "envoyproxy/envoy:v1.40.0"
    replicas: int = 3
    gateway_replicas: int = 2
    xds_port: int = 18000
    dns_container_port: int = 5353  # the Service maps 53 to it: no capability needed in the pod
    api_port: int = 8081
    listener_port: int = 10000
    gateway_port: int = 15443
    cpu_request: str = "500m"
    memory_request: str = "256Mi"
    memory_limit: str = "1Gi"
    etcd_url: str = "etcd://10.0.0.11:2379,10.0.0.12:2379,10.0.0.13:2379/ubiq"
    members: tuple[Member, ...] = (
        Member("eu-west", "eu-west", "eu-west-1b", (("xds.eu-west.ubiq.example", 18000),), True),
        Member("us-west", "us-west", "us-west-2a", (("xds.us-west.ubiq.example", 18000),), True),
        Member("cn-east", "cn-east", "cn-east-1a", (("10.20.0.10", 18000), ("10.20.0.11", 18000))),
    )
    etcd_members: tuple[EtcdMemberHost, ...] = (
        EtcdMemberHost("member1", "10.0.0.11"),
        EtcdMemberHost("member2", "10.0.0.12"),
        EtcdMemberHost("member3", "10.0.0.13"),
    )
    control_plane_hosts: tuple[str, ...] = ("10.0.1.11", "10.0.1.12", "10.0.1.13")  # systemd
    ns_addresses: tuple[str, ...] = ("192.0.2.53", "198.51.100.53", "203.0.113.53")
    max_txn_ops: int = 1024
    max_request_bytes: int = 10 * 1024 * 1024
    policies_dir: str = EXAMPLE_POLICIES
    labels: dict[str, str] = field(
        default_factory=lambda: {
            "app.kubernetes.io/name": "ubiq",
            "app.kubernetes.io/part-of": "ubiq",
            "app.kubernetes.io/component": "control-plane",
        }
    )


BASE_RESOURCES = (
    "namespace.yaml",
    "rbac.yaml",
    "policies.yaml",
    "control-plane.yaml",
    "services.yaml",
    "pdb.yaml",
    "networkpolicy.yaml",
    "gateway.yaml",
)


def serve_args(v: DeployValues, *, store: str | None) -> list[str]:
    """The container's ``ubiq`` arguments (a directory from the ConfigMap, or the etcd store)."""
    source = ["--store", store] if store else ["/etc/ubiq/policies"]
    return [
        "--log-format", "json", "serve", *source,
        "--xds", f"0.0.0.0:{v.xds_port}",
        "--dns", f"0.0.0.0:{v.dns_container_port}",
        "--api", f"0.0.0.0:{v.api_port}",
        # Prometheus and in-cluster clients reach the pod by IP; the NetworkPolicy bounds who can
        "--api-allowed-host", "*",
        "--listener-port", str(v.listener_port),
        "--listener-address", "0.0.0.0",
    ]  # fmt: skip


def _policies(root: Path) -> dict[str, str]:
    files, _ = policy_files(root)
    return {path.name: path.read_text() for path in files}


def render_tree(v: DeployValues, repo: Path) -> dict[str, str]:
    """Relative path under deploy/ -> file content."""
    home = v.members[0]
    selector = {"app.kubernetes.io/name": "ubiq", "app.kubernetes.io/component": "control-plane"}
    gateway_selector = {"app.kubernetes.io/name": "ubiq", "app.kubernetes.io/component": "gateway"}
    context: dict[str, object] = {
        "v": v,
        "labels": v.labels,
        "selector": selector,
        "gateway_labels": {**v.labels, "app.kubernetes.io/component": "gateway"},
        "gateway_selector": gateway_selector,
        "gateway_pod_labels": {**gateway_selector, "ubiq.io/xds-client": "true"},
        "policies": _policies(repo / v.policies_dir),
        "serve_args": serve_args(v, store=None),
        "ns_addresses": v.ns_addresses,
        "bootstrap": render_bootstrap(
            node_id=f"gateway-{home.name}",
            cluster=home.name,
            region=home.region,
            zone=home.zone,
            xds_host=f"ubiq-xds.{v.namespace}.svc.cluster.local",
            xds_port=v.xds_port,
            admin_port=9901,
            admin_host="0.0.0.0",
        ),
    }
    out: dict[str, str] = {}
    k8s = "kubernetes"
    for name in BASE_RESOURCES:
        out[f"{k8s}/base/{name}"] = render(f"deploy/{k8s}/{name}.j2", **context)
    out[f"{k8s}/base/kustomization.yaml"] = render(
        f"deploy/{k8s}/kustomization-base.yaml.j2", resources=BASE_RESOURCES, **context
    )
    overlays = {
        "single-replica": (
            "one replica reading the policy ConfigMap: a lab or a small site",
            1,
            None,
        ),
        "etcd": (
            "replicas on the shared etcd store (deploy/etcd); the ConfigMap is not read",
            v.replicas,
            v.etcd_url,
        ),
    }
    for overlay, (description, replicas, store) in overlays.items():
        out[f"{k8s}/overlays/{overlay}/kustomization.yaml"] = render(
            f"deploy/{k8s}/kustomization-overlay.yaml.j2",
            overlay={"description": description, "patches": ["control-plane.yaml"]},
            **context,
        )
        out[f"{k8s}/overlays/{overlay}/control-plane.yaml"] = render(
            f"deploy/{k8s}/patch-control-plane.yaml.j2",
            **{**context, "replicas": replicas, "serve_args": serve_args(v, store=store)},
        )
    for name in ("propagation.yaml", "override.yaml"):
        out[f"karmada/{name}"] = render(f"deploy/karmada/{name}.j2", **context)
    for name in ("ubiq-gtm.service", "gtm.env", "ubiq-envoy.service"):
        out[f"systemd/{name}"] = render(f"deploy/systemd/{name}.j2", **context)
    out["systemd/envoy.yaml"] = render_bootstrap(
        node_id="edge-1",
        cluster=home.name,
        region=home.region,
        zone=home.zone,
        xds_host=v.control_plane_hosts[0],
        xds_port=v.xds_port,
        admin_port=9901,
        more_xds=[(host, v.xds_port) for host in v.control_plane_hosts[1:]],
    )
    initial = ",".join(f"{m.name}=http://{m.address}:2380" for m in v.etcd_members)
    out["etcd/etcd@.service"] = render("deploy/etcd/etcd@.service.j2", **context)
    for member in v.etcd_members:
        out[f"etcd/{member.name}.env"] = render(
            "deploy/etcd/member.env.j2",
            member=member,
            initial_cluster=initial,
            max_txn_ops=v.max_txn_ops,
            max_request_bytes=v.max_request_bytes,
        )
    return {name: HEADER + text for name, text in out.items()}


def repo_root() -> Path:
    return templates_dir().parent


def write_tree(tree: dict[str, str], root: Path) -> list[str]:
    """Write the tree; the names of files that changed."""
    changed = []
    for relative, text in sorted(tree.items()):
        path = root / relative
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        changed.append(relative)
    return changed


#: deploy/ folders written by hand, not rendered here (Grafana and Prometheus provisioning)
HAND_WRITTEN = ("grafana", "prometheus")


def differences(tree: dict[str, str], root: Path) -> list[str]:
    """Files that are missing, different, or left over (rendered files only: README and the
    hand-written folders kept)."""
    found = {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file()
        and p.name != "README.md"
        and p.relative_to(root).parts[0] not in HAND_WRITTEN
    }
    out = [r for r in sorted(tree) if not (root / r).exists() or (root / r).read_text() != tree[r]]
    out += sorted(found - set(tree))
    return out
