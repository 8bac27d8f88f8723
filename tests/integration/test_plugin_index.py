"""The plugin index against real git repositories, a real blob store and a real SQLite store."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import troop
from troop.filemanager.blobstore import BlobStore
from troop.general.files import FileService
from troop.general.plugins import BUILDER_MODULE, INDEX_KEY, PluginError, PluginIndex
from troop.general.settings import GeneralSettings
from troop.store import Store

GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,  # the test's git must not depend on the machine's config
    "GIT_CONFIG_NOSYSTEM": "1",
}
IDENTITY = ["-c", "user.name=Troop Test", "-c", "user.email=test@troop.invalid", "-c", "commit.gpgsign=false"]

GOOD = {
    "hello/hello-linux-v1.0.0": b"#!/bin/sh\necho hello 1.0.0\n",
    "hello/hello-linux-v1.1.0": b"#!/bin/sh\necho hello 1.1.0\n",
    "hello/hello-win-v1.1.0.exe": b"MZ not really a program\n",
    "disk_report/disk_report-linux-v2.0.0": b"#!/bin/sh\ndf -h\n",
    "my-tool/my-tool-linux-v0.3.0": b"#!/bin/sh\necho my-tool\n",
}
BAD = {  # file -> the words its report line must hold
    "hello/hello-v1": "bad name: no -OS",
    "hello/hello-linux-v1.0.0.exe": "only Windows plugins end in .exe",
    "hello/hello-win-v1.0.0": "must end in .exe",
    "hello/hello-linux-v1.00.0": "same plugin, OS and version as hello/hello-linux-v1.0.0",
    "other/hello-linux-v1.0.0": "plugin name 'hello' differs from its folder 'other'",
    "hello/hello-linux-v9.9.9": "symlink refused",
    "hello/nested": "folder refused",
    "evil": "symlink refused",
}
SECRET = b"outside the repository: never read\n"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *IDENTITY, *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755)


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Things a hostile repository points its symlinks at."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret").write_bytes(SECRET)
    os.mkfifo(out / "fifo")  # were it ever opened for reading, the test would hang, not pass
    return out


@pytest.fixture
def repo(tmp_path: Path, outside: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    write(repo, GOOD)
    write(repo, {"README.md": b"# plugins\n", "hello/.gitkeep": b"", "hello/nested/hello-linux-v3.0.0": b"x"})
    special = ("hello/nested", "evil", "hello/hello-linux-v9.9.9")
    write(repo, {rel: b"#!/bin/sh\nexit 1\n" for rel in BAD if rel not in special})
    # Valid name, right folder: only the symlink rule keeps it out.
    (repo / "hello" / "hello-linux-v9.9.9").symlink_to(outside / "secret")
    (repo / "hello" / "hello-linux-v9.9.8").symlink_to(outside / "fifo")
    (repo / "evil").symlink_to(outside)
    commit(repo, "plugins")
    return repo


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Store, BlobStore, FileService]]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/general/troop.db")
    blobs = BlobStore(tmp_path / "general" / "files", 1024**3)
    try:
        yield store, blobs, FileService(store, blobs, secret=os.urandom(32), public_url="", fm_port=0)
    finally:
        await store.close()


def make_settings(data_dir: Path, repo: str, **more: object) -> GeneralSettings:
    settings = GeneralSettings(data_dir=data_dir)
    settings.plugin_repo = repo  # set, not passed: the field may not be declared yet
    for key, value in more.items():
        setattr(settings, key, value)
    return settings


@pytest.fixture
def builder(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """A stand-in for troop.scout_manager.build (a real build is its own module's business)."""
    calls: list[Path] = []

    def build_zipapp(out_dir: Path) -> Path:
        calls.append(out_dir)
        path = out_dir / f"scout_manager-linux-v{troop.__version__}"
        path.write_bytes(b"#!/usr/bin/env python3\nprint('scout_manager')\n")
        return path

    module = types.ModuleType(BUILDER_MODULE)
    module.build_zipapp = build_zipapp  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, BUILDER_MODULE, module)
    yield calls


@pytest.fixture
def no_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, BUILDER_MODULE, None)  # import raises ImportError


def index_for(tmp_path: Path, parts: tuple[Store, BlobStore, FileService], repo: str, **more: object) -> PluginIndex:
    store, _, files = parts
    return PluginIndex(make_settings(tmp_path / "general", repo, **more), store, files)


