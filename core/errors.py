"""The error hierarchy: every message names the file and what to do about it."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


class BiopsiaError(Exception):
    """Base class for errors a user can act on; the GUI and the CLI show ``str(err)``."""


class SlideError(BiopsiaError):
    """A slide could not be opened or read.

    Parameters
    ----------
    path : path-like or None
        The slide file concerned.
    problem : str
        What went wrong, in words a pathologist understands.
    hint : str, optional
        What to do about it.
    """

    def __init__(self, path: str | Path | None, problem: str, hint: str | None = None):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        self.hint = hint
        where = f"{self.path}: " if self.path is not None else ""
        message = f"{where}{problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class SlideNotFoundError(SlideError, FileNotFoundError):
    """The slide file does not exist."""


class UnsupportedSlideError(SlideError):
    """No backend could open the file; ``tried`` lists each backend and its reason."""

    def __init__(self, path, tried: Iterable[tuple[str, str]]):
        self.tried = list(tried)
        reasons = "; ".join(f"{name}: {why}" for name, why in self.tried)
        super().__init__(
            path,
            "not a slide format Biopsia can read",
            f"tried {reasons}" if reasons else None,
        )


class SlideReadError(SlideError):
    """The slide opened, but a region of it could not be decoded (corrupt or truncated data)."""


class AnnotationFormatError(BiopsiaError):
    """An annotation file is malformed."""


class ModelError(BiopsiaError):
    """A model bundle is missing, unreadable, or does not fit the data."""


class DatasetError(BiopsiaError):
    """A dataset is malformed or empty."""


class Cancelled(BiopsiaError):
    """A long job stopped because its ``should_stop()`` returned True.

    The one cancellation class: core jobs raise it, `gui.worker.Worker` reports it on its ``cancelled``
    signal, and a caller that does not expect cancelling sees a `BiopsiaError` whose message says what
    was cancelled.
    """
