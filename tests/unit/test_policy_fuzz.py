"""The policy loader under generated documents: valid examples with fields replaced by nonsense
(wrong types, huge numbers, NaN, deep nesting, odd text), random envelopes, random YAML-ish text
and nesting far past the limit. It loads, or raises PolicyError with one-line located problems;
never another exception, never a hang (every input is bounded)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from controlplane.errors import PolicyError
from controlplane.policy.loader import load_texts
from controlplane.policy.yamlsource import MAX_DEPTH
from tests.support.fuzz import fuzz_settings

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-regions"
FILES = {p.name: p.read_text() for p in sorted(EXAMPLE.glob("*.yaml"))}
DOCS = {name: list(yaml.safe_load_all(text)) for name, text in FILES.items()}
KINDS = sorted({d["kind"] for docs in DOCS.values() for d in docs if d} | {"Nonsense", ""})
FUZZ = fuzz_settings(60)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "1s", "-1s", "99999999999h", "1e309", "0x10", "~", "null", "yes", "../x"]),
    st.text(alphabet="0123456789.:/-abcdef", max_size=60),
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)


def check(files: dict[str, str]) -> None:
    try:
        load_texts(files.items())
    except PolicyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file in files
            assert problem.message and "\n" not in problem.message
            assert len(problem.message) <= 320


def dump(docs: list[Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


def replace_at(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` with the node reached by walking ``path`` (indexes into keys/items) replaced."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    step, rest = path[0], path[1:]
    if isinstance(doc, dict):
        key = list(doc)[step % len(doc)]
        return {**doc, key: replace_at(doc[key], rest, value)}
    i = step % len(doc)
    return [*doc[:i], replace_at(doc[i], rest, value), *doc[i + 1 :]]


@FUZZ
@given(
    st.sampled_from(sorted(DOCS)),
    st.integers(0, 50),
    st.lists(st.integers(0, 50), min_size=1, max_size=6),
    values,
)
def test_a_valid_set_with_one_field_replaced(
    name: str, doc: int, path: list[int], value: Any
) -> None:
    docs = DOCS[name]
    i = doc % len(docs)
    mutated = [*docs[:i], replace_at(docs[i], path, value), *docs[i + 1 :]]
    check({**FILES, name: dump(mutated)})


@FUZZ
@given(st.sampled_from(KINDS), values, values, st.sampled_from(["ubiq.io/v1alpha1", "v1", ""]))
def test_random_envelopes(kind: str, metadata: Any, spec: Any, api: str) -> None:
    doc = {"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec}
    check({"f.yaml": dump([doc])})
    check({"f.yaml": dump([spec])})


@FUZZ
@given(st.text(alphabet=" \n\t-:[]{}&*!|>'\"#%@`,?abc0123456789", max_size=300))
def test_random_yaml_text(text: str) -> None:
    check({"f.yaml": text})


@FUZZ
@given(st.sampled_from(sorted(FILES)), st.integers(0, 4000), st.binary(min_size=1, max_size=8))
def test_bytes_spliced_into_a_valid_file(name: str, at: int, junk: bytes) -> None:
    raw = FILES[name].encode()
    at %= len(raw)
    files: dict[str, Any] = dict(FILES)
    files[name] = raw[:at] + junk + raw[at + len(junk) :]
    check(files)


def test_nesting_far_past_the_limit_is_a_clear_error() -> None:
    for depth in (MAX_DEPTH - 5, MAX_DEPTH + 1, 1_000, 100_000):
        for text in (
            "spec: " + "[" * depth + "]" * depth,
            "spec: " + "{a: " * depth + "1" + "}" * depth,
            "spec:\n" + "".join(" " * i + "- \n" for i in range(min(depth, 3_000))),
            "".join(" " * i + "k:\n" for i in range(min(depth, 3_000))),
        ):
            check({"deep.yaml": "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\n" + text})


def test_huge_and_odd_numbers_are_errors_not_crashes() -> None:
    for value in ("1" * 5000, "1e999999", ".nan", "-.inf", "0x" + "f" * 500, "0o777", "1_000"):
        for name, docs in DOCS.items():
            text = dump(docs).replace("weight: ", f"weight: {value} #", 1)
            text = text.replace("port: ", f"port: {value} #", 1)
            check({**FILES, name: text})
    assert math.isnan(float("nan"))
