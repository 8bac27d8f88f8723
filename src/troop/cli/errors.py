"""Errors the `troop` command turns into a message on stderr and an exit status.

    TroopError                      (troop.errors)
    └── CliError                    exit 2, printed as "troop: <message>"
        ├── UsageError              the command line or the local setup is wrong
        ├── ApiError                the General answered with a 4xx/5xx and an error message
        └── UnreachableError        no HTTP answer at all (refused, DNS, timeout, dropped)

Only `troop.cli.main` catches these; everything below it raises.
"""

from __future__ import annotations

from troop.errors import TroopError

# Statuses whose number tells the operator something the message may not (who is refused,
# or that the fault is on the server's side); for the rest the message speaks for itself.
_SHOW_STATUS = frozenset({401, 403})


class CliError(TroopError):
    """A failure that ends the command with `exit_code` after one line on stderr."""

    exit_code = 2


class UsageError(CliError):
    """Bad arguments or local setup (an unreadable token file, a malformed URL)."""


class ApiError(CliError):
    """The General refused or failed a request."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        shown = f"{status} {message}" if status in _SHOW_STATUS or status >= 500 else message
        super().__init__(shown)


class UnreachableError(CliError):
    """No usable HTTP answer from the General."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach the General at {url}: {reason}")
