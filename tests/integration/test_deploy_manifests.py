"""deploy/ is what the templates render, and every manifest is valid offline: Kubernetes kinds
against their schemas (kubernetes-validate, strict), Karmada policies against Karmada's CRD
schemas, the gateway bootstrap after each member cluster's overrides against a real Envoy
(``--mode validate``), the container and unit command lines against ``ubiq``'s own parser."""

from __future__ import annotations

import configparser
import copy
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from controlplane.cli import build_parser
from controlplane.deploy.manifests import DeployValues, differences, render_tree
from controlplane.policy.loader import load_directory, load_texts
from controlplane.serve import ServeOptions
from tests.support.procs import require_binary

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.30.0"
CRDS = REPO / "tests" / "schemas" / "karmada"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (systemd EnvironmentFile / etcd's ETCD_* variables)."""
    lines = [x for x in path.read_text().splitlines() if x and not x.startswith("#")]
    return dict(x.split("=", 1) for x in lines)


def test_deploy_is_what_the_templates_render() -> None:
    stale = differences(render_tree(DeployValues(), REPO), DEPLOY)
    assert stale == [], f"run `make deploy`: {stale}"


def base_objects() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = docs(DEPLOY / "kubernetes" / "base" / "kustomization.yaml")[0]
    out = {}
    for resource in kustomization["resources"]:
        for doc in docs(DEPLOY / "kubernetes" / "base" / resource):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def test_kubernetes_manifests_validate_strictly() -> None:
    objects = base_objects()
    kinds = {kind for kind, _ in objects}
    assert kinds >= {
        "Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment",
        "Service", "PodDisruptionBudget", "NetworkPolicy",
    }  # fmt: skip
    for (kind, name), doc in objects.items():
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{kind}/{name}: {exc}")


def overlay(name: str) -> dict[str, Any]:
    """The base Deployment with the overlay's patch applied (replicas, container args)."""
    base = copy.deepcopy(base_objects()[("Deployment", "ubiq")])
    kustomization = docs(DEPLOY / "kubernetes" / "overlays" / name / "kustomization.yaml")[0]
    assert kustomization["resources"] == ["../../base"]
    (patch_ref,) = kustomization["patches"]
    (patch,) = docs(DEPLOY / "kubernetes" / "overlays" / name / patch_ref["path"])
    assert (patch["kind"], patch["metadata"]["name"]) == ("Deployment", "ubiq")
    base["spec"]["replicas"] = patch["spec"]["replicas"]
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    target = next(
        c for c in base["spec"]["template"]["spec"]["containers"] if c["name"] == container["name"]
    )
    target["args"] = container["args"]
    return base


def serve_options(args: list[str]) -> ServeOptions:
    parsed = build_parser().parse_args(args)
    assert parsed.command == "serve"
    return ServeOptions.from_args(parsed)


@pytest.mark.parametrize("name", ["single-replica", "etcd"])
def test_overlays_patch_valid_deployments_with_valid_ubiq_arguments(name: str) -> None:
    deployment = overlay(name)
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    options = serve_options(args)
    if name == "etcd":
        assert deployment["spec"]["replicas"] == 3
        assert options.store is not None and options.store.startswith("etcd://")
        assert options.directory is None
    else:
        assert deployment["spec"]["replicas"] == 1
        assert options.directory == Path("/etc/ubiq/policies") and options.store is None


def test_base_deployment_probes_ports_and_policies() -> None:
    objects = base_objects()
    deployment = objects[("Deployment", "ubiq")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    options = serve_options(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["xds"] == options.xds[1] and ports["api"] == options.api[1]  # type: ignore[index]
    assert ports["dns-udp"] == ports["dns-tcp"] == options.dns[0][1]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    dns = objects[("Service", "ubiq-dns")]
    assert {(p["port"], p["protocol"]) for p in dns["spec"]["ports"]} == {(53, "UDP"), (53, "TCP")}
    pdb = objects[("PodDisruptionBudget", "ubiq")]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    # the policy ConfigMap is the example set, and loads as a valid model
    data = objects[("ConfigMap", "ubiq-policies")]["data"]
    model = load_texts(sorted(data.items()))
    assert model.hash == load_directory(REPO / "examples" / "three-regions").hash


def crd_schema(plural: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"policy.karmada.io_{plural}.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return dict(version["schema"]["openAPIV3Schema"])


def test_karmada_policies_validate_against_their_crds() -> None:
    schemas = {
        "PropagationPolicy": crd_schema("propagationpolicies"),
        "OverridePolicy": crd_schema("overridepolicies"),
    }
    seen = set()
    for path in sorted((DEPLOY / "karmada").glob("*.yaml")):
        for doc in docs(path):
            assert doc["apiVersion"] == "policy.karmada.io/v1alpha1"
            jsonschema.validate(doc, schemas[doc["kind"]])
            seen.add(doc["kind"])
    assert seen == set(schemas)
    # every resource a PropagationPolicy selects exists in the base
    objects = base_objects()
    for doc in docs(DEPLOY / "karmada" / "propagation.yaml"):
        for selector in doc["spec"]["resourceSelectors"]:
            assert (selector["kind"], selector["name"]) in objects, selector


def pointer_replace(data: Any, pointer: str, value: Any) -> None:
    """RFC 6901 pointer, replace only: what Karmada's fieldOverrider does for ``replace``."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    for part in parts[:-1]:
        data = data[int(part)] if isinstance(data, list) else data[part]
    last = parts[-1]
    if isinstance(data, list):
        data[int(last)] = value
    else:
        assert last in data, f"{pointer}: nothing to replace"
        data[last] = value


def test_each_member_clusters_gateway_bootstrap_is_valid_for_envoy(tmp_path: Path) -> None:
    envoy = require_binary("envoy")
    configmap = base_objects()[("ConfigMap", "ubiq-gateway-bootstrap")]
    (policy,) = [
        d
        for d in docs(DEPLOY / "karmada" / "override.yaml")
        if d["metadata"]["name"] == "ubiq-gateway-bootstrap"
    ]
    values = DeployValues()
    assert len(policy["spec"]["overrideRules"]) == len(values.members)
    for rule, member in zip(policy["spec"]["overrideRules"], values.members, strict=True):
        assert rule["targetCluster"]["clusterNames"] == [member.name]
        (field,) = rule["overriders"]["fieldOverrider"]
        assert field["fieldPath"] == "/data/envoy.yaml"
        bootstrap = yaml.safe_load(configmap["data"]["envoy.yaml"])
        for op in field["yaml"]:
            assert op["operator"] == "replace"
            pointer_replace(bootstrap, op["subPath"], op["value"])
        assert bootstrap["node"]["locality"] == {"region": member.region, "zone": member.zone}
        assert bootstrap["node"]["metadata"]["ubiq.cluster"] == member.name
        path = tmp_path / f"{member.name}.yaml"
        path.write_text(yaml.safe_dump(bootstrap))
        done = subprocess.run(
            [envoy, "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    # the systemd example bootstrap (every replica listed) is valid too
    done = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(DEPLOY / "systemd" / "envoy.yaml"), "--disable-hot-restart"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / name).read_text())
    return parser


def test_systemd_units_bind_port_53_without_root_and_run_valid_commands() -> None:
    gtm = unit("systemd/ubiq-gtm.service")
    assert gtm["Service"]["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert gtm["Service"]["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert gtm["Service"]["DynamicUser"] == "yes"
    env = env_file(DEPLOY / "systemd" / "gtm.env")
    command = gtm["Service"]["ExecStart"]
    for key, value in env.items():
        command = command.replace(f"${{{key}}}", value)
    argv = shlex.split(command)[1:]
    options = serve_options(argv)
    assert options.dns == (("0.0.0.0", 53),) and options.store == DeployValues().etcd_url
    assert options.xds[0] == "127.0.0.1"
    envoy = unit("systemd/ubiq-envoy.service")
    assert "CAP_NET_BIND_SERVICE" in envoy["Service"]["AmbientCapabilities"]
    assert "/etc/ubiq/envoy.yaml" in envoy["Service"]["ExecStart"]


def test_etcd_example_is_three_members_of_one_cluster() -> None:
    envs = [env_file(path) for path in sorted((DEPLOY / "etcd").glob("member*.env"))]
    assert len(envs) == 3
    assert len({e["ETCD_INITIAL_CLUSTER"] for e in envs}) == 1
    names = {e["ETCD_NAME"] for e in envs}
    assert all(f"{n}=" in envs[0]["ETCD_INITIAL_CLUSTER"] for n in names)
    service = unit("etcd/etcd@.service")
    assert service["Service"]["EnvironmentFile"] == "/etc/etcd/%i.env"


def test_etcd_member_settings_are_understood_by_a_real_etcd(tmp_path: Path) -> None:
    """Start a real etcd from member1.env (addresses moved to loopback): every variable is
    recognized and the member becomes healthy."""
    import os

    from controlplane.etcd.process import EtcdMember, wait_healthy
    from controlplane.ports import free_port

    binary = require_binary("etcd")
    env = env_file(DEPLOY / "etcd" / "member1.env")
    client, peer = free_port(), free_port()
    env.update(
        ETCD_DATA_DIR=str(tmp_path / "data"),
        ETCD_LISTEN_CLIENT_URLS=f"http://127.0.0.1:{client}",
        ETCD_ADVERTISE_CLIENT_URLS=f"http://127.0.0.1:{client}",
        ETCD_LISTEN_PEER_URLS=f"http://127.0.0.1:{peer}",
        ETCD_INITIAL_ADVERTISE_PEER_URLS=f"http://127.0.0.1:{peer}",
        ETCD_INITIAL_CLUSTER=f"{env['ETCD_NAME']}=http://127.0.0.1:{peer}",
    )
    log = tmp_path / "etcd.log"
    member = EtcdMember("member1", client, peer, tmp_path / "data", log)
    with log.open("wb") as out:
        member.process = subprocess.Popen(
            [binary],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(member, 30)
        text = log.read_text()
        for key in env:
            assert f"recognized and used environment variable {key}=" in text, key
        assert "unrecognized" not in text
    finally:
        member.stop()
