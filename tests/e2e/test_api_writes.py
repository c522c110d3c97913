"""Policy writes through the API of a real ``ubiq serve`` (TLS, bearer tokens) reach a real
Envoy like a file edit; refused writes change nothing; the token appears in no log line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
import yaml

from tests.support.envoy import envoy
from tests.support.poll import wait_until
from tests.support.procs import free_port
from tests.support.ubiq_serve import eu_checkout_backends, serving, three_regions, versions

pytestmark = pytest.mark.integration

TOKEN = "e2e-write-token-Zq8sT1xV9c"
READ_ONLY = "e2e-read-token-K2mW7pQ4nB"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def backends_port() -> Iterator[int]:
    port = free_port("127.0.2.1")
    with eu_checkout_backends(port):
        yield port


def test_put_through_the_api_reaches_envoy(tmp_path: Path, backends_port: int) -> None:
    root = tmp_path / "policies"
    three_regions(root, backends_port)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN} read,write\n{READ_ONLY} read\n")
    tokens.chmod(0o600)
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "api.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    listener = free_port()
    flags = (
        "--log-level", "debug", "--listener-address", "127.0.0.1",
        "--listener-port", str(listener), "--api-token-file", str(tokens),
        "--api-tls-cert", str(tmp_path / "api.pem"), "--api-tls-key", str(tmp_path / "api.pem"),
    )  # fmt: skip
    outputs: list[str] = []
    with serving(root, tmp_path, *flags, api_ca=tmp_path / "ca.pem") as served:
        api, api_port, xds = served.api, served.api_port, served.xds_port
        tls = httpx.Client(base_url=api, verify=served.verify(), timeout=15)
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port gets no answer
            httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=5).raise_for_status()
        with (
            envoy(tmp_path, xds_port=xds, node_id="envoy-eu", cluster="eu-west", region="eu-west"),
            httpx.Client(base_url=f"http://127.0.0.1:{listener}", timeout=5) as traffic,
        ):
            wait_until(lambda: versions(traffic, 1) == {"v2"}, 20, "header canary routed to v2")
            current = tls.get(
                "/v1/policies/RoutePolicy/checkout", headers={"Authorization": f"Bearer {TOKEN}"}
            ).json()
            doc = current["document"]
            for rule in doc["spec"]["http"]:
                if rule.get("name") == "canary-by-header":
                    rule["route"] = [{"service": "checkout", "subset": "v1"}]
            change = tmp_path / "checkout.yaml"
            change.write_text(yaml.safe_dump(doc, sort_keys=False))
            common = ("--api", api, "--ca-cert", str(tmp_path / "ca.pem"))

            # without a token, or with a read-only one: refused, Envoy keeps routing to v2
            (tmp_path / "read-token").write_text(READ_ONLY + "\n")
            for extra in ((), ("--token-file", str(tmp_path / "read-token"))):
                refused = cli("policy", "apply", "-f", str(change), *common, *extra)
                outputs += [refused.stdout, refused.stderr]
                assert refused.returncode == 1
                assert "HTTP 401" in refused.stderr or "HTTP 403" in refused.stderr

            (tmp_path / "token").write_text(TOKEN + "\n")
            auth = ("--token-file", str(tmp_path / "token"))
            dry = cli("policy", "apply", "-f", str(change), "--dry-run", *common, *auth)
            outputs += [dry.stdout, dry.stderr]
            assert dry.returncode == 0, dry.stderr
            assert "RoutePolicy/checkout would be replaced (dry run)" in dry.stdout
            assert "xds eu-west/proxy RDS changed" in dry.stdout
            assert versions(traffic, 5) == {"v2"}

            # an invalid change: the file:line problems, nothing changes
            broken = tmp_path / "broken.yaml"
            broken.write_text(change.read_text().replace("subset: v1", "subset: v7", 1))
            invalid = cli("policy", "apply", "-f", str(broken), *common, *auth)
            outputs += [invalid.stdout, invalid.stderr]
            assert invalid.returncode == 1
            assert "has no subset 'v7'" in invalid.stderr
            assert f"{root}/routes.yaml:" in invalid.stderr
            assert versions(traffic, 5) == {"v2"}

            applied = cli("policy", "apply", "-f", str(change), *common, *auth)
            outputs += [applied.stdout, applied.stderr]
            assert applied.returncode == 0, applied.stderr
            assert applied.stdout.strip() == "RoutePolicy/checkout replaced (served)"
            wait_until(lambda: versions(traffic, 5) == {"v1"}, 20, "Envoy routing the API's change")

            listed = cli("policy", "list", "--kind", "RoutePolicy", *common, *auth)
            assert listed.returncode == 0 and "RoutePolicy/checkout" in listed.stdout
        tls.close()
    text = served.log_text()
    assert "api.policy.written" in text  # the write was logged...
    assert TOKEN not in text and READ_ONLY not in text  # ...and no token ever was
    assert all(TOKEN not in o and READ_ONLY not in o for o in outputs)
