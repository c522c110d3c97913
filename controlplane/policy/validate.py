"""One raw YAML document -> one typed policy document, or Problems that name file, line and field."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from controlplane.errors import Problem, quoted
from controlplane.policy.common import SEVERAL_PROBLEMS
from controlplane.policy.documents import API_VERSION, KINDS, AnyDocument
from controlplane.policy.yamlsource import Path, RawDocument

#: fields that were renamed: the old name is an error that names the new one
RENAMED = {
    "failoverPriority": "renamed to failoverRegions (an ordered list of regions); Istio's"
    " failoverPriority is a list of label keys, which Ubiq does not use",
}


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_document(raw: RawDocument) -> AnyDocument | list[Problem]:
    def problem(path: Path, message: str) -> Problem:
        return Problem(raw.file, raw.line_of(path), format_path(path), message)

    data = raw.data
    if not isinstance(data, dict):
        return [
            problem(
                (),
                f"expected a mapping with apiVersion, kind, metadata, spec; got {_kind_of(data)}",
            )
        ]
    problems = []
    api_version = data.get("apiVersion")
    if api_version != API_VERSION:
        problems.append(
            problem(("apiVersion",), f"expected {API_VERSION!r}, got {quoted(api_version)}")
        )
    kind = data.get("kind")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        hint = _did_you_mean(str(kind), KINDS) if isinstance(kind, str) else ""
        problems.append(
            problem(("kind",), f"expected one of {', '.join(KINDS)}, got {quoted(kind)}{hint}")
        )
    if problems:
        return problems
    assert cls is not None
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A list whose items failed is also reported as too short; keep the errors inside it.
        inner = {tuple(e["loc"][:i]) for e in errors for i in range(len(e["loc"]))}
        out = []
        for err in errors:
            loc = tuple(err["loc"])
            if err["type"] == SEVERAL_PROBLEMS:
                for below, message in (err.get("ctx") or {})["problems"]:
                    out.append(problem((*loc, *below), message))
            elif not (err["type"] == "too_short" and loc in inner):
                out.append(problem(loc, _message(cls, err)))
        return out


def _message(root: type[BaseModel], err: ErrorDetails) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        if key in RENAMED:
            return RENAMED[key]
        allowed = _fields_at(root, tuple(err["loc"][:-1]))
        return f"unknown field {quoted(key)}{_did_you_mean(key, allowed)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {quoted(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {quoted(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {quoted(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {quoted(value)}"
    if kind == "string_type":
        return f"expected a string, got {_kind_of(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {_kind_of(value)}"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, got {_kind_of(value)}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"expected at most {ctx.get('max_length')} item(s)"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{err['msg'].lower().replace('input should be', 'must be')}, got {quoted(value)}"
    return f"{err['msg']}, got {quoted(value)}"


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {quoted(value)}"


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(root: type[BaseModel], path: Path) -> list[str]:
    """The YAML keys accepted at ``path`` below ``root``, by walking the models' annotations."""
    target: Any = root
    for part in path:
        target = _step(target, part)
        if target is None:
            return []
    model = _model_in(target)
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _step(annotation: Any, part: str | int) -> Any:
    model = _model_in(annotation)
    if model is not None:
        for name, field in model.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    return _item(annotation)


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _item(annotation: Any) -> Any:
    annotation = _unwrap(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (tuple, list) and args:
        return args[0]
    if origin is dict and args:
        return args[1]
    return None
