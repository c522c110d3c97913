"""Ubiq's one exception tree.

::

    UbiqError
    ├── PolicyError                  a policy set cannot be loaded; carries every Problem found
    ├── ListenError                  a server cannot listen on its address (exit code 3)
    ├── UnreachableError             a Ubiq server the CLI asks does not answer (exit code 4)
    ├── SourceError                  a policy source (directory, store) cannot be read at all
    ├── XdsError
    │   ├── InconsistentSnapshotError    a snapshot's cross-references do not hold; never published
    │   └── XdsRequestError              an xDS request that cannot be served (carries a gRPC status)
    └── GtmError
        └── DnsFormatError               a DNS query we cannot parse (answered FORMERR)

Errors from yaml, grpc, http and dns libraries are wrapped where they enter (``raise ... from exc``).
"""

from __future__ import annotations

from dataclasses import dataclass


class UbiqError(Exception):
    """Base of every error Ubiq raises on purpose."""

    exit_code = 1  # what `ubiq` exits with (docs/cli.md, "Exit codes")


class ListenError(UbiqError):
    exit_code = 3


class UnreachableError(UbiqError):
    exit_code = 4


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a policy set, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class PolicyError(UbiqError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SourceError(UbiqError):
    pass


class XdsError(UbiqError):
    pass


class InconsistentSnapshotError(XdsError):
    pass


class XdsRequestError(XdsError):
    pass


class GtmError(UbiqError):
    pass


class DnsFormatError(GtmError):
    pass
