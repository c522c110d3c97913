"""A proxyless gRPC client for tests: ``python -m tests.support.grpc_calls TARGET COUNT [HEADER [PAUSE]]``.

Runs in a subprocess so GRPC_XDS_BOOTSTRAP(_CONFIG) is in the environment before grpc starts its
xDS client. Makes COUNT unary calls one after the other (the first waits for the xDS
configuration: a call queues while the channel resolves), printing one line per call:
``ok <backend> <key>`` or ``err <CODE> <key>``. With HEADER, call i sends ``HEADER: user-<i % 10>``
(the key); without (or ``-``), the key is ``-``. PAUSE: seconds between calls (default 0).
Ends with ``done``.
"""

from __future__ import annotations

import sys
import time

import grpc

from tests.support.grpc_backends import echo


def main(target: str, count: int, header: str | None, pause: float) -> None:
    with grpc.insecure_channel(target) as channel:
        for i in range(count):
            key = f"user-{i % 10}" if header else "-"
            metadata = ((header, key),) if header else ()
            try:
                _, initial = echo(channel, metadata=metadata, timeout=10.0)
                print(f"ok {initial.get('x-backend', '?')} {key}", flush=True)
            except grpc.RpcError as exc:
                print(f"err {exc.code().name} {key}", flush=True)
            time.sleep(pause)
    print("done", flush=True)


if __name__ == "__main__":
    header = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
    main(sys.argv[1], int(sys.argv[2]), header, float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
