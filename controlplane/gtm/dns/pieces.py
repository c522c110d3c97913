"""A table (or a delta) in pieces, so that a DNS worker never holds its GIL for one long unpickle.

The whole table of 100 names x 200 client groups is ~3.5 MB pickled; unpickling it is one C
call that holds the worker's GIL for ~40 ms (more on a loaded machine), during which it answers
nothing. Shipped in pieces instead (a header, then the slots of a few names per piece, about
``PIECE_ANSWERS`` answers each), the worker unpickles one piece at a time between answers and
swaps the new table in only once every piece is in: until then it answers from the table it
holds (a double buffer).

Payload: a 4-byte big-endian piece count, then each piece as a 4-byte length and a pickle. The
first piece is the header: the table or delta itself with no slots. Each other piece is a pair
(exact slots, names slots) for whole owner names. Pure: ``Assembly`` only unpickles and merges;
the worker decides when to yield.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import replace

from controlplane.gtm.dns.delta import TableDelta, apply_delta
from controlplane.gtm.dns.encode import WireAnswer
from controlplane.gtm.dns.table import AnswerTable, Slot

PIECE_ANSWERS = 1000  # ~30-60 KB pickled, well under 1 ms to unpickle

_Exact = dict[tuple[bytes, int], Slot]
_Names = dict[bytes, Slot]


def to_pieces(item: AnswerTable | TableDelta, answers: int = PIECE_ANSWERS) -> bytes:
    """``item`` pickled in pieces of whole owner names, about ``answers`` answers each."""
    header = replace(item, exact={}, names={})
    by_owner: dict[bytes, tuple[_Exact, _Names]] = {}
    for key, slot in item.exact.items():
        by_owner.setdefault(key[0], ({}, {}))[0][key] = slot
    for owner, slot in item.names.items():
        by_owner.setdefault(owner, ({}, {}))[1][owner] = slot
    pieces = [pickle.dumps(header, pickle.HIGHEST_PROTOCOL)]
    exact: _Exact = {}
    names: _Names = {}
    count = 0
    for owner_exact, owner_names in by_owner.values():
        exact.update(owner_exact)
        names.update(owner_names)
        count += _answers(owner_exact.values()) + _answers(owner_names.values())
        if count >= answers:
            pieces.append(pickle.dumps((exact, names), pickle.HIGHEST_PROTOCOL))
            exact, names, count = {}, {}, 0
    if exact or names:
        pieces.append(pickle.dumps((exact, names), pickle.HIGHEST_PROTOCOL))
    out = [len(pieces).to_bytes(4)]
    for piece in pieces:
        out += (len(piece).to_bytes(4), piece)
    return b"".join(out)


def _answers(slots: Iterable[Slot]) -> int:
    return sum(1 if isinstance(s, WireAnswer) else len(s) for s in slots)


class Assembly:
    """Rebuilds what ``to_pieces`` shipped, one piece per ``step``.

    ``base`` is the table the worker holds: a delta applies to it (ValueError at the first step
    when it is not the delta's base); a whole table ignores it. Raises ValueError for a payload
    that is cut short or is neither a table nor a delta."""

    def __init__(self, payload: bytes, base: AnswerTable | None = None) -> None:
        self._view = memoryview(payload)
        if len(self._view) < 4:
            raise ValueError("table pieces: no piece count")
        self._left = int.from_bytes(self._view[:4])
        self._offset = 4
        self._base = base
        self._header: AnswerTable | TableDelta | None = None
        self._exact: _Exact = {}
        self._names: _Names = {}
        self._result: AnswerTable | None = None

    @property
    def done(self) -> bool:
        return self._result is not None

    def step(self) -> bool:
        """Take in the next piece; True once the table is complete (``result``)."""
        if self._result is not None:
            return True
        if self._left > 0:
            piece = self._next()
            if self._header is None:
                self._header = self._start(pickle.loads(piece))
            else:
                exact, names = pickle.loads(piece)
                self._exact.update(exact)
                self._names.update(names)
        if self._left == 0:
            self._result = self._finish()
            return True
        return False

    def result(self) -> AnswerTable:
        if self._result is None:
            raise ValueError("table pieces: not every piece is in yet")
        return self._result

    def run(self) -> AnswerTable:
        """Every remaining piece at once (a worker that is not answering yet)."""
        while not self.step():
            pass
        return self.result()

    def _next(self) -> memoryview:
        view, at = self._view, self._offset
        if at + 4 > len(view):
            raise ValueError("table pieces: cut short")
        length = int.from_bytes(view[at : at + 4])
        if at + 4 + length > len(view):
            raise ValueError("table pieces: cut short")
        self._offset = at + 4 + length
        self._left -= 1
        return view[at + 4 : self._offset]

    def _start(self, header: object) -> AnswerTable | TableDelta:
        if isinstance(header, TableDelta):
            base = self._base
            if base is None or base.generation != header.base:
                held = "none" if base is None else f"generation {base.generation}"
                raise ValueError(f"table delta for generation {header.base} applied to {held}")
            return header
        if isinstance(header, AnswerTable):
            return header
        raise ValueError(f"table pieces: a {type(header).__name__} is no table header")

    def _finish(self) -> AnswerTable:
        header = self._header
        if header is None:
            raise ValueError("table pieces: no header")
        if self._offset != len(self._view):
            raise ValueError("table pieces: bytes after the last piece")
        if isinstance(header, TableDelta):
            assert self._base is not None
            return apply_delta(self._base, replace(header, exact=self._exact, names=self._names))
        return replace(header, exact=self._exact, names=self._names)
