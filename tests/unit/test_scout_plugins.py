"""The scout's plugin store and the plugin.* tasks, on real files and a real local HTTP server.

Plugins are installed through the same sealed download as file.push (the BlobServer of
test_scout_files.py stands in for the FileManager), and run as real processes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.unit.test_scout_files import KEY, BlobServer, sha
from troop import blacklist
from troop.protocol import messages
from troop.scout import platform, plugins
from troop.scout.plugins import PluginArgError, PluginStore

pytestmark = pytest.mark.skipif(platform.is_windows(), reason="POSIX file semantics")

SCRIPT = b"""#!/bin/sh
echo "action=$1 args=$2 pid=$TROOP_SCOUT_PID"
echo "to stderr" >&2
exit "${3:-0}"
"""


@pytest.fixture
def server() -> Iterator[BlobServer]:
    s = BlobServer()
    yield s
    s.close()


@pytest.fixture
def store(tmp_path: Path) -> PluginStore:
    return PluginStore(tmp_path / "plugins", [])


def entry(server: BlobServer, name: str, version: str, data: bytes, **extra: Any) -> dict[str, Any]:
    url = server.blob(data, path=f"/blob/{name}/{version}/{len(server.routes)}")
    found = {"name": name, "version": version, "os": "linux", "sha256": sha(data), "size": len(data), "url": url}
    return {**found, "key": KEY, **extra}


async def update(store: PluginStore, *entries: dict[str, Any], **args: Any) -> messages.Result:
    result = await plugins.update("t1", {"plugins": list(entries), "want": [], "force": False, **args}, store)
    messages.encode(result)  # whatever comes back must travel to the General
    return result


def install_script(store: PluginStore, name: str = "tool", body: bytes = SCRIPT, version: str = "1.0.0") -> Path:
    path = store.path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    path.chmod(0o755)
    store.record(name, version, sha(body))
    return path


# ---------------------------------------------------------------- the store


def test_wants_merge_configured_and_remembered_with_later_pins_winning(tmp_path: Path) -> None:
    store = PluginStore(tmp_path / "plugins", ["disk", "backup:2.0.1", "bad/name", "disk:v1.0", "backup"])
    assert store.wants() == ["scout_manager", "disk:1.0", "backup:2.0.1"]
    store.remember(["extra", "backup:3.0", "scout_manager:0.1.0"])
    assert store.wants() == ["scout_manager:0.1.0", "disk:1.0", "backup:3.0", "extra"]


def test_remember_replaces_an_entry_and_checks_before_writing(store: PluginStore) -> None:
    store.remember(["extra:1.0", "other"])
    store.remember(["extra"])  # `troop plugin update T extra`: the newest from now on
    assert msgspec.json.decode((store.root / "wants.json").read_bytes()) == ["other", "extra"]
    with pytest.raises(PluginArgError, match="not a plugin name"):
        store.remember(["fine", "../evil"])
    with pytest.raises(PluginArgError, match="not a version"):
        store.remember(["fine:latest"])
    assert "fine" not in store.wants()


def test_installed_json_is_written_atomically_and_read_defensively(store: PluginStore) -> None:
    assert store.installed() == {}
    store.record("b", "2.0.0", "bb" * 32)
    store.record("a", "1.0.0", "aa" * 32)
    assert store.installed() == {
        "a": {"version": "1.0.0", "sha256": "aa" * 32},
        "b": {"version": "2.0.0", "sha256": "bb" * 32},
    }
    assert sorted(os.listdir(store.root)) == ["installed.json"]  # no temp file left behind
    assert store.facts() == (["a:1.0.0", "b:2.0.0"], ["scout_manager"])
    (store.root / "installed.json").write_text('{"ok": {"version": "1", "sha256": "x"}, "../x": {}, "bad": 3}')
    assert store.installed() == {"ok": {"version": "1", "sha256": "x"}}
    (store.root / "installed.json").write_text("{not json")
    assert store.installed() == {}  # a damaged file costs a reinstall, not the scout
    (store.root / "wants.json").write_text('{"a": 1}')
    assert store.wants() == ["scout_manager"]


def test_plugin_paths_and_names(store: PluginStore) -> None:
    assert store.path("disk_report") == store.root / "disk_report" / "disk_report"
    for bad in ("", "..", ".hidden", "a/b", "a\\b", "-x", "a" * 200, "a b"):
        with pytest.raises(PluginArgError):
            store.path(bad)
    assert plugins.normalize_version("v1.10.0") == "1.10.0"
    with pytest.raises(PluginArgError):
        plugins.normalize_version("1.0-rc1")


# ---------------------------------------------------------------- plugin.update


async def test_update_installs_and_reports(server: BlobServer, store: PluginStore) -> None:
    result = await update(store, entry(server, "disk", "v1.0.0", SCRIPT), want=["disk"])
    assert result.state == "succeeded", result.error
    assert result.data == {"changes": ["disk: (none) -> v1.0.0"], "installed": {"disk": "1.0.0"}}
    assert result.stdout == b"disk: (none) -> v1.0.0\n"
    path = store.path("disk")
    assert path.read_bytes() == SCRIPT
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert store.installed()["disk"] == {"version": "1.0.0", "sha256": sha(SCRIPT)}
    assert store.wants() == ["scout_manager", "disk"]


async def test_update_leaves_an_identical_plugin_alone_unless_forced(server: BlobServer, store: PluginStore) -> None:
    first = entry(server, "disk", "1.0.0", SCRIPT)
    assert (await update(store, first)).state == "succeeded"
    gets = len(server.requests)
    again = await update(store, first)
    assert again.state == "succeeded"
    assert again.data["changes"] == ["disk: v1.0.0 (unchanged)"]
    assert len(server.requests) == gets  # nothing downloaded
    forced = await update(store, first, force=True)
    assert forced.data["changes"] == ["disk: v1.0.0 -> v1.0.0"]
    assert len(server.requests) == gets + 1
    store.path("disk").unlink()  # the record alone does not count as installed
    assert (await update(store, first)).data["changes"] == ["disk: v1.0.0 -> v1.0.0"]


async def test_a_bad_download_keeps_the_old_version_and_the_others_install(
    server: BlobServer, store: PluginStore
) -> None:
    assert (await update(store, entry(server, "disk", "1.0.0", SCRIPT))).state == "succeeded"
    bad = entry(server, "disk", "1.1.0", b"new version")
    bad["sha256"] = sha(b"something else")
    result = await update(store, bad, entry(server, "other", "2.0.0", b"#!/bin/sh\n"))
    assert result.state == "failed"
    assert result.error == "1 plugin update failed"
    disk, other = result.data["changes"]
    assert disk.startswith("disk: failed: sha256 mismatch"), disk
    assert other == "other: (none) -> v2.0.0"
    assert result.data["installed"] == {"disk": "1.0.0", "other": "2.0.0"}
    assert store.path("disk").read_bytes() == SCRIPT
    assert [n for n in os.listdir(store.path("disk").parent) if n != "disk"] == []  # no temp file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"plugins": "disk"}, "argument 'plugins' must be a list"),
        ({"plugins": [3]}, "argument 'plugins[0]' must be a map"),
        ({"plugins": [{"name": "../x"}]}, "'plugins[0].name': '../x' is not a plugin name"),
        ({"plugins": [{"name": "x", "version": "1"}]}, "missing argument 'plugins[0].sha256'"),
        ({"plugins": [{"name": "x", "version": "1", "sha256": "ab"}]}, "'plugins[0].sha256' must be 64 hex"),
        ({"plugins": [], "want": ["ok", 3]}, "argument 'want' must be a list of strings"),
        ({"plugins": [], "want": ["a/b"]}, "is not a plugin name"),
        ({"plugins": [], "force": "yes"}, "argument 'force' must be a boolean, not str"),
    ],
)
async def test_update_checks_its_arguments(store: PluginStore, args: dict[str, Any], message: str) -> None:
    result = await plugins.update("t1", args, store)
    assert result.state == "failed"
    assert result.error is not None and message in result.error
    assert not store.root.exists()  # nothing installed, nothing remembered


async def test_update_checks_sizes_and_keys(server: BlobServer, store: PluginStore) -> None:
    for field, value, message in [("size", True, "'plugins[0].size' must be an integer"), ("key", "k", "bytes")]:
        result = await update(store, entry(server, "disk", "1.0.0", SCRIPT, **{field: value}))
        assert result.state == "failed" and result.error is not None and message in result.error


# ---------------------------------------------------------------- plugin.versions


async def test_versions(store: PluginStore) -> None:
    install_script(store, "tool", version="1.2.3")
    found = await plugins.versions("t1", {"name": "tool"}, store)
    assert (found.state, found.stdout, found.data) == ("succeeded", b"v1.2.3\n", {"name": "tool", "version": "1.2.3"})
    missing = await plugins.versions("t1", {"name": "nope"}, store)
    assert (missing.state, missing.stdout, missing.data) == (
        "succeeded",
        b"not installed\n",
        {"name": "nope", "version": None},
    )
    bad = await plugins.versions("t1", {"name": 3}, store)
    assert bad.state == "failed" and bad.error == "argument 'name' must be a string, not int"


# ---------------------------------------------------------------- plugin.run


def no_blacklist(argv: list[str]) -> str | None:
    return None


async def test_run_a_plugin(store: PluginStore) -> None:
    path = install_script(store)
    seen: list[list[str]] = []

    def check(argv: list[str]) -> str | None:
        seen.append(argv)
        return None

    result = await plugins.run("t1", {"name": "tool", "action": "report", "args": ["x y"]}, store, check, 10.0, None)
    messages.encode(result)
    assert result.state == "succeeded" and result.exit_code == 0
    assert result.stdout == f"action=report args=x y pid={os.getpid()}\n".encode()
    assert result.stderr == b"to stderr\n"
    assert seen == [[str(path), "report", "x y"]]
    failed = await plugins.run("t1", {"name": "tool", "action": "a", "args": ["", "3"]}, store, no_blacklist, 10.0)
    assert (failed.state, failed.exit_code) == ("failed", 3)


async def test_run_streams_output(store: PluginStore) -> None:
    install_script(store)
    chunks: list[tuple[str, bytes]] = []

    async def on_output(stream: str, data: bytes) -> None:
        chunks.append((stream, data))

    result = await plugins.run("t1", {"name": "tool", "action": "go"}, store, no_blacklist, 10.0, on_output)
    assert result.state == "succeeded"
    assert b"".join(d for s, d in chunks if s == "stdout") == result.stdout
    assert b"".join(d for s, d in chunks if s == "stderr") == b"to stderr\n"


async def test_run_an_unknown_plugin(store: PluginStore) -> None:
    result = await plugins.run("t1", {"name": "nope", "action": "go"}, store, no_blacklist, 10.0)
    assert result.state == "failed"
    assert result.error == "plugin nope is not installed on this scout (troop plugin update TARGET nope)"


async def test_run_refused_by_the_blacklist(store: PluginStore) -> None:
    install_script(store)

    def check(argv: list[str]) -> str | None:
        return blacklist.check(["reboot"], argv)

    result = await plugins.run("t1", {"name": "tool", "action": "reboot"}, store, check, 10.0)
    assert result.state == "refused"
    assert result.error == "refused by the scout's blacklist (entry 'reboot')"


async def test_run_times_out(store: PluginStore) -> None:
    install_script(store, body=b"#!/bin/sh\necho started\nexec sleep 30\n")
    result = await plugins.run("t1", {"name": "tool", "action": "go"}, store, no_blacklist, 0.3)
    assert result.state == "timed_out"
    assert result.stdout == b"started\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"action": "go"}, "missing argument 'name'"),
        ({"name": "../../bin/sh", "action": "go"}, "is not a plugin name"),
        ({"name": "tool"}, "missing argument 'action'"),
        ({"name": "tool", "action": ["go"]}, "argument 'action' must be a string, not list"),
        ({"name": "tool", "action": "go", "args": "a b"}, "argument 'args' must be a list of strings"),
        ({"name": "tool", "action": "go", "args": [1]}, "argument 'args' must be a list of strings"),
    ],
)
async def test_run_checks_its_arguments(store: PluginStore, args: dict[str, Any], message: str) -> None:
    install_script(store)
    result = await plugins.run("t1", args, store, no_blacklist, 10.0)
    assert result.state == "failed"
    assert result.error is not None and message in result.error
