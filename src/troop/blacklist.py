"""The command blacklist: refuse commands that match an operator's list of entries.

ADVISORY. It stops accidents (a ``reboot`` sent to ``'*'``, an ``rm -rf /`` typed into the
wrong target), not a determined attacker: a shell has endless ways to spell a command
(variables, aliases, globs, ``base64 -d | sh``, a script file, a copy of ``/sbin/halt``
under another name). Access control is the API tokens' job.

The General checks its list before dispatching and the scout checks the General's list plus
its own before running, so both sides use :func:`check`.

How an entry matches (token-wise, unlike the Go original's substring match, which refused
``cat halting.log`` and let ``rm -r -f /`` through):

- Entry and command are split into tokens. A shell string is split like ``sh`` would
  (shlex, POSIX mode) and also the way ``cmd.exe`` sees it (backslashes kept), and into
  separate commands at ``;``, ``&&``, ``||``, ``|``, ``&``, newlines, parentheses, redirections
  and backticks; ``$(...)`` and backtick substitutions are checked on their own, even inside
  double quotes. The script of ``sh -c``/``bash -c``/``su -c``/``cmd /c``/``powershell
  -Command``/``eval`` is checked too, recursively, in argv and in shell strings alike.
- The entry's first token is a program. It matches any token of a command whose basename
  (``/`` or ``\\`` separated) is the same, ignoring case and an ``.exe`` suffix: ``halt``
  matches ``/sbin/halt``, ``sudo halt`` and ``SHUTDOWN.EXE``.
- After that program token, up to the end of that command: every option of the entry must be
  among the command's options, where short flags are single letters (``-rf``, ``-fr``,
  ``-r -f`` and ``-f -v -r`` all contain {r, f}) and options may stand anywhere, as GNU tools
  allow; and the entry's other words must appear as a contiguous run of the command's words.
  So ``rm -rf /`` matches ``rm -r -f /``, ``rm -fr --no-preserve-root /`` and
  ``rm -rf /tmp/x /``, but not ``rm -rf /tmp/x`` or ``rm -f /x``.

Known limits (it errs on the side of refusing):

- A program name matches anywhere in a command, so ``echo halt`` and
  ``grep reboot /var/log/messages`` are refused by ``halt`` and ``reboot``.
- Quoting is not fully understood: ``$(...)`` inside single quotes is still checked, ``#``
  comments are still checked, and the text after a redirection is taken as a command.
- Long and short spellings of an option are different options: ``rm --recursive --force /``
  does not match ``rm -rf /``. Add such spellings as entries of their own.
- Variables, globs, aliases and cmd.exe's ``^`` escapes are not expanded.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BLACKLIST = [
    "rm -rf /",
    "rm -rf /*",
    "halt",
    "poweroff",
    "reboot",
    "shutdown",
    "mkfs",
    "mkfs.ext2",
    "mkfs.ext3",
    "mkfs.ext4",
    "mkfs.xfs",
    "mkfs.btrfs",
    "mkfs.vfat",
    "init 0",
    "init 6",
]

MAX_DEPTH = 5  # nested `sh -c` levels looked into; deeper nesting is not checked

_PUNCTUATION = "();<>|&`\n"
_SUBSTITUTION = re.compile(r"\$\(([^()]*)\)|`([^`]*)`")
_FALLBACK_TOKEN = re.compile(r"[();<>|&`\n]+|[^\s();<>|&`]+")
_SH_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "busybox", "su"})
_CMD_SCRIPT_FLAGS = frozenset({"/c", "/k", "/r"})
_POWERSHELL = frozenset({"powershell", "pwsh"})
_POWERSHELL_SCRIPT_FLAGS = frozenset({"-c", "-command"})


def load_blacklist(path: str | Path) -> list[str]:
    """Entries of a blacklist file: one a line, trimmed; blank lines and ``#`` lines skipped.

    A missing file gives ``[]``; whether that is an error is the caller's call. Other read
    errors (permissions, a directory) raise OSError.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    entries = (line.strip() for line in text.splitlines())
    return [e for e in entries if e and not e.startswith("#")]


def check(
    entries: Iterable[str], argv: Sequence[str] | None = None, shell: str | None = None
) -> str | None:
    """The first entry that matches the command (``argv`` and/or ``shell``), or None."""
    commands: list[list[str]] = []
    if argv:
        commands += _argv_commands(list(argv), 0)
    if shell:
        commands += _shell_commands(shell, 0)
    if not commands:
        return None
    for entry in entries:
        pattern = _Pattern.parse(entry)
        if pattern is not None and any(pattern.matches(c) for c in commands):
            return entry
    return None


