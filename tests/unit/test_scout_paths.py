"""Path rules of the scout's file tasks, and the platform helpers behind them.

No Windows host can run here: the Windows rules are pure string functions, tested by passing
os_name="windows"; the POSIX ones are tested the same way and, in test_scout_files.py, for real.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from troop.scout import platform
from troop.scout.files_paths import PathError, check_name, check_path, check_protected, is_under

# ---------------------------------------------------------------- POSIX


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/etc/hosts", "/etc/hosts"),
        ("/", "/"),
        ("//etc//./hosts/", "/etc/hosts"),
        ("/opt/app/./conf", "/opt/app/conf"),
        ("/a/..b/c..", "/a/..b/c.."),  # dots inside a name are just a name
    ],
)
def test_posix_paths_accepted_and_normalised(path: str, expected: str) -> None:
    assert check_path(path, "linux") == expected


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("etc/hosts", "absolute"),
        ("./hosts", "absolute"),
        ("~/x", "absolute"),
        ("/etc/../etc/shadow", "'..'"),
        ("/etc/..", "'..'"),
        ("/../etc", "'..'"),
        ("/etc/hosts\0.txt", "NUL"),
        ("C:\\Windows", "absolute"),
    ],
)
def test_posix_paths_refused(path: str, reason: str) -> None:
    with pytest.raises(PathError, match=reason):
        check_path(path, "linux")


# ---------------------------------------------------------------- Windows


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("C:\\Windows\\System32\\drivers\\etc\\hosts", "C:\\Windows\\System32\\drivers\\etc\\hosts"),
        ("c:/temp/app.conf", "C:\\temp\\app.conf"),
        ("D:\\", "D:\\"),
        ("C:\\temp\\\\.\\x.txt\\", "C:\\temp\\x.txt"),
        ("\\\\fileserver\\share\\dir\\f.txt", "\\\\fileserver\\share\\dir\\f.txt"),
        ("//fileserver/share/f.txt", "\\\\fileserver\\share\\f.txt"),
        ("C:\\temp\\console.log", "C:\\temp\\console.log"),  # CONSOLE is not CON
        ("C:\\temp\\COM10", "C:\\temp\\COM10"),
    ],
)
def test_windows_paths_accepted_and_normalised(path: str, expected: str) -> None:
    assert check_path(path, "windows") == expected


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("temp\\x", "absolute"),
        ("C:temp\\x", "absolute"),  # relative to the current dir of drive C
        ("\\temp\\x", "absolute"),  # relative to the current drive
        ("/temp/x", "absolute"),
        ("C:\\a\\..\\b", "'..'"),
        ("C:/a/../b", "'..'"),
        ("..\\x", "'..'"),
        ("C:\\a\\... \\b", "dot or a space"),
        ("C:\\ProgramData\\troop-scout.\\scout.key", "dot or a space"),
        ("C:\\temp\\x ", "dot or a space"),
        ("C:\\temp\\CON", "device"),
        ("C:\\temp\\nul.txt", "device"),
        ("C:\\temp\\Com1", "device"),
        ("C:\\temp\\lpt9.log", "device"),
        ("C:\\temp\\aux .txt", "device"),
        ("C:\\temp\\file.txt:hidden", "alternate data streams"),
        ("C:\\temp\\file.txt::$DATA", "alternate data streams"),
        ("C:\\temp\\a:b\\c", "alternate data streams"),
        ("C:\\temp\\what?.txt", "character"),
        ("C:\\temp\\a*", "character"),
        ("\\\\?\\C:\\Windows", "device paths"),
        ("\\\\.\\PhysicalDrive0", "device paths"),
        ("//./pipe/x", "device paths"),
        ("\\\\server", "server and a share"),
        ("\\\\server\\", "server and a share"),
        ("C:\\temp\\a\0b", "NUL"),
        ("", "empty"),
    ],
)
def test_windows_paths_refused(path: str, reason: str) -> None:
    with pytest.raises(PathError, match=reason):
        check_path(path, "windows")


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["app.conf", "..hidden", "a b", "файл.txt"])
def test_plain_names(name: str) -> None:
    assert check_name(name, "linux") == name
    assert check_name(name, "windows") == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/etc", "a\0b"])
def test_names_refused_everywhere(name: str) -> None:
    for os_name in ("linux", "windows"):
        with pytest.raises(PathError):
            check_name(name, os_name)


def test_names_refused_on_windows_only() -> None:
    for name in ("a\\b", "CON", "nul.txt", "x:stream", "trailing."):
        with pytest.raises(PathError):
            check_name(name, "windows")
    assert check_name("a\\b", "linux") == "a\\b"  # a backslash is an ordinary character on POSIX


# ---------------------------------------------------------------- protected roots


def test_is_under() -> None:
    assert is_under("/var/lib/troop-scout", "/var/lib/troop-scout", "linux")
    assert is_under("/var/lib/troop-scout/scout.key", "/var/lib/troop-scout/", "linux")
    assert not is_under("/var/lib/troop-scout2/x", "/var/lib/troop-scout", "linux")
    assert not is_under("/var/lib", "/var/lib/troop-scout", "linux")
    assert is_under("/anything", "/", "linux")
    # Windows compares case-insensitively, as its file systems do.
    assert is_under("c:\\programdata\\TROOP-SCOUT\\scout.key", "C:\\ProgramData\\troop-scout", "windows")
    assert not is_under("C:\\ProgramData\\troop-scout-old", "C:\\ProgramData\\troop-scout", "windows")


def test_check_protected_windows() -> None:
    roots = ["C:\\ProgramData\\troop-scout"]
    with pytest.raises(PathError, match="data directory"):
        check_protected(check_path("c:/programdata/Troop-Scout/scout.key", "windows"), roots, "windows")
    check_protected("C:\\ProgramData\\other\\x", roots, "windows")
    check_protected("C:\\ProgramData\\troop-scout\\x", [], "windows")  # no roots: allowed
    check_protected("C:\\ProgramData\\troop-scout\\x", [""], "windows")  # an empty root protects nothing


def test_check_protected_follows_symlinks(tmp_path: Path) -> None:
    data = os.path.join(tmp_path, "data")
    os.mkdir(data)
    os.symlink(data, os.path.join(tmp_path, "innocent"))
    with pytest.raises(PathError):
        check_protected(os.path.join(tmp_path, "innocent", "scout.key"), [data], "linux")
    # A root given through a symlink protects the directory it points to.
    with pytest.raises(PathError):
        check_protected(os.path.join(data, "scout.key"), [os.path.join(tmp_path, "innocent")], "linux")


# ---------------------------------------------------------------- platform helpers


def test_drive_roots_windows_with_a_fake_probe() -> None:
    present = {"C:\\", "D:\\", "Z:\\"}
    probed: list[str] = []

    def probe(root: str) -> bool:
        probed.append(root)
        return root in present

    assert platform.drive_roots("windows", probe) == ["C:\\", "D:\\", "Z:\\"]
    assert probed == [f"{c}:\\" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    assert platform.drive_roots("linux") == ["/"]


def test_open_flags_by_os() -> None:
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    assert platform.read_flags("linux") & nofollow
    assert platform.create_flags("linux") & (os.O_CREAT | os.O_EXCL | nofollow) == os.O_CREAT | os.O_EXCL | nofollow
    # Windows has no O_NOFOLLOW (and these bits would mean something else to its C runtime).
    assert not platform.read_flags("windows") & (nofollow | getattr(os, "O_NONBLOCK", 0))
    assert platform.create_flags("windows") & (os.O_CREAT | os.O_EXCL) == os.O_CREAT | os.O_EXCL


@pytest.mark.skipif(sys.platform == "win32", reason="O_NOFOLLOW is POSIX")
def test_read_flags_refuse_a_symlink(tmp_path: Path) -> None:
    # The second line of defence behind an lstat: a link swapped in just before the open.
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(OSError) as caught:
        os.open(tmp_path / "link", platform.read_flags())
    assert caught.value.errno == errno.ELOOP
    os.close(os.open(tmp_path / "target", platform.read_flags()))


def test_lookup_ids() -> None:
    assert platform.lookup_ids(None, None, "windows") == (-1, -1)
    with pytest.raises(LookupError, match="not supported on Windows"):
        platform.lookup_ids("Administrator", None, "windows")
    assert platform.lookup_ids("root", "root", "linux") == (0, 0)
    assert platform.lookup_ids("4242", None, "linux") == (4242, -1)  # a bare id, as chown takes
    with pytest.raises(LookupError, match="unknown user 'no-such-user-troop'"):
        platform.lookup_ids("no-such-user-troop", None, "linux")
    with pytest.raises(LookupError, match="unknown group 'no-such-group-troop'"):
        platform.lookup_ids(None, "no-such-group-troop", "linux")


def test_attributes_on_windows_are_left_alone(tmp_path: Path) -> None:
    path = os.path.join(tmp_path, "f")
    with open(path, "wb"):
        pass
    os.chmod(path, 0o600)
    st = os.stat(path)
    assert platform.attributes_differ(st, 0o644, -1, -1, "linux")
    assert not platform.attributes_differ(st, 0o644, -1, -1, "windows")
    fd = os.open(path, os.O_RDONLY)
    try:
        platform.set_attributes(fd, 0o644, -1, -1, "windows")  # a no-op, not an fchmod
    finally:
        os.close(fd)
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_real_path_leaves_foreign_paths_alone() -> None:
    assert platform.real_path("C:\\x\\y", "windows") == "C:\\x\\y"
