"""The ``ubiq`` command: one module per command group, the parser and error handling in main."""

from controlplane.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
