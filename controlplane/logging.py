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
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
