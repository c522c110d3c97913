"""Ubiq's one exception tree.

::

    UbiqError
    ├── PolicyError                  a policy set cannot be loaded; carries every Problem found
    ├── ListenError                  a server cannot listen on its address (exit code 3)
    ├── UnreachableError             a Ubiq server the CLI asks does not answer (exit code 4)
    ├── SourceError                  a policy source (directory, store) cannot be read at all
    ├── XdsError
    │   ├── InconsistentSnapshotError    a snapshot's cross-references do not hold; never published
    │   │   └── SnapshotTooLargeError    a snapshot is over its resource or byte limit; never published
    │   └── XdsRequestError              an xDS request that cannot be served (carries a gRPC status)
    └── GtmError
        └── DnsFormatError               a DNS query we cannot parse (answered FORMERR)

Errors from yaml, grpc, http and dns libraries are wrapped where they enter (``raise ... from exc``).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE_CHARS = 300  # a Problem never carries more of what it read than this
EXCERPT_CHARS = 40


def quoted(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)``, cut to a short excerpt: errors show where input went wrong, never echo
    what was read (a policy path may point at a secret)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} chars)" if isinstance(value, str) else ""
    return f"{text[:limit]}…{size}"


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

    def __post_init__(self) -> None:
        if len(self.message) > MAX_MESSAGE_CHARS:
            cut = f"{self.message[:MAX_MESSAGE_CHARS]}… (message cut)"
            object.__setattr__(self, "message", cut)

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


class SnapshotTooLargeError(InconsistentSnapshotError):
    """A proxy group's snapshot is over a limit (resources or bytes of one type); never published."""


class XdsRequestError(XdsError):
    """``status`` is the gRPC status code name the stream ends with."""

    def __init__(self, message: str, *, status: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.status = status


class GtmError(UbiqError):
    pass


class DnsFormatError(GtmError):
    pass
