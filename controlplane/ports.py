"""Ports for servers that other processes will bind a moment later (Envoy listeners, admin).

Asking the kernel for port 0 hands out a port from the ephemeral range, the same range it uses
for the local side of outgoing connections; between our check and the other process's bind, a
client socket can take it ("Address already in use"). So ports are drawn from below that range,
checked free for TCP (and UDP when asked), and never handed out twice by this process.
"""

from __future__ import annotations

import random
import socket

_LOW, _HIGH = 20_000, 32_767  # Linux's ephemeral range starts at 32768
_GIVEN: set[int] = set()
_RNG = random.Random()


def _bindable(host: str, port: int, kinds: tuple[int, ...]) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in kinds:
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1", *, udp_too: bool = False) -> int:
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp_too else (socket.SOCK_STREAM,)
    for _ in range(200):
        port = _RNG.randint(_LOW, _HIGH)
        if port not in _GIVEN and _bindable(host, port, kinds):
            _GIVEN.add(port)
            return port
    raise OSError(f"no free port between {_LOW} and {_HIGH} on {host}")
