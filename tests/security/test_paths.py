"""Item 6, path traversal: push, read and ls refuse or confine every escape; the scout's private
key is out of reach of file tasks unless its own policy lets them in; the FileManager serves
nothing outside its store; plugin names cannot name a path."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.security.conftest import Victim
from tests.security.rawscout import call, log_text
from troop.localfleet import Fleet
from troop.protocol import messages


@pytest.fixture(scope="module")
def work(secfleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory with symlinks into web1's data dir, and a small uploaded file."""
    root = tmp_path_factory.mktemp("paths")
    data = secfleet.root / "scouts" / "web1"
    (root / "keylink").symlink_to(data / "scout.key")
    (root / "datalink").symlink_to(data)
    (root / "payload").write_bytes(b"payload\n")
    status, body, _ = call(secfleet, "PUT", "/api/v1/files", b"payload\n", token=secfleet.token)
    assert status == 201, body
    yield root


def job(fleet: Fleet, kind: str, host: str = "web1", **file: Any) -> dict[str, Any]:
    status, body, _ = call(
        fleet, "POST", "/api/v1/jobs?wait=30",
        json.dumps({"kind": kind, "target": {"hosts": host}, "file": file}).encode(), token=fleet.token,
    )
    assert status in (201, 422), body
    return body if status == 422 else body["hosts"][host]


SHA = hashlib.sha256(b"payload\n").hexdigest()


def test_push_refuses_escapes_and_confines_odd_names(secfleet: Fleet, work: Path) -> None:
    data = secfleet.root / "scouts" / "web1"
    pin_before = (data / "general.pin").read_bytes()
    refused = {
        "relative/x": "absolute",
        f"{work}/../escaped": "'..'",
        f"{work}/a\x00b": "NUL",
        "C:\\Windows\\escaped": "absolute",
        f"{data}/general.pin": "data directory",  # re-pinning the General through a push
        f"{data}/scout.key": "data directory",
        f"{work}/datalink/general.pin": "data directory",  # a symlink into the data dir
    }
    for dest, why in refused.items():
        host = job(secfleet, "file.push", sha256=SHA, name="payload", dest=dest, makedirs=True)
        assert host["state"] == "failed" and why in host["error"], (dest, host)
    assert (data / "general.pin").read_bytes() == pin_before
    assert not (work.parent / "escaped").exists()

    # Names that only look like escapes are plain names on Linux: the file lands inside `work`.
    for dest, lands in ((f"{work}/..\\confined", work / "..\\confined"), (f"{work}/%2e%2e/x", work / "%2e%2e" / "x")):
        host = job(secfleet, "file.push", sha256=SHA, name="payload", dest=dest, makedirs=True)
        assert host["state"] == "succeeded", (dest, host)
        assert lands.read_bytes() == b"payload\n"
    # A file name with a directory part is refused by the API before any scout sees it.
    answer = job(secfleet, "file.push", sha256=SHA, name="../payload", dest=f"{work}/")
    assert "file.name" in answer["error"]


def test_read_and_ls_cannot_reach_the_scouts_key(secfleet: Fleet, work: Path) -> None:
    data = secfleet.root / "scouts" / "web1"
    for path, why in (
        (f"{data}/scout.key", "data directory"),
        (f"{data}/./scout.key", "data directory"),
        (f"/{data}/scout.key", "data directory"),  # a leading //
        (f"{work}/keylink", "data directory"),  # a symlink to the key
        (f"{work}/datalink/scout.key", "data directory"),  # through a symlinked directory
        (f"/proc/self/root{data}/scout.key", "data directory"),  # through the magic link to /
        (f"{data}/../web1/scout.key", "'..'"),
    ):
        host = job(secfleet, "file.read", path=path)
        assert host["state"] == "failed" and why in host["error"], (path, host)
        assert "PRIVATE KEY" not in str(host.get("data", {})), path
    for path in (str(data), f"{work}/datalink", f"/proc/self/root{data}"):
        host = job(secfleet, "file.ls", path=path)
        assert host["state"] == "failed" and "data directory" in host["error"], (path, host)
    assert "PRIVATE KEY" not in log_text(secfleet.root / "general.log")


def test_a_scout_whose_policy_allows_it_returns_its_key(secfleet: Fleet) -> None:
    key_file = secfleet.root / "scouts" / "keyok" / "scout.key"
    host = job(secfleet, "file.read", host="keyok", path=str(key_file))
    assert host["state"] == "succeeded", host
    assert host["data"]["text"] == key_file.read_text()


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    """A GET with the path sent byte for byte (no client-side normalisation)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_filemanager_serves_nothing_outside_its_store(secfleet: Fleet, work: Path) -> None:
    port = secfleet.files_port
    for path in (
        "/fm/v1/blobs/..%5c..%5cgeneral.key",
        "/fm/v1/blobs/%252e%252e%252f%252e%252e%252fgeneral.key",
        "/fm/v1/blobs/%2e%2e%00",
        "/fm/v1/blobs//etc/passwd",
        f"/fm/v1/blobs/{SHA}/../../../general.key",
        f"/fm/v1/blobs/{SHA}%2f..%2f..%2fgeneral.key",
        f"/fm/v1/blobs/{SHA.upper()}",
        f"/fm/v1/blobs/{SHA}",  # a real blob, unsigned
    ):
        status, body = raw_get(port, path)
        assert status in (400, 403, 404), (path, status)
        assert b"PRIVATE KEY" not in body and b"root:" not in body and b"payload" not in body, path
    status, body, _ = call(
        secfleet, "PUT", "/api/v1/files", b"x", token=secfleet.token, headers={"X-Troop-Sha256": "../../general.key"}
    )
    assert status == 422, body


def test_plugin_names_cannot_be_paths(secfleet: Fleet, victim: Victim) -> None:
    for name in ("../../bin/sh", "/bin/sh", "..", "a/b"):
        status, body, _ = call(
            secfleet, "POST", "/api/v1/jobs",
            json.dumps({"kind": "plugin.run", "target": {"hosts": "web1"},
                                       "plugin": {"name": name, "action": "-c"}}).encode(), token=secfleet.token,
        )
        assert status == 422 and "plugin.name" in body["error"], (name, body)
    # A General that did not check (here: a RawGeneral) still gets nowhere with the scout.
    marker = victim.marker("plugin-escape")
    conn = victim.general.accept()
    tasks = [
        messages.Task(task_id="pr1", job_id="p", kind="plugin.run", timeout=10,
                      args={"name": "../../../../bin/sh", "action": "-c", "args": [f"touch {marker}"]}),
        messages.Task(task_id="pv1", job_id="p", kind="plugin.versions", timeout=10, args={"name": "../scout.key"}),
        messages.Task(task_id="pu1", job_id="p", kind="plugin.update", timeout=10,
                      args={"plugins": [{"name": "../../evil", "version": "1.0.0", "sha256": "0" * 64, "size": 1,
                                         "url": "http://127.0.0.1:1/x", "key": b"k" * 32}]}),
    ]
    for task in tasks:
        conn.send(task)
        result = conn.result_of(task.task_id)
        assert result.state == "failed" and "not a plugin name" in (result.error or ""), (task.kind, result)
    conn.close()
    assert not marker.exists()
