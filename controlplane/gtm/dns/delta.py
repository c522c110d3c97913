"""What changed between two answer tables, shipped to the DNS workers instead of the whole table.

An incremental build (``AnswerTable.build(previous=...)``) keeps every slot it did not rebuild
as the same object, so the slots that differ are found by identity, without comparing bytes. A
delta carries the changed and removed slots and the (few) NXDOMAIN entries; a worker applies it
to the table it holds, which must be the one the delta was taken from (``base``). When the two
tables differ in anything else (client groups, transfers, sizes), or every answer is new (a full
build), there is no delta: the whole table is shipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.gtm.dns.encode import WireAnswer
from controlplane.gtm.dns.table import AnswerTable, Slot


@dataclass(frozen=True, slots=True)
class TableDelta:
    base: int  # the generation of the table it applies to
    generation: int
    exact: dict[tuple[bytes, int], Slot]  # changed or new
    names: dict[bytes, Slot]
    removed_exact: tuple[tuple[bytes, int], ...]
    removed_names: tuple[bytes, ...]
    zones: dict[bytes, WireAnswer]  # NXDOMAIN per zone: always all of them (one per zone)

    @property
    def size(self) -> int:
        """Answers carried (a per-group slot counts each group)."""
        return _entries(self.exact.values()) + _entries(self.names.values())


def table_delta(old: AnswerTable, new: AnswerTable) -> TableDelta | None:
    """``new`` as changes to ``old``; None when only the whole table can say it."""
    if (
        new.groups is not old.groups
        or new.allow_transfer is not old.allow_transfer
        or bool(new.transfers or old.transfers)  # zone transfers: full builds only
        or new.udp_size != old.udp_size
        or new.generation == old.generation
    ):
        return None
    exact = {k: s for k, s in new.exact.items() if old.exact.get(k) is not s}
    names = {k: s for k, s in new.names.items() if old.names.get(k) is not s}
    delta = TableDelta(
        base=old.generation,
        generation=new.generation,
        exact=exact,
        names=names,
        removed_exact=tuple(k for k in old.exact if k not in new.exact),
        removed_names=tuple(k for k in old.names if k not in new.names),
        zones=new.zones,
    )
    if delta.size >= new.size:  # every answer is new (a full build): that is the table
        return None
    return delta


def _entries(slots: Iterable[Slot]) -> int:
    return sum(1 if isinstance(s, WireAnswer) else len(s) for s in slots)


def apply_delta(table: AnswerTable, delta: TableDelta) -> AnswerTable:
    """The table ``delta`` was taken to; ValueError when ``table`` is not its base."""
    if table.generation != delta.base:
        raise ValueError(
            f"table delta for generation {delta.base} applied to generation {table.generation}"
        )
    exact = {**table.exact, **delta.exact}
    for key in delta.removed_exact:
        del exact[key]
    names = {**table.names, **delta.names}
    for name in delta.removed_names:
        del names[name]
    new = AnswerTable(
        generation=delta.generation,
        groups=table.groups,
        exact=exact,
        names=names,
        zones=delta.zones,
        transfers=table.transfers,
        allow_transfer=table.allow_transfer,
        udp_size=table.udp_size,
    )
    new.ecs_memo.update(table.ecs_memo)  # the ECS views follow the groups and the size only
    return new
