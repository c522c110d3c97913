"""The fast policy reader gives what the reader before it gave, for any input: the same documents
and line maps, the same Model (documents, hash, sources, warnings) and the same errors (file,
line, field, message). The reference is the earlier reader, kept verbatim in
tests/support/policy_reference_yaml.py; inputs are generated valid documents, the same with one
field replaced by nonsense, and YAML text with anchors, tags, merges, duplicate keys and
stray syntax spliced in."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controlplane.errors import PolicyError
from controlplane.policy import loader
from controlplane.policy.common import _address
from controlplane.policy.yamlsource import parse_documents
from tests.support import policy_reference_yaml as reference
from tests.support.fuzz import fuzz_settings

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"
FILES = {p.name: p.read_text() for p in sorted(EXAMPLE.glob("*.yaml"))}
DOCS = {name: list(yaml.safe_load_all(text)) for name, text in FILES.items()}
SAME = fuzz_settings(60)

Reader = Callable[[str, str], list[Any]]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "yes",
            "Off",
            "~",
            "NULL",
            "0x1f",
            "0o17",
            "010",
            "1_000",
            "1:20",
            "1e3",
            ".inf",
            "-.Inf",
            ".NaN",
            "2001-12-14",
            "2001-13-45",
            "=",
            "<<",
            "10.0.0.1",
            "010.0.0.1",
            "::1",
            "eu-west",
            "svc-0.mesh.example",
            "8080",
            "+8080",
            "-0",
            "1" * 30,
        ]
    ),
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
SPLICES = [
    "&a ",
    "*a",
    "*b ",
    "!!str ",
    "!!int ",
    "!!map ",
    "!!binary ",
    "!custom ",
    "<<: *a\n",
    "<<: {x: 1}\n",
    "\t",
    "- ",
    ": ",
    "{",
    "}",
    "]",
    "'",
    '"',
    "\n---\n",
    "\n...\n",
    "# c\n",
    "? ",
    "|\n  x\n",
    "%YAML 1.1\n",
    "\x85",
    "\ufeff",
]


def replace_at(doc: Any, path: list[int], value: Any) -> Any:
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    step, rest = path[0], path[1:]
    if isinstance(doc, dict):
        key = list(doc)[step % len(doc)]
        return {**doc, key: replace_at(doc[key], rest, value)}
    i = step % len(doc)
    return [*doc[:i], replace_at(doc[i], rest, value), *doc[i + 1 :]]


def dump(docs: list[Any], flow: bool | None) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, default_flow_style=flow)


def raws_of(reader: Reader, text: str) -> Any:
    """Everything a reader gives for ``text``: each document with its line map, or its error."""
    try:
        return [
            (r.file, r.index, r.line, repr(r.data), dict(r.lines)) for r in reader(text, "f.yaml")
        ]
    except PolicyError as exc:
        return ("PolicyError", exc.problems)
    except Exception as exc:  # a crash must be the same crash
        return (type(exc).__name__, str(exc))


@contextmanager
def reading_with(reader: Reader) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, "parse_documents", reader)
        yield


def load_with(reader: Reader, files: dict[str, str]) -> Any:
    with reading_with(reader):
        try:
            model = loader.load_texts(files.items())
        except PolicyError as exc:
            return ("PolicyError", exc.problems)
        except Exception as exc:
            return (type(exc).__name__, str(exc))
    return (model, dict(model.sources), model.warnings, dict(model.document_hashes))


def same(files: dict[str, str]) -> None:
    for text in files.values():
        assert raws_of(parse_documents, text) == raws_of(reference.parse_documents, text)
    assert load_with(parse_documents, files) == load_with(reference.parse_documents, files)


def test_the_example_set_is_the_same() -> None:
    same(FILES)
    ok = load_with(parse_documents, FILES)
    assert not isinstance(ok[0], str), ok


@SAME
@given(
    st.sampled_from(sorted(DOCS)),
    st.integers(0, 50),
    st.lists(st.integers(0, 50), min_size=1, max_size=6),
    values,
    st.sampled_from([None, True, False]),
)
def test_a_valid_set_with_one_field_replaced(
    name: str, doc: int, path: list[int], value: Any, flow: bool | None
) -> None:
    docs = DOCS[name]
    i = doc % len(docs)
    mutated = [*docs[:i], replace_at(docs[i], path, value), *docs[i + 1 :]]
    same({**FILES, name: dump(mutated, flow)})


@SAME
@given(
    st.sampled_from(sorted(FILES)),
    st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(SPLICES)), min_size=1, max_size=3),
)
def test_yaml_features_and_stray_syntax_spliced_in(
    name: str, splices: list[tuple[int, str]]
) -> None:
    text = FILES[name]
    for at, piece in splices:
        at %= len(text) + 1
        text = text[:at] + piece + text[at:]
    same({**FILES, name: text})


@SAME
@given(values, values, st.sampled_from([None, True, False]))
def test_random_documents(metadata: Any, spec: Any, flow: bool | None) -> None:
    doc = {"apiVersion": "ubiq.io/v1alpha1", "kind": "Service", "metadata": metadata, "spec": spec}
    same({"f.yaml": dump([doc, spec], flow)})


@SAME
@given(st.text(alphabet=" \n\t-:[]{}&*!|>'\"#%@`,?<ab01.", max_size=200))
def test_random_yaml_text(text: str) -> None:
    same({"f.yaml": text})


PLAIN = st.sampled_from(
    [
        *("010", "0x1f", "0o17", "0b101", "1_000", "+5", "-0", "00", "1:20", "190:20:30"),
        *("8080", "123456789012345678", "1234567890123456789", "1e3", "1.5", ".inf", "yes", "~"),
    ]
)


@SAME
@given(st.lists(PLAIN, min_size=1, max_size=8), st.booleans())
def test_plain_scalars_are_typed_the_same(tokens: list[str], flow: bool) -> None:
    if flow:
        text = "{" + ", ".join(f"k{i}: {t}" for i, t in enumerate(tokens)) + "}\n"
    else:
        text = "".join(f"- {t}\n" for t in tokens)
    assert raws_of(parse_documents, text) == raws_of(reference.parse_documents, text)


def test_anchors_merges_and_duplicates_give_the_same_lines_and_errors() -> None:
    for text in (
        "a: 1\nb: 2\na: 3\na: 4\n",
        "a: 010\nb: 0x1f\nc: 1_000\nd: +5\ne: -0\nf: 1:20\ng: 00\n",
        "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n",
        "a: 1\nb:\n  c: 2\n  c: 3\n",
        "a: 1\n<<: {a: 2}\na: 3\n",
        "a: !!int x\n",
        "a: !!timestamp 2001-13-45\n",
        "a: *missing\n",
        "? [a]\n: 1\n",
        "1: one\n1.5: x\ntrue: y\n",
        "---\n---\na: 1\n---\n~\n",
        "a: " + "1" * 5000 + "\n",
    ):
        assert raws_of(parse_documents, text) == raws_of(reference.parse_documents, text)


@given(
    st.lists(
        st.sampled_from(["0", "00", "01", "9", "10", "99", "100", "199", "255", "256", "-1", ""]),
        min_size=1,
        max_size=5,
    ).map(".".join)
    | st.text(alphabet="0123456789.:abcdef/", max_size=20)
)
def test_an_address_is_what_ipaddress_makes_of_it(value: str) -> None:
    try:
        want: str | None = str(ipaddress.ip_address(value))
    except ValueError:
        want = None
    try:
        got: str | None = _address(value)
    except ValueError:
        got = None
    assert got == want
