"""Health-check targets for bench.dns_rebuild_latency, in a process of their own.

    python -m bench._health_backends HOST [HOST ...]

Listens on each loopback HOST (an ephemeral port each) and answers every HTTP request with an
empty response and ``Connection: close``: 200, or the status last set for that host. Prints one
JSON line ``{host: port}`` once listening; then reads ``HOST STATUS`` lines on standard input
and stops at end of file. A process of its own so that hundreds of probes a second do not share
the load generator's GIL.
"""

from __future__ import annotations

import asyncio
import json
import sys

_REASONS = {200: "OK", 503: "Service Unavailable"}


async def main(hosts: list[str]) -> None:
    status = dict.fromkeys(hosts, 200)

    def handler(host: str):  # type: ignore[no-untyped-def]
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                code = status[host]
                writer.write(
                    f"HTTP/1.1 {code} {_REASONS.get(code, 'X')}\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
                )
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError, TimeoutError, asyncio.LimitOverrunError):
                pass
            finally:
                writer.close()

        return serve

    servers = [await asyncio.start_server(handler(h), h, 0, backlog=256) for h in hosts]
    ports = {h: s.sockets[0].getsockname()[1] for h, s in zip(hosts, servers, strict=True)}
    print(json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        host, code = line.split()
        status[host] = int(code)
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
