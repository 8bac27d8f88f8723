"""Where output goes: stdout, stderr, and a one-line progress bar on a terminal's stderr.

Every write clears the bar first, so results never land in the middle of it; it is redrawn
by the next `progress()` call.  Writes are flushed at once so results show up as they
arrive even when stdout is a pipe (`troop ping '*' | tee log`).
"""

from __future__ import annotations

import time

from troop.cli.render import Style, style_for

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TextIO

_BAR_WIDTH = 20
_CLEAR_LINE = "\r\x1b[K"
# Redrawing for each of 10,000 hosts would cost more terminal time than it shows.
_REDRAW_EVERY = 0.05


class Console:
    def __init__(
        self, out: TextIO, err: TextIO, *, out_style: Style, err_style: Style, bar: bool
    ) -> None:
        self.out_stream = out
        self.err_stream = err
        self.out_style = out_style
        self.err_style = err_style
        self._bar = bar
        self._drawn = False
        self._drawn_at = 0.0

    @classmethod
    def for_streams(cls, out: TextIO, err: TextIO, environ: Mapping[str, str]) -> Console:
        err_style = style_for(err, environ)
        # The bar needs a terminal to overwrite; in a log file it would be noise.
        return cls(out, err, out_style=style_for(out, environ), err_style=err_style,
                   bar=err_style.sanitize)

    def out(self, text: str) -> None:
        self.clear()
        self.out_stream.write(text + "\n")
        self.out_stream.flush()

    def err(self, text: str) -> None:
        self.clear()
        self.err_stream.write(text + "\n")
        self.err_stream.flush()

    def progress(self, done: int, total: int) -> None:
        """Draw `[#####-----] 3/15 hosts, 12 out` while hosts are still out."""
        if not self._bar or total <= 0 or done >= total:
            self.clear()
            return
        now = time.monotonic()
        if self._drawn and now - self._drawn_at < _REDRAW_EVERY:
            return
        self._drawn_at = now
        filled = _BAR_WIDTH * done // total
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        self.err_stream.write(f"{_CLEAR_LINE}[{bar}] {done}/{total} hosts, {total - done} out")
        self.err_stream.flush()
        self._drawn = True

    def clear(self) -> None:
        if self._drawn:
            self.err_stream.write(_CLEAR_LINE)
            self.err_stream.flush()
            self._drawn = False
