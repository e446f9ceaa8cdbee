"""The window's open slides: each opened off the GUI thread, given its document and view, closed once saved.

The window owns one `core.project.document.SlideDocument` per open tab, kept here in ``documents``: made
when the slide opens (reader, marks, µm/px and where it came from, the autosave session), dropped when
its tab closes. The view and the docks read it.
"""

from __future__ import annotations

import os
from typing import Callable

from PyQt5.QtCore import QObject, pyqtSignal

from core.errors import BiopsiaError
from core.project.document import SlideDocument
from core.project.mpp import resolve_mpp
from core.project.slide_settings import SlideSettingsStore
from gui.annotation_session import AnnotationSession, OpenedSlide, open_with_annotations
from gui.slide_view import SlideView
from gui.tile_loader import TileMemory
from gui.worker import Worker


class OpenSlides(QObject):
    """Opening, the documents of the open slides, and closing them.

    Signals: ``opened(path, view, opened)`` (the `gui.annotation_session.OpenedSlide` says what loading the
    marks found), ``failed(path, message)``, ``save_failed(view, message)`` and ``saved(view)`` (autosave).
    """

    opened = pyqtSignal(str, object, object)
    failed = pyqtSignal(str, str)
    save_failed = pyqtSignal(object, str)
    saved = pyqtSignal(object)

    def __init__(self, memory: TileMemory, settings_store: SlideSettingsStore, project_source: Callable,
                 loader_threads: int = 2, parent: QObject | None = None):
        super().__init__(parent)
        self.memory, self.settings_store, self.project_source = memory, settings_store, project_source
        self.loader_threads = loader_threads
        self.documents: list[SlideDocument] = []  # one per open tab, in opening order
        self._opening: dict[str, Worker] = {}

    def open(self, path: str | os.PathLike) -> Worker:
        """Open a slide and its marks off the GUI thread (the worker already opening it, if any)."""
        path = os.path.abspath(os.fspath(path))
        if path in self._opening:
            return self._opening[path]
        worker = Worker(open_with_annotations, path, self.project_source())
        worker.finished.connect(lambda opened, p=path: self._on_opened(p, opened))
        worker.failed.connect(lambda err, p=path: self._on_failed(p, err))
        worker.done.connect(lambda p=path: self._opening.pop(p, None))
        self._opening[path] = worker
        return worker.start()

    def _on_opened(self, path: str, opened: OpenedSlide) -> None:
        reader = opened.reader
        mpp, source = resolve_mpp(reader.path, reader.mpp, opened.entry, self.settings_store)
        doc = SlideDocument(reader, opened.store, mpp, source, opened.project, opened.entry)
        view = SlideView(reader, self.memory, workers=self.loader_threads, document=doc)
        doc.session = session = AnnotationSession(opened, view)
        session.save_failed.connect(lambda msg, v=view: self.save_failed.emit(v, msg))
        session.saved.connect(lambda _rev, v=view: self.saved.emit(v))
        self.documents.append(doc)
        self.opened.emit(path, view, opened)

    def _on_failed(self, path: str, err: Exception) -> None:
        message = str(err) if isinstance(err, BiopsiaError) else f"{path}: unexpected error: {err!r}"
        self.failed.emit(path, message)

    def unsaved(self, views) -> list[str]:
        """Flush every view's marks; the problems of those that could not be saved."""
        problems = []
        for view in views:
            saver = view.document.session.saver if view.document.session is not None else None
            if saver is not None and not saver.flush(5.0):
                problems.append(f"{view.reader.display_name}: {saver.last_error or 'not written yet'}")
        return problems

    def close(self, view: SlideView) -> None:
        """Stop autosaving (what is pending is written), drop the document, close the slide."""
        doc = view.document
        if doc.session is not None:
            doc.session.close(timeout=1.0)
        if doc in self.documents:
            self.documents.remove(doc)
        view.close_view()

    def cancel(self) -> None:
        """Stop the slides still opening."""
        for worker in list(self._opening.values()):
            worker.cancel()


__all__ = ["OpenSlides"]
