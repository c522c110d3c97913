"""The directory writer's pure parts: atomic replacement, documents split with their lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.api.writers import atomic_write
from controlplane.policy.etcd_store import split_documents
from controlplane.policy.store import _relevant


def test_atomic_write_replaces_whole_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    target.write_text("old\n")
    atomic_write(target, b"new: 1\n")
    assert target.read_text() == "new: 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routes.yaml"]
    atomic_write(tmp_path / "RoutePolicy" / "x.yaml", b"a: 1\n")  # a new kind directory
    assert (tmp_path / "RoutePolicy" / "x.yaml").read_text() == "a: 1\n"


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "routes.yaml"
    target.write_text("old\n")

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", refuse)
    with pytest.raises(OSError):
        atomic_write(target, b"new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routes.yaml"]


def test_the_watcher_ignores_the_temporary_file() -> None:
    import watchfiles

    assert not _relevant(watchfiles.Change.added, "/p/.routes.yaml.abc123.tmp")


def test_split_documents_keeps_each_documents_text_and_line() -> None:
    text = (
        "# header\n"
        "kind: Service\nmetadata: {name: a}  # a comment\nspec: {}\n"
        "---\n"
        "kind: Service\nmetadata:\n  name: b\nspec: {}\n"
    )
    pieces = split_documents(text, "f.yaml")
    assert [(p.kind, p.name, p.line) for p in pieces] == [("Service", "a", 2), ("Service", "b", 6)]
    assert "# a comment" in pieces[0].text
