"""`ubiq dns explain` and the API know the aliases the DNS server answers (CNAME), offline and
against a live `ubiq serve` (--api)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from tests.support.cli import ubiq
from tests.support.dns import dig
from tests.support.procs import free_port, free_udp_tcp_port, running, wait_for_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"
ALIAS, NAME = "shop.gtm.example", "checkout.gtm.example"


def test_explain_an_alias_offline() -> None:
    out = ubiq("dns", "explain", ALIAS, "--client", "203.0.113.7", str(EXAMPLE))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"{ALIAS} is an alias (CNAME) of {NAME}"
    data = json.loads(
        ubiq("dns", "explain", ALIAS, "--client", "203.0.113.7", str(EXAMPLE), "-o", "json").stdout
    )
    assert (data["name"], data["alias"], data["group"]["name"]) == (NAME, ALIAS, "europe")


def test_explain_against_the_live_server_and_its_dns(tmp_path: Path) -> None:
    dns, api = free_udp_tcp_port(), free_port()
    argv = [
        sys.executable, "-m", "controlplane.cli", "serve", str(EXAMPLE), "--xds", "127.0.0.1:0",
        "--dns", f"127.0.0.1:{dns}", "--api", f"127.0.0.1:{api}",
    ]  # fmt: skip
    with running(argv, log=tmp_path / "ubiq.log"):
        wait_for_port("127.0.0.1", api, 20)
        answered = dig("127.0.0.1", dns, ALIAS, "A", "+subnet=203.0.113.0/24")
        assert answered.rdata("CNAME") == [f"{NAME}."]  # the DNS server answers the alias
        got = httpx.get(
            f"http://127.0.0.1:{api}/v1/gtm/explain",
            params={"name": ALIAS, "client": "203.0.113.7"},
        )
        assert got.status_code == 200, got.text
        assert (got.json()["name"], got.json()["alias"]) == (NAME, ALIAS)
        out = ubiq("dns", "explain", ALIAS, "--client", "203.0.113.7", "--api", f"127.0.0.1:{api}")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == f"{ALIAS} is an alias (CNAME) of {NAME}"
        answer = next(line for line in lines if line.startswith("answer: "))
        assert answered.rdata("A")[0] in answer  # what dig got is what explain says
        unknown = ubiq("dns", "explain", "nope.example", "--client", "1.2.3.4", "--api", str(api))
        assert unknown.returncode == 1 and "404" in unknown.stderr
