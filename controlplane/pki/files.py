"""A certificate and its key given as two command-line flags: checked together, before use."""

from __future__ import annotations

from pathlib import Path

from controlplane.errors import UbiqError


def file_pair(
    cert: tuple[str, Path | None], key: tuple[str, Path | None]
) -> tuple[Path, Path] | None:
    """A certificate and its key, given as (flag, path): both or neither, each an existing file.

    None when neither is given; otherwise a one-line UbiqError naming the flag at fault."""
    (cert_flag, cert_path), (key_flag, key_path) = cert, key
    if cert_path is None and key_path is None:
        return None
    if cert_path is None or key_path is None:
        missing, given = (cert_flag, key_flag) if cert_path is None else (key_flag, cert_flag)
        raise UbiqError(f"{missing}: required with {given} (a certificate and its key)")
    for flag, path in ((cert_flag, cert_path), (key_flag, key_path)):
        if not path.is_file():
            raise UbiqError(f"{flag}: {path}: no such file")
    return cert_path, key_path
