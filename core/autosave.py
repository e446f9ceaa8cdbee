"""Crash-safe autosave of an annotation store: edits reach the disk within a second or two.

A daemon thread sleeps until the store reports a change, waits out the debounce delay,
takes a snapshot of the store and replaces the file atomically (the previous version is
kept as ``<file>.bak``). A failed write (disk full, permission denied, read-only
filesystem) is reported once, the edits stay in memory, and the write is retried with
growing pauses until it succeeds. Qt-free: the GUI wraps the callbacks in signals.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from core.annotations.model import Annotation, AnnotationClass
from core.annotations.store import AnnotationStore
from core.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

#: Pauses (seconds) before the 1st, 2nd, ... retry of a failed write; the last one repeats.
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
#: Quiet time after an edit before writing, so a burst of edits makes one write.
_SETTLE_S = 0.05


def write_snapshot(path, annotations: Sequence[Annotation], classes: Sequence[AnnotationClass]) -> None:
    """Write annotations and classes to ``path`` atomically, keeping the previous file as ``.bak``.

    Parameters
    ----------
    path : path-like
        The annotation file; its format follows its suffix (``.geojson``). Its folder is created.
    annotations : sequence of Annotation
    classes : sequence of AnnotationClass

    Raises
    ------
    OSError
        When the file cannot be written; the previous file is then untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, _serialise(path, list(annotations), tuple(classes)), backup=True)


def _serialise(path: Path, annotations: list, classes: tuple) -> bytes:
    """The file's bytes (QuPath GeoJSON, the project's annotation format)."""
    from core.annotations.formats import qupath_geojson

    if path.suffix.lower() not in qupath_geojson.EXTENSIONS:
        raise ValueError(f"{path}: annotations are saved as QuPath GeoJSON; the file must end in .geojson")
    return qupath_geojson.dump(annotations, classes)


