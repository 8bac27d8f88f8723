"""`troop file push`, `troop file read` and `troop file ls`.

A push is content-addressed: the CLI hashes SRC, asks the General whether it already holds
that sha256 (`HEAD /files/{sha256}`), uploads it only if not (`PUT /files`, streamed from
disk: the CLI never holds the file in memory), then submits a `file.push` job naming the
sha256.  Read and ls are plain jobs.  All three are then followed exactly as `troop cmd` is
(commands_jobs.submit); render_files shows the hosts.
"""

from __future__ import annotations

import os
import stat
import urllib.parse

from troop.cli.commands_jobs import base_body, submit
from troop.cli.errors import ApiError, CliError, UsageError

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    import argparse
    import io

    from troop.cli.api import ApiClient, JsonObj
    from troop.cli.context import Context

HASH_BLOCK = 1 << 20  # bytes per read while hashing SRC
# X-Troop-Name carries the base name as is when it is printable ASCII; anything else
# (and "%") is percent-encoded as UTF-8, so the header is always valid.
_NAME_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def run_push(ns: argparse.Namespace, ctx: Context) -> int:
    name = os.path.basename(ns.src)
    with open_source(ns.src) as stream:
        sha, size = sha256_of(stream, ns.src)
        client, console = ctx.client(), ctx.console()
        if not client.exists(f"/files/{sha}"):
            stream.seek(0)
            upload(client, stream, sha, size, name)
    body = base_body(ns, "file.push")
    body["file"] = {
        "sha256": sha,
        "name": name,
        "dest": ns.dest,
        "mode": ns.mode,
        "owner": ns.owner,
        "group": ns.group,
        "makedirs": ns.makedirs,
        "backup": ns.backup,
        "force": ns.force,
    }
    return submit(client, console, ns, body)


def run_read(ns: argparse.Namespace, ctx: Context) -> int:
    body = base_body(ns, "file.read")
    body["file"] = {"path": ns.path, "max_bytes": ns.max_bytes}
    return submit(ctx.client(), ctx.console(), ns, body)


def run_ls(ns: argparse.Namespace, ctx: Context) -> int:
    body = base_body(ns, "file.ls")
    body["file"] = {"path": ns.path}
    return submit(ctx.client(), ctx.console(), ns, body)


def open_source(path: str) -> io.BufferedReader:
    """SRC opened for reading; it must be a regular file (not a directory, FIFO or device)."""
    try:
        # stat first: opening a FIFO would block until someone writes to it.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UsageError(f"{path}: not a regular file")
        stream = open(path, "rb")  # the caller closes it
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return stream


def sha256_of(stream: io.BufferedReader, path: str) -> tuple[str, int]:
    """Hex sha256 and size of the rest of `stream`, read HASH_BLOCK bytes at a time."""
    import hashlib  # only a push pays for OpenSSL

    digest = hashlib.sha256()
    buffer = bytearray(HASH_BLOCK)
    view = memoryview(buffer)
    size = 0
    try:
        while count := stream.readinto(buffer):
            digest.update(view[:count])
            size += count
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest(), size


def upload(client: ApiClient, stream: io.BufferedReader, sha: str, size: int, name: str) -> JsonObj:
    """PUT the file to the General, streamed; 413 (over the General's limit) exits 2."""
    headers = {
        "Content-Type": "application/octet-stream",
        "X-Troop-Sha256": sha,
        "X-Troop-Name": urllib.parse.quote(name, safe=_NAME_SAFE),
    }
    try:
        stored = client.put_stream("/files", stream, size, headers)
    except ApiError as exc:
        if exc.status in (404, 405):
            raise CliError(
                f"the General at {client.url} does not take file uploads ({exc.message}); "
                "is it older than this troop?"
            ) from exc
        raise
    if stored.get("sha256") not in (None, sha):
        raise CliError(f"the General stored sha256 {stored['sha256']}, expected {sha}")
    return stored
