"""A General and scouts as real local processes: for `make demo`, the tests and the benchmarks.

Nothing here is used by the General or the scout themselves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@dataclass
class Fleet:
    root: Path
    api_port: int = 0
    scout_port: int = 0
    files_port: int = 0
    general: subprocess.Popen[bytes] | None = None
    scouts: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.api_port = self.api_port or free_port()
        self.scout_port = self.scout_port or free_port()
        self.files_port = self.files_port or free_port()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def general_dir(self) -> Path:
        return self.root / "general"

    @property
    def token(self) -> str:
        return (self.general_dir / "admin.token").read_text().strip()

    def start_general(self, *extra: str, auto_accept: bool = True, wait: float = 30.0) -> None:
        args = [
            _bin("troop-general"),
            "--data-dir",
            str(self.general_dir),
            "--api-listen",
            f"127.0.0.1:{self.api_port}",
            "--scout-listen",
            f"127.0.0.1:{self.scout_port}",
            *(["--auto-accept"] if auto_accept else []),
            *extra,
        ]
        log = (self.root / "general.log").open("ab")
        env = {"TROOP_FILEMANAGER_LISTEN": f"127.0.0.1:{self.files_port}", **self.env}
        self.general = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait(lambda: self._healthy(), wait, "the General to answer")

    def start_scout(
        self, name: str, *tags: str, extra: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        args = [
            _bin("troop-scout"),
            "--general",
            f"127.0.0.1:{self.scout_port}",
            "--hostname",
            name,
            "--data-dir",
            str(self.root / "scouts" / name),
            *[a for t in tags for a in ("--tag", t)],
            *extra,
        ]
        log = (self.root / f"scout-{name}.log").open("ab")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**self.env, **(env or {})})
        self.scouts[name] = proc
        return proc

    def wait_online(self, names: list[str], timeout: float = 30.0) -> None:
        def ready() -> bool:
            online = {h["hostname"] for h in self.api("GET", "/api/v1/hosts")["hosts"] if h["online"]}
            return set(names) <= online

        self._wait(ready, timeout, f"scouts {names} to come online")

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        req = urllib.request.Request(  # noqa: S310 - our own loopback URL
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token or self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - our own loopback URL
            return json.loads(resp.read())

    def cli(self, *args: str, token: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "TROOP_URL": self.url, "TROOP_TOKEN": token or self.token, "NO_COLOR": "1"}
        return subprocess.run(
            [_bin("troop"), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )

    def stop_general(self, sig: int = signal.SIGTERM) -> None:
        if self.general is not None and self.general.poll() is None:
            self.general.send_signal(sig)
            try:
                self.general.wait(15)
            except subprocess.TimeoutExpired:
                self.general.kill()
                self.general.wait()
        self.general = None

    def stop_scout(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.scouts.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        for name in list(self.scouts):
            self.stop_scout(name)
        self.stop_general()

    def _healthy(self) -> bool:
        if self.general is not None and self.general.poll() is not None:
            log = (self.root / "general.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"troop-general exited with {self.general.returncode}:\n{log}")
        try:
            with urllib.request.urlopen(self.url + "/api/v1/health", timeout=1):  # noqa: S310
                return (self.general_dir / "admin.token").exists()
        except OSError:
            return False

    @staticmethod
    def _wait(check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise TimeoutError(f"timed out waiting for {what}")


def cluster_general(
    data_dir: Path, api_port: int, scout_port: int, store_url: str, bus_url: str, fm_dir: Path, fm_port: int
) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of one cluster-mode troop-general on loopback, using the
    standalone troop-filemanager whose data dir is `fm_dir` (its token and secret files)."""
    argv = [
        _bin("troop-general"),
        "--data-dir", str(data_dir),
        "--api-listen", f"127.0.0.1:{api_port}",
        "--scout-listen", f"127.0.0.1:{scout_port}",
        "--store", store_url,
        "--bus", bus_url,
        "--auto-accept",
    ]  # fmt: skip
    env = {
        "TROOP_FILEMANAGER_LISTEN": "",
        "TROOP_FILEMANAGER_URL": f"http://127.0.0.1:{fm_port}",
        "TROOP_FILEMANAGER_TOKEN_FILE": str(fm_dir / "service.token"),
        "TROOP_FILEMANAGER_SECRET_FILE": str(fm_dir / "filemanager.key"),
    }
    return argv, env
