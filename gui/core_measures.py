"""Each core's length and tumour involvement for the current slide, measured off the GUI thread.

One `CoreMeasurer` per window follows the current view; the Annotations and Evaluation panels each show its
result in a `CoresTable`. The numbers are `core.evaluation.measure.measure_cores`'s, as `biopsia measure`
and the HTML report give them: tumour from the doctors' Tumour marks (drafts the network proposed are not
marks yet and are left out) and, when a prediction is shown, from the network's calls at the heatmap's
threshold. The tissue is the slide document's when it has one for its µm/px, else detected here and kept.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from PyQt5 import sip
from PyQt5.QtCore import QObject, Qt, QTimer, pyqtSignal
from PyQt5.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from core.annotations.proposals import is_draft
from core.errors import BiopsiaError, Cancelled
from core.evaluation.measure import measure_cores, tumour_of_grid, tumour_of_marks
from gui.narrow_table import narrow_table
from gui.worker import Worker

#: Quiet time (ms) after an edit or a threshold drag before measuring again.
DEBOUNCE_MS = 400
#: Narrow: the panel is a quarter of the window. Each "%" is of the length to its left (marks, then network).
COLUMNS = ("#", "Length", "Tumour", "%", "Network", "%")
TIPS = ("Cores (tissue fragments) top to bottom, as read", "The core's length along its centre line (mm)",
        "Tumour length (mm) from the first to the last Tumour mark along the core (ISUP: foci as one span)",
        "Percentage of the core's length involved, from the marks",
        "Tumour length (mm) from the network's calls at the heatmap's threshold",
        "Percentage of the core's length involved, from the network's calls")
MUTED = "color: #666"


def measure_view_cores(reader, mpp, tissue, marks, grid, threshold, tissue_key, should_stop=lambda: False,
                       finished: threading.Event | None = None):
    """(cores, tissue mask, tissue key): run on a worker thread; ``tissue`` None: detected here.

    ``finished`` is set when the job returns, however it ends (the window waits on it when closing).
    """
    try:
        return _measure(reader, mpp, tissue, marks, grid, threshold, tissue_key, should_stop)
    finally:
        if finished is not None:
            finished.set()


def _measure(reader, mpp, tissue, marks, grid, threshold, tissue_key, should_stop):
    from core.tiles.tissue import detect_tissue

    if tissue is None:
        tissue = detect_tissue(reader, slide_mpp=tuple(mpp))
    if should_stop():  # tissue detection cannot stop midway; the measuring after it can be skipped
        raise Cancelled()
    marks = [a for a in marks if not is_draft(a)]
    network = tumour_of_grid(grid, threshold) if grid is not None else None
    cores = measure_cores(tissue.to_polygons(), mpp, tumour_of_marks(marks), network)
    if grid is not None and network is None:  # a prediction with no call: 0 mm, not "no prediction"
        cores = [replace(c, network=replace(c.marks, tumour_length_mm=0.0, tumour_aggregate_mm=0.0,
                                            percent_involved=0.0, foci=0, tumour_area_mm2=0.0)) for c in cores]
    return cores, tissue, tissue_key


class CoreMeasurer(QObject):
    """Measures the current view's cores again when its marks, prediction, threshold or µm/px change.

    Signals: ``measured(list)`` (CoreMeasure list, longest... top to bottom as read), ``message(str)``
    (why there are no numbers: no slide, no µm/px, measuring, an error).
    """

    measured = pyqtSignal(object)
    message = pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view = None
        self.cores: list = []
        self.text = "No slide open."
        self._worker: Worker | None = None
        self._stale = False  # a change came while no table was shown or a run was going on
        self._finished = threading.Event()  # set when the last run's job has returned
        self.tables: list[CoresTable] = []
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS, timeout=self.compute)

    def set_view(self, view) -> None:
        if self.view is not None and not sip.isdeleted(self.view):
            for signal in (self.view.annotations_edited, self.view.annotations_replaced):
                try:
                    signal.disconnect(self.schedule)
                except (TypeError, RuntimeError):
                    pass
        self.view = view
        if view is not None:
            view.annotations_edited.connect(self.schedule)
            view.annotations_replaced.connect(self.schedule)
        self.compute()

    def schedule(self, *_args) -> None:
        self._timer.start()

    def wanted(self) -> bool:
        """Whether a table shows the numbers now (hidden panels measure nothing: no slide reads at start-up)."""
        return any(table.isVisible() for table in self.tables)

    def compute(self) -> Worker | None:
        """Measure the current view's cores, one run at a time: a change during a run measures again after it."""
        self._timer.stop()
        if self._worker is not None:  # tissue detection cannot stop midway: let it end, then measure again
            self._stale = True
            return self._worker
        view = self.view
        if view is not None and not self.wanted():
            self._stale = True
            return None
        self._stale = False
        if view is None:
            return self._say("No slide open.")
        if not view.mpp:
            return self._say("Lengths need the slide's µm/px: Slide ▸ Set resolution.")
        doc = view.document
        grid = doc.prediction.grid
        if grid is not None and not grid.done.any():
            grid = None
        elif grid is not None:
            grid = replace(grid, probs=grid.probs.copy(), predicted=grid.predicted.copy())  # a run may fill it
        key = doc.tissue_key()
        self._finished = threading.Event()
        worker = Worker(measure_view_cores, view.reader, view.mpp, doc.tissue(key), view.annotations.annotations(),
                        grid, view.heatmap_layer.threshold, key, finished=self._finished)
        worker.finished.connect(lambda result, w=worker, v=view: self._on_measured(w, v, result))
        worker.failed.connect(lambda err, w=worker: self._on_failed(w, err))
        worker.cancelled.connect(lambda w=worker: self._on_failed(w, None))
        self._worker = worker
        if not self.cores:
            self._say("Measuring the cores…")
        return worker.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """The window is closing: cancel the run and wait (at most ``timeout`` s) until its job has returned, so it
        never reports to a window, reader or interpreter that is gone. True when nothing is left running."""
        self._timer.stop()
        worker, self._worker, self.view = self._worker, None, None
        if worker is None:
            return True
        worker.cancel()
        return self._finished.wait(timeout)

    def _say(self, text: str) -> None:
        self.cores, self.text = [], text
        self.measured.emit([])
        self.message.emit(text)
        return None

    def _on_measured(self, worker, view, result) -> None:
        if sip.isdeleted(self) or worker is not self._worker:
            return
        self._worker = None
        cores, tissue, key = result
        if not sip.isdeleted(view):
            view.document.keep_tissue(key, tissue)
        if self._stale or view is not self.view:  # out of date: measure again (the tissue is kept now)
            self.compute()
            return
        self.cores = cores
        grid = view.document.prediction.grid
        network = f", network at threshold {view.heatmap_layer.threshold:.3g}" if grid is not None else ""
        self.text = (f"{len(cores)} cores (tissue fragments), lengths in mm; tumour from the Tumour marks{network}."
                     if cores else "No tissue fragment found.")
        self.measured.emit(cores)
        self.message.emit(self.text)

    def _on_failed(self, worker, err) -> None:
        if sip.isdeleted(self) or worker is not self._worker:
            return
        self._worker = None
        if self._stale:
            self.compute()
            return
        if err is None:  # cancelled, and nothing came since
            return
        self._say(str(err) if isinstance(err, BiopsiaError) else f"Could not measure the cores: {err!r}")


