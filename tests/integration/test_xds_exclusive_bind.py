"""Two `ubiq serve` must not share one xDS port: the second fails with one line, as --dns does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.procs import free_port, free_udp_tcp_port
from tests.support.ubiq_serve import serving, write_policy


def test_a_second_serve_on_the_same_xds_port_fails_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    write_policy(root)
    with serving(root, tmp_path) as first:
        argv = [
            sys.executable, "-m", "controlplane.cli", "serve", str(root),
            "--xds", f"127.0.0.1:{first.xds_port}", "--api", f"127.0.0.1:{free_port()}",
            "--dns", f"127.0.0.1:{free_udp_tcp_port()}",
        ]  # fmt: skip
        second = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _, stderr = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.communicate()
            raise AssertionError("the second ubiq serve started on a port already served") from None
        assert second.returncode == 3  # ListenError
        human = [line for line in stderr.splitlines() if line and not line.startswith("{")]
        assert human == [
            f"ubiq: error: --xds 127.0.0.1:{first.xds_port}: cannot listen: Address already in use"
        ], stderr
        assert first.proc.poll() is None  # the first one keeps serving
