"""Progress and result lines on the terminal: core reports through callbacks, these print them."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """A one-line terminal progress bar for ``progress(done, total)`` callbacks."""

    def __init__(self, label: str, stream=sys.stderr):
        self.label, self.stream = label, stream
        self.start = time.monotonic()
        self._last = 0.0
        self._tty = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < (0.1 if self._tty else 5.0):
            return
        self._last = now
        frac = done / total if total else 1.0
        bar = "#" * int(30 * frac)
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0
        timing = f"{elapsed:.1f} s" if done >= total else f"{elapsed:.1f} s, about {eta:.0f} s left"
        line = f"{self.label} [{bar:<30}] {done}/{total}  {timing}"
        if self._tty:  # redraw in place; a log file gets one line every few seconds
            self.stream.write(f"\r{line} " + ("\n" if done >= total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def warn(text: str) -> None:
    """One warning line on stderr, as every command writes them."""
    print(f"biopsia: warning: {text}", file=sys.stderr)


def error(text: str) -> None:
    """One error line on stderr (the command then exits non-zero)."""
    print(f"biopsia: error: {text}", file=sys.stderr)


def note(text: str) -> None:
    """A line about the work under way, on stderr, so that stdout holds only results."""
    print(text, file=sys.stderr, flush=True)


def metric(value) -> str:
    """A metric with three decimals, or ``n/a`` when it is undefined (no positives, say)."""
    return "n/a" if value is None else f"{value:.3f}"