def versions(index: PluginIndex, name: str = "hello") -> list[tuple[str, str]]:
    return [(e.os, e.version) for e in index.entries if e.name == name]


async def test_pull_indexes_exactly_the_valid_files(
    tmp_path: Path, repo: Path, parts: tuple[Store, BlobStore, FileService], no_builder: None
) -> None:
    store, blobs, _ = parts
    index = index_for(tmp_path, parts, str(repo))
    report = await index.pull()

    got = {f"{e.name}/{e.file}": (e.sha256, e.size) for e in report.entries}
    assert got == {rel: (hashlib.sha256(data).hexdigest(), len(data)) for rel, data in GOOD.items()}
    assert index.entries == report.entries
    for e in report.entries:
        assert blobs.path(e.sha256).read_bytes() == GOOD[f"{e.name}/{e.file}"]
    assert {(e.name, e.os, e.version) for e in report.entries} == {
        ("hello", "linux", "1.0.0"),
        ("hello", "linux", "1.1.0"),
        ("hello", "windows", "1.1.0"),
        ("disk_report", "linux", "2.0.0"),
        ("my-tool", "linux", "0.3.0"),
    }
    assert index.shas() == {hashlib.sha256(d).hexdigest() for d in GOOD.values()}

    for rel, words in BAD.items():
        assert any(line.startswith(f"{rel}: ") and words in line for line in report.errors), (rel, report.errors)
    assert any(line.startswith("hello/hello-linux-v9.9.8: symlink refused") for line in report.errors)
    assert len(report.errors) == len(BAD) + 1, report.errors  # README.md, .gitkeep: not plugins, not errors
    assert not blobs.exists(hashlib.sha256(SECRET).hexdigest())  # the symlink's target was never stored

    assert report.commit == git(repo, "rev-parse", "HEAD") == index.commit
    doc = index.to_json()
    assert [(p["name"], p["os"], p["version"]) for p in doc["plugins"]] == [
        ("disk_report", "linux", "2.0.0"),
        ("hello", "linux", "1.0.0"),
        ("hello", "linux", "1.1.0"),
        ("hello", "windows", "1.1.0"),
        ("my-tool", "linux", "0.3.0"),
    ]
    assert set(doc["plugins"][0]) == {"name", "os", "version", "sha256", "size", "file"}
    assert doc["errors"] == report.errors and doc["commit"] == report.commit
    assert doc["pulled_at"] == report.pulled_at.isoformat()
    saved = await store.get_state(INDEX_KEY)
    assert saved is not None and json.loads(saved) == doc


async def test_choose_newest_per_os_and_pins(
    tmp_path: Path, repo: Path, parts: tuple[Store, BlobStore, FileService], no_builder: None
) -> None:
    write(repo, {"hello/hello-linux-v1.9.0": b"1.9\n", "hello/hello-linux-v1.10.0": b"1.10\n"})
    commit(repo, "more versions")
    index = index_for(tmp_path, parts, str(repo))
    await index.pull()

    def chosen(name: str, os_name: str, pin: str | None = None) -> str | None:
        e = index.choose(name, os_name, pin)
        return None if e is None else e.version

    assert chosen("hello", "linux") == "1.10.0"  # numerically newest, not by string
    assert chosen("hello", "windows") == "1.1.0"
    assert chosen("hello", "win") == "1.1.0"
    assert chosen("hello", "darwin") is None
    assert chosen("nope", "linux") is None
    assert chosen("hello", "linux", "1.9.0") == "1.9.0"
    assert chosen("hello", "linux", "v1.0.0") == "1.0.0"
    assert chosen("hello", "linux", "5.0.0") is None
    assert chosen("hello", "windows", "1.0.0") is None
    assert chosen("my-tool", "linux") == "0.3.0"
    assert chosen("disk_report", "linux", "2.0.0") == "2.0.0"


