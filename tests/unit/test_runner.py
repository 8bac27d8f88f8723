"""The scout's command runner, with real processes (POSIX shell tools)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from troop.protocol.messages import Command
from troop.scout.runner import TaskSlots, run_command

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX shell tools")


def alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie counts as gone: it was killed, and this container's
    PID 1 may never reap what it inherits."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_gone(pid: int, within: float = 1.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def pids_in(output: bytes) -> list[int]:
    return [int(line) for line in output.split()]


async def test_argv_echo_succeeds() -> None:
    result = await run_command("t1", Command(argv=["echo", "hello", "world"]), 5)
    assert result.task_id == "t1"
    assert result.state == "succeeded"
    assert result.exit_code == 0
    assert result.stdout == b"hello world\n"
    assert result.stderr == b""
    assert result.error is None
    assert not result.stdout_truncated and not result.stderr_truncated
    assert 0 < result.duration < 2


async def test_argv_is_not_interpreted_by_a_shell() -> None:
    result = await run_command("t", Command(argv=["echo", "$HOME; echo x"]), 5)
    assert result.stdout == b"$HOME; echo x\n"


async def test_nonzero_exit_is_failed_with_the_code_and_no_error() -> None:
    result = await run_command("t", Command(argv=["sh", "-c", "echo oops >&2; exit 3"]), 5)
    assert result.state == "failed"
    assert result.exit_code == 3
    assert result.error is None
    assert result.stderr == b"oops\n"


async def test_killed_by_a_signal_reports_the_signal() -> None:
    result = await run_command("t", Command(shell="kill -9 $$"), 5)
    assert result.state == "failed"
    assert result.exit_code == -9
    assert result.error is not None and result.error.startswith("killed by signal 9")


async def test_env_is_added_to_the_scout_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROOP_TEST_INHERITED", "from-scout")
    cmd = Command(
        shell='printf "%s %s" "$TROOP_TEST_INHERITED" "$TROOP_TEST_GIVEN"',
        env={"TROOP_TEST_GIVEN": "from-task"},
    )
    result = await run_command("t", cmd, 5)
    assert result.stdout == b"from-scout from-task"


async def test_env_overrides_the_scout_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROOP_TEST_VAR", "old")
    result = await run_command(
        "t", Command(shell='printf %s "$TROOP_TEST_VAR"', env={"TROOP_TEST_VAR": "new"}), 5
    )
    assert result.stdout == b"new"


async def test_cwd(tmp_path: Path) -> None:
    result = await run_command("t", Command(argv=["pwd", "-P"], cwd=str(tmp_path)), 5)
    assert result.state == "succeeded"
    assert result.stdout.decode().strip() == str(tmp_path.resolve())


async def test_missing_cwd_fails_naming_the_dir(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    result = await run_command("t", Command(argv=["pwd"], cwd=str(missing)), 5)
    assert result.state == "failed"
    assert result.exit_code is None
    assert result.error is not None and str(missing) in result.error


async def test_program_not_found() -> None:
    result = await run_command("t", Command(argv=["troop-no-such-program-xyz", "-v"]), 5)
    assert result.state == "failed"
    assert result.exit_code is None
    assert result.error == "program not found: troop-no-such-program-xyz"


async def test_task_env_path_is_used_to_find_the_program(tmp_path: Path) -> None:
    tool = tmp_path / "troop-test-tool"
    tool.write_text("#!/bin/sh\necho found me\n")
    tool.chmod(0o755)
    result = await run_command(
        "t", Command(argv=["troop-test-tool"], env={"PATH": f"{tmp_path}:/usr/bin:/bin"}), 5
    )
    assert result.stdout == b"found me\n"


async def test_not_executable_fails_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    result = await run_command("t", Command(argv=[str(script)]), 5)
    assert result.state == "failed"
    assert result.error is not None and "permission denied" in result.error


async def test_bad_argument_fails_instead_of_raising() -> None:
    result = await run_command("t", Command(argv=["echo", "nul\x00byte"]), 5)
    assert result.state == "failed"
    assert result.error is not None and result.error.startswith("cannot start echo")


@pytest.mark.parametrize("cmd", [Command(), Command(argv=[], shell=""), Command(shell="  \n")])
async def test_empty_command(cmd: Command) -> None:
    result = await run_command("t", cmd, 5)
    assert result.state == "failed"
    assert result.error == "empty command"


async def test_shell_mode_runs_through_sh() -> None:
    result = await run_command("t", Command(shell="echo a && echo b >&2; echo $((2 + 3))"), 5)
    assert result.state == "succeeded"
    assert result.stdout == b"a\n5\n"
    assert result.stderr == b"b\n"


async def test_shell_takes_precedence_over_argv() -> None:
    result = await run_command("t", Command(argv=["echo", "argv"], shell="echo shell"), 5)
    assert result.stdout == b"shell\n"


async def test_stdin_is_empty() -> None:
    # `cat` would wait forever on an inherited terminal or pipe.
    result = await run_command("t", Command(argv=["cat"]), 2)
    assert result.state == "succeeded"
    assert result.stdout == b""


async def test_output_is_capped_and_flagged_but_the_command_finishes() -> None:
    # 100 KB is more than a pipe buffer: a runner that stops reading would hang here.
    cmd = Command(
        shell="head -c 100000 /dev/zero; head -c 500 /dev/zero >&2; echo done >&2",
        max_output=1000,
    )
    result = await run_command("t", cmd, 5)
    assert result.state == "succeeded"
    assert result.stdout == b"\0" * 1000
    assert result.stdout_truncated
    assert result.stderr == b"\0" * 500 + b"done\n"
    assert not result.stderr_truncated


async def test_output_exactly_at_the_cap_is_not_truncated() -> None:
    result = await run_command("t", Command(shell="printf 1234567890", max_output=10), 5)
    assert result.stdout == b"1234567890"
    assert not result.stdout_truncated


async def test_on_output_gets_every_chunk_within_the_cap_in_order() -> None:
    chunks: list[tuple[str, bytes]] = []

    async def on_output(stream: str, data: bytes) -> None:
        chunks.append((stream, data))

    cmd = Command(
        shell="echo one; sleep 0.05; echo two >&2; sleep 0.05; head -c 5000 /dev/zero",
        max_output=2000,
    )
    result = await run_command("t", cmd, 5, on_output=on_output)
    stdout = b"".join(d for s, d in chunks if s == "stdout")
    stderr = b"".join(d for s, d in chunks if s == "stderr")
    assert stdout == result.stdout and len(stdout) == 2000
    assert stdout.startswith(b"one\n")
    assert stderr == b"two\n"
    assert {s for s, _ in chunks} == {"stdout", "stderr"}
    assert all(data for _, data in chunks)  # nothing empty once the cap is reached
    assert chunks[0] == ("stdout", b"one\n")  # delivered as it came, not at the end
    assert result.duration < 1


async def test_a_failing_on_output_does_not_break_the_run() -> None:
    async def on_output(stream: str, data: bytes) -> None:
        raise ConnectionError("the General went away")

    result = await run_command("t", Command(shell="echo a; echo b"), 5, on_output=on_output)
    assert result.state == "succeeded"
    assert result.stdout == b"a\nb\n"
    assert result.duration < 1


async def test_timeout_kills_the_whole_process_group() -> None:
    # The shell starts a background grandchild, prints its pid, then waits.
    cmd = Command(shell="sleep 30 & echo $!; sleep 30")
    started = time.monotonic()
    result = await run_command("t", cmd, 0.3)
    assert time.monotonic() - started < 1.5
    assert result.state == "timed_out"
    assert result.exit_code is None
    assert result.error == "timed out after 0.3s"
    [grandchild] = pids_in(result.stdout)  # output read before the kill is kept
    assert await wait_gone(grandchild), "the background grandchild survived the timeout"


async def test_background_child_holding_the_pipes_cannot_hang_the_runner() -> None:
    # The main process exits at once; `sleep 30` keeps stdout open and would hold a
    # runner that waits for end of output for 30 seconds.
    started = time.monotonic()
    result = await run_command("t", Command(shell="sleep 30 & echo $!"), 10)
    assert time.monotonic() - started < 1.5
    assert result.state == "succeeded"
    assert result.exit_code == 0
    [child] = pids_in(result.stdout)
    assert await wait_gone(child)


async def test_background_child_with_redirected_output_is_left_running() -> None:
    result = await run_command("t", Command(shell="sleep 30 >/dev/null 2>&1 & echo $!"), 5)
    [child] = pids_in(result.stdout)
    try:
        assert result.state == "succeeded"
        assert result.duration < 0.4  # no grace period waited: the pipes were closed
        assert alive(child)
    finally:
        os.kill(child, 9)


async def test_child_outside_the_group_holding_the_pipes_cannot_hang_past_timeout() -> None:
    # setsid moves the child out of the process group, beyond kill_tree's reach.
    started = time.monotonic()
    result = await run_command("t", Command(shell="setsid sleep 5 & echo $!; sleep 30"), 0.3)
    elapsed = time.monotonic() - started
    [escaped] = pids_in(result.stdout)
    os.kill(escaped, 9)
    assert result.state == "timed_out"
    assert elapsed < 1.5


async def test_cancel_kills_the_process_group() -> None:
    output: list[bytes] = []

    async def on_output(stream: str, data: bytes) -> None:
        output.append(data)

    task = asyncio.create_task(
        run_command("t", Command(shell="sleep 30 & echo $!; sleep 30"), 30, on_output=on_output)
    )
    while not output:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [grandchild] = pids_in(b"".join(output))
    assert await wait_gone(grandchild)


async def test_task_slots_bound_concurrency_of_real_commands() -> None:
    slots = TaskSlots(2)
    active = peak = 0

    async def one(i: int) -> str:
        nonlocal active, peak
        async with slots:
            active += 1
            peak = max(peak, active)
            result = await run_command(str(i), Command(argv=["sleep", "0.1"]), 5)
            active -= 1
            return result.state

    states = await asyncio.gather(*(one(i) for i in range(6)))
    assert states == ["succeeded"] * 6
    assert peak == 2
    assert slots.running == 0 and slots.waiting == 0


async def test_task_slots_count_running_and_waiting() -> None:
    slots = TaskSlots(2)
    release = asyncio.Event()

    async def hold() -> None:
        async with slots:
            await release.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert slots.max_concurrency == 2
    assert (slots.running, slots.waiting) == (2, 3)
    tasks[4].cancel()  # a waiter that gives up stops counting as waiting
    await asyncio.sleep(0.01)
    assert (slots.running, slots.waiting) == (2, 2)
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (slots.running, slots.waiting) == (0, 0)


async def test_task_slots_free_the_slot_when_the_work_fails() -> None:
    slots = TaskSlots(1)
    with pytest.raises(RuntimeError):
        async with slots:
            raise RuntimeError("boom")
    async with asyncio.timeout(1):
        async with slots:
            assert slots.running == 1


def test_task_slots_need_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TaskSlots(0)
