"""Token files, scopes and the Host allow-list, pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.api.auth import (
    TokenError,
    check_allowed_host,
    default_allowed_hosts,
    load_tokens,
    normal_host,
    parse_token_file,
)
from controlplane.errors import UbiqError

SECRET = "s3cr3t-token-value-0123456789"


def test_token_file_scopes_comments_and_write_includes_read() -> None:
    tokens = parse_token_file(
        f"# operators\n{SECRET} read,write\n\nreadonly-token-abcdefgh read  # dashboards\n",
        "tokens",
    )
    assert tokens.scopes_of(SECRET) == {"read", "write"}
    assert tokens.scopes_of("readonly-token-abcdefgh") == {"read"}
    assert tokens.scopes_of("readonly-token-abcdefgX") is None
    assert tokens.scopes_of("") is None
    only_write = parse_token_file(f"{SECRET} write\n", "tokens")
    assert only_write.scopes_of(SECRET) == {"read", "write"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{SECRET}\n", "tokens:1: expected 'TOKEN SCOPE[,SCOPE]'"),
        (f"{SECRET} admin\n", "tokens:1: expected scopes from read, write, got admin"),
        ("short read\n", "tokens:1: a token must be 16..4096 characters"),
        (f"{SECRET}\u00e9 read\n", "tokens:1: a token may only use"),
        ("# nothing\n", "tokens: no tokens"),
        (f"{SECRET} read extra\n", "tokens:1: expected 'TOKEN SCOPE[,SCOPE]'"),
    ],
)
def test_bad_token_files_name_the_line_never_the_token(text: str, expected: str) -> None:
    with pytest.raises(TokenError) as caught:
        parse_token_file(text, "tokens")
    assert str(caught.value).startswith(expected)
    assert SECRET not in str(caught.value) and "short" not in str(caught.value)


def test_tokens_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{SECRET} read\n")
    env = {"UBIQ_API_TOKEN_FILE": str(path), "UBIQ_API_TOKEN": "env-token-0123456789abc"}
    tokens = load_tokens(None, env)
    assert tokens.scopes_of(SECRET) == {"read"}
    assert tokens.scopes_of("env-token-0123456789abc") == {"read", "write"}
    assert not load_tokens(None, {})
    with pytest.raises(TokenError, match="cannot read"):
        load_tokens(tmp_path / "missing", {})
    assert "env-token" not in repr(tokens)


def test_hosts() -> None:
    assert normal_host("LocalHost:8081") == "localhost"
    assert normal_host("[::1]:8081") == "::1"
    assert normal_host("127.0.0.1") == "127.0.0.1"
    assert normal_host("api.example.") == "api.example"
    assert default_allowed_hosts("10.0.0.5") == {"localhost", "127.0.0.1", "::1", "10.0.0.5"}
    assert check_allowed_host("*") == "*"
    assert check_allowed_host("Ubiq.Example") == "ubiq.example"
    with pytest.raises(UbiqError, match="--api-allowed-host"):
        check_allowed_host("bad host/")
