"""Human rendering of file jobs (`file.push`, `file.read`, `file.ls`): one block per host.

Their results carry a `data` object instead of output, so each kind has its own block:

    web1  succeeded  created  /etc/app.conf  21 B  sha256 3a4b5c6d7e8f…
    web1  succeeded  /etc/hostname  5 B
      web1
    web1  succeeded  /etc  2 entries
      drwxr-xr-x  4096  2024-05-01 12:00  conf.d/
      lrwxrwxrwx    19  2024-05-01 12:00  localtime@

A host without a result shows why, and its error, as for `cmd`.  Everything the host sent
(paths, names, file text) goes through `Style.remote`, so it cannot drive the terminal.
Imported by render.host_renderer only when a file job is shown.
"""

from __future__ import annotations

import stat
import time

from troop.cli.render import DIM, Style, data_header, error_lines, indented, result_data
from troop.cli.tables import to_epoch

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    from troop.cli.api import JsonObj

SHORT_SHA = 12  # hex digits of a sha256 shown on a host line
_UNITS = ("KiB", "MiB", "GiB", "TiB")
# Entry types as the scout names them, and the file type bits `ls -l` shows for them.
_TYPE_BITS = {
    "file": stat.S_IFREG, "dir": stat.S_IFDIR, "link": stat.S_IFLNK, "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK, "char": stat.S_IFCHR, "block": stat.S_IFBLK,
}
_SUFFIX = {"dir": "/", "link": "@"}


def human_size(size: object) -> str:
    """`21 B`, `1.5 KiB`, `200.0 MiB`; the raw value if it is not a byte count."""
    if isinstance(size, bool) or not isinstance(size, int):
        return str(size)
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def short_sha(sha: object) -> str:
    text = str(sha)
    return text[:SHORT_SHA] + "…" if len(text) > SHORT_SHA else text


def _note(text: str, style: Style) -> str:
    return "  " + style.paint(text, DIM)


def render_push(
    name: str, result: JsonObj, style: Style, *, width: int = 0, output: bool = True
) -> str:
    """`web1  succeeded  created  /etc/app.conf  21 B  sha256 3a4b…  backup /etc/app.conf.…`"""
    data = result_data(result)
    details = []
    if data.get("action"):
        details.append(style.remote(str(data["action"])))
    if data.get("path"):
        details.append(style.remote(str(data["path"])))
    if data.get("size") is not None:
        details.append(human_size(data["size"]))
    if data.get("sha256"):
        details.append(f"sha256 {style.remote(short_sha(data['sha256']))}")
    if data.get("backup"):
        details.append(f"backup {style.remote(str(data['backup']))}")
    return "\n".join([data_header(name, result, style, width, details), *error_lines(result, style)])


def render_read(
    name: str, result: JsonObj, style: Style, *, width: int = 0, output: bool = True
) -> str:
    """The header (path, size), then the file's text indented, or a note if it is binary."""
    data = result_data(result)
    details = []
    if data.get("path"):
        details.append(style.remote(str(data["path"])))
    if data.get("size") is not None:
        details.append(human_size(data["size"]))
    lines = [data_header(name, result, style, width, details)]
    text = data.get("text")
    if isinstance(text, str):
        lines += indented(text, style)
    elif isinstance(data.get("content_base64"), str):
        size = data.get("size")
        if isinstance(size, bool) or not isinstance(size, int):
            size = _decoded_length(data["content_base64"])
        noun = "byte" if size == 1 else "bytes"
        sha = style.remote(str(data.get("sha256") or "?"))
        lines.append(_note(f"(binary, {size} {noun}, sha256 {sha}; use --json)", style))
    return "\n".join(lines + error_lines(result, style))


def _decoded_length(b64: str) -> int:
    b64 = b64.strip()
    return len(b64) * 3 // 4 - (len(b64) - len(b64.rstrip("=")))


def render_ls(
    name: str, result: JsonObj, style: Style, *, width: int = 0, output: bool = True
) -> str:
    """The header (path, entry count), then one `ls -l`-like line per entry, by name."""
    data = result_data(result)
    raw = data.get("entries")
    entries = sorted(
        (e for e in raw if isinstance(e, dict)) if isinstance(raw, list) else [],
        key=lambda e: str(e.get("name", "")),
    )
    details = []
    if data.get("path"):
        details.append(style.remote(str(data["path"])))
    if isinstance(raw, list):
        details.append(f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}")
    lines = [data_header(name, result, style, width, details)]
    rows = [
        (
            mode_text(e.get("mode"), e.get("type")),
            "-" if e.get("size") is None else str(e["size"]),
            mtime_text(e.get("mtime")),
            style.remote(str(e.get("name", "?"))) + _SUFFIX.get(str(e.get("type")), ""),
        )
        for e in entries
    ]
    mode_w = max((len(r[0]) for r in rows), default=0)
    size_w = max((len(r[1]) for r in rows), default=0)
    time_w = max((len(r[2]) for r in rows), default=0)
    for mode, size, mtime, entry in rows:
        lines.append(f"  {mode.ljust(mode_w)}  {size.rjust(size_w)}  {mtime.ljust(time_w)}  {entry}")
    if data.get("truncated"):
        lines.append(_note(f"(truncated: only the first {len(entries)} entries were sent)", style))
    return "\n".join(lines + error_lines(result, style))


def mode_text(mode: object, kind: object) -> str:
    """`drwxr-xr-x` from permission bits (an int, or octal text) and the entry's type."""
    if isinstance(mode, str):
        if not mode or any(c not in "01234567" for c in mode):
            return mode or "-"  # already symbolic, or nothing to show
        mode = int(mode, 8)
    if isinstance(mode, bool) or not isinstance(mode, int):
        return "-"
    if stat.S_IFMT(mode) == 0:  # permission bits only: the type comes from `type`
        mode |= _TYPE_BITS.get(str(kind), 0)
    return stat.filemode(mode)


def mtime_text(value: object) -> str:
    """`2024-05-01 12:00` in local time, from epoch seconds or ISO 8601; `-` when absent."""
    epoch = to_epoch(value)
    if epoch is None:
        return "-" if value in (None, "") else str(value)
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


RENDERERS = {"file.push": render_push, "file.read": render_read, "file.ls": render_ls}
