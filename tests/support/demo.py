"""Reading what ``ubiq demo`` prints: its closing "where to look" block."""

from __future__ import annotations

from controlplane.demo.summary import HEADER

PLACES = ("API", "API token", "Prometheus", "Dashboards")


def where_to_look(text: str) -> dict[str, str]:
    """The first word of each place's line after the header (a URL, the token, a directory),
    by place name; fails when the block or a place is missing."""
    lines = text[text.index(HEADER) :].splitlines()[1:]
    found: dict[str, str] = {}
    for line in lines:
        # longest name first: "API token" is not "API"
        name = next((n for n in sorted(PLACES, key=len, reverse=True) if line.startswith(n)), None)
        if name is None:
            break
        found[name] = line[len(name) :].split()[0]
    assert set(found) == set(PLACES), lines[:6]
    return found
