"""Blobs on disk, named by their sha256: root/blobs/<first two hex>/<sha256>, uploads in root/tmp/.

Uploads stream through a temp file and are renamed into place only once their hash is known,
so a blob path never holds partial or unverified bytes. Every path comes from `path()`, which
takes nothing but 64 lowercase hex digits: that is what keeps the store inside its root.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from troop.durable import fsync_dir
from troop.errors import TroopError
from troop.filemanager.signing import SHA256_HEX
from troop.protocol.blobstream import CHUNK, StreamSealer

log = logging.getLogger("troop.filemanager")

WRITE_BATCH = 1024 * 1024  # bytes gathered before one write in a thread: few thread hops, bounded memory
READ_BATCH = 4  # CHUNKs read and sealed per thread hop when serving a blob
TMP_SUFFIX = ".part"
T = TypeVar("T")


class BlobError(TroopError):
    """An upload was refused."""


class TooLarge(BlobError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"upload of at least {size} bytes is over the {limit}-byte limit")
        self.size = size
        self.limit = limit


class ShaMismatch(BlobError):
    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"content has sha256 {got}, not the expected {expected}")
        self.expected = expected
        self.got = got


@dataclass(frozen=True)
class BlobInfo:
    sha256: str
    size: int
    created: bool  # False: the blob was already stored and the upload was dropped


class _TempBlob:
    """One upload's temp file. Its file descriptor is only touched by one thread job at a time,
    and is closed only after the last job has finished: a thread cannot be interrupted, and
    closing an fd under a running os.write could let it write into whatever file reuses the number."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.hash = hashlib.sha256()
        self.size = 0
        self._job: asyncio.Future[Any] | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        # shield: a cancelled caller must not un-track a thread job that is still running.
        job = asyncio.ensure_future(asyncio.to_thread(fn))
        self._job = job
        return await asyncio.shield(job)

    def write(self, data: bytearray) -> None:
        self.hash.update(data)  # hashlib drops the GIL on large buffers, so this costs the loop nothing
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def commit(self) -> None:
        os.fsync(self.fd)
        self._close()

    def _close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def discard(self) -> None:
        """Close and remove the temp file now, or as soon as the running thread job is done."""

        def drop(job: asyncio.Future[Any] | None = None) -> None:
            if job is not None and not job.cancelled():
                job.exception()  # retrieved, so asyncio does not warn about it
            with contextlib.suppress(OSError):
                self._close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

        if self._job is not None and not self._job.done():
            self._job.add_done_callback(drop)
        else:
            drop()


