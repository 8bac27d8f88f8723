"""Where a command gets its General, its token and its output streams.

Precedence, most specific first: --token, --token-file, TROOP_TOKEN, TROOP_TOKEN_FILE; and
--url, TROOP_URL, the default.  Flags beat the environment, as for every Troop component.
"""

from __future__ import annotations

from troop.cli.args import DEFAULT_URL
from troop.cli.errors import UsageError

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from typing import TextIO

    from troop.cli.api import ApiClient
    from troop.cli.console import Console


class Context:
    """Everything a command handler needs from outside its arguments."""

    def __init__(
        self, url: str, token: str | None, out: TextIO, err: TextIO, environ: Mapping[str, str]
    ) -> None:
        self.url = url
        self.token = token
        self.out = out
        self.err = err
        self.environ = environ

    def client(self) -> ApiClient:
        from troop.cli.api import ApiClient  # imported here: http.client costs ~18 ms

        return ApiClient(self.url, self.token)

    def console(self) -> Console:
        from troop.cli.console import Console

        return Console.for_streams(self.out, self.err, self.environ)


def _read_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise UsageError(f"cannot read token file {path}: {exc.strerror or exc}") from exc


def resolve_token(ns: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    flag_token: str | None = getattr(ns, "token", None)
    flag_file: str | None = getattr(ns, "token_file", None)
    if flag_token and flag_file:
        raise UsageError("give --token or --token-file, not both")
    if flag_token:
        token = flag_token.strip()
    elif flag_file:
        token = _read_token_file(flag_file)
    elif environ.get("TROOP_TOKEN"):
        token = environ["TROOP_TOKEN"].strip()
    elif environ.get("TROOP_TOKEN_FILE"):
        token = _read_token_file(environ["TROOP_TOKEN_FILE"])
    else:
        return None
    # A stray newline or space would otherwise reach the Authorization header.
    if any(c.isspace() or not c.isprintable() for c in token):
        raise UsageError("the token contains spaces or control characters")
    return token or None


def make_context(
    ns: argparse.Namespace, environ: Mapping[str, str], out: TextIO, err: TextIO
) -> Context:
    url = getattr(ns, "url", None) or environ.get("TROOP_URL") or DEFAULT_URL
    return Context(url=url, token=resolve_token(ns, environ), out=out, err=err, environ=environ)
