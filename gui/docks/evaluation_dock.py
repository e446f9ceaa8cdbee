"""Evaluation: the current slide's prediction against the doctors' marks, and every slide of the project.

This slide: the tiles' truth and the comparison at the threshold (`core.evaluation.slide.evaluate`) are
computed on a worker (the truth is kept while `core.evaluation.slide.truth_key` holds), then shown as the
study's 2x2 table, the screening metrics, the ROC curve with the operating point, and the threshold that
reaches a chosen sensitivity. The comparison goes to the view's disagreement layer. All slides: the tab
`gui.docks.evaluation_summary.ProjectSummary`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PyQt5 import sip
from PyQt5.QtCore import Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QBrush, QColor, QFont
from PyQt5.QtWidgets import (QDockWidget, QDoubleSpinBox, QGridLayout, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                             QScrollArea, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from core.annotations.proposals import is_draft
from core.errors import BiopsiaError
from core.evaluation.compare import SlideComparison
from core.evaluation.slide import Evaluation, evaluate, truth_key
from core.metrics import BinaryMetrics
from core.project.document import PredictionState
from gui.docks.evaluation_summary import ProjectSummary
from gui.narrow_table import narrow_table
from gui.plot_style import make_plot
from gui.style import ACCENT, ERROR_STYLE, GREY, INK, MUTED_STYLE
from gui.threshold_text import threshold_text
from gui.worker import Worker

#: Milliseconds of quiet after a mark edit before the comparison is computed again.
DEBOUNCE_MS = 300
#: ... and after a threshold change (a dragged slider sends many).
THRESHOLD_MS = 50
METRICS = (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("ppv", "PPV"), ("npv", "NPV"),
           ("accuracy", "Accuracy"), ("f1", "F1"), ("auc", "AUC"))
#: Three scores a row: the panel fits its narrow column.
METRIC_COLUMNS = 3
AGREE, DISAGREE, TOTAL = QColor("#e8f5e9"), QColor("#ffebee"), QColor("#eceff1")


def _scrolling(widget: QWidget) -> QScrollArea:
    """``widget`` in a frameless scroll area, so the dock can be shorter than its content (small screens)."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.NoFrame)
    scroll.setWidget(widget)
    return scroll


