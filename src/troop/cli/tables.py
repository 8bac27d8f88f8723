"""Plain-text tables and timestamps for the listing commands (jobs, hosts, tokens).

Timestamps may come as epoch seconds or as ISO 8601 strings (the contract does not fix
one); both are shown in the operator's local time.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return lines


def to_epoch(value: object) -> float | None:
    """Epoch seconds from a number or an ISO 8601 string; None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        from datetime import UTC, datetime  # only listings with string times pay for it

        try:
            # Naive strings are taken as UTC: that is what servers store.
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return None


def format_time(value: object) -> str:
    """`2024-05-01 12:00:03` in local time, `-` when absent, the raw text if unparseable."""
    if value is None or value == "":
        return "-"
    epoch = to_epoch(value)
    if epoch is None:
        return str(value)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def format_age(value: object, now: float | None = None) -> str:
    """`12s ago`, `5m ago`, `3h ago`, `2d ago`; `-` when absent."""
    epoch = to_epoch(value)
    if epoch is None:
        return "-" if value in (None, "") else str(value)
    seconds = max(0, int((time.time() if now is None else now) - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
