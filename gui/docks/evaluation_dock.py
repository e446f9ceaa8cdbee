"""Evaluation: the current slide's prediction against the doctors' marks, and every slide of the project.

This slide: the tiles' truth from the marks (`core.evaluation.compare.truth_for_grid`) and the comparison at the
threshold (`core.evaluation.compare.compare`) are computed on a worker (the truth is kept until the marks, the grid or
the "fully annotated" setting change), then shown as the study's 2x2 table, the screening metrics, the ROC
curve with the operating point, and the threshold that reaches a chosen sensitivity. The comparison goes
to the view's disagreement layer. All slides: each project slide's newest saved prediction against its
saved marks (open slides: the marks on screen), per slide and summed, exportable as CSV and JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt5 import sip
from PyQt5.QtCore import Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QBrush, QColor, QFont
from PyQt5.QtWidgets import (QDockWidget, QDoubleSpinBox, QFileDialog, QGridLayout, QHBoxLayout, QHeaderView, QLabel,
                             QPushButton, QScrollArea, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout,
                             QWidget)

from core.atomic import atomic_write_bytes
from core.evaluation.compare import (CSV_COLUMNS, SlideComparison, compare, compare_project, summary_csv, summary_json,
                          truth_for_grid)
from core.errors import BiopsiaError
from gui.docks.prediction_dock import grid_of, project_slide
from gui.plot_style import make_plot
from gui.style import ACCENT, ERROR_STYLE, GREY, INK, MUTED_STYLE, error_html
from gui.worker import Worker

#: Milliseconds of quiet after a mark edit before the comparison is computed again.
DEBOUNCE_MS = 300
#: ... and after a threshold change (a dragged slider sends many).
THRESHOLD_MS = 50
METRICS = (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("ppv", "PPV"), ("npv", "NPV"),
           ("accuracy", "Accuracy"), ("f1", "F1"), ("auc", "AUC"))
AGREE, DISAGREE, TOTAL = QColor("#e8f5e9"), QColor("#ffebee"), QColor("#eceff1")
#: Rows of the all-slides table (one column per slide, the sum last), as `core.evaluation.compare.CSV_COLUMNS` after "slide".
SUMMARY_ROWS = ("Tiles", "True positives", "False positives", "True negatives", "False negatives", "Sensitivity",
                "Specificity", "PPV", "NPV", "Accuracy", "F1", "AUC")


@dataclass
class Evaluation:
    """What the worker hands back for the current slide: the truth it used and the comparison."""

    key: tuple
    truth: np.ndarray
    comparison: SlideComparison


def evaluate(grid, annotations, fully_annotated: bool, threshold: float, name: str, key: tuple,
             truth: np.ndarray | None = None) -> Evaluation:
    """Truth of the grid's tiles (unless given) and the comparison at ``threshold``; runs on a worker."""
    if truth is None:
        truth = truth_for_grid(grid, annotations, fully_annotated=fully_annotated)
    return Evaluation(key, truth, compare(grid, truth, threshold, name=name))


