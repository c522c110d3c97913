"""Policy writes through the API of a real ``ubiq serve`` (TLS, bearer tokens) reach a real
Envoy like a file edit; refused writes change nothing; the token appears in no log line."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
import yaml

from controlplane.demo.backends import DemoBackend
from tests.support.envoy import envoy
from tests.support.loop import loop_thread
from tests.support.poll import wait_until
from tests.support.procs import free_port, free_udp_tcp_port, running

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"
TOKEN = "e2e-write-token-Zq8sT1xV9c"
READ_ONLY = "e2e-read-token-K2mW7pQ4nB"


def versions(client: httpx.Client, n: int) -> set[str]:
    seen = set()
    for _ in range(n):
        r = client.get("/api/x", headers={"host": "checkout.mesh.example", "x-canary": "true"})
        seen.add(r.headers.get("x-ubiq-version", str(r.status_code)))
    return seen


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def backends_port() -> Iterator[int]:
    port = free_port("127.0.2.1")
    backends = [
        DemoBackend("checkout", "eu-west", "v1", "127.0.2.1", port),
        DemoBackend("checkout", "eu-west", "v2", "127.0.2.2", port),
    ]
    with loop_thread("checkout-backends") as lt:
        for b in backends:
            lt.run(b.start(), 5)
        yield port
        for b in backends:
            lt.run(b.stop(), 5)


def test_put_through_the_api_reaches_envoy(tmp_path: Path, backends_port: int) -> None:
    root = tmp_path / "policies"
    shutil.copytree(EXAMPLE, root)
    services = root / "services.yaml"
    services.write_text(services.read_text().replace("port: 18001,", f"port: {backends_port},"))
    gs = root / "global.yaml"
    gs.write_text("\n".join(x for x in gs.read_text().splitlines() if "healthCheck" not in x))
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN} read,write\n{READ_ONLY} read\n")
    tokens.chmod(0o600)
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "api.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    xds, dns, api_port, listener = free_port(), free_udp_tcp_port(), free_port(), free_port()
    log = tmp_path / "ubiq.log"
    argv = [
        sys.executable, "-m", "controlplane.cli", "--log-format", "json", "--log-level", "debug",
        "serve", str(root), "--xds", f"127.0.0.1:{xds}", "--dns", f"127.0.0.1:{dns}",
        "--api", f"127.0.0.1:{api_port}", "--listener-address", "127.0.0.1",
        "--listener-port", str(listener), "--debounce-ms", "20",
        "--api-token-file", str(tokens),
        "--api-tls-cert", str(tmp_path / "api.pem"), "--api-tls-key", str(tmp_path / "api.pem"),
    ]  # fmt: skip
    api = f"https://127.0.0.1:{api_port}"
    outputs: list[str] = []
    with running(argv, log=log) as proc:
        tls = httpx.Client(
            base_url=api, verify=ssl.create_default_context(cafile=tmp_path / "ca.pem"), timeout=15
        )

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                return tls.get("/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 30, "ubiq serve answering /readyz over TLS")
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
    text = log.read_text()
    assert "api.policy.written" in text  # the write was logged...
    assert TOKEN not in text and READ_ONLY not in text  # ...and no token ever was
    assert all(TOKEN not in o and READ_ONLY not in o for o in outputs)
