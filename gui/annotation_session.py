"""One open slide's marks: loaded from its project, saved within seconds of every edit."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from PyQt5.QtCore import QObject, pyqtSignal

from core.annotations import AnnotationStore, ClassesEdit
from core.project.autosave import DEFAULT_DELAY
from core.errors import BiopsiaError
from core.project.model import Project, SlideEntry, default_project
from core.slide import SlideReader, open_slide

#: Seconds between an edit and its autosave at the latest, before the save itself (on disk within 2 s).
AUTOSAVE_DELAY = DEFAULT_DELAY


@dataclass
class OpenedSlide:
    """What the opening worker hands to the GUI thread: the reader and the slide's saved marks."""

    reader: SlideReader
    project: Project
    entry: SlideEntry
    store: AnnotationStore
    load_error: str | None = None  # the marks file exists but could not be read: not autosaved
    warnings: list[str] = field(default_factory=list)


_PROJECT_LOCK = threading.Lock()  # slides opened at once must not write project.json together


def open_with_annotations(path: str | Path, project: Project | None = None) -> OpenedSlide:
    """Open a slide and its project marks (runs on a worker thread: all file reading happens here)."""
    reader = open_slide(path)
    try:
        with _PROJECT_LOCK:
            project = project or default_project()
            entry = project.add_slide(reader.path)
            load_error = None
            try:
                store = project.load_annotations(entry.id)
            except BiopsiaError as err:
                load_error = str(err)
                store = AnnotationStore((), project.classes)
            warnings = list(project.warnings)
            project.warnings.clear()
    except BaseException:
        reader.close()
        raise
    return OpenedSlide(reader, project, entry, store, load_error, warnings)


class AnnotationSession(QObject):
    """Keeps one slide's annotation file in step with its store, and says so.

    Signals ``saved(revision)`` and ``save_failed(message)`` arrive on the GUI thread.
    """

    saved = pyqtSignal(int)
    save_failed = pyqtSignal(str)

    def __init__(self, opened: OpenedSlide, parent: QObject | None = None):
        super().__init__(parent)
        self.project, self.entry, self.store = opened.project, opened.entry, opened.store
        self.saver = None
        if opened.load_error is None:  # never overwrite a file that could not be read
            self.saver = self.project.autosaver(self.entry.id, self.store, delay=AUTOSAVE_DELAY,
                                                on_error=self.save_failed.emit, on_saved=self.saved.emit)
        self.store.add_listener(self._on_edit)

    @property
    def path(self) -> Path:
        return self.project.annotations_path(self.entry.id)

    @property
    def autosaving(self) -> bool:
        return self.saver is not None

    def _on_edit(self, edit) -> None:
        if isinstance(edit, ClassesEdit):  # classes belong to the project: every slide shares them
            try:
                self.project.set_classes(self.store.classes)
            except OSError as err:
                self.save_failed.emit(f"{self.project.json_path}: could not save the classes: {err}")

    def close(self, timeout: float = 10.0) -> bool:
        """Write what is pending and stop; False when edits could not be saved (see ``last_error``)."""
        self.store.remove_listener(self._on_edit)
        if self.saver is None:
            return True
        return self.saver.close(timeout)

    @property
    def last_error(self) -> str | None:
        return self.saver.last_error if self.saver else None