class BlobStore:
    def __init__(self, root: Path, max_size: int) -> None:
        self.root = root
        self.max_size = max_size
        self._blobs = root / "blobs"
        self._tmp = root / "tmp"
        for d in (self._blobs, self._tmp):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._count: int | None = None

    def path(self, sha: str) -> Path:
        if not SHA256_HEX.match(sha):
            raise ValueError(f"not a sha256: {sha!r}")
        return self._blobs / sha[:2] / sha

    def exists(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def size(self, sha: str) -> int | None:
        try:
            return self.path(sha).stat().st_size
        except FileNotFoundError:
            return None

    async def put(self, chunks: AsyncIterator[bytes], *, expected_sha: str | None = None) -> BlobInfo:
        """Store a stream of bytes; TooLarge or ShaMismatch (and no blob, no temp file) when refused."""
        if expected_sha is not None and not SHA256_HEX.match(expected_sha):
            raise ValueError(f"not a sha256: {expected_sha!r}")
        tmp_path = self._tmp / (secrets.token_hex(16) + TMP_SUFFIX)
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        tmp = _TempBlob(tmp_path, fd)
        try:
            await self._fill(tmp, chunks)
            await tmp.run(tmp.commit)
            sha = tmp.hash.hexdigest()
            if expected_sha is not None and sha != expected_sha:
                raise ShaMismatch(expected_sha, sha)
            created = await tmp.run(partial(self._place, tmp_path, sha))
        finally:
            tmp.discard()  # after _place the temp name is only a second link to the blob
        if created and self._count is not None:
            self._count += 1
        return BlobInfo(sha, tmp.size, created)

    async def _fill(self, tmp: _TempBlob, chunks: AsyncIterator[bytes]) -> None:
        buf = bytearray()
        async for chunk in chunks:
            tmp.size += len(chunk)
            if tmp.size > self.max_size:
                raise TooLarge(tmp.size, self.max_size)
            buf += chunk
            if len(buf) >= WRITE_BATCH:
                # hand the buffer over and start a new one: no copy, and the thread owns it
                full, buf = buf, bytearray()
                await tmp.run(partial(tmp.write, full))
        if buf:
            await tmp.run(partial(tmp.write, buf))

    def _place(self, tmp_path: Path, sha: str) -> bool:
        final = self.path(sha)
        final.parent.mkdir(mode=0o700, exist_ok=True)
        try:
            # link, not rename: it fails on an existing name, so two uploads of the same
            # content race safely and exactly one of them reports created=True.
            os.link(tmp_path, final)
        except FileExistsError:
            return False
        except OSError:
            # No hard links on this file system (some SMB and FUSE mounts): rename instead,
            # which at worst replaces a twin that appeared meanwhile with the same bytes.
            if final.exists():
                return False
            os.replace(tmp_path, final)
        fsync_dir(final.parent)
        return True

    async def delete(self, sha: str) -> bool:
        path = self.path(sha)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        if self._count is not None:
            self._count -= 1
        return True

    async def count(self) -> int:
        """How many blobs there are: one directory walk on the first call, then kept up to date
        by put() and delete() (so it misses changes made by other processes)."""
        if self._count is None:
            self._count = await asyncio.to_thread(self._walk_count)
        return self._count

    def _walk_count(self) -> int:
        return sum(1 for d in self._blobs.iterdir() if d.is_dir() for f in d.iterdir() if f.is_file())

    async def sweep_tmp(self, older_than_seconds: float) -> int:
        """Remove temp files untouched for that long: uploads whose process died mid-way.
        An upload in progress rewrites its file at least every WRITE_BATCH bytes, so only a
        stall longer than the threshold could lose a live one."""
        return await asyncio.to_thread(self._sweep, time.time() - older_than_seconds)

    def _sweep(self, cutoff: float) -> int:
        removed = 0
        for entry in os.scandir(self._tmp):
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    async def sealed_chunks(self, sha: str, key: bytes) -> AsyncIterator[bytes]:
        """The blob as a sealed chunk stream (blobstream). Raises FileNotFoundError on the
        first step if the blob is missing, before anything has been yielded."""
        path = self.path(sha)
        fh = await asyncio.to_thread(path.open, "rb")
        sealer = StreamSealer(key)
        job: asyncio.Future[list[bytes]] | None = None
        try:
            remaining = os.fstat(fh.fileno()).st_size  # blobs never change once named
            first = True
            while first or remaining > 0:
                job = asyncio.ensure_future(asyncio.to_thread(_read_sealed, fh, sealer, remaining))
                sealed = await asyncio.shield(job)
                remaining -= min(remaining, READ_BATCH * CHUNK)
                first = False
                for piece in sealed:
                    yield piece
        finally:
            if job is not None and not job.done():
                job.add_done_callback(lambda _: fh.close())  # the thread still reads fh
            else:
                fh.close()


def _read_sealed(fh: BinaryIO, sealer: StreamSealer, remaining: int) -> list[bytes]:
    """Up to READ_BATCH sealed chunks; the chunk that reaches the end of the blob is the last."""
    out = []
    for _ in range(READ_BATCH):
        want = min(CHUNK, remaining)
        data = fh.read(want)
        if len(data) != want:
            raise OSError(f"{fh.name}: blob is shorter than its size")  # never flag a short stream as complete
        remaining -= want
        out.append(sealer.seal(data, last=remaining == 0))
        if remaining == 0:
            break
    return out


async def sweep_forever(store: BlobStore, interval: float = 3600.0, older_than: float = 3600.0) -> None:
    """Remove abandoned temp files every `interval` seconds, until cancelled."""
    while True:
        try:
            removed = await store.sweep_tmp(older_than)
        except OSError as exc:
            log.warning("temp sweep failed: %s", exc)
        else:
            if removed:
                log.info("removed %d abandoned upload(s)", removed)
        await asyncio.sleep(interval)
