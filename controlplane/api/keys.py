"""One key style on the wire: camelCase. The runtime's records use snake_case field names;
``camelize`` converts keys at the API boundary, ``snakeize`` converts them back for code that
renders them (the CLI's text). Only keys that look like identifiers are touched: data keys
(service, region and group names, ``CDS``, type URLs) never contain ``_`` or start upper case."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")
_CAMEL = re.compile(r"^[a-z][a-z0-9]*([A-Z][a-z0-9]*)+$")


def camel_key(key: str) -> str:
    if not _SNAKE.match(key):
        return key
    first, *rest = key.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def snake_key(key: str) -> str:
    if not _CAMEL.match(key):
        return key
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def camelize(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {camel_key(str(k)): camelize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [camelize(v) for v in value]
    return value


def snakeize(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {snake_key(str(k)): snakeize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [snakeize(v) for v in value]
    return value