class AutoSaver:
    """Keeps an annotation file in step with an :class:`AnnotationStore`.

    Parameters
    ----------
    store : AnnotationStore
        The annotations to save; edits are noticed through a store listener.
    path : path-like
        The annotation file to keep up to date.
    delay : float
        Debounce in seconds: at most one write per ``delay``; an edit is on disk
        about ``delay`` seconds after it was made at the latest (plus the write itself).
    on_error : callable(str), optional
        Called from the saver's thread with a message naming the file and the problem,
        once per distinct problem until a write succeeds again.
    on_saved : callable(int), optional
        Called from the saver's thread with the store revision just written.
    retry_delays : sequence of float, optional
        Pauses before successive retries after a failure; defaults to ``RETRY_DELAYS``.
    saved_revision : int, optional
        The store revision already on disk; defaults to the store's current one
        (a store just loaded from ``path``).

    Notes
    -----
    Nothing is dropped silently: until a write succeeds, ``dirty`` stays True and
    ``last_error`` says why. Call :meth:`close` (which flushes) before the store goes away.
    """

    def __init__(self, store: AnnotationStore, path, delay: float = 1.0,
                 on_error: Callable[[str], None] | None = None,
                 on_saved: Callable[[int], None] | None = None,
                 retry_delays: Sequence[float] = RETRY_DELAYS, saved_revision: int | None = None):
        self.store = store
        self.path = Path(path)
        self.delay = max(0.0, float(delay))
        self._on_error = on_error
        self._on_saved = on_saved
        self._retry_delays = tuple(retry_delays) or RETRY_DELAYS
        self._saved_revision = store.revision if saved_revision is None else int(saved_revision)
        self._write_lock = threading.Lock()  # one write at a time: a later snapshot never loses to an older one
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._last_attempt = -math.inf  # time.monotonic() of the last write attempt
        self._failures = 0
        self._reported: set[str] = set()
        self.last_error: str | None = None
        self._closed = False
        store.add_listener(self._changed)
        self._thread = threading.Thread(target=self._run, name=f"autosave {self.path.name}", daemon=True)
        self._thread.start()

    # -- state ---------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """Whether the store holds edits that are not on disk yet."""
        return self.store.revision > self._saved_revision

    @property
    def saved_revision(self) -> int:
        """The newest store revision known to be on disk."""
        return self._saved_revision

    # -- control -------------------------------------------------------------------
    def flush(self, timeout: float | None = 10.0) -> bool:
        """Write now (even while waiting to retry after a failure) and wait for it.

        Parameters
        ----------
        timeout : float or None
            Longest wait, in seconds, for a write already under way; None waits for ever.

        Returns
        -------
        bool
            True when every edit made before the call is on disk; False otherwise
            (see ``last_error``). Never raises for a failed write.
        """
        target = self.store.revision
        if self._saved_revision >= target:
            return True
        self._attempt(timeout)
        return self._saved_revision >= target

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush, stop the thread and stop listening to the store.

        Returns
        -------
        bool
            True when everything was saved (as :meth:`flush`).
        """
        if self._closed:
            return not self.dirty
        self._closed = True
        self._stopping.set()
        self._wake.set()
        saved = self.flush(timeout)
        if threading.current_thread() is not self._thread:  # close() may come from a callback
            self._thread.join(timeout)
        self.store.remove_listener(self._changed)
        return saved

    def __enter__(self) -> "AutoSaver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the thread ----------------------------------------------------------------
    def _changed(self, _edit) -> None:
        """Store listener, called on the editing thread: only wake the saver."""
        self._wake.set()

    def _pause(self) -> float:
        """Seconds to keep between attempts: the debounce delay, or the retry pause after failures."""
        if self._failures:
            return self._retry_delays[min(self._failures, len(self._retry_delays)) - 1]
        return self.delay

    def _run(self) -> None:
        """Wait for edits, respect the pause since the last attempt, then write."""
        while not self._stopping.is_set():
            self._wake.wait()
            if self._stopping.is_set():
                break
            wait = max(_SETTLE_S if not self._failures else 0.0,
                       self._last_attempt + self._pause() - time.monotonic())
            if wait > 0 and self._stopping.wait(wait):
                break  # close() flushes
            self._wake.clear()  # edits from now on wake us again
            if self.dirty:
                self._attempt(None)
            if self.dirty:
                self._wake.set()  # failed, or edited during the write: go round again after the pause

    def _attempt(self, timeout: float | None) -> None:
        """One write of a fresh snapshot, with reporting; callbacks run outside the lock."""
        if not self._write_lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return
        saved, message = None, None
        try:
            # Revision first: every edit up to it is complete, so the snapshot holds at least those.
            revision = self.store.revision
            annotations = self.store.annotations()
            classes = self.store.classes
            if revision <= self._saved_revision:
                return
            self._last_attempt = time.monotonic()
            try:
                write_snapshot(self.path, annotations, classes)
            except OSError as err:
                message = self._failed(_reason(err))
            except Exception as err:  # noqa: BLE001 - a thread boundary: report anything rather than die silently
                log.exception("autosave of %s failed", self.path)
                message = self._failed(f"{type(err).__name__}: {err}")
            else:
                self._saved_revision = max(self._saved_revision, revision)
                self._failures = 0
                self._reported.clear()
                self.last_error = None
                saved = revision
        finally:
            self._write_lock.release()
        if message is not None:
            _call(self._on_error, message)
        if saved is not None:
            _call(self._on_saved, saved)

    def _failed(self, reason: str) -> str | None:
        """Record a failure; the message to report, or None when this problem was already reported."""
        self._failures += 1
        message = (f"{self.path}: could not save the annotations ({reason}). "
                   "Your edits are kept in memory and Biopsia keeps trying to save them.")
        self.last_error = message
        if message in self._reported:
            return None
        self._reported.add(message)
        return message


def _reason(err: OSError) -> str:
    """The system's words for an OSError ("No space left on device")."""
    if err.errno:
        return os.strerror(err.errno)
    return err.strerror or str(err)


def _call(callback, *args) -> None:
    """Run a user callback; one that raises must not stop the saver."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:  # noqa: BLE001 - the saver thread must survive a faulty callback
        log.exception("autosave callback %r failed", callback)
