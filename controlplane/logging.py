"""Structured logs: key=value on a terminal, JSON lines otherwise (or when asked).

structlog and the standard library share one handler (structlog's ProcessorFormatter), so a
line from a library (uvicorn, watchfiles, grpc's Python side) is rendered like Ubiq's own: in
JSON mode every line on stderr is one JSON object.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

Format = Literal["auto", "console", "json"]

#: Libraries whose INFO lines are per-request chatter; they log at WARNING and above only.
QUIET_LIBRARIES = ("httpx", "httpcore", "uvicorn.access", "watchfiles.main")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (as structlog's logger below does)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def _stderr_logger(*_: object) -> structlog.WriteLogger:
    """One ``write`` per line (``print`` makes two): DNS worker processes share this stderr,
    and a line written in one piece is not split by another process's line."""
    return structlog.WriteLogger(sys.stderr)


#: the longest string value a log line carries; the rest is cut (a node id is the client's choice)
MAX_VALUE_CHARS = 2048


def escape_untrusted(
    _logger: object, _name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Console lines carry plain values as they are, so a value from a client (an xDS node id, a
    DNS name) with a newline, a carriage return or an ANSI escape could forge a log line or
    rewrite the operator's terminal. A value with any character that is not printable (controls,
    format characters such as bidi overrides, line separators) is shown as its Python repr, in
    which they are escapes (``'a\\nb\\x1b'``), the event name too; a value is cut at
    MAX_VALUE_CHARS. A traceback (or a stack) stays readable on several lines, but every one of
    them starts with CONTINUATION and has its controls escaped, so no line of it (an exception
    message may quote a client) can pass for an event of its own: those start with a timestamp."""
    for key, value in event.items():
        if isinstance(value, str):
            if key in MULTILINE_KEYS:
                event[key] = _continued(value)
            else:
                event[key] = _shown(_cut(value))
    return event


#: what every line of a traceback starts with in the console format
CONTINUATION = "  | "
#: the values the console renderer writes on lines of their own, after the event's line
MULTILINE_KEYS = ("exception", "stack")


def _continued(text: str) -> str:
    lines = text.rstrip("\n").split("\n")
    return "\n".join(CONTINUATION + _escape(_cut(line)) for line in lines)


class _Repr(str):
    """A value already in repr form: the console renderer quotes a str by calling repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _shown(text: str) -> str:
    return text if text.isprintable() else _Repr(repr(text))


def cut_long_values(
    _logger: object, _name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """JSON escapes every control character itself; only the length needs a bound."""
    for key, value in event.items():
        if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            event[key] = _cut(value)
    return event


def _cut(text: str) -> str:
    if len(text) > MAX_VALUE_CHARS:
        return f"{text[:MAX_VALUE_CHARS]}…({len(text)} chars)"
    return text


def _escape(text: str) -> str:
    return text if text.isprintable() else repr(text)[1:-1]


#: (level, format) of the last ``configure_logging``: child processes (DNS workers) log alike
configured: tuple[str, Format] | None = None


def configure_logging(level: str = "info", fmt: Format = "auto") -> None:
    global configured
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    configured = (level, fmt)
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    safe_values = escape_untrusted if fmt == "console" else cut_long_values
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                safe_values,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, safe_values, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
