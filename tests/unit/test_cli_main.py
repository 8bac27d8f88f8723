"""The entry point: start-up cost and the module-level import rules of troop.cli."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )


def test_importing_the_cli_loads_no_http_and_no_server_code() -> None:
    # `troop ping` must finish in 0.20 s including start-up; http.client alone costs ~18 ms
    # and is loaded only by the command that uses it.  Servers are never the CLI's business.
    code = (
        "import sys, troop.cli.main\n"
        "heavy = ('http.client', 'email', 'ssl', 'troop.protocol', 'troop.general',\n"
        "         'troop.scout', 'troop.store', 'troop.cli.api', 'typer', 'rich', 'httpx',\n"
        "         'typing', 'dataclasses', 'inspect', 'hashlib', 'base64',\n"
        "         'troop.cli.commands_files', 'troop.cli.render_files',\n"
        "         'troop.cli.commands_plugins', 'troop.cli.commands_scout',\n"
        "         'troop.cli.render_plugins')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_running_a_command_loads_no_server_code() -> None:
    code = (
        "import sys\n"
        "from troop.cli.main import main\n"
        "main(['--url', 'http://127.0.0.1:9', '--token', 't', 'ping', '*'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('troop.protocol',\n"
        "    'troop.general', 'troop.scout', 'troop.store', 'troop.bus', 'troop.filemanager',\n"
        "    'troop.cli.commands_files', 'troop.cli.render_files', 'hashlib',\n"
        "    'troop.cli.commands_plugins', 'troop.cli.commands_scout', 'troop.cli.render_plugins'))))\n"
    )
    proc = run_python(code)
    assert proc.stdout.strip() == "[]"
    assert "cannot reach the General" in proc.stderr


def test_a_command_loads_only_its_own_group() -> None:
    # Plugin and scout code is imported when one of their commands runs, and only what that
    # command needs: listing scouts hashes nothing and uploads nothing.
    code = (
        "import sys\n"
        "from troop.cli.main import main\n"
        "main(['--url', 'http://127.0.0.1:9', '--token', 't', 'scout', 'list'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('troop.cli.commands_',\n"
        "    'troop.cli.render_', 'hashlib'))))\n"
    )
    proc = run_python(code)
    assert proc.stdout.strip() == "['troop.cli.commands_jobs', 'troop.cli.commands_scout']"
    assert "cannot reach the General" in proc.stderr


def test_help_through_python_dash_m() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "troop.cli.main", "--help"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC}, timeout=30,
    )
    assert proc.returncode == 0
    assert "usage: troop" in proc.stdout
    for command in ("ping", "cmd", "job", "file", "plugin", "scout", "key", "token", "host"):
        assert command in proc.stdout
