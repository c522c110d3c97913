"""Policy directories with odd and hostile entries: FIFOs, symlinks out, huge files, ConfigMap links.

Each entry that must not be read is one line naming the file; nothing blocks, nothing read is
echoed beyond a short excerpt, and a Kubernetes ConfigMap mount (links that stay inside the
directory) loads like plain files.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.errors import PolicyError
from controlplane.policy.loader import load_directory
from controlplane.policy.store import DirectoryStore
from controlplane.policy.yamlsource import MAX_FILE_BYTES
from tests.support.policy import BASE, doc

ROUTE = doc(
    "RoutePolicy", "web", "hosts: [web.example]\nhttp:\n- route: [{service: web}]\n  timeout: 1s"
)
SECRET = "s3cr3t-line-that-must-never-be-echoed:" + "x" * 400


def problems_of(root: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_directory(root)
    return [str(p) for p in caught.value.problems]


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """``ubiq validate`` as a user runs it; the timeout turns a hang into a failure."""
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    root.mkdir()
    (root / "base.yaml").write_text(BASE)
    (root / "route.yaml").write_text(ROUTE)
    return root


# -- FIFOs and other non-files ------------------------------------------------------------------


def test_validate_reports_a_fifo_instead_of_hanging(policy_dir: Path) -> None:
    os.mkfifo(policy_dir / "pipe.yaml")
    result = validate(policy_dir)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "pipe.yaml" in line]
    assert lines == [
        f"{policy_dir / 'pipe.yaml'}: a FIFO (named pipe), not a regular file; not read"
    ]


def test_validate_reports_a_fifo_named_on_its_own(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    result = validate(tmp_path / "pipe.yaml")
    assert result.returncode == 1
    assert "a FIFO (named pipe), not a regular file" in result.stderr


def test_a_symlink_to_a_fifo_inside_the_directory_is_refused(policy_dir: Path) -> None:
    os.mkfifo(policy_dir / ".pipe")
    (policy_dir / "linked.yaml").symlink_to(".pipe")
    assert problems_of(policy_dir) == [
        f"{policy_dir / 'linked.yaml'}: a FIFO (named pipe), not a regular file; not read"
    ]


async def test_serve_store_rejects_a_fifo_and_applies_the_next_edit(policy_dir: Path) -> None:
    store = DirectoryStore(policy_dir)
    store.load()
    first = store.status.generation
    os.mkfifo(policy_dir / "pipe.yaml")
    # the reload runs in a worker thread: bounded here, so a blocking open fails the test
    assert await asyncio.wait_for(store.reload(), 20) is False
    assert not store.status.ok
    assert [p.message for p in store.status.problems] == [
        "a FIFO (named pipe), not a regular file; not read"
    ]
    (policy_dir / "pipe.yaml").unlink()
    (policy_dir / "route.yaml").write_text(ROUTE.replace("timeout: 1s", "timeout: 2s"))
    assert await asyncio.wait_for(store.reload(), 20) is True
    assert store.status.ok and store.status.generation == first + 1
    assert store.model.route_policies["web"].spec.http[0].timeout == 2000


# -- symlinks and disclosure --------------------------------------------------------------------


def test_a_symlink_out_of_the_directory_is_refused_and_not_echoed(
    policy_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text(SECRET + "\n")
    (policy_dir / "x.yaml").symlink_to(outside)
    (policy_dir / "passwd.yaml").symlink_to("/etc/passwd")
    problems = problems_of(policy_dir)
    assert problems == [
        f"{policy_dir / 'passwd.yaml'}: symlink leads outside the policy directory; not read",
        f"{policy_dir / 'x.yaml'}: symlink leads outside the policy directory; not read",
    ]
    result = validate(policy_dir)
    assert result.returncode == 1
    assert "s3cr3t" not in result.stderr + result.stdout
    assert "root:" not in result.stderr + result.stdout


def test_a_symlinked_directory_out_of_the_directory_is_refused(
    policy_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "leak.yaml").write_text(SECRET + "\n")
    (policy_dir / "more").symlink_to(elsewhere)
    assert problems_of(policy_dir) == [
        f"{policy_dir / 'more'}: symlink leads outside the policy directory; not read"
    ]


def test_content_read_is_echoed_only_as_a_short_excerpt(policy_dir: Path) -> None:
    (policy_dir / "notes.yaml").write_text(SECRET + "\n")
    (problem,) = problems_of(policy_dir)
    assert problem.startswith(f"{policy_dir / 'notes.yaml'}:1: expected a mapping")
    assert "s3cr3t-line" in problem  # enough to recognise the file...
    assert "x" * 60 not in problem  # ...never the whole of it
    assert len(problem) < len(str(policy_dir)) + 200


async def test_status_and_log_never_carry_more_than_an_excerpt(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = DirectoryStore(policy_dir)
    store.load()
    (policy_dir / "notes.yaml").write_text(SECRET + "\n")
    assert await asyncio.wait_for(store.reload(), 20) is False
    (problem,) = store.status.problems
    assert "x" * 60 not in str(problem)
    assert "x" * 60 not in capsys.readouterr().out


def test_a_configmap_mount_loads(tmp_path: Path) -> None:
    """The layout the kubelet writes: files link through ``..data`` to a timestamped dir."""
    root = tmp_path / "configmap"
    stamped = root / "..2024_06_01_12_00_00.123456789"
    stamped.mkdir(parents=True)
    (stamped / "base.yaml").write_text(BASE)
    (stamped / "route.yaml").write_text(ROUTE)
    (root / "..data").symlink_to(stamped.name)
    for name in ("base.yaml", "route.yaml"):
        (root / name).symlink_to(f"..data/{name}")
    model = load_directory(root)
    assert set(model.route_policies) == {"web"}
    assert validate(root).returncode == 0


# -- sizes --------------------------------------------------------------------------------------


def test_a_huge_file_is_reported_with_its_real_size(policy_dir: Path) -> None:
    big = policy_dir / "big.yaml"
    with big.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MiB without writing them
    assert problems_of(policy_dir) == [
        f"{big}: file is 52428800 bytes (50.0 MiB); the limit is {MAX_FILE_BYTES} bytes (1.0 MiB)"
    ]