async def test_a_new_commit_and_a_moved_branch_are_seen(
    tmp_path: Path, repo: Path, parts: tuple[Store, BlobStore, FileService], no_builder: None
) -> None:
    index = index_for(tmp_path, parts, repo.as_uri())  # a file:// URL this time
    first = await index.pull()
    checkout_git = tmp_path / "general" / "plugin-repo" / ".git"
    marker = checkout_git / "troop-test-marker"
    marker.write_text("the second pull fetches into this clone, it does not clone again")

    (repo / "hello" / "hello-linux-v1.0.0").unlink()
    write(repo, {"hello/hello-linux-v1.2.0": b"#!/bin/sh\necho 1.2.0\n"})
    second_commit = commit(repo, "1.2.0 in, 1.0.0 out")
    second = await index.pull()
    assert marker.exists()
    assert second.commit == second_commit != first.commit
    assert ("linux", "1.2.0") in versions(index) and ("linux", "1.0.0") not in versions(index)
    assert index.choose("hello", "linux", None).version == "1.2.0"  # type: ignore[union-attr]

    # The remote's default branch moves to another line of history: FETCH_HEAD follows it.
    git(repo, "checkout", "--quiet", "-b", "next")
    write(repo, {"hello/hello-linux-v2.0.0": b"#!/bin/sh\necho 2\n"})
    third_commit = commit(repo, "2.0.0 on next")
    git(repo, "checkout", "--quiet", "main")
    git(repo, "symbolic-ref", "HEAD", "refs/heads/next")
    third = await index.pull()
    assert third.commit == third_commit
    assert index.choose("hello", "linux", None).version == "2.0.0"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file:///nonexistent", "git clone of file:///nonexistent failed: "),
        ("/nonexistent/plugins", "git clone of /nonexistent/plugins failed: "),
        ("--upload-pack=touch /tmp/troop-pwned", "it starts with '-'"),
        ("-oProxyCommand=true", "it starts with '-'"),
        ("https://me:s3cret@127.0.0.1:1/plugins.git", "git clone of https://***@127.0.0.1:1/plugins.git failed"),
    ],
)
async def test_a_failed_pull_keeps_the_old_index(
    tmp_path: Path, repo: Path, parts: tuple[Store, BlobStore, FileService], no_builder: None, url: str, words: str
) -> None:
    store, _, _ = parts
    index = index_for(tmp_path, parts, str(repo))
    before = await index.pull()
    saved = await store.get_state(INDEX_KEY)

    index.settings.plugin_repo = url
    with pytest.raises(PluginError) as info:
        await index.pull()
    assert words in str(info.value)
    assert "s3cret" not in str(info.value)
    assert index.entries == before.entries and index.commit == before.commit and index.errors == before.errors
    assert await store.get_state(INDEX_KEY) == saved
    assert not Path("/tmp/troop-pwned").exists()


async def test_a_silent_server_times_out(
    tmp_path: Path, repo: Path, parts: tuple[Store, BlobStore, FileService], no_builder: None
) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    index = index_for(tmp_path, parts, f"git://127.0.0.1:{server.getsockname()[1]}/plugins.git")
    index.git_timeout = 1.0
    try:
        with pytest.raises(PluginError, match=r"failed: no answer within 1 s"):
            await asyncio.wait_for(index.pull(), 30)
    finally:
        for s in (*accepted, server):
            s.close()
    assert index.entries == []


async def test_the_index_survives_a_reload(
    tmp_path: Path, repo: Path, parts: tuple[Store, BlobStore, FileService], no_builder: None
) -> None:
    index = index_for(tmp_path, parts, str(repo))
    await index.pull()
    again = index_for(tmp_path, parts, str(repo))
    await again.load()
    assert again.entries == index.entries
    assert again.to_json() == index.to_json()
    assert again.choose("hello", "linux", None) == index.choose("hello", "linux", None)


async def test_a_damaged_saved_index_is_ignored(
    tmp_path: Path, parts: tuple[Store, BlobStore, FileService], no_builder: None
) -> None:
    store, _, _ = parts
    await store.set_state(INDEX_KEY, b'{"plugins": [{"name": "x"}]}')
    index = index_for(tmp_path, parts, "")
    await index.load()
    assert index.entries == [] and index.to_json()["pulled_at"] is None


