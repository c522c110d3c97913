"""`ubiq status` against a real `ubiq serve` and real Envoys: per-type sync state, the reason a
proxy gets nothing, HOST:PORT or URL, exit code 5 after a rejected change, formats."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.cli import ubiq
from tests.support.envoy import envoy
from tests.support.poll import wait_until
from tests.support.procs import free_port, running, wait_for_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int, int]]:
    root = tmp_path / "policies"
    shutil.copytree(EXAMPLE, root)
    xds, api = free_port(), free_port()
    argv = [
        sys.executable, "-m", "controlplane.cli", "serve", str(root), "--xds", f"127.0.0.1:{xds}",
        "--dns", "off", "--api", f"127.0.0.1:{api}", "--listener-address", "127.0.0.1",
        "--listener-port", str(free_port()), "--debounce-ms", "20",
    ]  # fmt: skip
    with running(argv, log=tmp_path / "ubiq.log"):
        wait_for_port("127.0.0.1", api, 20)
        yield root, xds, api


def proxies(api: int) -> dict[str, dict[str, object]]:
    got = httpx.get(f"http://127.0.0.1:{api}/v1/status", timeout=5).json()
    return {p["nodeId"]: p for p in got["proxies"]}


def test_status_shows_sync_state_and_why_a_proxy_gets_nothing(
    tmp_path: Path, served: tuple[Path, int, int]
) -> None:
    root, xds, api = served
    with (
        envoy(tmp_path, xds_port=xds, node_id="envoy-eu", cluster="eu-west"),
        envoy(tmp_path, xds_port=xds, node_id="envoy-typo", cluster="eu-wset"),
        envoy(tmp_path, xds_port=xds, node_id="envoy-delta", cluster="us-west", mode="ads-delta"),
    ):
        wait_until(
            lambda: (
                proxies(api).get("envoy-eu", {}).get("state") == "SYNCED"
                and proxies(api).get("envoy-delta", {}).get("state") == "SYNCED"
                and "envoy-typo" in proxies(api)
            ),
            20,
            "envoy-eu SYNCED",
        )
        out = ubiq("status", "--api", f"127.0.0.1:{api}")
        assert out.returncode == 0, out.stderr
        assert out.stderr == ""  # no library log lines
        lines = out.stdout.splitlines()
        header = next(line for line in lines if "NODE" in line)
        assert header.split()[-4:] == ["CDS", "EDS", "LDS", "RDS"]
        eu = next(line for line in lines if line.strip().startswith("envoy-eu"))
        assert eu.split()[-4:] == ["SYNCED"] * 4
        typo = lines.index(next(line for line in lines if line.strip().startswith("envoy-typo")))
        assert "'eu-wset' is not a Cluster in the policy" in lines[typo + 1]
        assert "known: cn-east, eu-west, us-west" in lines[typo + 1]

        for fmt, load in (("json", json.loads), ("yaml", yaml.safe_load)):
            data = load(ubiq("status", "--api", f"http://127.0.0.1:{api}/", "-o", fmt).stdout)
            by_node = {p["nodeId"]: p for p in data["proxies"]}
            assert by_node["envoy-eu"]["sync"] == dict.fromkeys(
                ("CDS", "EDS", "LDS", "RDS"), "SYNCED"
            )
            assert by_node["envoy-typo"]["state"] == "UNKNOWN"

        routes = root / "routes.yaml"
        routes.write_text(routes.read_text().replace("weight: 10}", "weight: 140}"))
        wait_until(
            lambda: not httpx.get(f"http://127.0.0.1:{api}/v1/status").json()["policy"]["ok"],
            20,
            "the broken change rejected",
        )
        rejected = ubiq("status", "--api", f"127.0.0.1:{api}")
        assert rejected.returncode == 5
        assert "REJECTED last change" in rejected.stdout
        assert "must be 0..100, got 140" in rejected.stdout


def test_status_of_nothing_listening_is_exit_4() -> None:
    out = ubiq("status", "--api", f"127.0.0.1:{free_port()}")
    assert out.returncode == 4
    assert out.stderr.startswith("ubiq: error: cannot reach the Ubiq API at http://127.0.0.1:")
    assert len(out.stderr.splitlines()) == 1
