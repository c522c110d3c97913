"""Small HTTP backends on loopback that say who served a request, and can be told to misbehave.

Each answers every request (``/healthz`` included) with ``x-backend: <name>`` and a JSON body
echoing what it received (path, host, headers). Knobs, changeable while running: ``status``
(answer everything with it), ``fail_every`` (every Nth request fails with ``fail_status``),
``fail_ratio`` (that share of requests fails, spread evenly: 0.3 fails 3 of every 10),
``delay`` (seconds to sleep before answering). ``count`` counts non-health requests.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

HEALTH_PATH = "/healthz"


class Backend:
    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.status = 200
        self.fail_every = 0
        self.fail_ratio = 0.0
        self.fail_status = 503
        self.delay = 0.0
        self.count = 0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def reset(self) -> None:
        with self._lock:
            self.status, self.fail_every, self.delay, self.count = 200, 0, 0.0, 0
            self.fail_ratio = 0.0

    def _answer(self, path: str) -> tuple[int, float]:
        with self._lock:
            if path == HEALTH_PATH:
                return self.status, 0.0
            self.count += 1
            status = self.status
            if status == 200 and self.fail_every and self.count % self.fail_every == 0:
                status = self.fail_status
            ratio = self.fail_ratio
            if status == 200 and int(self.count * ratio) > int((self.count - 1) * ratio):
                status = self.fail_status
            return status, self.delay

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                status, delay = backend._answer(self.path.split("?", 1)[0])
                if delay:
                    time.sleep(delay)
                body = json.dumps(
                    {
                        "backend": backend.name,
                        "method": self.command,
                        "path": self.path,
                        "host": self.headers.get("host", ""),
                        "headers": _joined(self.headers.items()),
                    }
                ).encode()
                try:
                    self.send_response(status)
                    self.send_header("x-backend", backend.name)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> Backend:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _joined(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers by lower-case name; repeated headers joined with ',' (RFC 9110 5.3)."""
    out: dict[str, str] = {}
    for key, value in items:
        key = key.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


@contextlib.contextmanager
def backends(*names: str) -> Iterator[dict[str, Backend]]:
    """Start one Backend per name on loopback; stop them all when the block ends."""
    started: dict[str, Backend] = {}
    try:
        for name in names:
            started[name] = Backend(name).start()
        yield started
    finally:
        for b in started.values():
            b.close()