@dataclass(frozen=True)
class _Pattern:
    program: str
    options: frozenset[str]
    words: tuple[str, ...]

    @classmethod
    def parse(cls, entry: str) -> _Pattern | None:
        tokens = _lex(entry.strip(), posix=False, punctuation=False)
        if tokens is None:
            tokens = entry.split()
        # No program (blank, "/", or options only): such an entry would match too much.
        if not tokens or not _program_name(tokens[0]) or tokens[0].startswith("-"):
            return None
        options, words = _options_and_words(tokens[1:])
        return cls(_program_name(tokens[0]), options, tuple(words))

    def matches(self, command: Sequence[str]) -> bool:
        for i, token in enumerate(command):
            if _program_name(token) != self.program:
                continue
            options, words = _options_and_words(command[i + 1 :])
            if self.options <= options and _contains_run(words, self.words):
                return True
        return False


def _program_name(token: str) -> str:
    name = re.split(r"[\\/]", token)[-1].lower()
    return name.removesuffix(".exe")


def _options_and_words(tokens: Sequence[str]) -> tuple[frozenset[str], list[str]]:
    options: set[str] = set()
    words: list[str] = []
    for arg in tokens:
        if arg.startswith("--"):
            options.add(arg)
        elif arg.startswith("-") and arg != "-":
            # A cluster of short flags: -rf is -r -f, in any order.
            options.update(f"-{letter}" for letter in arg[1:])
        else:
            words.append(arg)
    return frozenset(options), words


def _contains_run(words: Sequence[str], run: Sequence[str]) -> bool:
    if not run:
        return True
    return any(list(words[i : i + len(run)]) == list(run) for i in range(len(words)))


def _argv_commands(argv: list[str], depth: int) -> list[list[str]]:
    """The command itself plus the commands of any shell scripts it passes on."""
    commands = [argv]
    script = _nested_script(argv) if depth < MAX_DEPTH else None
    if script is not None:
        commands += _shell_commands(script, depth + 1)
    return commands


def _shell_commands(text: str, depth: int) -> list[list[str]]:
    """Split a shell string into commands, both as sh and as cmd.exe would tokenise it."""
    commands: list[list[str]] = []
    seen: list[list[str]] = []
    for posix in (True, False):
        tokens = _lex(text, posix=posix, punctuation=True)
        if tokens is None:  # unbalanced quotes: sh would refuse it, but look anyway
            tokens = [_unquote(t) for t in _FALLBACK_TOKEN.findall(text)]
        if tokens in seen:  # most strings split the same both ways
            continue
        seen.append(tokens)
        for command in _split_commands(tokens):
            commands += _argv_commands(command, depth)
    if depth < MAX_DEPTH:
        for match in _SUBSTITUTION.finditer(text):
            commands += _shell_commands(match.group(1) or match.group(2) or "", depth + 1)
    return commands


def _lex(text: str, *, posix: bool, punctuation: bool) -> list[str] | None:
    lexer = shlex.shlex(text, posix=posix, punctuation_chars=_PUNCTUATION if punctuation else "")
    if punctuation:
        lexer.whitespace = " \t\r"  # newlines separate commands, so they must become tokens
    lexer.whitespace_split = True
    lexer.commenters = ""  # a `#` inside a word is not a comment; checking more is safe
    try:
        tokens = list(lexer)
    except ValueError:
        return None
    return tokens if posix else [_unquote(t) for t in tokens]


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token.strip("'\"")


def _split_commands(tokens: Iterable[str]) -> list[list[str]]:
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token and all(c in _PUNCTUATION for c in token):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _nested_script(tokens: Sequence[str]) -> str | None:
    """The script a command hands to a shell (``sh -c S``, ``cmd /c S``, ``eval S``...).

    Only the first: whatever follows the script is its arguments, not more code, and one per
    level keeps the recursion linear.
    """
    for i, token in enumerate(tokens):
        name, rest = _program_name(token), tokens[i + 1 :]
        script: str | None = None
        if name in _SH_SHELLS:
            for j, arg in enumerate(rest[:-1]):
                if arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]:
                    script = rest[j + 1]
                    break
        elif name == "cmd":
            script = _rest_after(rest, _CMD_SCRIPT_FLAGS)
        elif name in _POWERSHELL:
            script = _rest_after(rest, _POWERSHELL_SCRIPT_FLAGS)
        elif name == "eval" and rest:
            script = " ".join(rest)
        if script is not None:
            return script
    return None


def _rest_after(tokens: Sequence[str], flags: frozenset[str]) -> str | None:
    # cmd.exe and PowerShell take everything after the flag as the script.
    for j, arg in enumerate(tokens):
        if arg.lower() in flags and j + 1 < len(tokens):
            return " ".join(tokens[j + 1 :])
    return None
