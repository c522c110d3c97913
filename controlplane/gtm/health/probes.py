"""Active probes over raw asyncio streams: TCP connect, and HTTP/1.1 GET (plain or TLS).

Each probe is bounded as a whole by the check's timeout and never raises for a failed target:
every way a target can fail becomes ``ProbeResult(ok=False, error=...)`` with a short error that
ends up in Decision reasons and the REST API. Only the status line of an HTTP response is read;
the connection is closed right after (``Connection: close``), body unread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

from controlplane.gtm.health.state import CheckedTarget, ProbeResult

__all__ = ["make_tls_context", "probe", "probe_http", "probe_tcp"]

USER_AGENT = "ubiq-health-check/1"
_CLOSE_GRACE = 0.5


def make_tls_context(verify: bool, ca_file: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def probe(target: CheckedTarget, tls: ssl.SSLContext | None = None) -> ProbeResult:
    """Probe by the check's kind; ``tls`` is required for https (built once by the caller)."""
    if target.check.kind == "tcp":
        return await probe_tcp(target)
    if target.check.kind == "https" and tls is None:
        tls = make_tls_context(target.check.verify_tls, target.check.ca_file)
    return await probe_http(target, tls if target.check.kind == "https" else None)


async def probe_tcp(target: CheckedTarget) -> ProbeResult:
    start = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(target.check.timeout):
            _, writer = await asyncio.open_connection(target.target.address, target.probe_port)
    except TimeoutError:
        return _fail(f"timeout after {target.check.timeout:g}s", start)
    except OSError as exc:
        return _fail(_os_error(exc), start)
    finally:
        if writer is not None:
            await _close(writer)
    return ProbeResult(True, latency=time.perf_counter() - start)


async def probe_http(target: CheckedTarget, tls: ssl.SSLContext | None) -> ProbeResult:
    check = target.check
    address, port = target.target.address, target.probe_port
    host = check.host or (f"[{address}]" if ":" in address else address)
    default_port = 443 if tls is not None else 80
    host_header = host if check.host or port == default_port else f"{host}:{port}"
    request = (
        f"GET {check.path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    start = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(check.timeout):
            reader, writer = await asyncio.open_connection(
                address,
                port,
                ssl=tls,
                server_hostname=(check.host or address) if tls is not None else None,
            )
            writer.write(request)
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        return _fail(f"timeout after {check.timeout:g}s", start)
    except ssl.SSLCertVerificationError as exc:
        return _fail(f"TLS: {exc.verify_message or exc.reason}", start)
    except ssl.SSLError as exc:
        return _fail(f"TLS: {exc.reason or exc}", start)
    except (OSError, ValueError) as exc:  # ValueError: a status line over the stream's limit
        return _fail(_os_error(exc) if isinstance(exc, OSError) else str(exc), start)
    finally:
        if writer is not None:
            await _close(writer)
    latency = time.perf_counter() - start
    status = _status(line)
    if not line:
        return ProbeResult(False, "connection closed before a status line", latency=latency)
    if status is None:
        shown = line[:40].decode("latin-1").strip() or "empty"
        return ProbeResult(False, f"malformed status line ({shown})", latency=latency)
    if not check.status_ok(status):
        return ProbeResult(False, f"status {status}", status=status, latency=latency)
    return ProbeResult(True, status=status, latency=latency)


def _status(line: bytes) -> int | None:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return None
    status = int(parts[1])
    return status if 100 <= status <= 599 else None


def _fail(error: str, start: float) -> ProbeResult:
    return ProbeResult(False, error, latency=time.perf_counter() - start)


def _os_error(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return exc.strerror or str(exc) or type(exc).__name__


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(_CLOSE_GRACE):
            await writer.wait_closed()