class EvaluationDock(QDockWidget):
    """The comparison of the current slide and of all slides.

    Signals: ``evaluated(object)`` (the current slide's `SlideComparison`, or None without a grid),
    ``threshold_chosen(float)`` ("Use this threshold"), ``summary_ready(dict)`` (all slides).
    """

    evaluated = pyqtSignal(object)
    threshold_chosen = pyqtSignal(float)
    summary_ready = pyqtSignal(object)

    def __init__(self, parent=None, project_source: Callable = lambda: None, documents_source: Callable = list):
        """``project_source()``: the window's project; ``documents_source()``: the open slides' documents."""
        super().__init__("Evaluation", parent)
        self.setObjectName("EvaluationDock")
        self.view = None
        self.threshold = 0.5
        self.comparison: SlideComparison | None = None
        self.target_threshold: float | None = None
        self._evaluation: Evaluation | None = None  # the last one, its truth reused while the key holds
        self._worker: Worker | None = None
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS, timeout=self.compute)
        self._window_project = project_source

        self.all_slides = ProjectSummary(self._project, documents_source, lambda: self.threshold)
        self.all_slides.summary_ready.connect(self.summary_ready)
        tabs = QTabWidget()
        tabs.addTab(_scrolling(self._build_slide_tab()), "This slide")
        tabs.addTab(_scrolling(self.all_slides), "All slides")
        self.tabs = tabs
        self.setWidget(tabs)
        self.visibilityChanged.connect(lambda shown: self.compute() if shown else None)  # settings changed elsewhere
        self.set_view(None)

    # -- building -----------------------------------------------------------------------------
    def _build_slide_tab(self) -> QWidget:
        self.status = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        # The study's 2x2 table, screening test (rows) against true diagnosis (columns), sized for a 300 px panel:
        # the row axis's name stands in the corner over two lines, the count columns are headed "Neg." and
        # "Pos." (the words in their tooltips), and the table's text is a little smaller than the panel's, so
        # that five-digit counts keep all their digits at 1280 x 800 and six-digit ones in a wider panel.
        self.table = QTableWidget(5, 4)
        self.table.horizontalHeader().hide()
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.NoSelection)
        self.table.setFocusPolicy(Qt.NoFocus)
        font = narrow_table(self.table)  # the columns share the width given
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)  # as wide as its words
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setFixedHeight(5 * 28 + 4)
        bold = QFont(font)
        bold.setBold(True)
        for row, col, text, span, tip in (
                (0, 0, "Screening\ntest", (2, 1), "The network's call at the threshold"),
                (0, 1, "True diagnosis", (1, 3), "The doctors' marks"),
                (1, 1, "Neg.", None, "Negative: no tumour in the doctors' marks"),
                (1, 2, "Pos.", None, "Positive: tumour in the doctors' marks"), (1, 3, "Total", None, ""),
                (2, 0, "Negative", None, "The network calls no tumour"),
                (3, 0, "Positive", None, "The network calls tumour"), (4, 0, "Total", None, "")):
            item = QTableWidgetItem(text)
            item.setFont(bold)
            item.setToolTip(tip)
            item.setTextAlignment(Qt.AlignCenter if col > 0 or row < 2 else Qt.AlignLeft | Qt.AlignVCenter)
            self.table.setItem(row, col, item)
            if span:
                self.table.setSpan(row, col, *span)
        self.cells: dict[str, QTableWidgetItem] = {}
        for name, row, col, colour in (("tn", 2, 1, AGREE), ("fn", 2, 2, DISAGREE), ("neg_total", 2, 3, TOTAL),
                                       ("fp", 3, 1, DISAGREE), ("tp", 3, 2, AGREE), ("pos_total", 3, 3, TOTAL),
                                       ("neg_truth", 4, 1, TOTAL), ("pos_truth", 4, 2, TOTAL), ("total", 4, 3, TOTAL)):
            item = QTableWidgetItem("–")
            item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
            item.setBackground(QBrush(colour))
            self.table.setItem(row, col, item)
            self.cells[name] = item

        metrics = QGridLayout()
        self.metric_labels: dict[str, QLabel] = {}
        for i, (key, text) in enumerate(METRICS):
            value = QLabel("–", alignment=Qt.AlignCenter)
            value.setStyleSheet(f"font-size: 13pt; font-weight: bold; color: {ACCENT if key == 'auc' else INK}")
            caption = QLabel(text, alignment=Qt.AlignCenter, styleSheet=MUTED_STYLE)
            metrics.addWidget(value, 2 * (i // METRIC_COLUMNS), i % METRIC_COLUMNS)
            metrics.addWidget(caption, 2 * (i // METRIC_COLUMNS) + 1, i % METRIC_COLUMNS)
            self.metric_labels[key] = value

        self.roc_plot = make_plot("ROC curve (tiles in tissue)", "sensitivity", "1 − specificity",
                                  legend_offset=(-10, -40))
        self.roc_plot.setXRange(0, 1, padding=0.08)  # room for the 0 and 1 labels at the ends
        self.roc_plot.setYRange(0, 1, padding=0.05)
        self.roc_plot.setMouseEnabled(x=False, y=False)
        self.roc_plot.hideButtons()
        ticks = [[(v / 5, f"{v / 5:.1f}") for v in range(6)]]
        for side in ("left", "bottom"):
            self.roc_plot.getAxis(side).setTicks(ticks)
        self.roc_plot.setMinimumHeight(220)
        self.roc_plot.plot([0, 1], [0, 1], pen=pg.mkPen(GREY, width=1, style=Qt.DashLine))
        self.roc_curve = self.roc_plot.plot(name="ROC", pen=pg.mkPen(ACCENT, width=2))
        self.operating_point = self.roc_plot.plot(name="at the threshold", pen=None, symbol="o", symbolSize=10,
                                                  symbolBrush=INK, symbolPen=pg.mkPen("w", width=1.5))

        self.target = QDoubleSpinBox(decimals=3, minimum=0.5, maximum=1.0, singleStep=0.01, value=0.95,
                                     toolTip="Screening wants false negatives near zero: the sensitivity to reach")
        self.target.valueChanged.connect(lambda _v: self._show_target())
        self.target_label = QLabel(wordWrap=True)
        self.use_button = QPushButton("Use this threshold", enabled=False,
                                      toolTip="Set the heatmap's and the comparison's threshold to it")
        self.use_button.clicked.connect(self._use_target)
        target_row = QHBoxLayout()  # the button beside the box, the caption above: the panel stays narrow
        target_row.addWidget(self.target)
        target_row.addWidget(self.use_button, 1)

        widget = QWidget()
        layout = QVBoxLayout(widget)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        layout.addLayout(metrics)
        layout.addWidget(self.roc_plot, 1)
        layout.addWidget(QLabel("Target sensitivity"))
        layout.addLayout(target_row)
        layout.addWidget(self.target_label)
        self._slide_layout = layout
        return widget

    def add_cores(self, widget: QWidget) -> None:
        """The per-core table (`gui.core_measures.CoresTable`), under the metrics, above the ROC curve."""
        self._slide_layout.insertWidget(self._slide_layout.indexOf(self.roc_plot), widget)

    # -- inputs ---------------------------------------------------------------------------------
    def set_view(self, view) -> None:
        """The current tab changed."""
        if self.view is not None and not sip.isdeleted(self.view):
            for signal in (self.view.annotations_edited, self.view.annotations_replaced):
                _disconnect(signal, self.schedule)
        self.view = view
        if view is not None:
            view.annotations_edited.connect(self.schedule)
            view.annotations_replaced.connect(self.schedule)
        self.compute()

    def on_grid_changed(self, view) -> None:
        """A view's grid was replaced (a run started or ended, a saved one loaded)."""
        if view is self.view:
            self.compute()

    def set_threshold(self, threshold: float) -> None:
        """The threshold of the heatmap changed: compare again at it."""
        if threshold != self.threshold:
            self.threshold = float(threshold)
            self.schedule(delay=THRESHOLD_MS)

    def schedule(self, *_args, delay: int = DEBOUNCE_MS) -> None:
        """Compare again after ``delay`` ms of quiet (mark edits, threshold drags)."""
        self._timer.start(delay)

    # -- this slide -------------------------------------------------------------------------------
    def _project(self):
        """The current slide's project, else the window's."""
        project = self.view.document.project if self.view is not None else None
        return project or self._window_project()

    def compute(self) -> Worker | None:
        """Compare the current view's grid with its marks at the threshold (off the GUI thread)."""
        self._timer.stop()
        view = self.view
        grid = view.document.prediction.grid if view is not None else None
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        if grid is None or not grid.done.any():
            running = view is not None and view.document.prediction.state == PredictionState.RUNNING
            self._show(None, "No slide open." if view is None else
                       "Predicting: the comparison follows when the run ends." if running else
                       "No prediction for this slide: run one in the Prediction panel.")
            return None
        doc = view.document
        fully = doc.entry.settings.fully_annotated if doc.entry is not None else False
        key = truth_key(grid, doc.store, fully)
        truth = self._evaluation.truth if self._evaluation is not None and self._evaluation.key == key else None
        grid = replace(grid, probs=grid.probs.copy(), predicted=grid.predicted.copy())  # a run may be filling it
        marks = [a for a in doc.store.annotations() if not is_draft(a)]  # drafts are the network's, not truth
        worker = Worker(evaluate, grid, marks, fully, self.threshold, doc.name, key, truth)
        worker.finished.connect(lambda result, w=worker, v=view: self._on_evaluated(w, v, result))
        worker.failed.connect(lambda err, w=worker, v=view: self._on_failed(w, v, err))
        self._worker = worker
        if self.comparison is None:
            self.status.setText("Comparing with the marks…")
        return worker.start()

    def _on_evaluated(self, worker, view, result: Evaluation) -> None:
        if sip.isdeleted(self) or worker is not self._worker:
            return
        self._worker = None
        self._evaluation = result
        grid = view.document.prediction.grid
        partial = "" if grid is not None and grid.complete else " (partial prediction)"
        counts = result.comparison.metrics.counts
        hint = ""
        if counts.tn + counts.fp == 0:  # no negative truth: specificity and AUC cannot be computed
            hint = (" No tile is known to be non-tumour: tick “Fully annotated” in the Tiles panel if every "
                    "tumour on this slide is marked, or mark Benign regions.")
        self._show(result.comparison, f"{counts.total:,} tiles with both a prediction and a known truth, at "
                                      f"threshold {threshold_text(self.threshold)}{partial}.{hint}")

    def _on_failed(self, worker, view, err) -> None:
        if sip.isdeleted(self) or worker is not self._worker:
            return
        self._worker = None
        message = str(err) if isinstance(err, BiopsiaError) else f"Unexpected error while comparing: {err!r}"
        self._show(None, message, error=True)

    def _show(self, comparison: SlideComparison | None, text: str, error: bool = False) -> None:
        self.comparison = comparison
        self.status.setText(text)
        self.status.setStyleSheet(ERROR_STYLE if error else "")
        if self.view is not None and not sip.isdeleted(self.view):
            grid = self.view.document.prediction.grid if comparison is not None else None
            self.view.disagreement_layer.set_comparison(comparison, grid=grid)
        if comparison is None:
            for item in self.cells.values():
                item.setText("–")
            for label in self.metric_labels.values():
                label.setText("–")
            self.roc_curve.setData([], [])
            self.operating_point.setData([], [])
        else:
            m = comparison.metrics
            c = m.counts
            for name, value in (("tn", c.tn), ("fn", c.fn), ("neg_total", c.tn + c.fn), ("fp", c.fp), ("tp", c.tp),
                                ("pos_total", c.fp + c.tp), ("neg_truth", c.tn + c.fp), ("pos_truth", c.fn + c.tp),
                                ("total", c.total)):
                self.cells[name].setText(f"{value:,}")
            for key, label in self.metric_labels.items():
                value = getattr(m, key)
                label.setText("–" if value is None else f"{value:.3f}")
            label = self.metric_labels["auc"]
            label.setToolTip(m.auc_reason or "")
            if m.auc is not None:
                fpr, tpr, _ = m.roc()
                self.roc_curve.setData(fpr, tpr)
            else:
                self.roc_curve.setData([], [])
            if m.sensitivity is not None and m.specificity is not None:
                self.operating_point.setData([1 - m.specificity], [m.sensitivity])
            else:
                self.operating_point.setData([], [])
        self._show_target()
        self.evaluated.emit(comparison)

    def _show_target(self) -> None:
        m = self.comparison.metrics if self.comparison is not None else None
        self.target_threshold = m.threshold_for_sensitivity(self.target.value()) if m is not None else None
        usable = self.target_threshold is not None and np.isfinite(self.target_threshold)
        self.use_button.setEnabled(usable)
        if m is None:
            self.target_label.setText("")
        elif not usable:
            self.target_label.setText("No tumour tiles among the compared tiles: no sensitivity to reach.")
        else:
            at = BinaryMetrics(m.labels, m.probabilities, self.target_threshold)
            self.target_label.setText(f"Threshold {threshold_text(self.target_threshold)} reaches sensitivity "
                                      f"{at.sensitivity:.3f} (specificity {at.specificity or 0:.3f}, "
                                      f"{at.counts.fn:,} false negatives).")

    def _use_target(self) -> None:
        if self.target_threshold is not None:
            self.threshold_chosen.emit(float(self.target_threshold))

    # -- all slides -----------------------------------------------------------------------------
    def compute_summary(self) -> Worker | None:
        """Compare every project slide that has a saved prediction (the All slides tab)."""
        return self.all_slides.compute_summary()

    def export(self, path, kind: str):
        """Write the all-slides summary as ``"csv"`` or ``"json"``."""
        return self.all_slides.export(path, kind)

    def export_report(self, path) -> Worker | None:
        """Write the HTML report of every slide with a saved prediction, off the GUI thread."""
        return self.all_slides.export_report(path)


def _disconnect(signal, slot) -> None:
    try:
        signal.disconnect(slot)
    except (TypeError, RuntimeError):
        pass