class CoresTable(QWidget):
    """A caption and one row per core: length, tumour length and % involved from the marks and the network.

    Clicking a row centres the view on that core (``view_source()`` gives the view).
    """

    def __init__(self, measurer: CoreMeasurer, parent=None):
        super().__init__(parent)
        self.measurer = measurer
        self.caption = QLabel(measurer.text, wordWrap=True, styleSheet=MUTED)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for col, tip in enumerate(TIPS):
            self.table.horizontalHeaderItem(col).setToolTip(tip)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        narrow_table(self.table)  # six columns in a 300 px panel
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)  # no giant last column
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.setMaximumHeight(200)
        self.table.itemClicked.connect(self._on_clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Cores", styleSheet="font-weight: bold"))
        layout.addWidget(self.caption)
        layout.addWidget(self.table)
        measurer.measured.connect(self.show_cores)
        measurer.message.connect(self.caption.setText)
        measurer.tables.append(self)
        self.show_cores(measurer.cores)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.measurer._stale:  # the panel opened on a change it had not measured
            self.measurer.schedule()

    def show_cores(self, cores) -> None:
        network = any(c.network is not None for c in cores)
        self.table.setColumnHidden(4, not network)
        self.table.setColumnHidden(5, not network)
        self.table.setRowCount(len(cores))
        for row, core in enumerate(cores):
            values = [str(core.index), f"{core.length_mm:.2f}", f"{core.marks.tumour_length_mm:.2f}",
                      f"{core.marks.percent_involved:.0f}"]
            if core.network is not None:
                values += [f"{core.network.tumour_length_mm:.2f}", f"{core.network.percent_involved:.0f}"]
            else:
                values += ["", ""]
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                item.setData(Qt.UserRole, core.bounds_l0)
                self.table.setItem(row, col, item)
        self.table.setVisible(bool(cores))

    def rows(self) -> list[list[str]]:
        """The table's text, shown columns only (tests)."""
        cols = [c for c in range(self.table.columnCount()) if not self.table.isColumnHidden(c)]
        return [[self.table.item(r, c).text() for c in cols] for r in range(self.table.rowCount())]

    def _on_clicked(self, item: QTableWidgetItem) -> None:
        view = self.measurer.view
        if view is not None:
            x0, y0, x1, y1 = item.data(Qt.UserRole)
            view.centre_on((x0 + x1) / 2, (y0 + y1) / 2)
