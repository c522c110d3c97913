"""Safe YAML reading: text -> plain documents that remember where each field was written.

Everything a policy file can do wrong at the YAML level is caught here with a file:line message:
non-UTF-8 bytes, oversized files, syntax errors, duplicate keys, unsupported tags, and alias
"bombs" (anchors whose expansion would explode). Aliases are expanded under a node budget, a
byte budget (every scalar and key counted each time an alias re-uses it: one long string
referenced 40,000 times is a few hundred nodes but gigabytes once the model copies it) and a
depth limit, so neither exponential expansion nor a recursive anchor can hang or exhaust memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controlplane.errors import PolicyError, Problem
from controlplane.policy.filecheck import MAX_FILE_BYTES, too_large

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
_INT_TAG = "tag:yaml.org,2002:int"
#: an int PyYAML's constructor reads as plain ``int()`` does (no '_', base prefix or sexagesimal)
_SHORT_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,17})")


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


class _Loader(_LOADER):  # type: ignore[misc,valid-type]
    """The C composer asks ``resolve`` for the tag of every node, and ``descend_resolver`` /
    ``ascend_resolver`` around it; PyYAML's Python versions of these were a third of the parse
    time. Same answers (the implicit resolvers of the safe loader, indexed by first character
    once; no path resolvers), less Python per node."""

    def resolve(self, kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                assert value is not None
                for tag, regexp in _IMPLICIT.get(value[:1], ()):
                    if regexp.match(value):
                        return tag
            return _STR_TAG
        return _SEQ_TAG if kind is SequenceNode else _MAP_TAG

    def descend_resolver(self, current_node: Node | None, current_index: object) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None


def _implicit_table() -> dict[str, tuple[tuple[str, re.Pattern[str]], ...]]:
    table: dict[str | None, list[tuple[str, re.Pattern[str]]]] = _LOADER.yaml_implicit_resolvers
    assert not _LOADER.yaml_path_resolvers, "path resolvers would need PyYAML's own resolve()"
    wildcard = table.get(None, [])
    return {first: tuple(found + wildcard) for first, found in table.items() if first is not None}


_IMPLICIT = _implicit_table()


class _Converter:
    """Nodes -> plain data under the node, byte and depth budgets. With ``lines`` (a dict), it
    also records the line of every field path: that is only needed to locate a problem, so the
    loader converts without it and ``_LazyLines`` converts again, with it, on first use."""

    def __init__(self, lines: dict[Path, int] | None = None) -> None:
        self.budget = MAX_NODES
        self.bytes_left = MAX_EXPANDED_BYTES
        self.lines = lines
        self.scalars = SafeConstructor()

    def convert(self, node: Node, path: Path, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _YamlShapeError(
                _line(node), f"document expands to more than {MAX_NODES} nodes (alias bomb?)"
            )
        if depth > MAX_DEPTH:
            raise _YamlShapeError(
                _line(node), f"nested deeper than {MAX_DEPTH} levels (recursive alias?)"
            )
        if self.lines is not None:
            self.lines.setdefault(path, _line(node))
        cls = type(node)
        if cls is ScalarNode:
            value = node.value
            self.bytes_left -= len(value)
            if self.bytes_left < 0:
                raise _too_many_bytes(_line(node))
            if node.tag == _STR_TAG:  # the common case, without the constructor's bookkeeping
                return value
            return self._scalar(node)
        if cls is SequenceNode:
            if node.tag != _SEQ_TAG:
                raise _YamlShapeError(_line(node), f"unsupported tag {node.tag!r}")
            if self.lines is None:
                return [self._child(item, path, depth + 1) for item in node.value]
            return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if cls is MappingNode:
            if node.tag != _MAP_TAG:
                raise _YamlShapeError(_line(node), f"unsupported tag {node.tag!r}")
            return self._mapping(node, path, depth)
        raise _YamlShapeError(_line(node), f"unexpected YAML node {type(node).__name__}")

    def _child(self, node: Node, path: Path, depth: int) -> Any:
        """``convert`` without line recording; a string or a short decimal number (most values)
        is taken here, where ``convert``'s checks cannot fail, saving a call per value."""
        if type(node) is ScalarNode and self.budget > 0 and depth <= MAX_DEPTH:
            value = node.value
            tag = node.tag
            if tag == _STR_TAG or (tag == _INT_TAG and _SHORT_DECIMAL.fullmatch(value)):
                self.budget -= 1
                self.bytes_left -= len(value)
                if self.bytes_left < 0:
                    raise _too_many_bytes(_line(node))
                return value if tag == _STR_TAG else int(value)
        return self.convert(node, path, depth)

    def _scalar(self, node: Node) -> Any:
        try:
            return self.scalars.construct_object(node)
        except ConstructorError as exc:
            raise _YamlShapeError(_line(node), f"unsupported value tag {node.tag!r}") from exc
        except (ValueError, OverflowError) as exc:  # 5000 digits, a 13th month
            shown = node.value if len(node.value) <= 40 else f"{node.value[:40]}…"
            raise _YamlShapeError(
                _line(node), f"{shown!r} ({len(node.value)} chars) is no valid {node.tag[18:]}"
            ) from exc

    def _mapping(self, node: Node, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[Node] = []
        lines = self.lines
        for key_node, value_node in node.value:
            tag = key_node.tag
            if tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if type(key_node) is not ScalarNode:
                raise _YamlShapeError(_line(key_node), "mapping keys must be plain strings")
            if tag != _STR_TAG:
                raw_key = self.scalars.construct_object(key_node)
                if not isinstance(raw_key, int | float | bool) or raw_key is None:
                    raise _YamlShapeError(
                        _line(key_node), f"mapping key {key_node.value!r} is not a string"
                    )
            key = str(key_node.value)
            self.bytes_left -= len(key)
            if self.bytes_left < 0:
                raise _too_many_bytes(_line(key_node))
            if key in out:
                raise _duplicate(node, key_node, key)
            if lines is None:
                out[key] = self._child(value_node, path, depth + 1)
            else:
                below = (*path, key)
                lines.setdefault(below, _line(key_node))
                out[key] = self.convert(value_node, below, depth + 1)
        for merge in merges:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise _YamlShapeError(_line(source), "'<<' merges mappings only")
                merged = self._mapping(source, path, depth + 1)
                for key, value in merged.items():
                    out.setdefault(key, value)
        return out


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _too_many_bytes(line: int) -> _YamlShapeError:
    return _YamlShapeError(
        line,
        f"document expands to more than {MAX_EXPANDED_BYTES} bytes of text"
        " (alias bomb? an anchor re-used many times counts each time)",
    )


def _duplicate(node: Node, key_node: Node, key: str) -> _YamlShapeError:
    first = next(
        k
        for k, _ in node.value
        if k.tag != _MERGE_TAG and str(k.value) == key and k is not key_node
    )
    return _YamlShapeError(_line(key_node), f"duplicate key {key!r} (first at line {_line(first)})")


class _LazyLines(Mapping[Path, int]):
    """The line map of one document, made on first use by parsing its file again with line
    recording (the file parsed once already, so this cannot fail)."""

    __slots__ = ("_file", "_index", "_lines")

    def __init__(self, file: _FileLines, index: int) -> None:
        self._file = file
        self._index = index
        self._lines: Mapping[Path, int] | None = None

    def _get(self) -> Mapping[Path, int]:
        if self._lines is None:
            self._lines = self._file.lines(self._index)
        return self._lines

    def __getitem__(self, path: Path) -> int:
        return self._get()[path]

    def __iter__(self) -> Iterator[Path]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


class _FileLines:
    __slots__ = ("_by_index", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._by_index: dict[int, dict[Path, int]] | None = None

    def lines(self, index: int) -> Mapping[Path, int]:
        if self._by_index is None:
            self._by_index = {}
            for at, node in enumerate(yaml.compose_all(self._text, Loader=_Loader)):
                if node is not None:
                    lines: dict[Path, int] = {}
                    _Converter(lines).convert(node, (), 0)
                    self._by_index[at] = lines
        return self._by_index[index]


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
    located = _FileLines(text)
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=_Loader)):
            if node is None:
                continue
            data = _Converter().convert(node, (), 0)
            if data is None:
                continue
            docs.append(RawDocument(file, index, _line(node), data, _LazyLines(located, index)))
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
