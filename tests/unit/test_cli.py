"""The `ubiq` command: exit codes and one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.cli import main

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"


def test_validate_example(capsys: object) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0


def test_validate_lists_every_error_one_line_each(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(EXAMPLE, broken)
    routes = broken / "routes.yaml"
    routes.write_text(routes.read_text().replace("weight: 10}", "weight: 140}"))
    services = broken / "services.yaml"
    services.write_text(
        services.read_text().replace(
            "cluster: us-west, address: 127.0.3.4", "cluster: mars, address: 127.0.3.4"
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "validate", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[0] == f"{routes}:18: spec.http[2].route[1].weight: must be 0..100, got 140"
    assert (
        lines[1]
        == f"{services}:35: spec.endpoints[1].cluster: unknown cluster 'mars' (known: cn-east, eu-west, us-west)"
    )
    assert lines[2] == f"{broken}: 2 problems"
    assert "Traceback" not in out.stderr


def test_missing_directory_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "validate", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert out.stderr.strip() == f"ubiq: error: {tmp_path / 'nope'}: no such file or directory"


def test_schema_is_json_schema(tmp_path: Path) -> None:
    target = tmp_path / "schema.json"
    assert main(["schema", "-o", str(target)]) == 0
    schema = json.loads(target.read_text())
    every = {"Cluster", "Service", "RoutePolicy", "TrafficPolicy", "Placement", "GlobalService"}
    every.add("Canary")
    kinds = {v["properties"]["kind"]["const"] for k, v in schema["$defs"].items() if k in every}
    assert kinds == every
    assert schema["$defs"]["Destination"]["additionalProperties"] is False


def test_serve_options_from_flags() -> None:
    from controlplane.cli import build_parser
    from controlplane.serve import ServeOptions

    args = build_parser().parse_args(
        ["serve", "pol", "--dns", "0.0.0.0:53", "--dns", "[::]:53", "--api", "off", "--xds", "9000"]
    )
    options = ServeOptions.from_args(args)
    assert options.dns == (("0.0.0.0", 53), ("::", 53))
    assert options.api is None and options.xds == ("127.0.0.1", 9000) and options.gtm is None
    args = build_parser().parse_args(["serve", "pol", "--ns-address", "192.0.2.53"])
    gtm = ServeOptions.from_args(args).gtm
    assert gtm is not None and gtm.ns_addresses == ("192.0.2.53",)
    args = build_parser().parse_args(["serve", "pol", "--allow-transfer", "10.0.0.0/8"])
    gtm = ServeOptions.from_args(args).gtm
    assert gtm is not None and gtm.allow_transfer == ("10.0.0.0/8",)
    assert gtm.ns_addresses == ("127.0.0.1",)


def test_serve_rejects_bad_flags() -> None:
    import pytest

    from controlplane.cli import build_parser
    from controlplane.errors import UbiqError
    from controlplane.serve import ServeOptions

    for argv in (
        ["--ns-address", "ns.example"],
        ["--xds", "host:port"],
        ["--dns", "1.2.3.4:70000"],
    ):
        with pytest.raises(UbiqError):
            ServeOptions.from_args(build_parser().parse_args(["serve", "pol", *argv]))


def test_serve_checks_certificate_and_key_flags_as_pairs(tmp_path: Path) -> None:
    """The API's and the workload CA's certificate/key flags: both or neither, each a file
    (one check, ``pki.files.file_pair``), with a one-line error naming the flag at fault."""
    from controlplane.cli import build_parser
    from controlplane.errors import UbiqError
    from controlplane.serve import ServeOptions

    pem = tmp_path / "c.pem"
    pem.write_text("not checked here")

    def options(*argv: str) -> ServeOptions:
        return ServeOptions.from_args(build_parser().parse_args(["serve", "pol", *argv]))

    assert options("--api-tls-cert", str(pem), "--api-tls-key", str(pem)).api_tls == (pem, pem)
    ca = options("--workload-ca-cert", str(pem), "--workload-ca-key", str(pem)).workload_ca
    assert ca is not None and (ca.cert, ca.key) == (pem, pem)
    cases = {
        ("--api-tls-cert", str(pem)): "--api-tls-key: required with --api-tls-cert",
        ("--api-tls-key", str(pem)): "--api-tls-cert: required with --api-tls-key",
        ("--workload-ca-cert", str(pem)): "--workload-ca-key: required with --workload-ca-cert",
        ("--api-tls-cert", str(pem), "--api-tls-key", str(tmp_path / "none.pem")): (
            f"--api-tls-key: {tmp_path / 'none.pem'}: no such file"
        ),
    }
    for argv, message in cases.items():
        with pytest.raises(UbiqError) as raised:
            options(*argv)
        assert str(raised.value).startswith(message), raised.value


def test_bootstrap_checks_the_cluster_against_the_policy(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UBIQ_POLICY_DIR", raising=False)
    base = ["bootstrap", "--node-id", "e1", "--policy", str(EXAMPLE)]
    assert main([*base, "--cluster", "eu-west"]) == 0
    out = capsys.readouterr().out
    assert 'region: "eu-west"' in out and 'zone: "eu-west-1b"' in out  # taken from the policy
    assert main([*base, "--cluster", "eu-wst"]) == 1
    assert "'eu-wst' is not a Cluster in" in capsys.readouterr().err
    assert main([*base, "--cluster", "eu-west", "--region", "us-west"]) == 1
    err = capsys.readouterr().err
    assert err.strip().endswith("cluster 'eu-west' is in region 'eu-west'")
    assert main(["bootstrap", "--node-id", "e1", "--cluster", "eu-west"]) == 1
    assert "--region: required without --policy" in capsys.readouterr().err


def test_api_address_forms() -> None:
    from controlplane.cli.api_client import api_url

    assert api_url("127.0.0.1:8081") == "http://127.0.0.1:8081"
    assert api_url("8081") == "http://127.0.0.1:8081"
    assert api_url("[::1]:8081") == "http://[::1]:8081"
    assert api_url("https://ubiq.example/") == "https://ubiq.example"


def test_validate_counts_are_pluralized(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "3 clusters" in out and "1 globalService," in out and "1 canary;" in out
    from controlplane.cli.common import count

    assert [count(n, "canaries") for n in (0, 1, 2)] == ["0 canaries", "1 canary", "2 canaries"]


def test_read_commands_speak_json_and_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    bad = EXAMPLE.parent / "bad"
    assert main(["validate", str(bad), "-o", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is False
    fields = [p["field"] for p in data["problems"] if p["file"].endswith("placement.yaml")]
    assert fields == ["spec.strategy.weights", "spec.strategy.order"]  # every Placement problem
    assert main(["validate", str(EXAMPLE), "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["counts"]["clusters"] == 3
    assert main(["render", "--cluster", "eu-west", str(EXAMPLE)]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert main(["render", "--cluster", "eu-west", str(EXAMPLE), "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == as_json
    argv = ["dns", "explain", "checkout.gtm.example", "--client", "203.0.113.7", str(EXAMPLE)]
    assert main([*argv, "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"]["addresses"] == ["127.0.0.12"]
