"""The blob store: streamed, hashed, size-capped uploads that leave nothing behind when refused."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from troop.filemanager import blobstore
from troop.filemanager.blobstore import READ_BATCH, BlobStore, ShaMismatch, TooLarge
from troop.protocol.blobstream import CHUNK, StreamOpener

KEY = b"k" * 32


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "fm", max_size=64 * 1024 * 1024)


async def stream(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for p in parts:
        yield p
        await asyncio.sleep(0)


def tmp_files(store: BlobStore) -> list[str]:
    return os.listdir(store.root / "tmp")


def blob_files(store: BlobStore) -> list[Path]:
    return [p for p in (store.root / "blobs").rglob("*") if p.is_file()]


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_put_stores_by_sha(store: BlobStore) -> None:
    info = await store.put(stream([b"hello ", b"world"]))
    sha = hashlib.sha256(b"hello world").hexdigest()
    assert (info.sha256, info.size, info.created) == (sha, 11, True)
    path = store.path(sha)
    assert path == store.root / "blobs" / sha[:2] / sha
    assert path.read_bytes() == b"hello world"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.exists(sha) and store.size(sha) == 11
    assert tmp_files(store) == []


async def test_empty_upload(store: BlobStore) -> None:
    info = await store.put(stream([]))
    assert info.sha256 == hashlib.sha256(b"").hexdigest() and info.size == 0
    assert store.size(info.sha256) == 0


async def test_streaming_put_of_50_mb_stays_small(store: BlobStore) -> None:
    total = 50 * 1024 * 1024
    digest = hashlib.sha256()
    peak = 0

    async def generated() -> AsyncIterator[bytes]:
        nonlocal peak
        for i in range(total // CHUNK):
            chunk = os.urandom(CHUNK)
            digest.update(chunk)
            yield chunk
            if i % 16 == 0:
                peak = max(peak, rss_kib())
                await asyncio.sleep(0)

    await store.put(stream([b"warm up: thread pool and buffers"]))
    before = rss_kib()
    info = await store.put(generated(), expected_sha=None)
    peak = max(peak, rss_kib())
    assert info.size == total and info.sha256 == digest.hexdigest()
    assert store.size(info.sha256) == total
    assert peak - before < 16 * 1024, f"RSS grew by {(peak - before) // 1024} MiB for a 50 MiB upload"


async def test_too_large_leaves_no_temp_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_size=1000)
    with pytest.raises(TooLarge) as caught:
        await store.put(stream([b"x" * 600, b"x" * 600]))
    assert (caught.value.size, caught.value.limit) == (1200, 1000)
    assert "1200" in str(caught.value) and "1000" in str(caught.value)
    assert tmp_files(store) == [] and blob_files(store) == []


async def test_exactly_max_size_is_accepted(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_size=1000)
    assert (await store.put(stream([b"x" * 1000]))).size == 1000


async def test_sha_mismatch_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(ShaMismatch) as caught:
        await store.put(stream([b"data"]), expected_sha="0" * 64)
    assert caught.value.expected == "0" * 64
    assert caught.value.got == hashlib.sha256(b"data").hexdigest()
    assert tmp_files(store) == [] and blob_files(store) == []


async def test_expected_sha_that_matches(store: BlobStore) -> None:
    sha = hashlib.sha256(b"data").hexdigest()
    assert (await store.put(stream([b"data"]), expected_sha=sha)).sha256 == sha


async def test_expected_sha_must_be_a_sha(store: BlobStore) -> None:
    with pytest.raises(ValueError):
        await store.put(stream([b"data"]), expected_sha="../../x")
    assert tmp_files(store) == []


async def test_a_failing_source_leaves_no_temp_file(store: BlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * CHUNK
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put(broken())
    assert tmp_files(store) == []


async def test_cancellation_leaves_no_temp_file(store: BlobStore) -> None:
    hang = asyncio.Event()

    async def slow_client() -> AsyncIterator[bytes]:
        for _ in range(40):  # more than one write batch, so a write has happened
            yield b"x" * CHUNK
        await hang.wait()
        yield b"never"

    task = asyncio.create_task(store.put(slow_client()))
    for _ in range(200):
        await asyncio.sleep(0.01)
        files = tmp_files(store)
        if files and os.path.getsize(store.root / "tmp" / files[0]) > 0:
            break
    assert tmp_files(store), "the upload never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # When the cancel lands during a thread's write, removal follows that write (see the next
    # test), so give it a moment rather than racing it.
    for _ in range(200):
        if not tmp_files(store):
            break
        await asyncio.sleep(0.01)
    assert tmp_files(store) == []


async def test_cancellation_during_a_thread_write(store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temp file's fd is not closed under a thread still writing to it; cleanup follows the write."""
    writing, release = asyncio.Event(), __import__("threading").Event()
    loop = asyncio.get_running_loop()
    real_write = blobstore._TempBlob.write

    def slow_write(self: blobstore._TempBlob, data: bytearray) -> None:
        loop.call_soon_threadsafe(writing.set)
        release.wait(5)
        real_write(self, data)

    monkeypatch.setattr(blobstore._TempBlob, "write", slow_write)
    task = asyncio.create_task(store.put(stream([b"x" * 100])))
    await writing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(tmp_files(store)) == 1  # the thread still owns it
    release.set()
    for _ in range(200):
        if not tmp_files(store):
            break
        await asyncio.sleep(0.01)
    assert tmp_files(store) == [] and blob_files(store) == []


