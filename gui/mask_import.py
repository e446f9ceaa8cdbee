"""Marks from a mask, in the window: choose a label image of a slide, say which value is which class, import.

The same steps as ``biopsia annotations from-mask`` (`core.annotations.from_mask`): a label mask at the
slide's size or shrunk by a whole factor, a map of values to classes, and for grey masks with soft edges
(camelyon's, JPEG) a threshold first (`binarise`: 1 above it, 0 at or below). The mask is read and turned
into marks on a `gui.worker.Worker`; the marks join the slide as one undoable edit when it is open, else its
mark file in the project. A problem is shown in the dialog, which keeps everything typed, and the slide's
marks are untouched.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PyQt5 import sip
from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import (QButtonGroup, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                             QPushButton, QRadioButton, QSpinBox, QVBoxLayout)

from core.annotations import AnnotationStore
from core.annotations.from_mask import (MaskError, MaskMarks, marks_from_mask, min_area_l0_for, parse_value_map,
                                        read_label_mask)
from core.errors import BiopsiaError
from gui.slide_mpp_edit import FieldEdit
from gui.style import ERROR_BOX_STYLE, MUTED_STYLE
from gui.worker import Worker

MASK_FILTER = "Label masks (*.png *.tif *.tiff *.jpg *.jpeg *.bmp);;All files (*)"
#: camelyon-mini's masks: above 127 is tumour.
DEFAULT_GREY_THRESHOLD = 127


@dataclass(frozen=True)
class MaskSummary:
    """What a mask holds: its size (w, h), bit depth, and (value, pixels) of each value present."""

    size: tuple[int, int]
    bits: int
    values: tuple[tuple[int, int], ...]

    def text(self) -> str:
        total = max(1, self.size[0] * self.size[1])
        shown = ", ".join(f"{v} ({100 * n / total:.0f} %)" for v, n in self.values[:8])
        more = f" and {len(self.values) - 8} more" if len(self.values) > 8 else ""
        return f"{self.size[0]:,} x {self.size[1]:,} px, {self.bits}-bit; values {shown}{more}"

    def looks_grey(self) -> bool:
        """Many values: a grey or blurred mask, which wants a threshold rather than a class per value."""
        return len(self.values) > 16


def summarise_mask(path) -> MaskSummary:
    """Read a label mask (off the GUI thread) and count its values."""
    mask = read_label_mask(path)
    counts = np.bincount(mask.ravel())
    present = np.flatnonzero(counts)
    return MaskSummary((int(mask.shape[1]), int(mask.shape[0])), mask.dtype.itemsize * 8,
                       tuple((int(v), int(counts[v])) for v in present))


def mask_to_marks(slide_path, l0_size: tuple[int, int] | None, slide_mpp, mask_path, value_map: dict[int, str],
                  threshold: float | None = None, downsample: float | None = None) -> MaskMarks:
    """Marks from ``mask_path`` for a slide of ``l0_size`` (w, h; None: read from the slide), as
    ``annotations from-mask`` makes them.

    Raises
    ------
    MaskError
        For an unreadable mask, one of the wrong size, or a map none of whose values occur (nothing to import).
    SlideError
        When ``l0_size`` is None and the slide cannot be opened.
    """
    if l0_size is None:
        from core.slide import open_slide

        with open_slide(slide_path) as reader:
            l0_size = reader.dimensions
    label = read_label_mask(mask_path)
    if threshold is not None:
        from core.annotations.from_mask import binarise  # helper B's: 1 above the threshold, 0 at or below

        label = binarise(label, threshold, path=mask_path)
    found = marks_from_mask(label, value_map, l0_size[0], l0_size[1], downsample, min_area_l0_for(slide_mpp),
                            path=mask_path)
    if not found.annotations:
        why = "; ".join(found.warnings) or f"{mask_path}: no region of the mapped values is large enough to keep"
        raise MaskError(f"No marks to import: {why}")
    return found


def add_marks(project, slide_id: str, found: MaskMarks) -> int:
    """Add ``found`` to a slide's mark file in ``project`` (a slide not open in the window); how many were added."""
    store = project.load_annotations(slide_id)
    known = {c.name for c in store.classes}
    classes = tuple(store.classes) + tuple(c for c in found.classes if c.name not in known)
    project.save_annotations(slide_id, AnnotationStore(store.annotations() + list(found.annotations), classes))
    return len(found.annotations)


