"""Tiles: the labelled tile grid of the current slide, previewed over it with counts, before exporting a dataset."""

from __future__ import annotations

from PyQt5 import sip
from PyQt5.QtCore import Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QBrush, QColor, QPainter, QPixmap
from PyQt5.QtWidgets import (QCheckBox, QDockWidget, QDoubleSpinBox, QFormLayout, QFrame, QGridLayout, QLabel,
                             QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from core.errors import BiopsiaError
from core.tiles.grid import REASONS, TilePlan, TileSpec
from core.tiles.labels import LabelRules
from core.tiles.preview import PlanResult, compute_plan
from gui.layers.tile_preview_layer import DROPPED_REASONS, REASON_COLOURS, REASON_NAMES
from gui.style import error_html
from gui.worker import Worker

#: Milliseconds of quiet after an edit or a setting before the grid is computed again.
DEBOUNCE_MS = 300


def swatch_pixmap(reason: str, size: int = 14) -> QPixmap:
    """The legend square of a reason: its fill over white, hatched when such tiles are dropped."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.white)
    painter = QPainter(pixmap)
    r, g, b, a = REASON_COLOURS[reason]
    painter.fillRect(0, 0, size, size, QColor(r, g, b, max(a, 60)))
    if reason in DROPPED_REASONS:
        painter.fillRect(0, 0, size, size, QBrush(QColor(55, 71, 79, 110), Qt.BDiagPattern))
    painter.setPen(QColor(r, g, b))
    painter.drawRect(0, 0, size - 1, size - 1)
    painter.end()
    return pixmap


class TilesDock(QDockWidget):
    """Tile size, labelling thresholds, the slide's "fully annotated" setting, the grid toggle and the counts.

    Signals ``plan_ready(TilePlan)`` and ``plan_failed(str)`` say that the current view's grid was
    (or could not be) computed.
    """

    plan_ready = pyqtSignal(object)
    plan_failed = pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__("Tiles", parent)
        self.setObjectName("TilesDock")
        self.view = None
        self.plan: TilePlan | None = None
        self.error: str | None = None
        self._worker: Worker | None = None
        self._worker_key: tuple | None = None
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS, timeout=self.compute)

        self.tile_px = QSpinBox(minimum=16, maximum=4096, value=128, singleStep=16, suffix=" px",
                                toolTip="Side of a dataset tile in pixels")
        self.tile_mpp = _fraction_box(0.05, 50.0, 1.0, 0.25, " µm/px", 3,
                                      "Resolution tiles are cut at (1 µm/px ≈ 10x); the same on 20x and 40x scans")
        defaults = LabelRules()  # the dataset's thresholds, from their one owner
        self.tumour_min = _fraction_box(0.0, 1.0, defaults.tumour_min, 0.05, "", 2,
                                        "Tumour-mark coverage from which a tile is tumour")
        self.normal_max = _fraction_box(0.0, 1.0, defaults.normal_max, 0.01, "", 2,
                                        "Tumour-mark coverage up to which a tile is non-tumour (between: ambiguous)")
        self.tissue_min = _fraction_box(0.0, 1.0, defaults.tissue_min, 0.05, "", 2,
                                        "Tissue share a tile needs to be kept")
        self.fully_annotated = QCheckBox("Fully annotated", toolTip=(
            "Every tumour on this slide is marked, so unmarked tissue is non-tumour. Otherwise only tissue "
            "inside Benign marks is (saved with the slide in its project)."))
        self.show_grid = QCheckBox("Show tile grid", toolTip="Draw the tiles over the slide, coloured as in the legend")
        for box in (self.tile_px, self.tile_mpp, self.tumour_min, self.normal_max, self.tissue_min):
            box.valueChanged.connect(lambda _v: self.schedule())
        self.fully_annotated.toggled.connect(self._on_fully_annotated)
        self.show_grid.toggled.connect(self._on_show_grid)
        self.status = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)  # a narrow panel puts labels above their fields
        form.addRow("Tile size", self.tile_px)
        form.addRow("At", self.tile_mpp)
        form.addRow("Tumour if coverage ≥", self.tumour_min)
        form.addRow("Non-tumour if coverage ≤", self.normal_max)
        form.addRow("Tissue share ≥", self.tissue_min)
        self.count_labels: dict[str, QLabel] = {}
        counts = QGridLayout()
        counts.setColumnStretch(1, 1)
        for row, reason in enumerate(REASONS):
            icon = QLabel()
            icon.setPixmap(swatch_pixmap(reason))
            label = QLabel(REASON_NAMES[reason] + (" (dropped)" if reason in DROPPED_REASONS else ""))
            self.count_labels[reason] = _number_label()
            counts.addWidget(icon, row, 0)
            counts.addWidget(label, row, 1)
            counts.addWidget(self.count_labels[reason], row, 2)
        self.total_labels = {name: _number_label(bold=True) for name in ("kept", "dropped", "all")}
        line = QFrame(frameShape=QFrame.HLine, frameShadow=QFrame.Sunken)
        counts.addWidget(line, len(REASONS), 0, 1, 3)
        for offset, (name, text) in enumerate((("kept", "Kept for the dataset"), ("dropped", "Dropped"),
                                               ("all", "All tiles (background included)"))):
            counts.addWidget(QLabel(f"<b>{text}</b>", wordWrap=True), len(REASONS) + 1 + offset, 0, 1, 2)
            counts.addWidget(self.total_labels[name], len(REASONS) + 1 + offset, 2)

        body = QWidget()
        outer = QVBoxLayout(body)  # a stretch below, not AlignTop, which ignores the wrapped labels' heights
        outer.addWidget(self.status)  # first: an error must be seen without scrolling
        outer.addLayout(form)
        outer.addWidget(self.fully_annotated)
        outer.addWidget(self.show_grid)
        outer.addLayout(counts)
        outer.addStretch(1)
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)  # short screens: scroll, never squash
        scroll.setWidget(body)
        self.setWidget(scroll)
        self.visibilityChanged.connect(lambda _on: self.schedule())
        self.set_view(None)

    # -- the current view ----------------------------------------------------------------
    def set_view(self, view) -> None:
        """The current tab changed; gives ``view`` its tile layer the first time."""
        if self.view is not None:
            _disconnect(self.view.annotations_edited, self._on_marks_changed)
            _disconnect(self.view.annotations_replaced, self._on_marks_changed)
            _disconnect(self.view.tile_preview_layer.changed, self._sync_show_grid)
        self.view = view
        enabled = view is not None
        for widget in (self.tile_px, self.tile_mpp, self.tumour_min, self.normal_max, self.tissue_min,
                       self.show_grid):
            widget.setEnabled(enabled)
        if view is None:
            self.plan = self.error = None
            self._show_counts(None)
            self.status.setText("No slide open.")
            self.fully_annotated.setEnabled(False)
            return
        if view.document.tile_plan_key is None:  # a slide the grid was never laid on: as the checkbox says
            view.tile_preview_layer.visible = self.show_grid.isChecked()
        view.annotations_edited.connect(self._on_marks_changed)
        view.annotations_replaced.connect(self._on_marks_changed)
        view.tile_preview_layer.changed.connect(self._sync_show_grid)
        _set_checked(self.show_grid, view.tile_preview_layer.visible)
        self.fully_annotated.setEnabled(self._entry() is not None)
        _set_checked(self.fully_annotated, self._fully_annotated(view))
        self._show_result(view.document)
        self.schedule()

    def _entry(self, view=None):
        """The view's slide in its project (None for a view opened without one)."""
        view = view or self.view
        return view.document.entry if view is not None else None

    def _fully_annotated(self, view) -> bool:
        entry = self._entry(view)
        return entry.settings.fully_annotated if entry else False

    def _key(self, view) -> tuple:
        """Everything the plan depends on: when it is unchanged the grid shown is current."""
        return (str(view.reader.path), view.mpp, self.spec(), tuple(sorted(self.thresholds().items())),
                self._fully_annotated(view), id(view.annotations), view.annotations.revision)

    def spec(self) -> TileSpec:
        return TileSpec(self.tile_px.value(), self.tile_mpp.value())

    def thresholds(self) -> dict:
        return {"tumour_min": self.tumour_min.value(), "normal_max": self.normal_max.value(),
                "tissue_min": self.tissue_min.value()}

    def is_current(self) -> bool:
        """Whether the counts and grid shown belong to the current view's marks and settings."""
        view = self.view
        return view is not None and self._worker is None and view.document.tile_plan_key == self._key(view)

    def is_shown(self) -> bool:
        """Whether the dock can be seen (a dock tabbed behind another is "visible" to Qt, yet unseen)."""
        return self.isVisible() and not self.visibleRegion().isEmpty()

    # -- computing ------------------------------------------------------------------------
    def schedule(self) -> None:
        """Compute again after ``DEBOUNCE_MS`` of quiet (only while the dock or the grid is shown)."""
        if self.view is not None:
            self._timer.start()

    def compute(self) -> Worker | None:
        """Start computing the current view's grid, unless the one shown is current or nobody looks."""
        view = self.view
        if view is None or not (self.is_shown() or view.tile_preview_layer.visible):
            return None
        key = self._key(view)
        if self._worker is not None:
            if self._worker_key == key:
                return self._worker  # already on it
            self._worker.cancel()
            self._worker = None
        if key == view.document.tile_plan_key:
            self._show_result(view.document)
            return None
        entry = self._entry()
        tissue_key = (str(view.reader.path), view.mpp)
        worker = Worker(compute_plan, view.reader, view.mpp, self.spec(), view.annotations.annotations(),
                        view.document.tissue(tissue_key), self._fully_annotated(view), self.thresholds())
        worker.finished.connect(lambda result, w=worker, v=view: self._on_planned(w, v, key, tissue_key, result))
        worker.failed.connect(lambda err, w=worker, v=view: self._on_failed(w, v, key, err))
        self._worker, self._worker_key = worker, key
        self.status.setText(f"Computing the tile grid of {entry.name if entry else view.reader.display_name}…")
        return worker.start()

    def _on_planned(self, worker: Worker, view, key, tissue_key, result: PlanResult) -> None:
        if sip.isdeleted(self) or worker is not self._worker:
            return  # the window closed, or a newer computation replaced this one
        self._worker = self._worker_key = None
        view.document.keep_tissue(tissue_key, result.tissue)
        doc = view.document
        doc.tile_plan_key, doc.tile_plan, doc.tile_plan_error = key, result.plan, None
        view.tile_preview_layer.set_plan(result.plan)
        if view is self.view:
            self._show_result(doc)
            self.plan_ready.emit(result.plan)
            if key != self._key(view):  # something changed while it ran
                self.schedule()

    def _on_failed(self, worker: Worker, view, key, err: Exception) -> None:
        if sip.isdeleted(self) or worker is not self._worker:
            return
        self._worker = self._worker_key = None
        message = str(err) if isinstance(err, BiopsiaError) else f"Unexpected error while laying the tiles: {err!r}"
        doc = view.document
        doc.tile_plan_key, doc.tile_plan, doc.tile_plan_error = key, None, message
        view.tile_preview_layer.set_plan(None)
        if view is self.view:
            self._show_result(doc)
            self.plan_failed.emit(message)

    def _show_result(self, doc) -> None:
        """Counts and a one-line summary of the slide's tile plan (its document's), or its error in red."""
        self.plan, self.error = doc.tile_plan, doc.tile_plan_error
        self._show_counts(doc.tile_plan)
        if doc.tile_plan_error:
            self.status.setText(error_html(_escape(doc.tile_plan_error)))
        elif doc.tile_plan is not None:
            plan = doc.tile_plan
            rows, cols = plan.grid_shape
            self.status.setText(f"{rows} x {cols} tiles of {plan.spec.tile_px * plan.spec.mpp:g} µm "
                                f"({plan.tile_l0} slide pixels), read at level {plan.level}.")
        else:
            self.status.setText("")

    # -- controls ------------------------------------------------------------------------
    def _on_marks_changed(self, _what) -> None:
        self.schedule()

    def _on_fully_annotated(self, on: bool) -> None:
        entry = self._entry()
        if entry is None or self._fully_annotated(self.view) == on:
            return
        try:
            self.view.document.project.update_settings(entry.id, fully_annotated=on)
        except (BiopsiaError, OSError) as err:
            self.status.setText(error_html(f"Could not save the setting: {_escape(str(err))}"))
        self.schedule()

    def _on_show_grid(self, on: bool) -> None:
        if self.view is not None:
            self.view.tile_preview_layer.visible = on
            self.schedule()

    def _sync_show_grid(self) -> None:
        """The layer was toggled elsewhere (Layers dock): follow it, and compute if it is now shown."""
        if self.view is not None:
            layer = self.view.tile_preview_layer
            _set_checked(self.show_grid, layer.visible)
            if layer.visible and self.view.document.tile_plan_key != self._key(self.view):
                self.schedule()

    def _show_counts(self, plan: TilePlan | None) -> None:
        counts = plan.counts if plan is not None else None
        for reason, label in self.count_labels.items():
            label.setText(f"{counts[reason]:,}" if counts else "–")
        if counts is None:
            for label in self.total_labels.values():
                label.setText("–")
            return
        kept = counts["tumour"] + counts["non_tumour"]
        self.total_labels["kept"].setText(f"{kept:,}")
        self.total_labels["dropped"].setText(f"{sum(counts[r] for r in DROPPED_REASONS):,}")
        self.total_labels["all"].setText(f"{len(plan):,}")

def _fraction_box(low: float, high: float, value: float, step: float, suffix: str, decimals: int,
                  tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox(minimum=low, maximum=high, singleStep=step, decimals=decimals, suffix=suffix, toolTip=tip)
    box.setValue(value)
    return box


def _number_label(bold: bool = False) -> QLabel:
    label = QLabel("–", alignment=Qt.AlignRight | Qt.AlignVCenter)
    if bold:
        label.setStyleSheet("font-weight: bold")
    return label


def _set_checked(check: QCheckBox, on: bool) -> None:
    check.blockSignals(True)
    check.setChecked(on)
    check.blockSignals(False)


def _disconnect(signal, slot) -> None:
    try:
        signal.disconnect(slot)
    except (TypeError, RuntimeError):  # never connected, or the view is gone
        pass


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
