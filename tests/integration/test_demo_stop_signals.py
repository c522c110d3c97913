"""`ubiq demo --keep-running` stopped by a signal: every Envoy it started is gone, their ports are
free, its working directory is removed, and it prints one line, no traceback.

Before, SIGTERM left the Envoys running (re-parented, still holding their ports, so the next
demo silently shared traffic with them), printed asyncio tracebacks and left the directory.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import stop, wait_for_output

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "three-regions"
READY = "running; Ctrl-C to stop"


def private_example(tmp_path: Path) -> Path:
    """The bundled example on loopback addresses of its own (127.86.x.x instead of 127.0.x.x):
    its fixed gateway and backend ports cannot collide with another demo on the machine."""
    copy = tmp_path / "example"
    copy.mkdir()
    for source in EXAMPLE.glob("*.yaml"):
        (copy / source.name).write_text(source.read_text().replace("127.0.", "127.86."))
    return copy


def processes_using(work: Path) -> list[int]:
    """Pids whose command line names the demo's working directory (its Envoys)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(work) in cmdline and state != "Z":  # a zombie holds no port and runs nothing
            found.append(int(entry.name))
    return found


def port_free(host: str, port: int) -> bool:
    """Nothing listens there (SO_REUSEADDR: connections left in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_demo_cleans_up_on_a_stop_signal(tmp_path: Path, sig: signal.Signals) -> None:
    example = private_example(tmp_path)
    argv = [sys.executable, "-m", "controlplane.cli", "--log-level", "error", "demo", str(example)]
    argv.append("--keep-running")
    out_path, err_path = tmp_path / "demo.out", tmp_path / "demo.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=err,
            start_new_session=True,  # the test signals the demo alone, as a terminal or init would
        )
    try:
        output = wait_for_output(out_path, READY, proc, 120)
        work = Path(re.search(r"working in (\S+)", output).group(1))  # type: ignore[union-attr]
        assert work.is_dir()
        envoys = processes_using(work)
        assert len(envoys) >= 3, output  # 3 Envoys (eu-west failed over, started again), Prometheus
        ports = {
            (host, int(port)) for host, port in re.findall(r"gateway (\S+):(\d+), admin", output)
        } | {("127.0.0.1", int(p)) for p in re.findall(r"admin 127\.0\.0\.1:(\d+)", output)}
        assert len(ports) >= 6  # three gateways, an admin port per Envoy started

        proc.send_signal(sig)
        assert proc.wait(60) == 128 + sig
    finally:
        stop(proc)
    stderr = err_path.read_text(errors="replace")
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"demo stopped ({sig.name}); cleaned up"
    ]
    assert processes_using(work) == []
    assert not work.exists()
    assert [p for p in ports if not port_free(*p)] == []
