"""Run one command of a task and turn whatever happens into a Result.

:func:`run_command` never raises for a bad command (missing program, bad working dir,
non-zero exit, signal, timeout): those are outcomes, returned as a ``Result``. It raises
only ``asyncio.CancelledError``, when its task is cancelled, and then it has killed the
command's process group first.

Rules an operator can rely on:

- Output is capped per stream at ``Command.max_output`` bytes; the rest is read and thrown
  away (so the command never blocks on a full pipe) and the stream is flagged truncated.
- At the timeout the whole process group is killed; the result is ``timed_out`` and keeps
  the output read so far.
- When the main process exits but something it started in the background still holds the
  output pipes, the runner waits up to ``PIPE_GRACE`` seconds for them to close, then kills
  the process group. Redirect a background job's output (``cmd >/dev/null 2>&1 &``) to
  leave it running after the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from troop.protocol.messages import Command, Result
from troop.scout import platform

log = logging.getLogger(__name__)

OutputCallback = Callable[[str, bytes], Awaitable[None]]

PIPE_GRACE = 0.5  # seconds to wait for pipes held open by background children
KILL_GRACE = 0.5  # seconds to wait for the pipes to close after a kill

_STREAMS = {1: "stdout", 2: "stderr"}


class _Capture:
    """One output stream, kept up to a cap."""

    def __init__(self, cap: int) -> None:
        self.cap = max(cap, 0)
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> bytes:
        """Keep what fits under the cap and return it."""
        room = self.cap - len(self.data)
        kept = chunk[:room] if room > 0 else b""
        self.data += kept
        if len(kept) < len(chunk):
            self.truncated = True
        return kept


class _CommandProtocol(asyncio.SubprocessProtocol):
    """Collects output as it arrives and signals exit and end of output separately."""

    def __init__(self, max_output: int, streaming: bool) -> None:
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self.captures = {fd: _Capture(max_output) for fd in _STREAMS}
        self.chunks: asyncio.Queue[tuple[str, bytes]] | None = (
            asyncio.Queue() if streaming else None
        )
        self._open = set(_STREAMS)

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        kept = self.captures[fd].add(bytes(data))
        if kept and self.chunks is not None:
            self.chunks.put_nowait((_STREAMS[fd], kept))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


async def run_command(
    task_id: str,
    cmd: Command,
    timeout: float,
    *,
    on_output: OutputCallback | None = None,
    os_name: str | None = None,
) -> Result:
    """Run ``cmd`` (argv, or ``shell`` through the host's shell) and report the outcome.

    ``on_output(stream, chunk)`` is awaited for each chunk of output within the cap, in
    order, before this returns.
    """
    start = time.monotonic()
    # A blank shell string means "no shell command", not "run an empty script".
    shell = cmd.shell if cmd.shell and cmd.shell.strip() else None
    if not cmd.argv and shell is None:
        return _failed(task_id, start, "empty command")
    # One stat (the fork below blocks longer); Windows reports a bad cwd too vaguely.
    if cmd.cwd is not None and not os.path.isdir(cmd.cwd):  # noqa: ASYNC240
        return _failed(task_id, start, f"working directory not found: {cmd.cwd}")

    protocol = _CommandProtocol(cmd.max_output, streaming=on_output is not None)
    try:
        transport, _ = await platform.spawn(
            lambda: protocol,
            cmd.argv,
            shell=shell,
            env=platform.merge_env(cmd.env, os_name),
            cwd=cmd.cwd,
            os_name=os_name,
        )
    except (OSError, ValueError) as exc:
        program = platform.shell_argv("", os_name)[0] if shell is not None else cmd.argv[0]
        return _failed(task_id, start, _start_error(program, cmd.cwd, exc))

    streamer = asyncio.create_task(_stream(protocol, on_output)) if on_output else None
    try:
        timed_out = await _supervise(transport, protocol, timeout, os_name)
        if streamer is not None:
            await _finish_streaming(protocol, streamer, start + timeout - time.monotonic())
    finally:
        if streamer is not None:
            streamer.cancel()
        if not (protocol.exited.done() and protocol.pipes_closed.done()):
            # Cancelled mid-run (or a child outside the group still holds the pipes): the
            # command must not outlive its task.
            await platform.kill_tree(transport, os_name)
        transport.close()
    return _result(task_id, start, protocol, transport.get_returncode(), timed_out, timeout)


async def _supervise(
    transport: asyncio.SubprocessTransport,
    protocol: _CommandProtocol,
    limit: float,
    os_name: str | None,
) -> bool:
    """Wait up to ``limit`` seconds for the command to finish; True when it timed out."""
    deadline = time.monotonic() + limit
    if not await _wait(protocol.exited, limit):
        await platform.kill_tree(transport, os_name)
        await _wait(protocol.exited, KILL_GRACE)
        await _wait(protocol.pipes_closed, KILL_GRACE)
        return True
    grace = max(0.0, min(PIPE_GRACE, deadline - time.monotonic()))
    if not await _wait(protocol.pipes_closed, grace):
        log.info("pid %d exited, its group still holds the pipes: killing it", transport.get_pid())
        await platform.kill_tree(transport, os_name)
        # A child that left the group (setsid) may still hold them; transport.close() then
        # lets go of our ends, and its next write fails.
        await _wait(protocol.pipes_closed, KILL_GRACE)
    return False


async def _wait(future: asyncio.Future[None], seconds: float) -> bool:
    """Wait for ``future`` up to ``seconds``, without cancelling it; True if it is done."""
    done, _ = await asyncio.wait([future], timeout=max(seconds, 0.0))
    return bool(done)


async def _stream(protocol: _CommandProtocol, on_output: OutputCallback) -> None:
    assert protocol.chunks is not None
    while True:
        stream, chunk = await protocol.chunks.get()
        try:
            await on_output(stream, chunk)
        except Exception:
            # A broken consumer (say, a dropped connection) must not stop the command or
            # lose the captured output that goes into the Result.
            log.exception("output callback failed; no more output is streamed for this task")
            return
        finally:
            protocol.chunks.task_done()


async def _finish_streaming(
    protocol: _CommandProtocol, streamer: asyncio.Task[None], time_left: float
) -> None:
    """Let the chunks already queued reach on_output, within the task's time (or a grace)."""
    assert protocol.chunks is not None
    drained = asyncio.ensure_future(protocol.chunks.join())
    try:
        await asyncio.wait(
            [drained, streamer],  # streamer ends early only when on_output failed
            timeout=max(time_left, KILL_GRACE),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        drained.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drained


def _result(
    task_id: str,
    start: float,
    protocol: _CommandProtocol,
    returncode: int | None,
    timed_out: bool,
    timeout: float,
) -> Result:
    out, err = protocol.captures[1], protocol.captures[2]
    state, exit_code, error = _outcome(returncode, timed_out, timeout)
    return Result(
        task_id=task_id,
        state=state,
        exit_code=exit_code,
        stdout=bytes(out.data),
        stderr=bytes(err.data),
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        error=error,
        duration=time.monotonic() - start,
    )


def _outcome(
    returncode: int | None, timed_out: bool, timeout: float
) -> tuple[str, int | None, str | None]:
    if timed_out:
        return "timed_out", None, f"timed out after {timeout:g}s"
    if returncode is None:  # exit never reported; not expected from a finished process
        return "failed", None, "exit status unknown"
    if returncode == 0:
        return "succeeded", 0, None
    if returncode < 0:  # only POSIX reports a signal this way
        return "failed", returncode, f"killed by signal {-returncode}{_signal_name(-returncode)}"
    return "failed", returncode, None


def _signal_name(number: int) -> str:
    try:
        return f" ({signal.Signals(number).name})"
    except ValueError:
        return ""


def _start_error(program: str, cwd: str | None, exc: OSError | ValueError) -> str:
    if isinstance(exc, FileNotFoundError):
        if cwd is not None and exc.filename == cwd:
            return f"working directory not found: {cwd}"
        return f"program not found: {program}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or program}"
    if isinstance(exc, OSError):
        return f"cannot start {program}: {exc.strerror or exc}"
    return f"cannot start {program}: {exc}"  # e.g. a NUL byte in an argument or env value


def _failed(task_id: str, start: float, error: str) -> Result:
    return Result(task_id=task_id, state="failed", error=error, duration=time.monotonic() - start)


class TaskSlots:
    """At most ``max_concurrency`` tasks run at once; the others wait their turn in order.

    ``async with slots:`` around a task's work. ``running`` and ``waiting`` are for status
    reports.
    """

    def __init__(self, max_concurrency: int) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        self._max = max_concurrency
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._running = 0
        self._waiting = 0

    @property
    def max_concurrency(self) -> int:
        return self._max

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    async def __aenter__(self) -> TaskSlots:
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._running -= 1
        self._semaphore.release()
