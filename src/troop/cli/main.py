"""Entry point of the `troop` command: parse, dispatch, map errors to exit statuses.

Why only the standard library, and why everything is imported late: `troop ping '*'` against
15 hosts must finish within 0.20 s of wall time, Python start-up included.  Importing typer,
rich and httpx alone costs about 0.16 s on our machines, so the CLI uses argparse for parsing,
http.client and json for HTTP, and raw ANSI escapes for colour.  Even so, http.client costs
~18 ms (it pulls in the email package), so this module imports only argparse-level code; each
command's module, and with it http.client, is imported when that command runs.  `troop
--help` therefore never loads HTTP code, and nothing here imports troop.protocol or any
server package (DESIGN.md: the CLI talks HTTP only).  For the same reason no troop.cli
module imports `typing` or `dataclasses` (which pulls in `inspect`) at run time.  Check with
`python -X importtime -m troop.cli.main --help`; tests/unit/test_cli_main.py guards it.

Exit statuses: 0 every targeted host succeeded (or the call worked), 1 some host did not,
2 usage or API error (including an unreachable General), 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys

from troop.cli.args import parse_args

# `typing` (~6 ms) is imported by no module this command needs, so no troop.cli module
# imports it at run time either: annotations are strings (PEP 563) and type-only imports sit
# under this flag, which mypy treats as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import TextIO

USAGE_ERROR = 2
INTERRUPTED = 130
BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line and return its exit status (the console script exits with it)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        ns = parse_args(args)
    except SystemExit as exc:  # argparse: usage errors, --help, --version
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    _tolerate_unencodable(sys.stdout, sys.stderr)
    return _run(ns.handler, ns, sys.stdout, sys.stderr)


def _run(handler: str, ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from troop.cli.context import make_context
    from troop.cli.errors import CliError

    try:
        ctx = make_context(ns, os.environ, out, err)
        return _load(handler)(ns, ctx)
    except CliError as exc:
        err.write(f"troop: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        err.write("\ntroop: interrupted\n")
        return INTERRUPTED
    except BrokenPipeError:
        _silence(out)
        return BROKEN_PIPE


def _load(handler: str) -> Callable[..., int]:
    """Import `module:function` under troop.cli only now, so unused commands cost nothing."""
    module_name, _, function = handler.partition(":")
    module = importlib.import_module(f"troop.cli.{module_name}")
    command: Callable[..., int] = getattr(module, function)
    return command


def _tolerate_unencodable(*streams: TextIO) -> None:
    # Remote output may hold characters the local terminal cannot encode; show a
    # replacement character rather than die with UnicodeEncodeError halfway through a job.
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass


def _silence(out: TextIO) -> None:
    # The reader went away (`troop host list | head`): point stdout at /dev/null so the
    # interpreter's final flush does not print a second BrokenPipeError.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
