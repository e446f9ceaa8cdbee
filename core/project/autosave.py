"""Crash-safe autosave of an annotation store: every edit is on disk within two seconds.

A daemon thread sleeps until the store reports a change, waits out the debounce delay and saves
what changed since the last save. A small store's file is rewritten whole (atomically, the
previous version kept as ``<file>.bak``). A large one gets the changes appended to a journal
beside it (:mod:`core.annotations.journal`), flushed to the disk at every save, so a save costs
what the edits changed, not what the store holds; in the background, and always on
:meth:`AutoSaver.close`, the journal is folded into the GeoJSON file (compaction), which QuPath
reads. A failed write (disk full, permission denied, read-only filesystem) is reported once, the
edits stay in memory, and the write is retried with growing pauses until it succeeds. Qt-free:
the GUI wraps the callbacks in signals.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from core.annotations import journal
from core.annotations.formats import qupath_geojson
from core.annotations.journal import JournalWriter, base_payload, file_id, geojson_bytes, journal_path, path_lock
from core.annotations.model import Annotation, AnnotationClass
from core.annotations.store import AnnotationStore, Changes
from core.atomic import atomic_write_bytes
from core.threads import lower_this_thread

log = logging.getLogger(__name__)

#: Debounce: at most one save per this many seconds, so an edit waits at most this long for its
#: save to start. Short, so that with the save's own time on a busy machine (up to a second seen
#: with two kill-test chains and other work on two cores) an edit is on disk within two seconds.
DEFAULT_DELAY = 0.3
#: Pauses (seconds) before the 1st, 2nd, ... retry of a failed write; the last one repeats.
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
#: Quiet time after an edit before writing, so a burst of edits makes one write.
_SETTLE_S = 0.05
#: A store whose file is at most this large is rewritten whole at every save (cheap: no journal).
FULL_WRITE_BYTES = 1 << 20
#: The journal is folded into the file in the background once it is this large ...
COMPACT_MIN_BYTES = 8 << 20
#: ... and at least this fraction of the file,
COMPACT_RATIO = 0.5
#: ... or once no edit has come for this many seconds.
IDLE_COMPACT_S = 20.0


def write_snapshot(path, annotations: Sequence[Annotation], classes: Sequence[AnnotationClass],
                   foreign: Sequence = ()) -> None:
    """Write annotations and classes to ``path`` atomically, keeping the previous file as ``.bak``.

    A journal beside the file is removed: the file now holds everything.

    Parameters
    ----------
    path : path-like
        The annotation file; its format follows its suffix (``.geojson``). Its folder is created.
    annotations : sequence of Annotation
    classes : sequence of AnnotationClass
    foreign : sequence, optional
        Features to write back unchanged (``AnnotationStore.foreign``).

    Raises
    ------
    OSError
        When the file cannot be written; the previous file is then untouched.
    """
    path = Path(path)
    _check_suffix(path)
    data = geojson_bytes(list(annotations), tuple(classes), foreign)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path_lock(path):
        atomic_write_bytes(path, data, backup=True)
        _unlink(journal_path(path))


def load_saved(path) -> journal.Saved:
    """The marks saved at ``path`` (the GeoJSON file with its journal replayed); see :func:`core.annotations.journal.read_saved`."""
    return journal.read_saved(path)


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in qupath_geojson.EXTENSIONS:
        raise ValueError(f"{path}: annotations are saved as QuPath GeoJSON; the file must end in .geojson")


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class AutoSaver:
    """Keeps an annotation file in step with an :class:`AnnotationStore`.

    Parameters
    ----------
    store : AnnotationStore
        The annotations to save; edits are noticed through a store listener. A store read by
        :func:`load_saved` (``store.origin``) goes on with the files as they are; any other is
        written whole at its first save.
    path : path-like
        The annotation file to keep up to date.
    delay : float
        Debounce in seconds: at most one save per ``delay``; an edit is on disk about ``delay``
        seconds after it was made at the latest (plus the save itself).
    on_error : callable(str), optional
        Called from the saver's threads with a message naming the file and the problem,
        once per distinct problem until a write succeeds again.
    on_saved : callable(int), optional
        Called from the saver's thread with the store revision just written.
    retry_delays : sequence of float, optional
        Pauses before successive retries after a failure; defaults to ``RETRY_DELAYS``.
    saved_revision : int, optional
        The store revision already on disk; defaults to the store's current one
        (a store just loaded from ``path``).
    full_write_bytes, compact_min_bytes, compact_ratio, idle_compact_s : optional
        Override :data:`FULL_WRITE_BYTES`, :data:`COMPACT_MIN_BYTES`, :data:`COMPACT_RATIO` and
        :data:`IDLE_COMPACT_S` (``None`` for the idle time turns idle compaction off).

    Notes
    -----
    Nothing is dropped silently: until a write succeeds, ``dirty`` stays True and
    ``last_error`` says why. Call :meth:`close` (which flushes and completes the GeoJSON
    file) before the store goes away.
    """

    def __init__(self, store: AnnotationStore, path, delay: float = DEFAULT_DELAY,
                 on_error: Callable[[str], None] | None = None,
                 on_saved: Callable[[int], None] | None = None,
                 retry_delays: Sequence[float] = RETRY_DELAYS, saved_revision: int | None = None,
                 full_write_bytes: int | None = None, compact_min_bytes: int | None = None,
                 compact_ratio: float | None = None, idle_compact_s: float | None = IDLE_COMPACT_S):
        self.store = store
        self.path = Path(path)
        _check_suffix(self.path)
        self.delay = max(0.0, float(delay))
        self._on_error = on_error
        self._on_saved = on_saved
        self._retry_delays = tuple(retry_delays) or RETRY_DELAYS
        self._full_write_bytes = FULL_WRITE_BYTES if full_write_bytes is None else int(full_write_bytes)
        self._compact_min = COMPACT_MIN_BYTES if compact_min_bytes is None else int(compact_min_bytes)
        self._compact_ratio = COMPACT_RATIO if compact_ratio is None else float(compact_ratio)
        self._idle_compact_s = idle_compact_s
        self._write_lock = threading.Lock()  # one save at a time: a later snapshot never loses to an older one
        self._geojson_lock = threading.Lock()  # one writer of the GeoJSON file (and of which journal is in use)
        self._fold_lock = threading.Lock()  # one compaction at a time
        self._folding = False  # a compaction is replacing the GeoJSON file right now
        self._tracker = store.track_changes()
        revision, annotations, classes = store.snapshot()
        self._saved_revision = revision if saved_revision is None else int(saved_revision)
        origin = store.origin
        if (origin is None or Path(origin.path).absolute() != self.path.absolute()
                or origin.revision != revision or self._saved_revision != revision):
            origin = None  # not the store as read from this file: its first save writes it whole
        self._origin = origin
        self._unsaved: Changes | None = None  # taken from the tracker, not yet on disk
        self._adopted = False
        self._needs_full = True
        self._journal: JournalWriter | None = None
        self._base: tuple[str, int] | None = None  # (sha256, seq) of the GeoJSON file as this saver knows it
        self._geojson_id = None  # journal.FileId of that file
        self._geojson_size = 0
        self._aside_reason = "unused"
        # (seq, annotations, classes): the store as the GeoJSON file plus the journal hold it.
        self._on_disk: tuple[int, list, tuple] | None = (0, annotations, classes)
        self._compactor: threading.Thread | None = None
        self._compact_after = -math.inf
        self._compact_failures = 0
        self._compact_reported: set[str] = set()
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

    @property
    def journal_bytes(self) -> int:
        """Size of the journal beside the file (0 when the file holds everything)."""
        journal_writer = self._journal
        return journal_writer.size if journal_writer is not None else 0

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

    def compact(self, timeout: float | None = 10.0) -> bool:
        """Save, then fold the journal into the GeoJSON file now, so that the file holds everything.

        Returns
        -------
        bool
            True when the GeoJSON file holds every edit made before the call. Never raises.
        """
        if not self.flush(timeout):
            return False
        with self._fold_lock:
            with self._write_lock:
                if not self._adopted:
                    self._adopt_quietly()
                if self._needs_full and self._origin is not None and self._origin.journal_state == "damaged":
                    try:  # opened from the readable part of a damaged journal: the file must hold it
                        self._write_full(*self._on_disk[1:])
                    except OSError as err:
                        self._report_compaction(err)
                        return False
            return self._fold()

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush, complete the GeoJSON file, stop the thread and stop listening to the store.

        Returns
        -------
        bool
            True when everything was saved and the GeoJSON file holds it.
        """
        if self._closed:
            return not self.dirty and self._journal is None
        self._closed = True
        self._stopping.set()
        self._wake.set()
        saved = self.flush(timeout)
        if threading.current_thread() is not self._thread:  # close() may come from a callback
            self._thread.join(timeout)
        complete = saved and self.compact(timeout)
        self.store.remove_listener(self._changed)
        self._tracker.close()
        with self._write_lock:
            if self._journal is not None:  # the journal stays on disk; it is replayed at the next opening
                self._journal.close()
        return complete

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
        """Wait for edits, respect the pause since the last attempt, then write; fold the journal when idle."""
        lower_this_thread()
        while not self._stopping.is_set():
            idle = self._idle_compact_s if self._journal is not None and self._journal.edits else None
            if not self._wake.wait(idle):
                self._start_compaction(idle=True)
                continue
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
        """One save of what changed, with reporting; callbacks run outside the lock."""
        if not self._write_lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return
        saved, message = None, None
        try:
            changes = self._tracker.take()  # every edit up to its revision, and the store at it
            pending = changes if self._unsaved is None else self._unsaved.then(changes)
            self._unsaved = pending
            if pending.revision <= self._saved_revision:
                self._unsaved = None
                return
            self._last_attempt = time.monotonic()
            try:
                if not self._adopted:
                    self._adopt()
                self._save(pending)
            except OSError as err:
                message = self._failed(_reason(err))
            except Exception as err:  # noqa: BLE001 - a thread boundary: report anything rather than die silently
                log.exception("autosave of %s failed", self.path)
                message = self._failed(f"{type(err).__name__}: {err}")
            else:
                self._unsaved = None
                self._saved_revision = max(self._saved_revision, pending.revision)
                self._failures = 0
                self._reported.clear()
                self.last_error = None
                saved = pending.revision
                self._start_compaction()
        finally:
            self._write_lock.release()
        if message is not None:
            _call(self._on_error, message)
        if saved is not None:
            _call(self._on_saved, saved)

    # -- saving (under the write lock) ---------------------------------------------------
    def _adopt(self) -> None:
        """Decide how to go on from the files as the store was read from them (once, at the first save)."""
        self._adopted = True
        origin = self._origin
        if origin is None or origin.new_ids or origin.geojson is None:
            return  # a full write first: no file, or ids that would differ at the next reading
        if origin.journal_state == "damaged":
            self._aside_reason = "damaged"
            return
        jpath = journal_path(self.path)
        with path_lock(self.path):
            if file_id(self.path) != origin.geojson or file_id(jpath) != origin.journal:
                return  # changed since they were read
            if origin.journal_state == "stale":
                journal.set_aside(jpath, "unused")
            elif origin.journal_state in ("ok", "torn"):
                writer = JournalWriter.resume(jpath, origin.journal, origin.journal_good, origin.journal_seq)
                if writer is None:
                    return
                self._journal = writer
        self._base = (origin.geojson_sha, origin.journal_seq)
        self._geojson_id, self._geojson_size = origin.geojson, origin.geojson_size
        self._on_disk = (origin.journal_seq, *self._on_disk[1:])
        self._needs_full = False

    def _adopt_quietly(self) -> None:
        try:
            self._adopt()
        except OSError as err:
            log.warning("%s: cannot go on with the saved journal (%s)", self.path, err)

    def _save(self, pending: Changes) -> None:
        """Put ``pending`` on disk: appended to the journal, or the whole file rewritten."""
        writer = self._journal
        usable = writer is not None and not writer.broken and writer.is_current() and self._geojson_unchanged()
        # About what a full write costs: the file, and what the journal adds to it.
        small = self._geojson_size + (writer.size if writer is not None else 0) <= self._full_write_bytes
        if self._needs_full or self._base is None or small or (writer is not None and not usable):
            self._write_full(pending.annotations, pending.classes_now)
        else:
            self._append(pending)

    def _geojson_unchanged(self) -> bool:
        """Whether the GeoJSON file is the one this saver wrote or read (not replaced by another program).

        A compaction may replace it meanwhile; reading in this order (it sets ``_folding``, renames,
        then records the new id before clearing ``_folding``) never mistakes that for a stranger.
        """
        known = self._geojson_id
        current = file_id(self.path)
        folding = self._folding
        return current == known or folding or current == self._geojson_id

    def _append(self, pending: Changes) -> None:
        # Only the write lock (held) changes which journal is in use while one exists, so appending
        # never waits for a compaction writing the GeoJSON file (which holds the GeoJSON lock).
        seq = self._journal.seq if self._journal is not None else self._base[1]
        payload = journal.edits_payload(seq + 1, pending)
        if payload is None:  # nothing that changes the files (a mark added, then deleted)
            self._on_disk = (seq, pending.annotations, pending.classes_now)
            return
        if self._journal is None:
            with self._geojson_lock:
                jpath = journal_path(self.path)
                with path_lock(self.path):
                    if os.path.lexists(jpath):  # not ours: never written over
                        journal.set_aside(jpath, "unused")
                    self._journal = JournalWriter.create(jpath, self._base[0], seq)
        writer = self._journal
        with path_lock(self.path):
            writer.append(payload, seq + 1)
        self._on_disk = (writer.seq, pending.annotations, pending.classes_now)

    def _write_full(self, annotations: list, classes: tuple) -> None:
        """Rewrite the GeoJSON file with everything; the journal is then no longer needed."""
        data = geojson_bytes(annotations, classes, self.store.foreign)
        sha = journal.sha256(data)
        with self._geojson_lock:
            writer = self._journal
            seq = writer.seq if writer is not None else (self._base[1] if self._base else 0)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with path_lock(self.path):
                if writer is not None and not writer.broken and writer.is_current():
                    writer.append(base_payload(sha, seq))  # so that a crash after the rename below is understood
                atomic_write_bytes(self.path, data, backup=True)
                self._geojson_id, self._geojson_size, self._base = file_id(self.path), len(data), (sha, seq)
                self._needs_full = False
                self._drop_journal()
        self._on_disk = (seq, annotations, classes)

    def _drop_journal(self) -> None:
        """After a full write: remove our journal, set aside any other (under the path lock)."""
        jpath = journal_path(self.path)
        writer, self._journal = self._journal, None
        if writer is not None:
            mine = writer.is_current()
            writer.close()
            if mine:
                _unlink(jpath)
                return
        if os.path.lexists(jpath):
            journal.set_aside(jpath, self._aside_reason)

    # -- compaction ----------------------------------------------------------------------
    def _start_compaction(self, idle: bool = False) -> None:
        """Fold the journal into the file in the background when it has grown (or the store is idle)."""
        if idle:
            if not self._write_lock.acquire(blocking=False):
                return
        try:
            writer = self._journal
            if (writer is None or not writer.edits or self._compactor is not None
                    or time.monotonic() < self._compact_after or self._closed):
                return
            if not idle and writer.size < max(self._compact_min, self._compact_ratio * self._geojson_size):
                return
            self._compactor = threading.Thread(target=self._compact_in_background,
                                               name=f"compact {self.path.name}", daemon=True)
            self._compactor.start()
        finally:
            if idle:
                self._write_lock.release()

    def _compact_in_background(self) -> None:
        lower_this_thread()
        try:
            with self._fold_lock:
                self._fold()
        finally:
            self._compactor = None

    def _fold(self) -> bool:
        """Write the GeoJSON file from the store as the journal holds it; shorten the journal (under the fold lock).

        Saving goes on meanwhile: serialising and writing the file take no lock that saves need.
        Returns True when the file holds everything the journal held when the fold began.
        """
        with self._write_lock:
            writer = self._journal
            if writer is None or not writer.edits:
                return True
            seq, annotations, classes = self._on_disk
        try:
            data = geojson_bytes(annotations, classes, self.store.foreign)
            sha = journal.sha256(data)
            with self._write_lock:  # 1. say which file is coming, before it replaces the old one
                if self._journal is not writer or writer.broken or not writer.is_current():
                    return self._journal is None  # a full write came first
                with path_lock(self.path):
                    writer.append(base_payload(sha, seq))
            with self._geojson_lock:  # 2. the file (the slow part: saves are appended meanwhile)
                if self._journal is not writer:
                    return self._journal is None
                if file_id(self.path) != self._geojson_id:
                    return False  # replaced by someone else: the next save writes it whole
                self._folding = True  # _save reads these without this lock, in the opposite order
                try:
                    atomic_write_bytes(self.path, data, backup=True)
                    self._geojson_id, self._geojson_size, self._base = file_id(self.path), len(data), (sha, seq)
                finally:
                    self._folding = False
            with self._write_lock, self._geojson_lock:  # 3. the journal keeps only what the file lacks
                if self._journal is writer and not writer.broken and writer.is_current():
                    jpath = journal_path(self.path)
                    with path_lock(self.path):
                        if writer.seq <= seq:
                            writer.close()
                            _unlink(jpath)
                            self._journal = None
                        else:
                            self._journal = JournalWriter.create(jpath, sha, seq, writer.records_after(seq),
                                                                 writer.seq)
                            writer.close()
                self._compact_failures = 0
                self._compact_after = -math.inf
                self._compact_reported.clear()
            return True
        except OSError as err:
            self._report_compaction(err)
            return False
        except Exception as err:  # noqa: BLE001 - a thread boundary: report anything rather than die silently
            log.exception("compaction of %s failed", self.path)
            self._report_compaction(err)
            return False

    def _report_compaction(self, err: Exception) -> None:
        """A failed fold loses nothing (the journal holds the edits); say so, and wait before trying again."""
        self._compact_failures += 1
        pause = self._retry_delays[min(self._compact_failures, len(self._retry_delays)) - 1]
        self._compact_after = time.monotonic() + pause
        reason = _reason(err) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
        message = (f"{self.path}: could not rewrite the annotation file ({reason}). Your edits are safe in "
                   f"{journal_path(self.path).name} beside it and Biopsia keeps trying.")
        self.last_error = message
        if message not in self._compact_reported:
            self._compact_reported.add(message)
            _call(self._on_error, message)

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
