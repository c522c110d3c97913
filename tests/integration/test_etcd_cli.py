"""``ubiq store import/export`` as real processes against a real etcd: a round trip keeps the model."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.etcd.process import EtcdCluster
from controlplane.policy.loader import load_directory
from tests.support.etcd import etcd_cluster

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "three-regions"


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with etcd_cluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


def ubiq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "--log-level", "warning", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_then_export_round_trips(etcd: EtcdCluster, tmp_path: Path) -> None:
    url = etcd.url("/roundtrip")
    done = ubiq("store", "import", str(EXAMPLE), "--etcd", url)
    assert done.returncode == 0, done.stderr
    assert "imported" in done.stdout and url in done.stdout
    out = tmp_path / "out"
    done = ubiq("store", "export", str(out), "--etcd", url)
    assert done.returncode == 0, done.stderr
    assert load_directory(out).hash == load_directory(EXAMPLE).hash
    # exporting twice into the same directory is refused in one line
    done = ubiq("store", "export", str(out), "--etcd", url)
    assert (
        done.returncode == 1
        and done.stderr.startswith("ubiq: error:")
        and "not empty" in done.stderr
    )


def test_invalid_directory_is_not_imported(etcd: EtcdCluster, tmp_path: Path) -> None:
    url = etcd.url("/invalid")
    assert ubiq("store", "import", str(EXAMPLE), "--etcd", url).returncode == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.yaml").write_text(
        "apiVersion: ubiq.io/v1alpha1\nkind: Service\nmetadata: {name: s}\nspec: {ports: nope}\n"
    )
    done = ubiq("store", "import", str(bad), "--etcd", url)
    assert done.returncode == 1
    assert f"{bad / 'x.yaml'}:4: spec.ports" in done.stderr and "nothing imported" in done.stderr
    out = tmp_path / "out"
    assert ubiq("store", "export", str(out), "--etcd", url).returncode == 0
    assert load_directory(out).hash == load_directory(EXAMPLE).hash


def test_unreachable_etcd_is_one_line(tmp_path: Path) -> None:
    from controlplane.ports import free_port

    done = ubiq(
        "store", "export", str(tmp_path / "o"), "--etcd", f"etcd://127.0.0.1:{free_port()}/x"
    )
    assert done.returncode == 1
    assert done.stderr.startswith("ubiq: error: etcd /v3/kv/range: no endpoint answered")
    assert "Traceback" not in done.stderr


def test_serve_needs_a_reachable_store(tmp_path: Path) -> None:
    from controlplane.ports import free_port

    down = f"etcd://127.0.0.1:{free_port()}/x"
    done = ubiq("serve", "--store", down, "--dns", "off", "--api", "off", "--xds", "127.0.0.1:0")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("ubiq: error: etcd /v3/kv/range: no endpoint answered")
    done = ubiq("serve", "--dns", "off")
    assert done.returncode == 2  # a usage error
    assert "give a policy DIRECTORY or --store etcd://" in done.stderr
    done = ubiq("serve", str(EXAMPLE), "--store", down)
    assert done.returncode == 1 and "not both" in done.stderr
    done = ubiq("serve", "--store", "etcd://nohost/x")
    assert done.returncode == 1 and "expected HOST:PORT" in done.stderr
