"""All slides: each project slide's newest saved prediction against its marks, per slide and summed.

Open slides are compared with the marks on screen (`core.project.document.open_marks`), the others with
their saved marks. The table exports as CSV and JSON, and as one HTML report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PyQt5 import sip
from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtGui import QBrush, QColor, QFont, QFontMetrics
from PyQt5.QtWidgets import (QFileDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                             QTableWidgetItem, QVBoxLayout, QWidget)

from core.atomic import atomic_write_bytes
from core.errors import BiopsiaError
from core.evaluation.compare import CSV_COLUMNS, compare_project, summary_csv, summary_json
from core.evaluation.report import write_project_report
from core.project.document import open_marks
from gui.style import error_html
from gui.worker import Worker

TOTAL = QColor("#eceff1")
#: Rows of the table (one column per slide, the sum last), as `core.evaluation.compare.CSV_COLUMNS` after "slide".
SUMMARY_ROWS = ("Tiles", "True positives", "False positives", "True negatives", "False negatives", "Sensitivity",
                "Specificity", "PPV", "NPV", "Accuracy", "F1", "AUC")


def evaluate_project(project, threshold: float, marks: dict) -> dict:
    """`core.evaluation.compare.summarise` over every project slide with a saved prediction (``marks``: id → marks)."""
    return compare_project(project, threshold, marks)[0]


class ProjectSummary(QWidget):
    """The "All slides" tab. Signals ``summary_ready(dict)`` (None when the comparison failed).

    ``project_source()`` gives the project to compare, ``documents_source()`` the open slides' documents and
    ``threshold_source()`` the threshold.
    """

    summary_ready = pyqtSignal(object)

    def __init__(self, project_source: Callable, documents_source: Callable, threshold_source: Callable,
                 parent=None):
        super().__init__(parent)
        self.project_source, self.documents_source, self.threshold_source = (project_source, documents_source,
                                                                             threshold_source)
        self.summary: dict | None = None
        self._summary_worker: Worker | None = None
        self._report_worker: Worker | None = None
        self.summary_status = QLabel("Compares every slide of the project that has a saved prediction.",
                                     wordWrap=True)
        self.summary_table = QTableWidget(len(SUMMARY_ROWS), 0)  # slides as columns: a narrow dock shows them all
        self.summary_table.setVerticalHeaderLabels(SUMMARY_ROWS)
        self.summary_table.setEditTriggers(QTableWidget.NoEditTriggers)
        # each column as wide as its numbers, not its slide's name (cut in the middle, whole in the tooltip):
        # sized to the names, one slide's column pushed its numbers out of a 300 px panel
        self.summary_table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.summary_table.horizontalHeader().setTextElideMode(Qt.ElideMiddle)
        self.summary_button = QPushButton("Compare all slides", clicked=self.compute_summary)
        self.csv_button = QPushButton("CSV…", enabled=False, clicked=lambda: self._export_dialog("csv"),
                                      toolTip="Export the table as CSV")
        self.json_button = QPushButton("JSON…", enabled=False, clicked=lambda: self._export_dialog("json"),
                                       toolTip="Export the table as JSON")
        self.report_button = QPushButton("Report…", enabled=False, clicked=self._report_dialog,
                                         toolTip="One HTML file: each slide's overview with the heatmap, its "
                                                 "table and metrics, then the total")
        buttons = QHBoxLayout()  # the exports on a row of their own: the panel stays narrow
        buttons.addWidget(self.csv_button)
        buttons.addWidget(self.json_button)
        buttons.addWidget(self.report_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary_button)
        layout.addWidget(self.summary_status)
        layout.addWidget(self.summary_table, 1)
        layout.addLayout(buttons)

    def compute_summary(self) -> Worker | None:
        """Compare every project slide that has a saved prediction (off the GUI thread)."""
        project = self.project_source()
        if project is None:
            self.summary_status.setText("No project: open a slide or a project first.")
            return None
        worker = Worker(evaluate_project, project, self.threshold_source(),
                        open_marks(self.documents_source(), project))
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
        has_total = bool(summary and summary.get("total"))
        self.summary_table.setHorizontalHeaderLabels(
            [("Total" if has_total and c == len(rows) - 1 else row["slide"]) for c, row in enumerate(rows)])
        for c, row in enumerate(rows):
            total = has_total and c == len(rows) - 1
            self.summary_table.horizontalHeaderItem(c).setToolTip(
                "All slides: their tiles summed" if total else row["slide"])
            for r, key in enumerate(CSV_COLUMNS[1:]):
                value = row.get(key)
                text = "–" if value is None else f"{value:.3f}" if isinstance(value, float) else f"{value:,}"
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if total:
                    item.setFont(bold)
                    item.setBackground(QBrush(TOTAL))
                self.summary_table.setItem(r, c, item)
            metrics = QFontMetrics(bold if total else self.summary_table.font())
            widest = max([metrics.horizontalAdvance(self.summary_table.item(r, c).text())
                          for r in range(self.summary_table.rowCount())] + [metrics.horizontalAdvance("0.000")])
            self.summary_table.setColumnWidth(c, widest + 16)
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
        project = self.project_source()
        if project is None:
            return None
        worker = Worker(write_project_report, project, Path(path), self.threshold_source(),
                        open_marks(self.documents_source(), project))
        worker.finished.connect(lambda out: self.summary_status.setText(f"Report written to {out}"))
        worker.failed.connect(lambda err: self.summary_status.setText(error_html(str(err))))
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
        path, _ = QFileDialog.getSaveFileName(self, f"Export the comparison as {kind.upper()}", f"evaluation.{kind}",
                                              f"{kind.upper()} (*.{kind})")
        if not path:
            return
        try:
            self.export(path, kind)
            self.summary_status.setText(f"Written to {path}")
        except OSError as err:
            self.summary_status.setText(error_html(f"{path}: could not write ({err})"))