async def test_same_content_is_stored_once(store: BlobStore) -> None:
    first = await store.put(stream([b"same"]))
    second = await store.put(stream([b"sa", b"me"]))
    assert first.created and not second.created
    assert first.sha256 == second.sha256
    assert len(blob_files(store)) == 1 and tmp_files(store) == []


async def test_concurrent_uploads_of_the_same_content(store: BlobStore) -> None:
    data = [os.urandom(CHUNK) for _ in range(20)]
    results = await asyncio.gather(*(store.put(stream(data)) for _ in range(5)))
    assert sum(r.created for r in results) == 1
    assert len({r.sha256 for r in results}) == 1
    assert len(blob_files(store)) == 1 and tmp_files(store) == []


@pytest.mark.parametrize(
    "bad",
    ["", "..", "../etc/passwd", "%2e%2e", "/etc/passwd", "a" * 63, "a" * 65, "A" * 64, "g" * 64,
     "a" * 64 + "\n", "a" * 62 + "/.", "a" * 60 + "/../"],
)
def test_path_refuses_anything_but_lowercase_hex(store: BlobStore, bad: str) -> None:
    with pytest.raises(ValueError):
        store.path(bad)
    with pytest.raises(ValueError):
        store.exists(bad)
    with pytest.raises(ValueError):
        store.size(bad)


async def test_delete(store: BlobStore) -> None:
    info = await store.put(stream([b"bye"]))
    assert await store.count() == 1
    assert await store.delete(info.sha256) is True
    assert await store.delete(info.sha256) is False
    assert not store.exists(info.sha256) and store.size(info.sha256) is None
    assert await store.count() == 0
    with pytest.raises(ValueError):
        await store.delete("..")


async def test_count_walks_once_then_follows_puts(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_size=1000)
    for i in range(3):
        await store.put(stream([bytes([i])]))
    assert await BlobStore(tmp_path, max_size=1000).count() == 3  # a fresh store walks the tree
    assert await store.count() == 3
    await store.put(stream([b"new"]))
    assert await store.count() == 4


async def test_sweep_removes_only_old_temp_files(store: BlobStore) -> None:
    old, fresh = store.root / "tmp" / "old.part", store.root / "tmp" / "fresh.part"
    old.write_bytes(b"abandoned")
    fresh.write_bytes(b"in progress")
    an_hour_ago = time.time() - 3700
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert await store.sweep_tmp(3600) == 1
    assert sorted(tmp_files(store)) == ["fresh.part"]


async def open_sealed(store: BlobStore, sha: str) -> tuple[bytes, int]:
    opener = StreamOpener(KEY)
    out, pieces = bytearray(), 0
    async for piece in store.sealed_chunks(sha, KEY):
        out += opener.feed(piece)
        pieces += 1
    opener.finish()
    return bytes(out), pieces


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, READ_BATCH * CHUNK, READ_BATCH * CHUNK + 1,
                                  3 * CHUNK + 5, 9 * CHUNK + 3])
async def test_sealed_chunks_decrypt_to_the_blob(store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    info = await store.put(stream([data]))
    got, pieces = await open_sealed(store, info.sha256)
    assert got == data
    assert pieces == max(1, -(-size // CHUNK))


async def test_sealed_chunks_of_a_missing_blob(store: BlobStore) -> None:
    chunks = store.sealed_chunks("0" * 64, KEY)
    with pytest.raises(FileNotFoundError):
        await anext(chunks)


async def test_sealed_chunks_refuses_a_bad_sha(store: BlobStore) -> None:
    with pytest.raises(ValueError):
        await anext(store.sealed_chunks("../../etc/passwd", KEY))


async def test_a_blob_shorter_than_its_size_is_never_flagged_complete(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = await store.put(stream([os.urandom(3 * CHUNK)]))
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 10 * CHUNK, 0, 0, 0)))
    opener = StreamOpener(KEY)
    with pytest.raises(OSError, match="shorter"):
        async for piece in store.sealed_chunks(info.sha256, KEY):
            opener.feed(piece)
    assert not opener.done


async def test_sweep_forever_sweeps_then_sleeps(store: BlobStore) -> None:
    old = store.root / "tmp" / "old.part"
    old.write_bytes(b"x")
    os.utime(old, (0, 0))
    task = asyncio.create_task(blobstore.sweep_forever(store, interval=3600, older_than=60))
    for _ in range(200):
        if not old.exists():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert not old.exists()


async def test_a_file_system_without_hard_links(store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    first = await store.put(stream([b"data"]))
    second = await store.put(stream([b"data"]))
    assert first.created and not second.created
    assert store.path(first.sha256).read_bytes() == b"data" and tmp_files(store) == []