def evaluate_project(project, threshold: float, open_marks: dict) -> dict:
    """`core.evaluation.compare.summarise` over every project slide with a saved prediction (``open_marks``: id → marks)."""
    return compare_project(project, threshold, open_marks)[0]


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

    def __init__(self, parent=None):
        super().__init__("Evaluation", parent)
        self.setObjectName("EvaluationDock")
        self.view = None
        self.threshold = 0.5
        self.comparison: SlideComparison | None = None
        self.summary: dict | None = None
        self.target_threshold: float | None = None
        self._evaluation: Evaluation | None = None  # the last one, its truth reused while the key holds
        self._worker: Worker | None = None
        self._summary_worker: Worker | None = None
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS, timeout=self.compute)

        tabs = QTabWidget()
        tabs.addTab(_scrolling(self._build_slide_tab()), "This slide")
        tabs.addTab(_scrolling(self._build_all_tab()), "All slides")
        self.tabs = tabs
        self.setWidget(tabs)
        self.visibilityChanged.connect(lambda shown: self.compute() if shown else None)  # settings changed elsewhere
        self.set_view(None)

    # -- building -----------------------------------------------------------------------------
    def _build_slide_tab(self) -> QWidget:
        self.status = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.table = QTableWidget(5, 5)
        self.table.horizontalHeader().hide()
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.NoSelection)
        self.table.setFocusPolicy(Qt.NoFocus)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setFixedHeight(5 * 28 + 4)
        bold = QFont()
        bold.setBold(True)
        for row, col, text, span in ((0, 2, "True diagnosis", (1, 2)), (1, 2, "Negative", None),
                                     (1, 3, "Positive", None), (1, 4, "Total", None), (2, 0, "Screening test", (2, 1)),
                                     (2, 1, "Negative", None), (3, 1, "Positive", None), (4, 1, "Total", None)):
            item = QTableWidgetItem(text)
            item.setFont(bold)
            item.setTextAlignment(Qt.AlignCenter)
            self.table.setItem(row, col, item)
            if span:
                self.table.setSpan(row, col, *span)
        self.cells: dict[str, QTableWidgetItem] = {}
        for name, row, col, colour in (("tn", 2, 2, AGREE), ("fn", 2, 3, DISAGREE), ("neg_total", 2, 4, TOTAL),
                                       ("fp", 3, 2, DISAGREE), ("tp", 3, 3, AGREE), ("pos_total", 3, 4, TOTAL),
                                       ("neg_truth", 4, 2, TOTAL), ("pos_truth", 4, 3, TOTAL), ("total", 4, 4, TOTAL)):
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
            metrics.addWidget(value, 2 * (i // 4), i % 4)
            metrics.addWidget(caption, 2 * (i // 4) + 1, i % 4)
            self.metric_labels[key] = value

        self.roc_plot = make_plot("ROC curve (tiles in tissue)", "sensitivity", "1 − specificity",
                                  legend_offset=(-10, -40))
        self.roc_plot.setXRange(0, 1, padding=0.02)
        self.roc_plot.setYRange(0, 1, padding=0.02)
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
        target_row = QHBoxLayout()
        target_row.addWidget(QLabel("Target sensitivity"))
        target_row.addWidget(self.target)
        target_row.addStretch(1)
        target_row.addWidget(self.use_button)

        widget = QWidget()
        layout = QVBoxLayout(widget)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        layout.addLayout(metrics)
        layout.addWidget(self.roc_plot, 1)
        layout.addLayout(target_row)
        layout.addWidget(self.target_label)
        return widget

    def _build_all_tab(self) -> QWidget:
        self.summary_status = QLabel("Compares every slide of the project that has a saved prediction.",
                                     wordWrap=True)
        self.summary_table = QTableWidget(len(SUMMARY_ROWS), 0)  # slides as columns: a narrow dock shows them all
        self.summary_table.setVerticalHeaderLabels(SUMMARY_ROWS)
        self.summary_table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.summary_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.summary_table.horizontalHeader().setStretchLastSection(True)
        self.summary_button = QPushButton("Compare all slides", clicked=self.compute_summary)
        self.csv_button = QPushButton("Export CSV…", enabled=False, clicked=lambda: self._export_dialog("csv"))
        self.json_button = QPushButton("Export JSON…", enabled=False, clicked=lambda: self._export_dialog("json"))
        self.report_button = QPushButton("Report…", enabled=False, clicked=self._report_dialog,
                                         toolTip="One HTML file: each slide's overview with the heatmap, its "
                                                 "table and metrics, then the total")
        buttons = QHBoxLayout()
        buttons.addWidget(self.summary_button)
        buttons.addStretch(1)
        buttons.addWidget(self.csv_button)
        buttons.addWidget(self.json_button)
        buttons.addWidget(self.report_button)
        widget = QWidget()
        layout = QVBoxLayout(widget)
        layout.addWidget(self.summary_status)
        layout.addWidget(self.summary_table, 1)
        layout.addLayout(buttons)
        return widget

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
    def _key(self, view, grid) -> tuple:
        entry = getattr(getattr(view, "session", None), "entry", None)
        fully = bool(entry.settings.get("fully_annotated")) if entry else False
        geometry = (grid.shape, tuple(grid.origin), grid.stride, grid.tile_l0, tuple(grid.slide_size))
        return (geometry, fully, id(view.annotations), view.annotations.revision)

    def compute(self) -> Worker | None:
        """Compare the current view's grid with its marks at the threshold (off the GUI thread)."""
        self._timer.stop()
        view = self.view
        grid = grid_of(view) if view is not None else None
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        if grid is None or not grid.done.any():
            running = getattr(getattr(view, "prediction", None), "state", "") == "running"
            self._show(None, "No slide open." if view is None else
                       "Predicting: the comparison follows when the run ends." if running else
                       "No prediction for this slide: run one in the Prediction panel.")
            return None
        key = self._key(view, grid)
        truth = self._evaluation.truth if self._evaluation is not None and self._evaluation.key == key else None
        entry = getattr(view.session, "entry", None) if hasattr(view, "session") else None
        name = entry.name if entry else view.reader.display_name
        grid = replace(grid, probs=grid.probs.copy(), predicted=grid.predicted.copy())  # a run may be filling it
        worker = Worker(evaluate, grid, view.annotations.annotations(), key[1], self.threshold, name, key, truth)
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
        grid = grid_of(view)
        partial = "" if grid is not None and grid.complete else " (partial prediction)"
        counts = result.comparison.metrics.counts
        hint = ""
        if counts.tn + counts.fp == 0:  # no negative truth: specificity and AUC cannot be computed
            hint = (" No tile is known to be non-tumour: tick “Fully annotated” in the Tiles panel if every "
                    "tumour on this slide is marked, or mark Benign regions.")
        self._show(result.comparison, f"{counts.total:,} tiles with both a prediction and a known truth, at "
                                      f"threshold {self.threshold:.3f}{partial}.{hint}")

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
        layer = getattr(self.view, "disagreement_layer", None) if self.view is not None else None
        if layer is not None and hasattr(layer, "set_comparison"):
            layer.set_comparison(comparison, grid=grid_of(self.view) if comparison is not None else None)
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
            from core.metrics import BinaryMetrics

            at = BinaryMetrics(m.labels, m.probabilities, self.target_threshold)
            self.target_label.setText(f"Threshold {self.target_threshold:.4f} reaches sensitivity "
                                      f"{at.sensitivity:.3f} (specificity {at.specificity or 0:.3f}, "
                                      f"{at.counts.fn:,} false negatives).")

    def _use_target(self) -> None:
        if self.target_threshold is not None:
            self.threshold_chosen.emit(float(self.target_threshold))

    # -- all slides -----------------------------------------------------------------------------
    def compute_summary(self) -> Worker | None:
        """Compare every project slide that has a saved prediction (off the GUI thread)."""
        window = self.parent()
        project = project_slide(self.view)[0] or getattr(window, "project", None)
        if project is None:
            self.summary_status.setText("No project: open a slide or a project first.")
            return None
        views = window.views() if hasattr(window, "views") else ([self.view] if self.view else [])
        open_marks = {}
        for view in views:
            _, slide_id = project_slide(view)
            if slide_id is not None and project_slide(view)[0] is project:
                open_marks[slide_id] = view.annotations.annotations()
        worker = Worker(evaluate_project, project, self.threshold, open_marks)
        worker.finished.connect(lambda summary, w=worker: self._on_summary(w, summary))
        worker.failed.connect(lambda err, w=worker: self._on_summary(w, None, err))
        self._summary_worker = worker
        self.summary_status.setText(f"Comparing the slides of “{project.name}”…")
        self.summary_button.setEnabled(False)
        return worker.start()

    def _on_summary(self, worker, summary, err=None) -> None:
        if sip.isdeleted(self) or worker is not self._summary_worker:
            return
        self._summary_worker = None
        self.summary_button.setEnabled(True)
        self.summary = summary
        rows = (list(summary["slides"]) + ([summary["total"]] if summary and summary.get("total") else [])
                if summary else [])
        bold = QFont()
        bold.setBold(True)
        self.summary_table.setColumnCount(len(rows))
        self.summary_table.setHorizontalHeaderLabels([row["slide"] for row in rows])
        for c, row in enumerate(rows):
            total = c == len(rows) - 1 and bool(summary.get("total"))
            self.summary_table.horizontalHeaderItem(c).setToolTip(row["slide"])
            for r, key in enumerate(CSV_COLUMNS[1:]):
                value = row.get(key)
                text = "–" if value is None else f"{value:.3f}" if isinstance(value, float) else f"{value:,}"
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if total:
                    item.setFont(bold)
                    item.setBackground(QBrush(TOTAL))
                self.summary_table.setItem(r, c, item)
        if err is not None:
            message = str(err) if isinstance(err, BiopsiaError) else f"Unexpected error: {err!r}"
            self.summary_status.setText(error_html(message))
        elif not summary["slides"]:
            self.summary_status.setText("No slide of the project has a saved prediction yet.")
        else:
            n = len(summary["slides"])
            self.summary_status.setText(f"{n} slide{'s' if n != 1 else ''} with a saved prediction, threshold "
                                        f"{summary['threshold']:.3f}; the last column sums their tiles.")
        has = bool(summary and summary["slides"])
        self.csv_button.setEnabled(has)
        self.json_button.setEnabled(has)
        self.report_button.setEnabled(has)
        self.summary_ready.emit(summary)

    def export(self, path, kind: str) -> Path:
        """Write the all-slides summary as ``"csv"`` or ``"json"`` (atomically)."""
        text = summary_csv(self.summary) if kind == "csv" else summary_json(self.summary)
        path = Path(path)
        atomic_write_bytes(path, text.encode("utf-8"))
        return path

    def export_report(self, path) -> Worker | None:
        """Write the HTML report of every slide with a saved prediction, off the GUI thread."""
        from core.evaluation.report import write_project_report

        project = project_slide(self.view)[0] or getattr(self.parent(), "project", None)
        if project is None:
            return None
        window = self.parent()
        open_marks = {}
        for view in (window.views() if hasattr(window, "views") else []):
            proj, slide_id = project_slide(view)
            if proj is project:
                open_marks[slide_id] = view.annotations.annotations()
        worker = Worker(write_project_report, project, Path(path), self.threshold, open_marks)
        worker.finished.connect(lambda out: self.summary_status.setText(f"Report written to {out}"))
        worker.failed.connect(lambda err: self.summary_status.setText(
            error_html(str(err))))
        self.summary_status.setText("Writing the report…")
        self._report_worker = worker
        return worker.start()

    def _report_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Write the report", "evaluation-report.html", "HTML (*.html)")
        if path:
            self.export_report(path)

    def _export_dialog(self, kind: str) -> None:
        if not self.summary:
            return
        name = f"evaluation.{kind}"
        path, _ = QFileDialog.getSaveFileName(self, f"Export the comparison as {kind.upper()}", name,
                                              f"{kind.upper()} (*.{kind})")
        if not path:
            return
        try:
            self.export(path, kind)
            self.summary_status.setText(f"Written to {path}")
        except OSError as err:
            self.summary_status.setText(error_html(f"{path}: could not write ({err})"))


def _disconnect(signal, slot) -> None:
    try:
        signal.disconnect(slot)
    except (TypeError, RuntimeError):
        pass
