"""The policy YAML reader as it was before the cold-start work (commit f8f38a1), kept verbatim as
the reference the fast path is compared with (tests/unit/test_policy_fast_path.py): PyYAML's own
resolver, every line recorded while converting. Not used by the product."""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controlplane.errors import PolicyError, Problem
from controlplane.policy.filecheck import MAX_FILE_BYTES, too_large  # noqa: F401

__all__ = ["MAX_FILE_BYTES", "RawDocument", "decode", "parse_documents"]
MAX_NODES = 200_000
MAX_EXPANDED_BYTES = 16 * 1024 * 1024  # scalar and key characters after alias expansion
MAX_DEPTH = 64

Path = tuple[str | int, ...]

_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True, slots=True)
class RawDocument:
    """One YAML document as plain Python data, with the line of every field path."""

    file: str
    index: int
    line: int
    data: Any
    lines: Mapping[Path, int]

    def line_of(self, path: Path) -> int:
        """Line of the longest prefix of ``path`` that was written (missing fields → their parent)."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line


class _YamlShapeError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Converter:
    def __init__(self) -> None:
        self.budget = MAX_NODES
        self.bytes_left = MAX_EXPANDED_BYTES
        self.lines: dict[Path, int] = {}
        self.scalars = SafeConstructor()

    def convert(self, node: Node, path: Path, depth: int) -> Any:
        self.budget -= 1
        line = node.start_mark.line + 1
        if self.budget < 0:
            raise _YamlShapeError(
                line, f"document expands to more than {MAX_NODES} nodes (alias bomb?)"
            )
        if depth > MAX_DEPTH:
            raise _YamlShapeError(line, f"nested deeper than {MAX_DEPTH} levels (recursive alias?)")
        self.lines.setdefault(path, line)
        if isinstance(node, ScalarNode):
            self._spend(len(node.value), line)
            if node.tag == _STR_TAG:  # the common case, without the constructor's bookkeeping
                return node.value
            try:
                return self.scalars.construct_object(node)
            except ConstructorError as exc:
                raise _YamlShapeError(line, f"unsupported value tag {node.tag!r}") from exc
            except (ValueError, OverflowError) as exc:  # 5000 digits, a 13th month
                shown = node.value if len(node.value) <= 40 else f"{node.value[:40]}…"
                raise _YamlShapeError(
                    line, f"{shown!r} ({len(node.value)} chars) is no valid {node.tag[18:]}"
                ) from exc
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ_TAG:
                raise _YamlShapeError(line, f"unsupported tag {node.tag!r}")
            return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _MAP_TAG:
                raise _YamlShapeError(line, f"unsupported tag {node.tag!r}")
            return self._mapping(node, path, depth)
        raise _YamlShapeError(line, f"unexpected YAML node {type(node).__name__}")

    def _spend(self, size: int, line: int) -> None:
        self.bytes_left -= size
        if self.bytes_left < 0:
            raise _YamlShapeError(
                line,
                f"document expands to more than {MAX_EXPANDED_BYTES} bytes of text"
                " (alias bomb? an anchor re-used many times counts each time)",
            )

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                raise _YamlShapeError(key_line, "mapping keys must be plain strings")
            if key_node.tag != _STR_TAG:
                raw_key = self.scalars.construct_object(key_node)
                if not isinstance(raw_key, int | float | bool) or raw_key is None:
                    raise _YamlShapeError(
                        key_line, f"mapping key {key_node.value!r} is not a string"
                    )
            key = str(key_node.value)
            self._spend(len(key), key_line)
            if key in out:
                raise _YamlShapeError(
                    key_line, f"duplicate key {key!r} (first at line {first_line[key]})"
                )
            first_line[key] = key_line
            self.lines.setdefault((*path, key), key_line)
            out[key] = self.convert(value_node, (*path, key), depth + 1)
        for merge in merges:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise _YamlShapeError(source.start_mark.line + 1, "'<<' merges mappings only")
                merged = self._mapping(source, path, depth + 1)
                for key, value in merged.items():
                    out.setdefault(key, value)
        return out


def decode(raw: bytes, file: str) -> str:
    if len(raw) > MAX_FILE_BYTES:
        raise PolicyError([too_large(file, len(raw))])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise PolicyError(
            [Problem(file, line, "", f"not UTF-8 text: byte 0x{bad} at offset {exc.start}")]
        ) from None


def parse_documents(text: str, file: str) -> list[RawDocument]:
    """All non-empty documents of a YAML stream; raises PolicyError on the first YAML-level fault."""
    docs: list[RawDocument] = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=_LOADER)):
            if node is None:
                continue
            converter = _Converter()
            data = converter.convert(node, (), 0)
            if data is None:
                continue
            docs.append(RawDocument(file, index, node.start_mark.line + 1, data, converter.lines))
    except _YamlShapeError as exc:
        raise PolicyError([Problem(file, exc.line, "", exc.message)]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; no mark, a position
        at = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise PolicyError(
            [Problem(file, at, "", f"invalid YAML: character #x{char:04x}: {exc.reason}")]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise PolicyError([Problem(file, line, "", f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        what = " ".join(str(exc).split())
        raise PolicyError([Problem(file, None, "", f"invalid YAML: {what}")]) from None
    except RecursionError:
        raise PolicyError([Problem(file, None, "", "YAML nested too deeply")]) from None
    if not docs:
        raise PolicyError([Problem(file, 1, "", "empty: expected one or more YAML documents")])
    return docs
