"""What the training panel shows of a run: live curves and the best epoch's scores and folder.

`TrainingCurves` owns two pyqtgraph plots stacked on the same x axis (epochs): loss per batch and per
epoch, and the validation scores per epoch. Batch reports are gathered and drawn at most every
``REDRAW_MS``; epoch ends are drawn at once. `BestEpochBox` shows the kept epoch's scores and where the
model is saved. Both are fed on the GUI thread by `gui.training_panel.TrainingPanel`.
"""

from __future__ import annotations

import html
from pathlib import Path

import pyqtgraph as pg
from PyQt5.QtCore import QTimer, QUrl, Qt, pyqtSignal
from PyQt5.QtGui import QDesktopServices, QGuiApplication
from PyQt5.QtWidgets import QGridLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from core.errors import BiopsiaError
from gui.icons import icon
from gui.plot_style import make_plot
from gui.style import ACCENT, BLUE, GREEN, GREY, INK, MUTED_STYLE, ORANGE

METRICS = (  # key, legend name, colour, solid (else dashed, no symbols)
    ("auc", "AUC", ACCENT, True),
    ("accuracy", "accuracy", BLUE, True),
    ("sensitivity", "sensitivity", GREEN, False),
    ("specificity", "specificity", ORANGE, False),
)
SCORES = (("auc", "AUC", ACCENT), ("sensitivity", "Sensitivity", GREEN), ("specificity", "Specificity", ORANGE),
          ("accuracy", "Accuracy", BLUE))  # the best epoch's big numbers, left to right
REDRAW_MS = 100


