"""Bad input at the YAML level: each gets one clear, located error and never a crash or a hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controlplane.errors import PolicyError, SourceError
from controlplane.policy.loader import load_directory, load_texts
from controlplane.policy.yamlsource import MAX_FILE_BYTES, decode, parse_documents
from tests.support.policy import BASE


def only_problem(text: str | bytes, name: str = "f.yaml") -> str:
    with pytest.raises(PolicyError) as info:
        load_texts([(name, text)])
    assert len(info.value.problems) == 1, info.value.problems
    return str(info.value.problems[0])


def test_empty_file() -> None:
    assert only_problem("") == "f.yaml:1: empty: expected one or more YAML documents"


def test_only_comments_and_separators_is_empty() -> None:
    assert "empty" in only_problem("# nothing\n---\n---\n")


def test_not_yaml() -> None:
    message = only_problem("kind: [Cluster\nmetadata: {\n")
    assert message.startswith("f.yaml:") and "invalid YAML" in message


def test_not_a_mapping() -> None:
    assert only_problem("- just\n- a list\n") == (
        "f.yaml:1: expected a mapping with apiVersion, kind, metadata, spec; got a list"
    )


def test_duplicate_keys_name_both_lines() -> None:
    assert only_problem("kind: Cluster\nmetadata: {name: a}\nkind: Service\n") == (
        "f.yaml:3: duplicate key 'kind' (first at line 1)"
    )


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    assert "alias bomb" in only_problem("\n".join(lines) + "\n")


def test_recursive_alias_is_refused() -> None:
    assert "recursive alias" in only_problem("a: &a [*a]\n")


def test_python_tags_are_refused() -> None:
    assert "unsupported tag" in only_problem("x: !!python/object/apply:os.system ['true']\n")


def test_unknown_local_tag_is_refused() -> None:
    assert "unsupported" in only_problem("x: !secret foo\n")


def test_huge_file_has_a_size_limit() -> None:
    raw = b"a: " + b"x" * (MAX_FILE_BYTES + 10) + b"\n"
    assert f"the limit is {MAX_FILE_BYTES}" in only_problem(raw)


def test_non_utf8_names_the_line() -> None:
    raw = b"kind: Cluster\nmetadata: {name: caf\xe9}\n"
    assert only_problem(raw) == "f.yaml:2: not UTF-8 text: byte 0xe9 at offset 34"


def test_utf8_bom_is_accepted() -> None:
    assert decode(b"\xef\xbb\xbfa: 1\n", "f") == "a: 1\n"


def test_merge_keys_and_anchors_work() -> None:
    (doc,) = parse_documents("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n", "f")
    assert doc.data["d"] == {"x": 1, "y": 3}
    assert doc.line_of(("d", "y")) == 4


def test_line_map_points_at_fields() -> None:
    (doc,) = parse_documents("a:\n  b:\n  - c: 1\n  - c: 2\n", "f")
    assert doc.line_of(("a", "b", 1, "c")) == 4
    assert doc.line_of(("a", "b", 1, "missing")) == 4


def test_errors_in_several_files_are_all_listed() -> None:
    with pytest.raises(PolicyError) as info:
        load_texts([("a.yaml", ""), ("b.yaml", "a: [\n"), ("c.yaml", BASE)])
    files = [p.file for p in info.value.problems]
    assert files == ["a.yaml", "b.yaml"]


def test_symlink_loop_is_reported_not_followed_forever(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    sub = tmp_path / "sub"
    sub.mkdir()
    os.symlink(tmp_path, sub / "loop")
    with pytest.raises(PolicyError) as info:
        load_directory(tmp_path)
    assert any("symlink loop" in str(p) for p in info.value.problems)


def test_broken_symlink_is_reported(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    os.symlink(tmp_path / "gone.yaml", tmp_path / "dangling.yaml")
    with pytest.raises(PolicyError) as info:
        load_directory(tmp_path)
    assert [p.message for p in info.value.problems] == ["broken symlink"]


def test_editor_temp_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / ".base.yaml.swp").write_text("garbage: [")
    (tmp_path / "base.yaml~").write_text("garbage: [")
    (tmp_path / "#base.yaml#").write_text("garbage: [")
    (tmp_path / "notes.txt").write_text("garbage: [")
    assert load_directory(tmp_path).summary()["clusters"] == 2


def test_empty_directory_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no policy files"):
        load_directory(tmp_path)
    with pytest.raises(SourceError, match="no such file"):
        load_directory(tmp_path / "nope")


def test_documents_from_nested_directories_and_yml(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "base.yml").write_text(BASE)
    assert load_directory(tmp_path).summary()["services"] == 1
