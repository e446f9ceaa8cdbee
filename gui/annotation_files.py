"""Marks in and out of the window: the slide's project file, imports, exports, pen-marked images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PyQt5.QtWidgets import QFileDialog, QMenu, QMessageBox

from core.annotations import Edit, ops
from core.annotations.formats import format_for_writing, read_annotations, write_annotations
from core.annotations.journal import geojson_bytes
from core.annotations.marked import import_marked
from core.atomic import atomic_write_bytes
from core.errors import BiopsiaError
from gui import measurements
from gui.worker import Worker

if TYPE_CHECKING:
    from gui.main_window import MainWindow
    from gui.slide_view import SlideView

IMPORT_FILTER = "Annotations (*.geojson *.json *.xml);;QuPath GeoJSON (*.geojson *.json);;ASAP or ImageScope XML (*.xml)"
EXPORT_FORMATS = {
    "QuPath GeoJSON (*.geojson)": ("geojson", ".geojson"),
    "ASAP XML (*.xml)": ("asap", ".xml"),
    "Aperio ImageScope XML (*.xml)": ("imagescope", ".xml"),
}


def import_edit(view: "SlideView", annotation_set, label: str) -> Edit:
    """One undoable edit adding imported marks; classes new to the slide are added to its classes first."""
    store = view.annotations
    known = {c.name for c in store.classes}
    new_classes = [c for c in annotation_set.classes if c.name not in known]
    if new_classes:
        view.apply_edit(ops.edit_classes(store, store.classes + tuple(new_classes)))
    return Edit((), tuple(annotation_set.annotations), label)


class AnnotationFiles:
    """File ▸ Import/Export annotations and Import pen-marked image, for the current slide."""

    def __init__(self, win: "MainWindow"):
        self.win = win
        self._workers: set[Worker] = set()

    def add_to_menu(self, menu: QMenu) -> None:
        menu.addAction("&New project…", self.win.new_project_dialog)
        menu.addAction("&Open project…", self.win.open_project_dialog)
        menu.addSeparator()
        menu.addAction("&Import annotations…", self.import_dialog)
        menu.addAction("E&xport annotations…", self.export_dialog)
        menu.addAction("Import &pen-marked image…", self.import_marked_dialog)

    # -- import ---------------------------------------------------------------------------------
    def import_dialog(self) -> None:
        view = self.win.current_view()
        if view is None:
            return
        path, _ = QFileDialog.getOpenFileName(self.win, "Import annotations", "", IMPORT_FILTER)
        if path:
            self.import_file(view, path)

    def import_file(self, view: "SlideView", path: str | Path) -> Worker:
        """Read marks off the GUI thread and add them to ``view`` as one undoable edit."""
        return self._run(read_annotations, (path,), view, f"Import {Path(path).name}")

    def import_marked_dialog(self) -> None:
        view = self.win.current_view()
        if view is None:
            return
        path, _ = QFileDialog.getOpenFileName(self.win, "Import a pen-marked copy of this slide", "",
                                              "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp)")
        if path:
            self.import_marked(view, path, view.current_class)

    def import_marked(self, view: "SlideView", marked: str | Path, class_name: str) -> Worker:
        color = view.annotations.color_of(class_name)
        return self._run(import_marked, (view.reader.path, marked, class_name, color), view,
                         f"Import pen marks from {Path(marked).name}")

    def _run(self, fn, args, view: "SlideView", label: str) -> Worker:
        worker = Worker(fn, *args)
        self._workers.add(worker)
        worker.finished.connect(lambda result: self._imported(view, result, label))
        worker.failed.connect(lambda err: self.win.show_error("Import failed", str(err)))
        worker.done.connect(lambda: self._workers.discard(worker))
        self.win.statusBar().showMessage(f"{label}…")
        return worker.start()

    def _imported(self, view: "SlideView", annotation_set, label: str) -> None:
        if view not in self.win.views():
            return  # the slide was closed meanwhile
        view.apply_edit(import_edit(view, annotation_set, label))
        known = {m.id for m in view.measurement_layer.measurements}
        for ruler in measurements.from_features(getattr(annotation_set, "foreign", ())):
            if ruler.id not in known:  # a file exported from this slide gives its rulers back once
                view.measurement_layer.add(ruler)
        count = len(annotation_set.annotations)
        self.win.statusBar().showMessage(f"{label}: {count} mark{'s' * (count != 1)}", 8000)
        if annotation_set.warnings:
            self.win.show_error("Imported with warnings", "\n".join(annotation_set.warnings[:20]))

    # -- export ---------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        view = self.win.current_view()
        if view is None:
            return
        stem = Path(view.reader.display_name).stem
        path, chosen = QFileDialog.getSaveFileName(self.win, "Export annotations", f"{stem}.geojson",
                                                   ";;".join(EXPORT_FORMATS))
        if path:
            fmt, suffix = EXPORT_FORMATS.get(chosen, ("geojson", ".geojson"))
            self.export_file(view, Path(path) if Path(path).suffix else Path(path + suffix), fmt)

    def export_file(self, view: "SlideView", path: Path, fmt: str | None = None) -> bool:
        """Write the marks; to GeoJSON also the ruler's measurements, as LineString features after them."""
        store, rulers = view.annotations, view.measurement_layer.measurements
        try:
            if rulers and format_for_writing(path, fmt).NAME == "geojson":
                lines = measurements.geojson_features(rulers, view.mpp)
                atomic_write_bytes(path, geojson_bytes(store.annotations(), store.classes, lines))
            else:
                write_annotations(path, store.annotations(), store.classes, format=fmt)
        except (OSError, BiopsiaError) as err:
            self.win.show_error("Export failed", f"{path}: {getattr(err, 'strerror', None) or err}")
            return False
        more = f" and {len(rulers)} measurements" if rulers and format_for_writing(path, fmt).NAME == "geojson" else ""
        self.win.statusBar().showMessage(f"Exported {len(store)} marks{more} to {path}", 8000)
        return True


def confirm_discard(win: "MainWindow", problems: list[str]) -> bool:
    """Ask before closing with marks that could not be saved (modal: the user must decide)."""
    answer = QMessageBox.warning(
        win, "Marks not saved",
        "These marks could not be saved:\n\n" + "\n".join(problems) +
        "\n\nClose anyway and lose them? (Choose No, free disk space or fix permissions, and close again.)",
        QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
    return answer == QMessageBox.Yes
