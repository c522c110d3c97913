"""What changed between two policy models, from their per-document content hashes.

Pure and cheap: after a reload every document is a new (equal) object, so identity says nothing;
the hashes the model already computed at build time say exactly which documents differ.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import compress

from controlplane.policy.model import Model

#: (kind, name), e.g. ("Service", "checkout")
DocumentKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ModelDiff:
    added: frozenset[DocumentKey] = frozenset()
    changed: frozenset[DocumentKey] = frozenset()
    removed: frozenset[DocumentKey] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def __iter__(self) -> Iterator[DocumentKey]:
        """Every document that differs, whichever way."""
        yield from self.added
        yield from self.changed
        yield from self.removed

    def kinds(self) -> frozenset[str]:
        return frozenset(kind for kind, _ in self)

    def names(self, kind: str) -> frozenset[str]:
        """Names of ``kind`` added, changed or removed."""
        return frozenset(name for k, name in self if k == kind)

    def summary(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "removed": len(self.removed),
        }


EMPTY = ModelDiff()


def diff(old: Model, new: Model) -> ModelDiff:
    """The documents added, changed and removed from ``old`` to ``new``."""
    if old is new or old.hash == new.hash:
        return EMPTY
    before, after = old.document_hashes, new.document_hashes
    if len(before) == len(after) and list(before) == list(after):
        # the common case, edits in place: both maps are in canonical order, compare in C
        flags = map(operator.ne, before.values(), after.values())
        return ModelDiff(changed=frozenset(compress(after, flags)))
    added: list[DocumentKey] = []
    changed: list[DocumentKey] = []
    for key, digest in after.items():
        was = before.get(key)
        if was is None:
            added.append(key)
        elif was != digest:
            changed.append(key)
    removed = before.keys() - after.keys() if len(before) + len(added) != len(after) else set()
    return ModelDiff(frozenset(added), frozenset(changed), frozenset(removed))
