"""A typed document with the raw YAML it came from, to report a problem at its file and line."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.errors import Problem
from controlplane.policy.documents import AnyDocument
from controlplane.policy.validate import format_path
from controlplane.policy.yamlsource import Path, RawDocument


@dataclass(frozen=True, slots=True)
class Located:
    doc: AnyDocument
    raw: RawDocument

    def problem(self, path: Path, message: str) -> Problem:
        return Problem(self.raw.file, self.raw.line_of(path), format_path(path), message)

    def where(self) -> str:
        return f"{self.raw.file}:{self.raw.line_of(('metadata', 'name'))}"
