"""``ubiq serve``'s response-rate limiting flags, turned into an ``RrlConfig``."""

from __future__ import annotations

import argparse

from controlplane.gtm.dns.rrl import RrlConfig

_D = RrlConfig()


def add_rrl_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("DNS response-rate limiting (UDP; see docs/security.md)")
    g.add_argument(
        "--dns-rrl-rate",
        type=int,
        default=_D.rate,
        metavar="N",
        help=f"answers per second per client prefix over UDP; 0 turns RRL off (default {_D.rate})",
    )
    g.add_argument(
        "--dns-rrl-nxdomain-rate",
        type=int,
        default=_D.nxdomain_rate,
        metavar="N",
        help=f"NXDOMAIN responses per second per client prefix (default {_D.nxdomain_rate})",
    )
    g.add_argument(
        "--dns-rrl-error-rate",
        type=int,
        default=_D.error_rate,
        metavar="N",
        help="REFUSED/FORMERR/other error responses per second per client prefix"
        f" (default {_D.error_rate})",
    )
    g.add_argument(
        "--dns-rrl-window",
        type=float,
        default=_D.window,
        metavar="SECONDS",
        help=f"the rate is averaged over this long: the most debt a flooder carries"
        f" (default {_D.window:g})",
    )
    g.add_argument(
        "--dns-rrl-slip",
        type=int,
        default=_D.slip,
        metavar="N",
        help=f"every Nth limited response goes out truncated (TC=1) so real clients retry over"
        f" TCP, the others are dropped; 0 drops all, 1 truncates all (default {_D.slip})",
    )
    g.add_argument(
        "--dns-rrl-ipv4-prefix",
        type=int,
        default=_D.ipv4_prefix,
        metavar="BITS",
        help=f"IPv4 clients are counted per /BITS (default {_D.ipv4_prefix})",
    )
    g.add_argument(
        "--dns-rrl-ipv6-prefix",
        type=int,
        default=_D.ipv6_prefix,
        metavar="BITS",
        help=f"IPv6 clients are counted per /BITS (default {_D.ipv6_prefix})",
    )
    g.add_argument(
        "--dns-rrl-table-size",
        type=int,
        default=_D.table_size,
        metavar="N",
        help=f"most accounts (prefix x response kind) held; the least recently used is evicted"
        f" (default {_D.table_size})",
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
    return RrlConfig(
        rate=args.dns_rrl_rate,
        nxdomain_rate=args.dns_rrl_nxdomain_rate,
        error_rate=args.dns_rrl_error_rate,
        window=args.dns_rrl_window,
        slip=args.dns_rrl_slip,
        ipv4_prefix=args.dns_rrl_ipv4_prefix,
        ipv6_prefix=args.dns_rrl_ipv6_prefix,
        table_size=args.dns_rrl_table_size,
        exempt=exempt,
    )
