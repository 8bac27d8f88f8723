"""`troop file push|read|ls`: the grammar, the requests, the rendering, and a streamed upload.

Against the fake API of fakeapi.py, which checks only the client side of the contract (the
real General is exercised by the integration tests): HEAD /files/{sha256} and the streamed
PUT /files (headers and exact bytes), the POST /jobs bodies, error replies, and how results
are shown.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fakeapi import JOB_ID, KEEP, MB, TOKEN, FakeApi, Received, result, spawn, troop
from troop.cli.args import DEFAULT_CMD_TIMEOUT, DEFAULT_MAX_BYTES, DEFAULT_PUSH_TIMEOUT, parse_args
from troop.cli.main import main
from troop.cli.render import Style, render_job
from troop.cli.render_files import human_size, mode_text, mtime_text, render_ls, render_push, render_read

PLAIN = Style()
CONTENT = b"listen = 0.0.0.0:80\n"  # 20 bytes
CONTENT_SHA = hashlib.sha256(CONTENT).hexdigest()


def pushed(action: str = "created", **kw: Any) -> dict[str, Any]:
    data = {"action": action, "path": "/etc/app.conf", "size": 20, "sha256": CONTENT_SHA,
            "backup": None, **kw}
    return result("succeeded", data)


@pytest.fixture
def fake_api() -> FakeApi:
    return FakeApi(results={"web1": pushed()})


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "app.conf"
    path.write_bytes(CONTENT)
    return path


# --- the command line -----------------------------------------------------------------------


def test_push_options_anywhere_before_double_dash() -> None:
    ns = parse_args([
        "file", "push", "--json", "web*", "--mode", "0640", "./app.conf", "--tag", "a",
        "/etc/app.conf", "--owner", "app", "--group", "adm", "--makedirs", "--backup",
        "--force", "--os", "linux", "--one", "--tag", "b", "--async", "--timeout", "9", "--",
    ])
    assert (ns.target, ns.src, ns.dest) == ("web*", "./app.conf", "/etc/app.conf")
    assert (ns.mode, ns.owner, ns.group) == ("0640", "app", "adm")
    assert ns.makedirs and ns.backup and ns.force
    assert (ns.json, ns.os, ns.tag, ns.one, ns.detach, ns.timeout) == (
        True, "linux", ["a", "b"], True, True, 9.0,
    )
    assert ns.handler == "commands_files:run_push"


def test_defaults() -> None:
    push = parse_args(["file", "push", "w", "a", "/b"])
    assert push.timeout == DEFAULT_PUSH_TIMEOUT == 300
    assert (push.mode, push.owner, push.group) == (None, None, None)
    assert not (push.makedirs or push.backup or push.force or push.json or push.detach)
    read = parse_args(["file", "read", "--max-bytes", "10", "w", "/etc/hostname", "--json"])
    assert (read.path, read.max_bytes, read.json, read.timeout) == (
        "/etc/hostname", 10, True, DEFAULT_CMD_TIMEOUT,
    )
    assert parse_args(["file", "read", "w", "/x"]).max_bytes == DEFAULT_MAX_BYTES == 1048576
    ls = parse_args(["file", "ls", "w", "--tag", "x", "/var/log"])
    assert (ls.target, ls.path, ls.tag, ls.handler) == ("w", "/var/log", ["x"], "commands_files:run_ls")


@pytest.mark.parametrize("mode", ["644", "0644", "4755", "0000"])
def test_mode_is_kept_as_typed(mode: str) -> None:
    assert parse_args(["file", "push", "w", "a", "/b", "--mode", mode]).mode == mode


@pytest.mark.parametrize("mode", ["999", "64", "06444", "rw-r--r--", "0o644", "", "+x", "0x1f"])
def test_bad_mode_exits_2(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["file", "push", "w", "a", "/b", "--mode", mode]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "argument --mode: expected 3 or 4 octal digits such as 0644" in err
    assert "usage: troop file push TARGET SRC DEST" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["file"],
        ["file", "push", "w", "a"],  # no DEST
        ["file", "push", "w", "a", "/b", "--stream"],  # nothing to stream
        ["file", "push", "w", "a", "/b", "--", "extra"],
        ["file", "read", "w"],
        ["file", "read", "w", "/x", "--max-bytes", "-1"],
        ["file", "read", "w", "/x", "--max-bytes", "lots"],
        ["file", "ls", "w", "/x", "/y"],
        ["file", "ls", "w", "/x", "--timeout", "0"],
        ["file", "cat", "w", "/x"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err


def test_missing_src_exits_2_before_any_request(
    api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.conf"
    assert troop(api, "file", "push", "web1", str(missing), "/etc/nope.conf") == 2
    assert capsys.readouterr() == ("", f"troop: cannot read {missing}: No such file or directory\n")
    assert troop(api, "file", "push", "web1", str(tmp_path), "/etc/x") == 2
    assert capsys.readouterr().err == f"troop: {tmp_path}: not a regular file\n"
    assert api.seen == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_src_exits_2(
    api: FakeApi, src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src.chmod(0)
    assert troop(api, "file", "push", "web1", str(src), "/etc/app.conf") == 2
    assert capsys.readouterr().err == f"troop: cannot read {src}: Permission denied\n"
    assert api.seen == []


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "file             push, read or list files on hosts" in out
    assert "troop file push 'web*'" in out
    assert main(["file", "--help"]) == 0
    out = capsys.readouterr().out
    for action in ("push", "read", "ls"):
        assert f"    {action}" in out
    assert main(["file", "push", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--makedirs" in out and "(default 300)" in out and "--stream" not in out


# --- push: the requests ---------------------------------------------------------------------


def push_body(sha: str = CONTENT_SHA, **file: Any) -> dict[str, Any]:
    return {
        "kind": "file.push",
        "target": {"hosts": "web1", "os": None, "tags": [], "one": False},
        "timeout": 300,
        "file": {
            "sha256": sha, "name": "app.conf", "dest": "/etc/app.conf", "mode": None,
            "owner": None, "group": None, "makedirs": False, "backup": False, "force": False,
            **file,
        },
    }


def test_push_skips_the_upload_when_the_general_has_the_file(
    api: FakeApi, src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api.blobs.add(CONTENT_SHA)
    assert troop(api, "file", "push", "web1", str(src), "/etc/app.conf") == 0
    assert api.paths() == [
        ("HEAD", f"/api/v1/files/{CONTENT_SHA}"),
        ("POST", "/api/v1/jobs"),
        ("GET", f"/api/v1/jobs/{JOB_ID}/events"),
    ]
    assert api.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert api.seen[1].body == push_body()
    assert api.received is None


def test_push_uploads_when_the_general_lacks_the_file(
    api: FakeApi, src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["file", "push", "web1", str(src), "/etc/app.conf", "--mode", "0640", "--owner",
            "app", "--group", "adm", "--makedirs", "--backup", "--force", "--timeout", "12.5"]
    assert troop(api, *argv) == 0
    assert api.paths() == [
        ("HEAD", f"/api/v1/files/{CONTENT_SHA}"),
        ("PUT", "/api/v1/files"),
        ("POST", "/api/v1/jobs"),
        ("GET", f"/api/v1/jobs/{JOB_ID}/events"),
    ]
    put = api.seen[1].headers
    assert put["Content-Type"] == "application/octet-stream"
    assert put["Content-Length"] == str(len(CONTENT))
    assert put["X-Troop-Sha256"] == CONTENT_SHA
    assert put["X-Troop-Name"] == "app.conf"
    assert put["Authorization"] == f"Bearer {TOKEN}"
    assert "Transfer-Encoding" not in put
    assert api.received == Received(len(CONTENT), CONTENT_SHA, CONTENT)
    expected = push_body(mode="0640", owner="app", group="adm", makedirs=True, backup=True,
                         force=True)
    expected["timeout"] = 12.5
    assert api.seen[2].body == expected


def test_upload_sends_exact_bytes_of_a_multi_block_binary_file(
    api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Over one hash read (1 MiB) and many send blocks, with an odd tail: every byte counts.
    data = os.urandom(MB + 12345)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    assert troop(api, "file", "push", "web1", str(path), "/srv/blob.bin") == 0
    assert api.received == Received(len(data), sha, data[:KEEP])
    assert api.seen[-2].body["file"]["sha256"] == sha
    assert api.seen[-2].body["file"]["name"] == "blob.bin"


def test_empty_file_is_pushed_too(api: FakeApi, tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert troop(api, "file", "push", "web1", str(path), "/etc/empty") == 0
    assert api.received == Received(0, hashlib.sha256(b"").hexdigest(), b"")


def test_odd_names_are_percent_encoded_in_the_name_header(
    api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "résumé 100%\x01.txt"
    path = tmp_path / name
    path.write_bytes(CONTENT)
    assert troop(api, "file", "push", "web1", str(path), "/tmp/x") == 0
    header = api.seen[1].headers["X-Troop-Name"]
    assert header == "r%C3%A9sum%C3%A9 100%25%01.txt"
    assert urllib.parse.unquote(header) == name
    assert api.seen[2].body["file"]["name"] == name  # the JSON body carries it verbatim


@pytest.mark.parametrize("early", [False, True])
def test_413_exits_2_with_the_api_message(
    api: FakeApi, tmp_path: Path, early: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    # early: the General refuses from Content-Length and hangs up without reading the body,
    # so the CLI's send fails; it must still read and show the 413 rather than "broken pipe".
    size = 8 * MB if early else 3000
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        fh.truncate(size)
    api.limit, api.refuse_early = 1000, early
    assert troop(api, "file", "push", "web1", str(path), "/tmp/big.bin") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"troop: upload of {size} bytes is over the 1000-byte limit\n"
    assert [m for m, _ in api.paths()] == ["HEAD", "PUT"]  # no job


def test_head_errors_other_than_404_stop_the_push(
    api: FakeApi, src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert troop(api, "file", "push", "web1", str(src), "/x", token="wrong") == 2
    assert capsys.readouterr().err == "troop: 401 Unauthorized\n"
    assert api.paths() == [("HEAD", f"/api/v1/files/{CONTENT_SHA}")]


def test_async_push_uploads_then_prints_the_job_id(
    api: FakeApi, src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert troop(api, "file", "push", "web1", str(src), "/etc/app.conf", "--async") == 0
    assert capsys.readouterr().out == f"{JOB_ID}\n"
    assert [m for m, _ in api.paths()] == ["HEAD", "PUT", "POST"]


# --- push: the results ----------------------------------------------------------------------


def test_push_results_per_host_and_exit_1_when_one_fails(
    api: FakeApi, src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api.blobs.add(CONTENT_SHA)
    api.results = {
        "web1": pushed(),
        "web2": pushed("replaced", backup="/etc/app.conf.20260101-000000~"),
        "web3": pushed("unchanged"),
        "db10": result("failed", error="permission denied: /etc/app.conf"),
        "db2": result("offline", duration=None),
    }
    assert troop(api, "file", "push", "*", str(src), "/etc/app.conf") == 1
    out, err = capsys.readouterr()
    short = CONTENT_SHA[:12] + "…"
    assert out.splitlines() == [
        "db10  failed",
        "  error: permission denied: /etc/app.conf",
        "db2   offline    not connected when the job was sent",
        f"web1  succeeded  created  /etc/app.conf  20 B  sha256 {short}",
        f"web2  succeeded  replaced  /etc/app.conf  20 B  sha256 {short}"
        "  backup /etc/app.conf.20260101-000000~",
        f"web3  succeeded  unchanged  /etc/app.conf  20 B  sha256 {short}",
    ]
    assert err == "5 hosts: 3 succeeded, 1 failed, 1 offline\n"


def test_push_json_is_the_job_object(
    api: FakeApi, src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api.blobs.add(CONTENT_SHA)
    assert troop(api, "file", "push", "web1", str(src), "/etc/app.conf", "--json") == 0
    out, err = capsys.readouterr()
    job = json.loads(out)
    assert (job["job"], job["kind"]) == (JOB_ID, "file.push")
    assert job["hosts"]["web1"]["data"]["action"] == "created"
    assert err == ""


def test_render_push_attributes_and_late() -> None:
    text = render_push("h", {**pushed("attributes", size=3 * MB), "late": True}, PLAIN)
    assert text == f"h  succeeded  attributes  /etc/app.conf  3.0 MiB  sha256 {CONTENT_SHA[:12]}…  (late)"
    assert render_push("h", result("timed_out"), PLAIN) == "h  timed_out  no result before the timeout"


# --- read -----------------------------------------------------------------------------------


def read_data(content: bytes, path: str = "/etc/motd") -> dict[str, Any]:
    try:
        text: str | None = content.decode()
    except UnicodeDecodeError:
        text = None
    return {
        "path": path, "size": len(content), "sha256": hashlib.sha256(content).hexdigest(),
        "content_base64": base64.b64encode(content).decode(), "text": text,
    }


def test_read_text_and_binary(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    binary = b"\x7fELF\x02\x01\x01\x00\xff\xfe"
    api.results = {
        "web1": result("succeeded", read_data(b"Welcome\n\tto web1\n")),
        "web2": result("succeeded", read_data(binary, "/bin/x")),
        "web3": result("failed", {}, error="/etc/motd: 2000000 bytes, over max_bytes 1048576"),
    }
    assert troop(api, "file", "read", "web*", "/etc/motd", "--timeout", "5") == 1
    assert api.seen[0].body == {
        "kind": "file.read",
        "target": {"hosts": "web*", "os": None, "tags": [], "one": False},
        "timeout": 5,
        "file": {"path": "/etc/motd", "max_bytes": 1048576},
    }
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "web1  succeeded  /etc/motd  17 B",
        "  Welcome",
        "  \tto web1",
        "web2  succeeded  /bin/x  10 B",
        f"  (binary, 10 bytes, sha256 {hashlib.sha256(binary).hexdigest()}; use --json)",
        "web3  failed",
        "  error: /etc/motd: 2000000 bytes, over max_bytes 1048576",
    ]
    assert err == "3 hosts: 2 succeeded, 1 failed\n"


def test_read_json_keeps_the_content(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    binary = bytes(range(256))
    api.results = {"web1": result("succeeded", read_data(binary, "/bin/x"))}
    assert troop(api, "file", "read", "web1", "/bin/x", "--json", "--max-bytes", "300") == 0
    assert api.seen[0].body["file"] == {"path": "/bin/x", "max_bytes": 300}
    data = json.loads(capsys.readouterr().out)["hosts"]["web1"]["data"]
    assert base64.b64decode(data["content_base64"]) == binary
    assert data["sha256"] == hashlib.sha256(binary).hexdigest()
    assert data["text"] is None


def test_read_text_is_defused_on_a_terminal() -> None:
    hostile = result("succeeded", read_data(b"\x1b]0;pwned\x07\x1b[2Jhi\n"))
    shown = render_read("h", hostile, Style(color=True, sanitize=True))
    assert "\x1b]" not in shown and "\x1b[2J" not in shown
    assert "^[]0;pwned^G^[[2Jhi" in shown
    assert "\x1b[2J" in render_read("h", hostile, PLAIN)  # a pipe gets the text as it is


def test_read_binary_without_a_size_counts_the_base64() -> None:
    data = read_data(b"\xff\xfe\xfd\xfc")
    del data["size"]
    assert "(binary, 4 bytes, sha256" in render_read("h", result("succeeded", data), PLAIN)


# --- ls -------------------------------------------------------------------------------------

T0 = 1767225600  # 2026-01-01T00:00:00Z


def entry(name: str, kind: str, size: int, mode: Any, mtime: Any = T0) -> dict[str, Any]:
    return {"name": name, "type": kind, "size": size, "mode": mode, "mtime": mtime}


def test_ls_listing(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(T0))
    api.results = {
        "web1": result("succeeded", {
            "path": "/etc",
            "entries": [
                entry("passwd", "file", 2410, 0o644),
                entry("conf.d", "dir", 4096, 0o755),
                entry("localtime", "link", 33, 0o777),
                entry("sudo", "file", 232416, 0o4755),
            ],
            "truncated": False,
        }),
        "web2": result("succeeded", {
            "path": "/var/log", "entries": [entry("syslog", "file", 7, "0640")], "truncated": True,
        }),
    }
    assert troop(api, "file", "ls", "web*", "/etc") == 0
    assert api.seen[0].body == {
        "kind": "file.ls",
        "target": {"hosts": "web*", "os": None, "tags": [], "one": False},
        "timeout": 60,
        "file": {"path": "/etc"},
    }
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "web1  succeeded  /etc  4 entries",
        f"  drwxr-xr-x    4096  {when}  conf.d/",
        f"  lrwxrwxrwx      33  {when}  localtime@",
        f"  -rw-r--r--    2410  {when}  passwd",
        f"  -rwsr-xr-x  232416  {when}  sudo",
        "web2  succeeded  /var/log  1 entry",
        f"  -rw-r-----  7  {when}  syslog",
        "  (truncated: only the first 1 entries were sent)",
    ]
    assert err == "2 hosts: 2 succeeded\n"


def test_ls_names_are_defused_and_odd_fields_tolerated() -> None:
    data = {
        "path": "/tmp",
        "entries": [
            entry("evil\x1b[2J\nname", "file", 1, None, None),
            entry("pipe", "fifo", 0, "prw-r--r--", "2026-01-01T00:00:00Z"),
        ],
        "truncated": False,
    }
    lines = render_ls("h", result("succeeded", data), Style(sanitize=True)).splitlines()
    assert lines[1] == "  -           1  -                 evil^[[2J^Jname"
    assert lines[2].startswith("  prw-r--r--  0  ")
    assert "\x1b" not in "\n".join(lines)


def test_file_jobs_render_by_kind_in_job_show() -> None:
    job = {"job": "j", "kind": "file.push", "state": "done", "hosts": {"web1": pushed()}}
    assert render_job(job, PLAIN).startswith("web1  succeeded  created  /etc/app.conf  20 B")
    job["kind"] = "cmd"
    assert render_job(job, PLAIN).startswith("web1  succeeded  0.020s")


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (200 * MB, "200.0 MiB"),
     (5 << 40, "5.0 TiB"), (5 << 50, "5120.0 TiB"), (None, "None")],
)
def test_human_size(size: Any, text: str) -> None:
    assert human_size(size) == text


def test_mode_and_mtime_text() -> None:
    assert mode_text(0o100644, "dir") == "-rw-r--r--"  # full st_mode wins over `type`
    assert mode_text(0o1777, "dir") == "drwxrwxrwt"
    assert mode_text("755", "dir") == "drwxr-xr-x"
    assert mode_text(0o644, "mystery") == "?rw-r--r--"
    assert mode_text(None, "file") == "-"
    assert mtime_text(None) == "-" and mtime_text("yesterday") == "yesterday"
    assert mtime_text(T0) == mtime_text("2026-01-01T00:00:00+00:00")


# --- memory ---------------------------------------------------------------------------------

RSS_LIMIT = 60 * MB


def peak_rss(pid: int) -> int:
    """The larger of VmRSS and VmHWM (the peak so far), in bytes; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return max(int(fields.get(k, "0 kB").split()[0]) * 1024 for k in ("VmRSS", "VmHWM"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_a_200_mb_push_never_holds_the_file_in_memory(api: FakeApi, tmp_path: Path) -> None:
    size = 200 * 1000 * 1000
    big = tmp_path / "big.img"
    with open(big, "wb") as fh:
        fh.truncate(size)  # sparse: 200 MB of zeros that take no disk
    zeros = hashlib.sha256()
    block = bytes(MB)
    for _ in range(size // MB):
        zeros.update(block)
    zeros.update(bytes(size % MB))

    proc = spawn(api, "file", "push", "web1", str(big), "/srv/big.img")
    samples: list[int] = []
    # Once the fake has read the whole body the CLI is still waiting for the answer, so its
    # VmHWM then covers the hashing and the whole upload; sampling meanwhile covers the rest.
    api.on_body = lambda: samples.append(peak_rss(proc.pid))
    try:
        while proc.poll() is None:
            samples.append(peak_rss(proc.pid))
            time.sleep(0.005)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert api.received is not None
    assert (api.received.size, api.received.sha256) == (size, zeros.hexdigest())
    assert out.startswith("web1  succeeded  created")
    peak = max(samples)
    assert 0 < peak < RSS_LIMIT, f"the CLI peaked at {peak / MB:.1f} MiB"
