"""The scout's platform layer.

No Windows host can run here, so the Windows branches are tested as pure functions (the argv,
kwargs, paths and decisions they produce) by passing os_name="windows"; the POSIX branches run
for real.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from troop.scout import platform

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="runs POSIX processes")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("linux", "linux"),
        ("win32", "windows"),
        ("cygwin", "windows"),
        ("darwin", "darwin"),
        ("freebsd14", "freebsd"),
        ("sunos5", "sunos"),
        ("aix", "aix"),
    ],
)
def test_os_from_sys_platform(value: str, expected: str) -> None:
    assert platform.os_from_sys_platform(value) == expected


def test_current_os_is_the_running_os() -> None:
    assert platform.current_os() == platform.os_from_sys_platform(sys.platform)
    if sys.platform.startswith("linux"):
        assert platform.current_os() == "linux"
        assert not platform.is_windows()
    assert platform.is_windows("windows")
    assert not platform.is_windows("linux")


def test_shell_argv_posix() -> None:
    assert platform.shell_argv("echo a | wc -c", "linux") == ["/bin/sh", "-c", "echo a | wc -c"]
    assert platform.shell_argv("ls", "darwin") == ["/bin/sh", "-c", "ls"]


def test_shell_argv_windows_uses_comspec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMSPEC", r"C:\Windows\system32\cmd.exe")
    assert platform.shell_argv('dir "C:\\Program Files"', "windows") == [
        r"C:\Windows\system32\cmd.exe",
        "/d",
        "/s",
        "/c",
        'dir "C:\\Program Files"',
    ]
    monkeypatch.delenv("COMSPEC")
    assert platform.shell_argv("ver", "windows")[0] == "cmd.exe"


def test_popen_kwargs() -> None:
    assert platform.popen_kwargs("linux") == {"start_new_session": True}
    assert platform.popen_kwargs("windows") == {"creationflags": 0x00000200}
    assert platform.CREATE_NEW_PROCESS_GROUP == 0x200


def test_kill_tree_argv_kills_the_tree_by_force() -> None:
    assert platform.kill_tree_argv(4242) == ["taskkill", "/T", "/F", "/PID", "4242"]


async def test_kill_tree_windows_runs_taskkill_then_kills_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # taskkill cannot run here: record what would be run and stand in for its process.
    calls: list[tuple[str, ...]] = []

    class FakeTaskkill:
        async def wait(self) -> int:
            return 0

    async def fake_exec(*argv: str, **kwargs: Any) -> FakeTaskkill:
        calls.append(argv)
        assert "shell" not in kwargs
        return FakeTaskkill()

    class FakeTransport:
        killed = False

        def get_pid(self) -> int:
            return 777

        def kill(self) -> None:
            self.killed = True

    monkeypatch.setattr(asyncio, "create_subprocess_exec", fake_exec)
    proc = FakeTransport()
    await platform.kill_tree(proc, "windows")  # type: ignore[arg-type]
    assert calls == [("taskkill", "/T", "/F", "/PID", "777")]
    assert proc.killed


@posix_only
async def test_kill_tree_posix_kills_child_and_grandchild() -> None:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        "sleep 30 & echo $!; wait",
        stdout=asyncio.subprocess.PIPE,
        **platform.popen_kwargs(),
    )
    assert proc.stdout is not None
    grandchild = int(await proc.stdout.readline())
    assert os.getpgid(grandchild) == proc.pid  # the new group the kwargs asked for
    await platform.kill_tree(proc)
    assert await asyncio.wait_for(proc.wait(), 2) == -9
    deadline = time.monotonic() + 1
    while _alive(grandchild) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not _alive(grandchild)


@posix_only
async def test_kill_tree_of_a_finished_process_does_not_raise() -> None:
    proc = await asyncio.create_subprocess_exec("true", **platform.popen_kwargs())
    await proc.wait()
    await platform.kill_tree(proc)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a killed orphan may stay a zombie if PID 1 does not reap


def test_merge_env_posix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROOP_TEST_A", "scout")
    monkeypatch.setenv("TROOP_TEST_B", "scout")
    env = platform.merge_env({"TROOP_TEST_B": "task", "TROOP_TEST_C": "task"}, "linux")
    assert env["TROOP_TEST_A"] == "scout"
    assert env["TROOP_TEST_B"] == "task"
    assert env["TROOP_TEST_C"] == "task"
    assert os.environ["TROOP_TEST_B"] == "scout"  # the scout's own environment is untouched


def test_merge_env_windows_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROOP_TEST_PATH", r"C:\old")
    env = platform.merge_env({"troop_test_path": r"C:\new"}, "windows")
    assert [k for k in env if k.upper() == "TROOP_TEST_PATH"] == ["troop_test_path"]
    assert env["troop_test_path"] == r"C:\new"
    # On POSIX the two spellings are two variables.
    env = platform.merge_env({"troop_test_path": "/new"}, "linux")
    assert env["TROOP_TEST_PATH"] == r"C:\old" and env["troop_test_path"] == "/new"


def test_decode_output() -> None:
    assert platform.decode_output("héllo".encode()) == "héllo"
    assert platform.decode_output(b"ok \xff\xfe end", "linux") == "ok \ufffd\ufffd end"


def test_decode_output_windows_falls_back_to_the_code_page() -> None:
    gbk = "磁盘空间".encode("gbk")
    assert platform.decode_output(gbk, "windows", fallback="gbk") == "磁盘空间"
    assert "\ufffd" in platform.decode_output(gbk, "linux", fallback="gbk")
    # Bytes the code page cannot decode either still give text.
    assert platform.decode_output(b"\xff", "windows", fallback="ascii") == "\ufffd"


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    assert platform.default_data_dir("linux") == "/var/lib/troop-scout"
    monkeypatch.setenv("PROGRAMDATA", r"D:\ProgramData")
    assert platform.default_data_dir("windows") == r"D:\ProgramData\troop-scout"
    monkeypatch.delenv("PROGRAMDATA")
    assert platform.default_data_dir("windows") == r"C:\ProgramData\troop-scout"


@posix_only
def test_write_private_file_is_owner_only_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "scout.key"
    target.write_bytes(b"old key")
    target.chmod(0o644)
    assert not platform.private_file_mode_ok(target)

    platform.write_private_file(target, b"new key")

    assert target.read_bytes() == b"new key"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert platform.private_file_mode_ok(target)
    assert os.listdir(tmp_path) == ["scout.key"]  # no temp file left behind


def test_write_private_file_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # a directory cannot be replaced by a file
    with pytest.raises(OSError):
        platform.write_private_file(target, b"data")
    assert os.listdir(tmp_path) == ["taken"]


def test_private_file_mode_ok(tmp_path: Path) -> None:
    path = tmp_path / "f"
    assert not platform.private_file_mode_ok(path)  # missing
    path.write_bytes(b"x")
    path.chmod(0o600)
    assert platform.private_file_mode_ok(path, "linux")
    path.chmod(0o640)
    assert not platform.private_file_mode_ok(path, "linux")
    path.chmod(0o604)
    assert not platform.private_file_mode_ok(path, "linux")
    # Windows has no mode bits to judge; the data dir's ACL protects the file.
    assert platform.private_file_mode_ok(path, "windows")


@posix_only
async def test_spawn_starts_a_new_session_with_stdin_closed() -> None:
    class Collect(asyncio.SubprocessProtocol):
        def __init__(self) -> None:
            self.out = bytearray()
            self.done = asyncio.get_running_loop().create_future()

        def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
            self.out += data

        def connection_lost(self, exc: Exception | None) -> None:
            self.done.set_result(None)  # the process exited and both pipes are closed

    # `ps -o sid=` would need procps; /proc says the same. `cat` ends at once on devnull.
    transport, proto = await platform.spawn(
        Collect, shell="cat; cut -d' ' -f6 /proc/$$/stat; echo $$"
    )
    await asyncio.wait_for(proto.done, 2)
    transport.close()
    session, pid = proto.out.split()
    assert session == pid == str(transport.get_pid()).encode()
