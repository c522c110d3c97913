"""``ubiq serve``'s response-rate limiting flags, turned into an ``RrlConfig``."""

from __future__ import annotations

import argparse

from controlplane.gtm.dns.rrl import RrlConfig

_D = RrlConfig()

#: (RrlConfig field, type, metavar, help ending in its default); the flag is --dns-rrl-FIELD
_FLAGS: tuple[tuple[str, type, str, str], ...] = (
    ("rate", int, "N", "answers per second per client prefix over UDP; 0 turns RRL off"),
    ("nxdomain_rate", int, "N", "NXDOMAIN responses per second per client prefix"),
    ("error_rate", int, "N", "REFUSED/FORMERR/other error responses per second per client prefix"),
    (
        "window",
        float,
        "SECONDS",
        "the rate is averaged over this long: the most debt a flooder carries",
    ),
    (
        "slip",
        int,
        "N",
        "every Nth limited response goes out truncated (TC=1) so real clients retry over TCP,"
        " the others are dropped; 0 drops all, 1 truncates all",
    ),
    ("ipv4_prefix", int, "BITS", "IPv4 clients are counted per /BITS"),
    ("ipv6_prefix", int, "BITS", "IPv6 clients are counted per /BITS"),
    (
        "table_size",
        int,
        "N",
        "accounts (prefix x response kind) in the one table every DNS worker shares, 24 bytes"
        " each, allocated at start; a new account replaces the least indebted of its set",
    ),
)


def add_rrl_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("DNS response-rate limiting (UDP; see docs/security.md)")
    for field, kind, metavar, text in _FLAGS:
        default = getattr(_D, field)
        g.add_argument(
            f"--dns-rrl-{field.replace('_', '-')}",
            type=kind,
            default=default,
            metavar=metavar,
            help=f"{text} (default {default:g})",
        )
    g.add_argument(
        "--dns-rrl-exempt",
        action="append",
        metavar="CIDR",
        help="networks never limited, repeatable; 'none' for no exemption (default"
        f" {' '.join(_D.exempt)}: loopback, which cannot be forged from outside)",
    )


def rrl_config_from_args(args: argparse.Namespace) -> RrlConfig:
    exempt = _D.exempt if args.dns_rrl_exempt is None else tuple(args.dns_rrl_exempt)
    if exempt == ("none",):
        exempt = ()
    given = {field: getattr(args, f"dns_rrl_{field}") for field, *_ in _FLAGS}
    return RrlConfig(**given, exempt=exempt)
