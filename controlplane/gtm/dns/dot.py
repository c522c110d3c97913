"""DNS over TLS (RFC 7858): ``ubiq serve --dns-tls HOST:PORT --dns-tls-cert PEM --dns-tls-key PEM``.

The TLS listener speaks DNS over TCP inside TLS (two-byte length framing) and is served by the
same TCP protocol as plain DNS over TCP: one answer path, and the same limits (idle and
whole-message timeouts, connections in total and per source, which the two transports share).
A handshake must finish within ``HANDSHAKE_TIMEOUT``; until then the connection is not counted.

The certificate and key are re-read when either file changes (checked, with one ``stat`` each,
at the start of every handshake): new connections get the new pair, established ones keep their
session, and a pair that does not load is logged (``dns.tls.reload_failed``) while the last good
one keeps serving.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from controlplane.errors import UbiqError
from controlplane.pki.files import file_pair
from controlplane.pki.stamps import file_stamps

log = structlog.get_logger("ubiq.dns.tls")

HANDSHAKE_TIMEOUT = 5.0  # seconds for a TLS handshake to finish
DEFAULT_PORT = 853  # RFC 7858


@dataclass(frozen=True, slots=True)
class DotSettings:
    listen: tuple[tuple[str, int], ...]
    cert: Path
    key: Path


def add_dot_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("DNS over TLS (RFC 7858; see docs/gtm.md)")
    g.add_argument(
        "--dns-tls",
        action="append",
        metavar="HOST:PORT",
        help="also answer DNS over TLS here, repeatable (default: off); needs --dns-tls-cert and"
        " --dns-tls-key. Same answers and TCP limits as --dns",
    )
    g.add_argument(
        "--dns-tls-cert",
        type=Path,
        metavar="PEM",
        help="certificate (chain) of the DNS over TLS listener; re-read when it changes",
    )
    g.add_argument("--dns-tls-key", type=Path, metavar="PEM", help="the --dns-tls-cert's key")


def dot_from_args(
    args: argparse.Namespace, parse_hostport: Callable[[str], tuple[str, int]]
) -> DotSettings | None:
    """The DoT settings, or None when no ``--dns-tls*`` option is given; checks the pair exists
    and loads."""
    given = {"--dns-tls": args.dns_tls, "--dns-tls-cert": args.dns_tls_cert}
    given["--dns-tls-key"] = args.dns_tls_key
    if not any(given.values()):
        return None
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        raise UbiqError(
            f"{', '.join(missing)}: required for DNS over TLS (with the other --dns-tls*)"
        )
    listen = tuple(parse_hostport(a) for a in args.dns_tls)
    file_pair(("--dns-tls-cert", args.dns_tls_cert), ("--dns-tls-key", args.dns_tls_key))
    settings = DotSettings(listen, args.dns_tls_cert, args.dns_tls_key)
    server_context(settings.cert, settings.key)  # a clear error now, not at the first client
    return settings


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context with this pair; UbiqError naming the file when it does not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise UbiqError(f"--dns-tls-cert/--dns-tls-key: {exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise UbiqError(
            f"--dns-tls-cert {cert} / --dns-tls-key {key}: cannot load: {exc.strerror or exc}"
        ) from None
    return context


class ReloadingContext:
    """The listener's SSLContext; each handshake switches to a fresh context when the files
    changed (``sni_callback`` runs before the server sends its certificate)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self._stamp = file_stamps(self.cert, self.key)
        self.current = server_context(cert, key)
        self.context = server_context(cert, key)  # the one asyncio holds: it only dispatches
        self.context.sni_callback = self._on_hello
        self.reloads = 0

    def _on_hello(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: object) -> None:
        stamp = file_stamps(self.cert, self.key)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.current = server_context(self.cert, self.key)
                self.reloads += 1
                log.info("dns.tls.reloaded", cert=str(self.cert))
            except UbiqError as exc:
                log.error("dns.tls.reload_failed", error=str(exc), detail="keeping the last pair")
        sock.context = self.current
