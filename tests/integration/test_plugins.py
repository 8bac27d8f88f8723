"""Plugins from a real git repository, installed, pinned, updated and run by real scouts."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import run_json
from troop.localfleet import Fleet

HELLO = """#!/bin/sh
case "$1" in
  version) echo "v{version}" ;;
  greet) shift; echo "hello $* from {version}" ;;
  loud) head -c 3000000 /dev/zero | tr '\\0' y ;;
  hang) sleep 60 ;;
  fail) echo "broken" >&2; exit 7 ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   check=True, capture_output=True)


def add_version(repo: Path, version: str) -> None:
    path = repo / "hello" / f"hello-linux-v{version}"
    path.parent.mkdir(exist_ok=True)
    path.write_text(HELLO.format(version=version))
    path.chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"hello {version}")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("plugin-repo")
    git(repo, "init", "-q")
    add_version(repo, "1.0.0")
    add_version(repo, "1.1.0")
    (repo / "hello" / "hello-v1").write_text("bad name")  # breaks the naming rule: reported
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "broken")
    return repo


@pytest.fixture(scope="module")
def pfleet(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("plugins")
    config = root / "general.toml"
    config.write_text(f'plugin_repo = "{repo}"\n')
    f = Fleet(root / "fleet")
    try:
        f.start_general("--config", str(config))
        f.start_scout("p1", "app", env={"TROOP_PLUGINS": "hello"})
        f.start_scout("p2", "app", env={"TROOP_PLUGINS": "hello:1.0.0"})
        f.wait_online(["p1", "p2"])
        yield f
    finally:
        f.stop()


def wait_version(fleet: Fleet, host: str, name: str, version: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, job = run_json(fleet, "plugin", "versions", host, name)
        if (job["hosts"][host].get("data") or {}).get("version") in (version, f"v{version}"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{host} never reached {name} {version}: {job}")


def test_pull_indexes_valid_files_and_reports_the_rest(pfleet: Fleet) -> None:
    result = pfleet.cli("plugin", "pull")
    assert result.returncode == 0, result.stderr
    assert "hello-v1" in result.stderr
    _code, index = run_json(pfleet, "plugin", "list")
    versions = {(p["name"], p["version"]) for p in index["plugins"]}
    assert {("hello", "1.0.0"), ("hello", "1.1.0")} <= versions
    assert any(p["name"] == "scout_manager" for p in index["plugins"])


def test_scouts_install_newest_or_pinned_on_their_own(pfleet: Fleet) -> None:
    wait_version(pfleet, "p1", "hello", "1.1.0")
    wait_version(pfleet, "p2", "hello", "1.0.0")
    wait_version(pfleet, "p1", "scout_manager", __import__("troop").__version__)


def test_plugin_run_like_cmd(pfleet: Fleet) -> None:
    wait_version(pfleet, "p1", "hello", "1.1.0")
    code, job = run_json(pfleet, "plugin", "run", "p1", "hello", "greet", "world")
    assert code == 0 and job["hosts"]["p1"]["stdout"] == "hello world from 1.1.0\n"
    code, job = run_json(pfleet, "plugin", "run", "p1", "hello", "fail")
    assert code == 1 and job["hosts"]["p1"]["exit_code"] == 7 and "broken" in job["hosts"]["p1"]["stderr"]
    code, job = run_json(pfleet, "plugin", "run", "p1", "hello", "loud")
    assert job["hosts"]["p1"]["stdout_truncated"] is True
    code, job = run_json(pfleet, "plugin", "run", "p1", "hello", "hang", "--timeout", "1")
    assert job["hosts"]["p1"]["state"] == "timed_out"
    code, job = run_json(pfleet, "plugin", "run", "p1", "nosuch", "x")
    assert code == 1 and "not installed" in job["hosts"]["p1"]["error"]


def test_update_reports_old_to_new_and_pull_brings_new_versions(pfleet: Fleet, repo: Path) -> None:
    wait_version(pfleet, "p2", "hello", "1.0.0")
    code, job = run_json(pfleet, "plugin", "update", "p2", "hello:1.1.0")
    assert code == 0, job
    assert any("1.0.0 -> " in line and "1.1.0" in line for line in job["hosts"]["p2"]["data"]["changes"])
    add_version(repo, "1.2.0")
    assert pfleet.cli("plugin", "pull").returncode == 0
    wait_version(pfleet, "p1", "hello", "1.2.0")  # unpinned: follows the newest


def test_pull_of_an_unreachable_repository_fails_clearly(tmp_path: Path) -> None:
    config = tmp_path / "general.toml"
    config.write_text('plugin_repo = "file:///nonexistent/troop-plugins"\n')
    f = Fleet(tmp_path / "fleet")
    try:
        f.start_general("--config", str(config))
        result = f.cli("plugin", "pull")
        assert result.returncode == 2 and "git" in result.stderr
        assert f.cli("ping", "*").returncode == 2  # no hosts, but the General still serves
    finally:
        f.stop()
