"""Plugin file names: parsed from the right, every rule of docs/plugins.md, numeric versions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from troop.general.plugin_names import BadPluginName, PluginName, newest, parse_plugin_file, version_key


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("hello-linux-v1.0.0", PluginName("hello", "linux", "1.0.0", False)),
        ("hello-win-v1.1.0.exe", PluginName("hello", "windows", "1.1.0", True)),
        ("hello-windows-v2.0.exe", PluginName("hello", "windows", "2.0", True)),
        ("disk_report-linux-v2.0.0", PluginName("disk_report", "linux", "2.0.0", False)),
        ("my-tool-linux-v0.3.0", PluginName("my-tool", "linux", "0.3.0", False)),
        ("a.b-darwin-v1", PluginName("a.b", "darwin", "1", False)),
        ("x-freebsd-v10.20.30", PluginName("x", "freebsd", "10.20.30", False)),
        # only the last -v and the -OS before it are taken: the rest is the name, whatever it holds
        ("tool-v-linux-v1.0.0", PluginName("tool-v", "linux", "1.0.0", False)),
        ("linux-linux-v1.0.0", PluginName("linux", "linux", "1.0.0", False)),
        ("a-win-b-win-v3.exe", PluginName("a-win-b", "windows", "3", True)),
        ("9lives-linux-v1.0.0", PluginName("9lives", "linux", "1.0.0", False)),
    ],
)
def test_good_names(filename: str, expected: PluginName) -> None:
    assert parse_plugin_file(filename) == expected


@pytest.mark.parametrize(
    ("filename", "reason"),
    [
        ("hello-v1", "no -OS"),
        ("hello-linux-1.0.0", "no -vX.Y.Z"),
        ("hello-linux-v", "no -vX.Y.Z"),
        ("hello-linux-v1..0", "no -vX.Y.Z"),
        ("hello-linux-v1.0.", "no -vX.Y.Z"),
        ("hello-linux-v1.0.0-beta", "no -vX.Y.Z"),
        ("hello-linux-v\u0661.0", "no -vX.Y.Z"),  # an Arabic-Indic digit: int() would take it
        ("hello-linux-v1.0.0.EXE", "no -vX.Y.Z"),
        ("hello-solaris-v1.0.0", "unknown OS 'solaris'"),
        ("hello-Linux-v1.0.0", "unknown OS 'Linux'"),
        ("hello-linux-v1.0.0.exe", "only Windows plugins end in .exe"),
        ("hello-win-v1.0.0", "must end in .exe"),
        ("hello-windows-v1.0.0", "must end in .exe"),
        ("-linux-v1.0.0", "bad plugin name ''"),
        ("_x-linux-v1.0.0", "bad plugin name '_x'"),
        (".hidden-linux-v1.0.0", "bad plugin name '.hidden'"),
        ("h\u00e9llo-linux-v1.0.0", "bad plugin name"),
        ("hello world-linux-v1.0.0", "bad plugin name"),
        ("", "not a plain file name"),
        ("a/hello-linux-v1.0.0", "not a plain file name"),
        ("a\\hello-win-v1.0.0.exe", "not a plain file name"),
        ("x" * 250 + "-linux-v1.0.0", "not a plain file name"),
    ],
)
def test_bad_names(filename: str, reason: str) -> None:
    with pytest.raises(BadPluginName) as info:
        parse_plugin_file(filename)
    assert reason in info.value.reason
    assert str(info.value) == info.value.reason


NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", fullmatch=True)
VERSIONS = st.lists(st.integers(0, 10**6), min_size=1, max_size=5).map(lambda parts: ".".join(map(str, parts)))


@given(NAMES, st.sampled_from(["linux", "darwin", "freebsd", "win", "windows"]), VERSIONS)
def test_any_valid_name_round_trips(name: str, os_word: str, version: str) -> None:
    exe = ".exe" if os_word in ("win", "windows") else ""
    parsed = parse_plugin_file(f"{name}-{os_word}-v{version}{exe}")
    assert parsed == PluginName(name, "windows" if exe else os_word, version, bool(exe))


def test_versions_compare_numerically() -> None:
    assert version_key("1.10.0") > version_key("1.9.3")
    assert version_key("v2") == version_key("2") == (2,)
    assert version_key("1.0") < version_key("1.0.0") < version_key("1.0.1")
    assert sorted(["1.10.0", "1.2.0", "1.9.0", "0.99"], key=version_key) == ["0.99", "1.2.0", "1.9.0", "1.10.0"]
    for bad in ("", "v", "1.", "1..2", "a.b", "1.0-rc1", "-1"):
        with pytest.raises(ValueError, match="not a version"):
            version_key(bad)


@dataclass
class Entry:
    os: str
    version: str


def test_newest_per_os_and_pins() -> None:
    entries = [
        Entry("linux", "1.9.0"),
        Entry("linux", "1.10.0"),
        Entry("linux", "1.2.0"),
        Entry("windows", "1.1.0"),
    ]
    assert newest(entries, "linux") == Entry("linux", "1.10.0")
    assert newest(entries, "windows") == Entry("windows", "1.1.0")
    assert newest(entries, "win") == Entry("windows", "1.1.0")  # the file-name spelling works too
    assert newest(entries, "darwin") is None
    assert newest([], "linux") is None
    assert newest(entries, "linux", pin="1.9.0") == Entry("linux", "1.9.0")
    assert newest(entries, "linux", pin="v1.2.0") == Entry("linux", "1.2.0")
    assert newest(entries, "linux", pin="1.1.0") is None  # that version exists, but for Windows only
    assert newest(entries, "linux", pin="5") is None
    assert newest(entries, "linux", pin="latest") is None  # a malformed pin matches nothing
