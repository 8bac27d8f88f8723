"""Structured logs: one line per event, `ts level logger event key=value ...`."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = getattr(record, "fields", None) or {}
        extra = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        message = record.getMessage().replace("\n", " | ")  # one event, one line
        line = f"{ts}.{int(record.msecs):03d}Z {record.levelname.lower()} {record.name} {message}"
        if extra:
            line += " " + extra
        if record.exc_info:
            line += " exc=" + _quote(self.formatException(record.exc_info).replace("\n", " | "))
        return line


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def setup(level: str = "info", file: str = "") -> None:
    handler: logging.Handler = logging.FileHandler(file) if file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "aiosqlite", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log one event with key=value fields."""
    logger.log(level, msg, extra={"fields": fields})
