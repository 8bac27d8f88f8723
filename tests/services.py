"""Real servers for the tests: a throwaway PostgreSQL (Debian's, run as user postgres).

`make test` installs what is missing (scripts/services.sh); these start and stop instances.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Postgres:
    url: str
    proc: subprocess.Popen[bytes]
    root: str
    argv: list[str] | None = None

    def kill(self) -> None:
        """An outage: the server dies at once, as on a crash."""
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        """Start the same server again (same data, same port) after kill()."""
        assert self.argv is not None
        user = pwd.getpwnam("postgres")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.root, "log"), "ab"),
            preexec_fn=_as_user(user) if os.getuid() == 0 else None,
        )
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        _wait_port(port, self.proc, 30)

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for every client.
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def start_postgres(*, durable: bool = False) -> Postgres:
    """Start a PostgreSQL on a free loopback port; raise RuntimeError when it cannot run here.

    By default it trades durability for speed (no fsync, asynchronous commit: a kill loses the
    last commits). `durable` keeps PostgreSQL's own defaults, as a production server has them:
    for tests that crash the server and benchmarks that time commits."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (make test installs it with apt)")
    try:
        user = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise RuntimeError("no 'postgres' user to run PostgreSQL as") from exc
    root = tempfile.mkdtemp(prefix="troop-pg-")
    os.chown(root, user.pw_uid, user.pw_gid)
    data = os.path.join(root, "data")
    as_postgres = _as_user(user) if os.getuid() == 0 else None
    subprocess.run(
        [f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
        preexec_fn=as_postgres,
    )
    port = _free_port()
    argv = [f"{bindir}/postgres", "-D", data, "-k", root, "-p", str(port), "-c", "listen_addresses=127.0.0.1",
            "-c", "max_connections=300"]  # fmt: skip
    if not durable:
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, "log"), "wb"), preexec_fn=as_postgres
    )
    try:
        _wait_port(port, proc, 30)
    except RuntimeError:
        log = open(os.path.join(root, "log"), errors="replace").read()[-2000:]
        proc.kill()
        raise RuntimeError(f"PostgreSQL did not start: {log}") from None
    return Postgres(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", proc, root, argv)


def _wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError("the server did not open its port")


def _as_user(user: pwd.struct_passwd):  # type: ignore[no-untyped-def]
    def switch() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return switch
