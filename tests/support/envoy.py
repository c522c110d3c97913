"""A real Envoy started from a rendered Ubiq bootstrap, with helpers for its admin API."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from controlplane.demo.envoys import start_envoy
from controlplane.xds.bootstrap import Mode, XdsClientTls
from tests.support.poll import wait_until
from tests.support.procs import require_binary


@dataclass(frozen=True)
class EnvoyProcess:
    admin_port: int
    log: Path
    node_id: str

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def config_dump(self, resource: str | None = None) -> dict[str, Any]:
        params = {"resource": resource} if resource else {}
        reply = httpx.get(f"{self.admin}/config_dump", params=params, timeout=5)
        reply.raise_for_status()
        return dict(reply.json())

    def stats(self, prefix: str = "") -> dict[str, int]:
        """Counters and gauges (``/stats?format=json``) whose names start with ``prefix``."""
        reply = httpx.get(f"{self.admin}/stats", params={"format": "json"}, timeout=5)
        reply.raise_for_status()
        out: dict[str, int] = {}
        for stat in reply.json().get("stats", []):
            name, value = stat.get("name"), stat.get("value")
            if isinstance(name, str) and isinstance(value, int) and name.startswith(prefix):
                out[name] = value
        return out

    def stat(self, name: str) -> int:
        """One counter or gauge; 0 if Envoy has not created it yet."""
        return self.stats(name).get(name, 0)

    def ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.admin}/ready", timeout=2).status_code == 200
        return False

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def envoy(
    tmp_path: Path,
    *,
    xds_port: int,
    mode: Mode = "ads-sotw",
    node_id: str = "envoy-1",
    cluster: str = "eu-west-1",
    region: str = "eu-west",
    zone: str = "eu-west-1a",
    listenerless: bool = False,
    tls: XdsClientTls | None = None,
) -> Iterator[EnvoyProcess]:
    """Start Envoy (the product's ``start_envoy``) until the with-block ends; fails, never skips,
    when the binary is missing."""
    require_binary("envoy")
    started = start_envoy(
        tmp_path,
        cluster=cluster,
        region=region,
        zone=zone,
        xds_port=xds_port,
        delta=mode == "ads-delta",
        node_id=node_id,
        listenerless=listenerless,
        tls=tls,
        log_level="info",
        extra_args=("--component-log-level", "config:debug,upstream:info"),
    )
    try:
        process = EnvoyProcess(admin_port=started.admin_port, log=started.log, node_id=node_id)
        try:
            wait_until(lambda: process.stats("server.") != {}, 15, "envoy admin API")
        except TimeoutError:
            raise RuntimeError(
                f"envoy did not start (rc={started.process.poll()}):\n{started.log.read_text()}"
            ) from None
        yield process
    finally:
        started.stop()


def dynamic_names(dump: dict[str, Any], kind: str) -> list[str]:
    """Names of dynamic active listeners/clusters/route configs in a config_dump."""
    names: list[str] = []
    for config in dump.get("configs", []):
        for key in ("dynamic_listeners", "dynamic_active_clusters", "dynamic_route_configs"):
            for item in config.get(key, []):
                if not key.endswith(kind):
                    continue
                inner = item.get("active_state", item)
                resource = (
                    inner.get("listener") or inner.get("cluster") or inner.get("route_config")
                )
                if resource and "name" in resource:
                    names.append(resource["name"])
    return sorted(names)


def as_json(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=True)


class _Backend:
    def __init__(self, name: str) -> None:
        import http.server
        import threading

        body = name.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def http_backend(name: str) -> Iterator[int]:
    """A tiny HTTP server on loopback answering every GET with ``name``; yields its port."""
    backend = _Backend(name)
    try:
        yield backend.port
    finally:
        backend.close()
