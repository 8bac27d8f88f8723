"""Files end to end: push, read, ls through the real CLI, General, FileManager and scouts."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import run_json
from troop.localfleet import Fleet


@pytest.fixture(scope="module")
def ffleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A General with a 1 MiB upload cap, and scouts f1, f2, f3."""
    root = tmp_path_factory.mktemp("files")
    config = root / "general.toml"
    config.write_text(f"max_upload = {1024 * 1024}\nfilemanager_listen = '127.0.0.1:0'\n")
    f = Fleet(root / "fleet")
    try:
        f.start_general("--config", str(config))
        for name in ("f1", "f2", "f3"):
            f.start_scout(name, "files")
        f.wait_online(["f1", "f2", "f3"])
        yield f
    finally:
        f.stop()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    os.chmod(tmp_path, 0o755)
    return tmp_path


def push(fleet: Fleet, target: str, src: Path, dest: str, *opts: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    return run_json(fleet, "file", "push", target, str(src), dest, *opts)


def test_push_creates_then_unchanged_then_replaced_with_backup(ffleet: Fleet, work: Path) -> None:
    src = work / "app.conf"
    src.write_text("listen 8080\n")
    dest = work / "etc" / "app.conf"
    code, job = push(ffleet, "f1", src, str(dest), "--makedirs", "--mode", "0640")
    data = job["hosts"]["f1"]["data"]
    assert code == 0 and data["action"] == "created", job
    assert dest.read_text() == "listen 8080\n" and (dest.stat().st_mode & 0o777) == 0o640
    assert data["sha256"] == hashlib.sha256(b"listen 8080\n").hexdigest() and data["size"] == 12
    code, job = push(ffleet, "f1", src, str(dest))
    assert code == 0 and job["hosts"]["f1"]["data"]["action"] == "unchanged"
    src.write_text("listen 9090\n")
    code, job = push(ffleet, "f1", src, str(dest), "--backup")
    data = job["hosts"]["f1"]["data"]
    assert code == 0 and data["action"] == "replaced" and data["backup"]
    assert dest.read_text() == "listen 9090\n"
    assert Path(data["backup"]).read_text() == "listen 8080\n"


def test_push_to_a_directory_keeps_the_source_name(ffleet: Fleet, work: Path) -> None:
    src = work / "motd"
    src.write_text("hello\n")
    target_dir = work / "out"
    target_dir.mkdir()
    code, job = push(ffleet, "f*", src, str(target_dir) + "/")
    assert code == 0 and all(h["state"] == "succeeded" for h in job["hosts"].values())
    assert (target_dir / "motd").read_text() == "hello\n"


def test_push_to_offline_host_names_it_and_the_others_succeed(ffleet: Fleet, work: Path) -> None:
    ffleet.stop_scout("f3")
    try:
        src = work / "x.txt"
        src.write_text("x")
        code, job = push(ffleet, "f1,f3", src, str(work / "y.txt"))
        assert code == 1
        assert job["hosts"]["f3"]["state"] == "offline" and job["hosts"]["f1"]["state"] == "succeeded"
    finally:
        ffleet.start_scout("f3", "files")
        ffleet.wait_online(["f3"])


def test_bad_destinations_are_refused_with_the_cause(ffleet: Fleet, work: Path) -> None:
    src = work / "s"
    src.write_text("s")
    sha = hashlib.sha256(b"s").hexdigest()
    for dest in ("relative/path", f"{work}/../etc/x"):
        code, job = push(ffleet, "f1", src, dest)
        host = job["hosts"]["f1"]
        assert code == 1 and host["state"] == "failed" and host["error"], dest
    # A NUL byte cannot cross a command line; scripts can send one through the API.
    job = ffleet.api("POST", "/api/v1/jobs?wait=30", {"kind": "file.push", "target": {"hosts": "f1"},
                                                      "file": {"sha256": sha, "name": "s", "dest": "/tmp/a\x00b"}})
    host = job["hosts"]["f1"]
    assert host["state"] == "failed" and "nul" in host["error"].lower(), host


def test_symlink_planted_at_dest_is_replaced_not_followed(ffleet: Fleet, work: Path) -> None:
    outside = work / "precious"
    outside.write_text("keep me")
    link = work / "target.conf"
    link.symlink_to(outside)
    src = work / "new.conf"
    src.write_text("new")
    code, job = push(ffleet, "f1", src, str(link))
    assert code == 0, job
    assert outside.read_text() == "keep me"
    assert not link.is_symlink() and link.read_text() == "new"


def test_read_text_binary_and_over_the_cap(ffleet: Fleet, work: Path) -> None:
    text = work / "notes.txt"
    text.write_text("line one\nline two\n")
    code, job = run_json(ffleet, "file", "read", "f2", str(text))
    data = job["hosts"]["f2"]["data"]
    assert code == 0 and data["text"] == "line one\nline two\n"
    blob = work / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    code, job = run_json(ffleet, "file", "read", "f2", str(blob))
    data = job["hosts"]["f2"]["data"]
    assert data["sha256"] == hashlib.sha256(bytes(range(256))).hexdigest() and data["text"] is None
    big = work / "huge"
    with big.open("wb") as fh:
        fh.truncate(2 * 1024**3)  # sparse: refused by size, never read
    code, job = run_json(ffleet, "file", "read", "f2", str(big))
    host = job["hosts"]["f2"]
    assert code == 1 and host["state"] == "failed" and "2147483648" in host["error"]
    human = ffleet.cli("file", "read", "f2", str(text))
    assert "line two" in human.stdout


def test_read_of_the_scouts_private_key_is_refused(ffleet: Fleet) -> None:
    key = ffleet.root / "scouts" / "f1" / "scout.key"
    assert key.exists()
    code, job = run_json(ffleet, "file", "read", "f1", str(key))
    host = job["hosts"]["f1"]
    assert code == 1 and host["state"] == "failed"
    assert "PRIVATE KEY" not in json.dumps(job)


def test_ls_lists_entries(ffleet: Fleet, work: Path) -> None:
    (work / "a.txt").write_text("aaa")
    (work / "sub").mkdir()
    code, job = run_json(ffleet, "file", "ls", "f1", str(work))
    entries = {e["name"]: e for e in job["hosts"]["f1"]["data"]["entries"]}
    assert code == 0
    assert entries["a.txt"]["type"] == "file" and entries["a.txt"]["size"] == 3
    assert entries["sub"]["type"] == "dir"
    human = ffleet.cli("file", "ls", "f1", str(work))
    assert "a.txt" in human.stdout and "sub" in human.stdout


def test_upload_over_the_cap_is_413(ffleet: Fleet, work: Path) -> None:
    big = work / "big.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    result = ffleet.cli("file", "push", "f1", str(big), str(work / "big.out"))
    assert result.returncode == 2 and "limit" in result.stderr


def fm_port(fleet: Fleet) -> int:
    log = (fleet.root / "general.log").read_text()
    for line in log.splitlines():
        if "general ready" in line and "files=" in line:
            return int(line.split("files=")[1].split()[0].rsplit(":", 1)[1])
    raise AssertionError("no FileManager address in the General's log")


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def test_filemanager_refuses_traversal_and_unsigned_or_forged_urls(ffleet: Fleet) -> None:
    port = fm_port(ffleet)
    for path in ("/fm/v1/blobs/../../etc/passwd", "/fm/v1/blobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                 "/fm/v1/blobs/..%2f..%2fgeneral%2fgeneral.key", "/fm/v1/blobs/" + "a" * 64,
                 "/fm/v1/blobs/" + "a" * 64 + "?exp=9999999999&host=f1&nonce=" + "0" * 32 + "&sig=" + "0" * 64,
                 "/fm/v1/blobs/" + "a" * 64 + "?exp=1&host=f1&nonce=" + "0" * 32 + "&sig=" + "0" * 64):
        status, body = raw_get(port, path)
        assert status in (400, 403, 404), (path, status)
        assert b"root:" not in body and b"PRIVATE KEY" not in body


def test_files_api_requires_a_token(ffleet: Fleet) -> None:
    req = urllib.request.Request(ffleet.url + "/api/v1/files", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 401


def test_general_with_a_standalone_filemanager(tmp_path: Path) -> None:
    """troop-filemanager on its own; the General uploads through it and scouts download from it."""
    import subprocess
    import sys
    import time

    from troop.localfleet import free_port

    fm_dir, port = tmp_path / "fm", free_port()
    fm = subprocess.Popen(
        [str(Path(sys.executable).with_name("troop-filemanager")), "--data-dir", str(fm_dir),
         "--listen", f"127.0.0.1:{port}"],
        stdout=(tmp_path / "fm.log").open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while not (fm_dir / "service.token").exists() or not (fm_dir / "filemanager.key").exists():
            assert time.monotonic() < deadline and fm.poll() is None, (tmp_path / "fm.log").read_text()
            time.sleep(0.05)
        config = tmp_path / "general.toml"
        config.write_text(
            f'filemanager_url = "http://127.0.0.1:{port}"\n'
            f'filemanager_token_file = "{fm_dir / "service.token"}"\n'
            f'filemanager_secret_file = "{fm_dir / "filemanager.key"}"\n'
        )
        f = Fleet(tmp_path / "fleet", env={"TROOP_FILEMANAGER_LISTEN": ""})
        try:
            f.start_general("--config", str(config))
            f.start_scout("r1")
            f.wait_online(["r1"])
            src = tmp_path / "payload"
            src.write_bytes(os.urandom(200_000))
            dest = tmp_path / "landed"
            code, job = push(f, "r1", src, str(dest))
            assert code == 0 and job["hosts"]["r1"]["data"]["action"] == "created", job
            assert dest.read_bytes() == src.read_bytes()
            sha = hashlib.sha256(src.read_bytes()).hexdigest()
            assert (fm_dir / "files" / "blobs" / sha[:2] / sha).exists()  # stored by the FileManager
            assert not (f.general_dir / "files" / "blobs").exists()  # not by the General
        finally:
            f.stop()
    finally:
        fm.terminate()
        fm.wait(10)
