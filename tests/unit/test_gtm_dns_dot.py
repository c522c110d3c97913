"""``ubiq serve --dns-tls*`` options: one-line errors for a missing half or a pair that does not
load, before anything listens."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from controlplane.errors import UbiqError
from controlplane.gtm.dns.dot import add_dot_arguments, dot_from_args
from controlplane.serve import parse_hostport
from tests.support.pki import TestPki


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_dot_arguments(parser)
    return parser.parse_args(argv)


def test_off_without_options() -> None:
    assert dot_from_args(parse(), parse_hostport) is None


def test_a_listener_needs_the_certificate_and_key() -> None:
    with pytest.raises(UbiqError, match=r"^--dns-tls-cert, --dns-tls-key: required"):
        dot_from_args(parse("--dns-tls", "127.0.0.1:853"), parse_hostport)


def test_a_pair_that_does_not_load_is_named(tmp_path: Path) -> None:
    pki = TestPki(tmp_path)
    server = pki.server()
    other = pki.server("other")
    argv = ("--dns-tls", "127.0.0.1:8853", "--dns-tls-cert", str(server.cert))
    with pytest.raises(UbiqError, match=r"cannot load") as bad:
        dot_from_args(parse(*argv, "--dns-tls-key", str(other.key)), parse_hostport)
    assert "\n" not in str(bad.value) and str(server.cert) in str(bad.value)
    with pytest.raises(UbiqError, match=r"no such file"):
        dot_from_args(parse(*argv, "--dns-tls-key", str(tmp_path / "nope.pem")), parse_hostport)
    good = dot_from_args(parse(*argv, "--dns-tls-key", str(server.key)), parse_hostport)
    assert good is not None and good.listen == (("127.0.0.1", 8853),)
