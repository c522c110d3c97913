"""Long-running commands: ``serve`` and ``demo``."""

from __future__ import annotations

import argparse
import asyncio


def cmd_serve(args: argparse.Namespace) -> int:
    from controlplane.gtm.dns.server import new_event_loop
    from controlplane.serve import ServeOptions, serve

    options = ServeOptions.from_args(args)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:  # uvloop when installed
        runner.run(serve(options))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from controlplane.demo import run_demo

    return run_demo(args)