class MaskImportDialog(QDialog):
    """Choose a mask for one slide, map its values to classes, import. ``imported(count)`` once marks were added,
    ``failed(message)`` when they were not (the message is shown), ``summary_read(summary or None)`` once a chosen
    mask was read for its values.

    ``target`` is the slide: its open view (the marks become one undoable edit there) or None, and then
    ``project`` and ``slide_id`` name the mark file the marks are added to.
    """

    imported = pyqtSignal(int)
    failed = pyqtSignal(str)
    summary_read = pyqtSignal(object)

    def __init__(self, slide_name: str, slide_path: Path, l0_size: tuple[int, int] | None, slide_mpp, parent=None, *,
                 view=None, project=None, slide_id: str | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Marks from a mask — {slide_name}")
        self.slide_path, self.l0_size, self.slide_mpp = Path(slide_path), l0_size, slide_mpp
        self.view, self.project, self.slide_id = view, project, slide_id
        self.summary: MaskSummary | None = None
        self.worker: Worker | None = None
        self.error: str | None = None
        self.warnings: list[str] = []
        self._summarised: str | None = None  # the mask path last read for its summary

        self.path_edit = FieldEdit(placeholderText="a PNG or TIFF label image of this slide")
        self.path_edit.editingFinished.connect(lambda: self.choose(self.path_edit.text()))
        browse = QPushButton("Browse…", autoDefault=False, clicked=self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        self.summary_label = QLabel(wordWrap=True)
        self.summary_label.setStyleSheet(MUTED_STYLE)
        self.labels_mode = QRadioButton("Labels: one class per value", checked=True)
        self.grey_mode = QRadioButton("Grey levels: 1 above the threshold, 0 at or below")
        modes = QButtonGroup(self)
        for button in (self.labels_mode, self.grey_mode):
            modes.addButton(button)
        self.grey_mode.toggled.connect(self._on_mode)
        self.threshold = QSpinBox(minimum=0, maximum=65534, value=DEFAULT_GREY_THRESHOLD, enabled=False,
                                  toolTip="Grey masks with soft edges: pixels above this value are value 1")
        grey_row = QHBoxLayout()
        grey_row.addWidget(self.grey_mode)
        grey_row.addWidget(self.threshold)
        grey_row.addStretch(1)
        self.map_edit = FieldEdit("1=Tumour", toolTip="VALUE=CLASS pairs, e.g. 1=Tumour,2=Benign; values not "
                                                      "named are left out")
        self.downsample = QSpinBox(minimum=0, maximum=4096, value=0, specialValueText="from the sizes",
                                   toolTip="Level-0 pixels per mask pixel (a mask of the slide shrunk 16 times: 16)")
        area = f"{min_area_l0_for(slide_mpp):,.0f} slide px²"
        if slide_mpp:  # in the units a pathologist measures in, the pixels after them
            area = f"{min_area_l0_for(slide_mpp) * slide_mpp[0] * slide_mpp[1]:,.0f} µm² ({area})"
        size = f" The slide is {l0_size[0]:,} x {l0_size[1]:,} px." if l0_size else ""
        note = QLabel(f"Marks smaller than {area} are dropped; holes are kept.{size}", wordWrap=True)
        note.setStyleSheet(MUTED_STYLE)
        self.error_label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.error_label.setStyleSheet(ERROR_BOX_STYLE)
        self.error_label.hide()
        # Enter in a field only finishes that field (a path typed is read, not imported at once)
        self.import_button = QPushButton("Import marks", autoDefault=False, clicked=self.start)
        cancel = QPushButton("Cancel", autoDefault=False, clicked=self.reject)

        form = QFormLayout()
        form.addRow("Mask", path_row)
        form.addRow("", self.summary_label)
        form.addRow("Mask holds", self.labels_mode)
        form.addRow("", grey_row)
        form.addRow("Values → classes", self.map_edit)
        form.addRow("Downsample", self.downsample)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.import_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.error_label)
        layout.addLayout(buttons)
        self.resize(620, 0)

    # -- choosing the mask --------------------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a label mask of this slide", str(self.slide_path.parent),
                                              MASK_FILTER)
        if path:
            self.path_edit.setText(path)
            self.choose(path)

    def choose(self, path) -> Worker | None:
        """Read the mask at ``path`` off the GUI thread and show what it holds."""
        path = str(path).strip()
        if not path or path == self._summarised:
            return None
        self._summarised, self.summary = path, None
        self.summary_label.setText("Reading the mask…")
        worker = Worker(summarise_mask, path)
        worker.finished.connect(lambda summary, p=path: self._on_summary(p, summary))
        worker.failed.connect(lambda err, p=path: self._on_summary_failed(p, err))
        return worker.start()

    def _on_summary(self, path: str, summary: MaskSummary) -> None:
        if sip.isdeleted(self) or path != self.path_edit.text().strip():
            return  # another mask was chosen meanwhile
        self.summary = summary
        self.summary_label.setText(summary.text())
        self._hide_error()
        if summary.looks_grey():
            self.grey_mode.setChecked(True)
        elif self.labels_mode.isChecked():
            nonzero = [v for v, _ in summary.values if v]
            if len(nonzero) == 1:  # one value marks the regions: propose it as Tumour
                self.map_edit.setText(f"{nonzero[0]}=Tumour")
        self.summary_read.emit(summary)

    def _on_summary_failed(self, path: str, err: Exception) -> None:
        if sip.isdeleted(self):
            return
        self._summarised = None  # choosing it again reads it again
        if path == self.path_edit.text().strip():
            self.summary_label.setText("")
            self._show_error(err)
            self.summary_read.emit(None)

    def _on_mode(self, grey: bool) -> None:
        self.threshold.setEnabled(grey)
        if grey:
            try:
                values = set(parse_value_map(self.map_edit.text()))
            except MaskError:
                values = set()
            if not values <= {0, 1}:
                self.map_edit.setText("1=Tumour")  # after the threshold the mask holds 0 and 1 only

    # -- importing ----------------------------------------------------------------------------
    def start(self) -> Worker | None:
        """Turn the mask into marks off the GUI thread; problems are shown here and nothing is added."""
        if self.worker is not None:
            return None
        self._hide_error()
        path = self.path_edit.text().strip()
        try:
            if not path:
                raise MaskError("Choose the mask file first (Browse…)")
            value_map = parse_value_map(self.map_edit.text())
        except BiopsiaError as err:
            self._show_error(err)
            return None
        threshold = self.threshold.value() if self.grey_mode.isChecked() else None
        downsample = float(self.downsample.value()) or None
        self.worker = Worker(mask_to_marks, self.slide_path, self.l0_size, self.slide_mpp, path, value_map,
                             threshold, downsample)
        self.worker.finished.connect(self._on_marks)
        self.worker.failed.connect(self._on_failed)
        self.import_button.setEnabled(False)
        self.import_button.setText("Importing…")
        return self.worker.start()

    def _on_marks(self, found: MaskMarks) -> None:
        if sip.isdeleted(self) or not self.isVisible():
            return  # closed while reading: nothing is added
        self._done()
        self.warnings = list(found.warnings)
        try:
            if self.view is not None:
                from gui.annotation_files import import_edit

                self.view.apply_edit(import_edit(self.view, found, f"Marks from {Path(self.path_edit.text()).name}"))
                count = len(found.annotations)
            else:
                count = add_marks(self.project, self.slide_id, found)
        except (BiopsiaError, OSError) as err:
            self._show_error(err)
            return
        self.imported.emit(count)
        self.accept()

    def reject(self) -> None:
        """Cancel: a mask being read is dropped when it is done, and nothing is added."""
        self._done()
        super().reject()

    def _on_failed(self, err: Exception) -> None:
        if sip.isdeleted(self):
            return
        self._done()
        self._show_error(err)

    def _done(self) -> None:
        self.worker = None
        self.import_button.setEnabled(True)
        self.import_button.setText("Import marks")

    def _show_error(self, err: Exception) -> None:
        self.error = str(err) if isinstance(err, (BiopsiaError, OSError)) else f"Unexpected error: {err!r}"
        self.error_label.setText(f"<b>Not imported.</b> {html.escape(self.error)}")
        self.error_label.show()
        self.failed.emit(self.error)

    def _hide_error(self) -> None:
        self.error = None
        self.error_label.hide()