class TrainingCurves(QWidget):
    """Loss and validation plots of one run.

    ``batches_drawn`` is emitted after the running batch loss is redrawn (the panel updates its
    status line then, at the same pace).
    """

    batches_drawn = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss_plot = make_plot("Loss", "cross-entropy", "epoch")
        self.metric_plot = make_plot("Validation (held out of the training tiles)", "score", "epoch", legend_offset=(-10, -30))
        self.metric_plot.setYRange(-0.06, 1.06, padding=0)
        self.metric_plot.getAxis("left").setTicks([[(v / 5, f"{v / 5:.1f}") for v in range(6)]])
        self.batch_curve = self.loss_plot.plot(name="training (running, per batch)", pen=pg.mkPen(GREY, width=1))
        self.train_curve = self.loss_plot.plot(name="training", pen=pg.mkPen(INK, width=2), symbol="o",
                                               symbolSize=6, symbolBrush=INK, symbolPen=None)
        self.val_curve = self.loss_plot.plot(name="validation", pen=pg.mkPen(ACCENT, width=2), symbol="o",
                                             symbolSize=6, symbolBrush=ACCENT, symbolPen=None)
        self.metric_curves = {}
        for key, name, colour, solid in METRICS:
            pen = pg.mkPen(colour, width=2 if solid else 1.5, style=Qt.SolidLine if solid else Qt.DashLine)
            self.metric_curves[key] = self.metric_plot.plot(name=name, pen=pen, symbol="o" if solid else None,
                                                            symbolSize=6, symbolBrush=colour, symbolPen=None)
        self._batch_x: list[float] = []
        self._batch_y: list[float] = []
        self._redraw = QTimer(self, singleShot=True, interval=REDRAW_MS, timeout=self.draw_batches)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.metric_plot, 1)

    def start(self, epochs: int) -> None:
        """Clear the curves and show epochs 0 to ``epochs``, with at most about ten labelled ticks."""
        self.clear()
        step = max(1, -(-epochs // 10))
        for plot in (self.loss_plot, self.metric_plot):
            plot.setXRange(0, epochs, padding=0.04)
            plot.getAxis("bottom").setTickSpacing(step, step)

    def clear(self) -> None:
        self._redraw.stop()
        self._batch_x, self._batch_y = [], []
        for curve in (self.batch_curve, self.train_curve, self.val_curve, *self.metric_curves.values()):
            curve.setData([], [])

    def add_batch(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        """One batch's running loss, drawn with the next redraw."""
        self._batch_x.append(epoch + batch / batches)
        self._batch_y.append(loss)
        if not self._redraw.isActive():
            self._redraw.start()

    def set_history(self, history: list[dict]) -> None:
        """Draw the epoch curves from ``history`` (`core.models.train` metrics per epoch); epoch n ends at x = n + 1."""
        self.draw_batches()
        x = [h["epoch"] + 1 for h in history]
        self.train_curve.setData(x, [h["train_loss"] for h in history])
        self.val_curve.setData(x, [h["loss"] for h in history])
        for key, curve in self.metric_curves.items():
            pairs = [(xi, h[key]) for xi, h in zip(x, history) if h.get(key) is not None]
            curve.setData([p[0] for p in pairs], [p[1] for p in pairs])

    def draw_batches(self) -> None:
        """Draw the batches reported so far now (and stop a pending redraw)."""
        self._redraw.stop()
        self.batch_curve.setData(self._batch_x, self._batch_y)
        self.batches_drawn.emit()

    def stop(self) -> None:
        """No more redraws: the run ended."""
        self._redraw.stop()


class BestEpochBox(QGroupBox):
    """The kept epoch's scores (``metric_labels``), a line about it (``best_label``) and its folder (``path_edit``)."""

    def __init__(self, parent=None):
        super().__init__("Best epoch", parent)
        grid = QGridLayout(self)
        self.metric_labels = {}
        for col, (key, text, colour) in enumerate(SCORES):
            caption = QLabel(text, alignment=Qt.AlignCenter)
            caption.setStyleSheet(MUTED_STYLE)
            value = QLabel("—", alignment=Qt.AlignCenter)
            value.setStyleSheet(f"font-size: 18pt; font-weight: bold; color: {colour}")
            grid.addWidget(value, 0, col)
            grid.addWidget(caption, 1, col)
            self.metric_labels[key] = value
        self.best_label = QLabel(wordWrap=True)
        self.threshold_label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse,
                                      toolTip="The model's operating threshold, chosen on the validation tiles "
                                              "when training ended; prediction and testing start there")
        self.threshold_label.hide()
        self.path_edit = QLineEdit(readOnly=True, placeholderText="The model is saved here when an epoch ends")
        self.open_button = QPushButton(icon("open"), "Open folder")
        self.open_button.clicked.connect(self.open_folder)
        self.copy_button = QPushButton("Copy path")
        self.copy_button.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.path_edit.text()))
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.copy_button)
        path_row.addWidget(self.open_button)
        grid.addWidget(self.best_label, 2, 0, 1, len(SCORES))
        grid.addWidget(self.threshold_label, 3, 0, 1, len(SCORES))
        grid.addLayout(path_row, 4, 0, 1, len(SCORES))

    def show_tiles(self, counts: dict) -> None:
        """The labelled tiles of each split (`DatasetPlan.counts`), before any epoch ends."""
        train, test = counts["train"], counts["test"]
        tested = (f"test {test['Tumour']:,} / {test['Non-tumour']:,}" if sum(test.values()) else
                  "validation held out of them")
        self.best_label.setText(f"Tiles: train {train['Tumour']:,} tumour / {train['Non-tumour']:,} non-tumour; "
                                + tested)

    def show_epoch(self, metrics: dict, epochs_so_far: int, path: Path | None) -> None:
        """While training: the best epoch so far (``metrics``, one entry of the history), saved at ``path``."""
        self.show_scores(metrics)
        self.best_label.setText(f"Epoch {metrics['epoch'] + 1} of {epochs_so_far} so far "
                                f"(validation loss {metrics['loss']:.3f}), saved as:")
        if path is not None:
            self.show_path(path)

    def show_result(self, best: dict, result) -> None:
        """After training: the kept epoch ``best`` of ``result`` (a `core.models.train.TrainResult` with a bundle)."""
        self.show_scores(best)
        ran = f"{result.epochs_run} epoch{'s' if result.epochs_run != 1 else ''} on {result.device}"
        why = (" (cancelled)" if result.cancelled else
               " (stopped early: no better epoch)" if result.stopped_early else "")
        self.best_label.setText(f"Epoch {best['epoch'] + 1} of {ran}{why}; validation loss {best['loss']:.3f}. "
                                "The model is saved in the project:")
        self.show_threshold(result.bundle)
        self.show_path(result.bundle)

    def show_threshold(self, bundle: Path | None) -> None:
        """The threshold the model at ``bundle`` records, in `core.models.bundle.describe_threshold`'s words."""
        if bundle is None:
            self.threshold_label.hide()
            return
        from core.models.bundle import default_threshold, describe_threshold, read_info

        try:
            info = read_info(bundle)
        except BiopsiaError as err:
            self.threshold_label.setText(f"Threshold unknown: {err}")
        else:
            self.threshold, _source = default_threshold(info)
            text = describe_threshold(info)
            self.threshold_label.setText(f"<b>Operating threshold {self.threshold:g}</b> — {html.escape(text)}")
        self.threshold_label.show()

    def show_scores(self, metrics: dict) -> None:
        """The scores of ``metrics`` (one epoch of `core.models.train`'s history), "—" for those missing."""
        for key, label in self.metric_labels.items():
            value = metrics.get(key)
            label.setText("—" if value is None else f"{value:.3f}")

    def show_path(self, path: Path) -> None:
        self.path_edit.setText(str(path))
        self.path_edit.setToolTip(str(path))

    def clear(self) -> None:
        for label in self.metric_labels.values():
            label.setText("—")
        self.best_label.setText("")
        self.threshold_label.hide()
        self.path_edit.setText("")

    def open_folder(self) -> None:
        path = Path(self.path_edit.text())
        if self.path_edit.text() and path.exists():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))
