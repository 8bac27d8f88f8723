"""The command blacklist: token matching, shell splitting, nested scripts, the file format."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from troop.blacklist import DEFAULT_BLACKLIST, check, load_blacklist

# ------------------------------------------------------------------ the file


def test_load_blacklist_trims_and_skips_blank_and_comment_lines(tmp_path: Path) -> None:
    path = tmp_path / "blacklist"
    path.write_text("# dangerous commands\n\n  rm -rf /  \nhalt\n   # indented comment\n\t\nreboot")
    assert load_blacklist(path) == ["rm -rf /", "halt", "reboot"]
    assert load_blacklist(str(path)) == ["rm -rf /", "halt", "reboot"]


def test_load_blacklist_handles_crlf_files(tmp_path: Path) -> None:
    path = tmp_path / "blacklist"
    path.write_bytes(b"halt\r\nshutdown -h now\r\n")
    assert load_blacklist(path) == ["halt", "shutdown -h now"]


def test_missing_blacklist_file_is_empty(tmp_path: Path) -> None:
    assert load_blacklist(tmp_path / "absent") == []


def test_unreadable_blacklist_path_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_blacklist(tmp_path)  # a directory is not "missing": the caller must hear of it


def test_default_blacklist_roughly_as_the_original_shipped() -> None:
    for entry in ["rm -rf /", "rm -rf /*", "halt", "poweroff", "reboot", "shutdown", "mkfs"]:
        assert entry in DEFAULT_BLACKLIST
    assert check(DEFAULT_BLACKLIST, ["shutdown", "-h", "now"]) == "shutdown"
    assert check(DEFAULT_BLACKLIST, ["mkfs.ext4", "/dev/sdb1"]) == "mkfs.ext4"
    assert check(DEFAULT_BLACKLIST, ["init", "0"]) == "init 0"
    assert check(DEFAULT_BLACKLIST, ["init", "3"]) is None
    assert check(DEFAULT_BLACKLIST, ["rm", "-rf", "/*"]) == "rm -rf /*"
    assert check(DEFAULT_BLACKLIST, ["df", "-h"]) is None


# ------------------------------------------------------------------ tokens, not substrings


@pytest.mark.parametrize(
    "argv",
    [
        ["cat", "halting.log"],
        ["cat", "/var/log/halt.log"],
        ["grep", "-r", "unhalted", "/etc"],
        ["systemctl", "status", "nginx"],
        ["haltx"],
    ],
)
def test_a_word_that_only_contains_an_entry_is_allowed(argv: list[str]) -> None:
    assert check(["halt"], argv) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["halt"],
        ["halt", "-f"],
        ["/sbin/halt"],
        ["/usr/sbin/halt", "--force"],
        ["sudo", "halt"],
        ["sudo", "-n", "/sbin/halt"],
        ["HALT.EXE"],
        ["env", "X=1", "halt"],
    ],
)
def test_the_program_matches_by_basename_anywhere_in_the_command(argv: list[str]) -> None:
    assert check(["halt"], argv) == "halt"


def test_windows_programs_match_without_exe_and_with_backslash_paths() -> None:
    assert check(["shutdown"], ["shutdown.exe", "/s", "/t", "0"]) == "shutdown"
    assert check(["shutdown"], [r"C:\Windows\System32\SHUTDOWN.EXE", "/r"]) == "shutdown"
    assert check(["shutdown"], shell=r"C:\Windows\System32\shutdown.exe /s /t 0") == "shutdown"
    assert check(["shutdown"], ["shutdownx.exe"]) is None


def test_the_entry_given_is_returned_and_the_first_match_wins() -> None:
    entries = ["poweroff", "  reboot  ", "reboot"]
    assert check(entries, ["reboot"]) == "  reboot  "
    assert check(entries, ["ls"]) is None
    assert check([], ["reboot"]) is None


def test_nothing_to_check_matches_nothing() -> None:
    assert check(DEFAULT_BLACKLIST) is None
    assert check(DEFAULT_BLACKLIST, [], "") is None


def test_blank_and_odd_entries_never_match_everything() -> None:
    assert check(["", "   ", "/", "-rf"], ["ls", "-rf", "/"]) is None


# ------------------------------------------------------------------ options


@pytest.mark.parametrize(
    "argv",
    [
        ["rm", "-rf", "/"],
        ["rm", "-fr", "/"],
        ["rm", "-r", "-f", "/"],
        ["rm", "-f", "-r", "/"],
        ["rm", "-rfv", "/"],
        ["rm", "-r", "-f", "--no-preserve-root", "/"],
        ["rm", "-r", "/", "-f"],  # GNU rm takes options after the operands too
        ["rm", "-rf", "--", "/"],
        ["rm", "-rf", "/tmp/x", "/"],
        ["/bin/rm", "-rf", "/"],
        ["sudo", "rm", "-rf", "/"],
    ],
)
def test_rm_rf_root_in_any_spelling_of_its_flags(argv: list[str]) -> None:
    assert check(["rm -rf /"], argv) == "rm -rf /"


@pytest.mark.parametrize(
    "argv",
    [
        ["rm", "-rf", "/tmp/build"],
        ["rm", "-f", "/"],
        ["rm", "-r", "/home/me/old"],
        ["rm", "-rf", "./"],
        ["ls", "-rf", "/"],
        ["rm"],
    ],
)
def test_rm_that_is_not_rm_rf_root_is_allowed(argv: list[str]) -> None:
    assert check(["rm -rf /"], argv) is None


def test_entry_words_must_be_contiguous_and_in_order() -> None:
    entries = ["shutdown -h now"]
    assert check(entries, ["shutdown", "-h", "now"]) == "shutdown -h now"
    assert check(entries, ["shutdown", "now", "-h"]) == "shutdown -h now"
    assert check(entries, ["shutdown", "-r", "now"]) is None
    assert check(entries, ["shutdown", "-h", "+5"]) is None
    assert check(["init 0"], ["init", "0"]) == "init 0"
    assert check(["init 0"], ["init", "06"]) is None
    assert check(["a b c"], ["a", "b", "x", "c"]) is None
    assert check(["a b c"], ["a", "c", "b"]) is None
    assert check(["a b c"], ["b", "c", "a"]) is None
    # The words may follow other words, as `rm -rf /tmp/x /` still removes `/`.
    assert check(["a b c"], ["a", "x", "b", "c"]) == "a b c"


def test_quoted_entries_are_one_token() -> None:
    assert check(['echo "a b"'], ["echo", "a b"]) == 'echo "a b"'
    assert check(['echo "a b"'], ["echo", "a", "b"]) is None


# ------------------------------------------------------------------ shell strings


@pytest.mark.parametrize(
    "shell",
    [
        "halt",
        "ls; halt",
        "ls;halt",
        "ls && halt",
        "false || halt",
        "echo x | halt",
        "sleep 1 & halt",
        "ls\nhalt",
        "(halt)",
        "{ halt; }",
        "if true; then halt; fi",
        "echo $(halt)",
        "echo `halt`",
        'echo "$(halt)"',
        'echo "`/sbin/halt`"',
        "x=$(ls $(halt))",
        "halt >/dev/null 2>&1",
        "ls 'unbalanced; halt",
    ],
)
def test_shell_strings_are_split_into_commands(shell: str) -> None:
    assert check(["halt"], shell=shell) == "halt"


@pytest.mark.parametrize(
    "shell",
    [
        "rm -r -f /",
        "cd /tmp && rm -fr /",
        "rm -rf / 2>/dev/null",
        "rm -rf '/'",
        'rm -rf "/"',
        "rm -rf \\/",
    ],
)
def test_rm_rf_root_in_shell_strings(shell: str) -> None:
    assert check(["rm -rf /"], shell=shell) == "rm -rf /"


@pytest.mark.parametrize(
    "shell",
    [
        "cat halting.log",
        "rm -rf /tmp/build && ls /",
        "rm -f / ; echo -r",  # the -r belongs to another command
        "echo 'rm -rf /tmp'",
        "tail -n 100 /var/log/halt.log | grep -c error",
    ],
)
def test_harmless_shell_strings_pass(shell: str) -> None:
    assert check(["halt", "rm -rf /"], shell=shell) is None


def test_argv_and_shell_are_both_checked() -> None:
    assert check(["halt"], ["ls"], "halt") == "halt"
    assert check(["halt"], ["halt"], "ls") == "halt"


def test_argv_is_not_split_like_a_shell_string() -> None:
    # No shell runs it: "a;halt" is one argument to echo, not a second command.
    assert check(["halt"], ["echo", "a;halt"]) is None
    assert check(["halt"], ["echo", "$(halt)"]) is None


# ------------------------------------------------------------------ scripts handed to a shell


@pytest.mark.parametrize(
    "argv",
    [
        ["sh", "-c", "halt"],
        ["/bin/bash", "-c", "ls; rm -fr /"],
        ["bash", "-lc", "cd / && rm -r -f /"],
        ["sudo", "sh", "-c", "echo hi; halt"],
        ["su", "-c", "halt", "root"],
        ["bash", "-c", "sh -c 'bash -c \"halt\"'"],  # nested, recursively
        ["cmd", "/c", "shutdown", "/s"],
        ["cmd.exe", "/d", "/s", "/C", "shutdown /s /t 0"],
        ["powershell.exe", "-NoProfile", "-Command", "shutdown /r"],
        ["eval", "rm -rf /"],
    ],
)
def test_scripts_given_to_shells_in_argv_are_checked(argv: list[str]) -> None:
    assert check(["halt", "rm -rf /", "shutdown"], argv) is not None


def test_scripts_given_to_shells_in_shell_strings_are_checked() -> None:
    assert check(["rm -rf /"], shell="sudo bash -c 'rm -r -f /'") == "rm -rf /"
    assert check(["shutdown"], shell='cmd /c "shutdown /s"') == "shutdown"


def test_harmless_scripts_given_to_shells_pass() -> None:
    assert check(["halt", "rm -rf /"], ["sh", "-c", "rm -rf /tmp/x; cat halting.log"]) is None


def test_deep_nesting_is_bounded() -> None:
    started = time.monotonic()
    deep = "eval " * 200 + "rm -r -f /"
    assert check(["halt"], shell=deep) is None  # no recursion error, no blow-up
    assert check(["rm -rf /"], shell="eval eval eval 'rm -r -f /'") == "rm -rf /"
    nested = ["sh", "-c", "sh -c 'sh -c \"sh -c halt\"'"]
    assert check(["halt"], nested) == "halt"
    assert time.monotonic() - started < 1