async def test_the_builtin_scout_manager(
    tmp_path: Path, repo: Path, parts: tuple[Store, BlobStore, FileService], builder: list[Path]
) -> None:
    version = troop.__version__
    index = index_for(tmp_path, parts, "")  # no repository: scout_manager alone
    await index.load()
    assert builder == [tmp_path / "general" / "builtin-plugins"]
    assert versions(index, "scout_manager") == [("darwin", version), ("freebsd", version), ("linux", version)]
    assert len({e.sha256 for e in index.entries}) == 1
    report = await index.pull()
    assert report.commit == "" and report.errors == [] and len(report.entries) == 3 and len(builder) == 2

    # The repository's own build of this version wins for its OS; other versions add to it.
    own = b"#!/bin/sh\necho own build\n"
    write(repo, {f"scout_manager/scout_manager-linux-v{version}": own, "scout_manager/scout_manager-linux-v0.0.1": b""})
    commit(repo, "scout_manager builds")
    index.settings.plugin_repo = str(repo)
    await index.pull()
    linux = index.choose("scout_manager", "linux", version)
    darwin = index.choose("scout_manager", "darwin", None)
    assert linux is not None and linux.sha256 == hashlib.sha256(own).hexdigest()
    assert darwin is not None and darwin.version == version and darwin.sha256 != linux.sha256
    assert ("linux", "0.0.1") in versions(index, "scout_manager")
    assert ("hello", "linux", "1.1.0") in {(e.name, e.os, e.version) for e in index.entries}


async def test_a_broken_builder_does_not_stop_a_pull(
    tmp_path: Path, repo: Path, parts: tuple[Store, BlobStore, FileService], monkeypatch: pytest.MonkeyPatch
) -> None:
    def build_zipapp(out_dir: Path) -> Path:
        raise OSError("disk full")

    module = types.ModuleType(BUILDER_MODULE)
    module.build_zipapp = build_zipapp  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, BUILDER_MODULE, module)
    index = index_for(tmp_path, parts, str(repo))
    report = await index.pull()
    assert "scout_manager (built-in): build failed: disk full" in report.errors
    assert len(report.entries) == len(GOOD)


async def test_a_file_over_max_plugin_size_is_reported(
    tmp_path: Path, repo: Path, parts: tuple[Store, BlobStore, FileService], no_builder: None
) -> None:
    smallest = GOOD["disk_report/disk_report-linux-v2.0.0"]
    assert all(len(data) > len(smallest) for rel, data in GOOD.items() if not rel.startswith("disk_report/"))
    index = index_for(tmp_path, parts, str(repo), max_plugin_size=len(smallest))
    report = await index.pull()
    too_big = [line for line in report.errors if "over max_plugin_size" in line]
    assert any(line.startswith("hello/hello-linux-v1.1.0: ") for line in too_big), report.errors
    assert [(e.name, e.version) for e in index.entries] == [("disk_report", "2.0.0")]


async def test_a_stray_checkout_inside_another_repository_is_replaced(
    tmp_path: Path,
    repo: Path,
    parts: tuple[Store, BlobStore, FileService],
    no_builder: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DATA_DIR inside someone's git work tree, plugin-repo a plain folder, and GIT_DIR pointing
    there too: git must not act on the enclosing repository (a reset --hard would destroy work)."""
    store, _, files = parts
    outer = tmp_path / "outer"
    data_dir = outer / "data"
    (data_dir / "plugin-repo").mkdir(parents=True)
    git(outer, "init", "--quiet", "--initial-branch=main")
    write(outer, {"work.txt": b"committed\n"})
    outer_head = commit(outer, "work")
    (outer / "work.txt").write_bytes(b"uncommitted changes\n")

    monkeypatch.setenv("GIT_DIR", str(outer / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(outer))
    index = PluginIndex(make_settings(data_dir, str(repo)), store, files)
    report = await index.pull()
    assert len(report.entries) == len(GOOD)
    assert len((await index.pull()).entries) == len(GOOD)  # and again, through fetch and reset
    assert (outer / "work.txt").read_bytes() == b"uncommitted changes\n"
    assert git(outer, "rev-parse", "HEAD") == outer_head


async def test_the_real_scout_manager_build(tmp_path: Path, parts: tuple[Store, BlobStore, FileService]) -> None:
    build = pytest.importorskip(BUILDER_MODULE)
    _, blobs, _ = parts
    index = index_for(tmp_path, parts, "")
    await index.load()
    made = build.build_zipapp(tmp_path / "elsewhere")
    sha = hashlib.sha256(made.read_bytes()).hexdigest()
    assert [(e.name, e.os, e.version, e.sha256) for e in index.entries] == [
        ("scout_manager", os_name, troop.__version__, sha) for os_name in ("darwin", "freebsd", "linux")
    ]
    assert blobs.path(sha).read_bytes() == made.read_bytes()
    assert (await index.pull()).entries == index.entries  # a rebuild has the same bytes: nothing changes
