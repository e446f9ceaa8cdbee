"""Train a model: pick the project's slides and settings, start, watch the curves, cancel, find the bundle.

The job runs on a `gui.worker.Worker`: it plans the tiles, reads them, then calls `core.train.train`,
which runs on the model thread. Every report (stages, `ProgressEvent` s, the result) reaches the panel
through the worker's ``partial`` signal, queued to the GUI thread; nothing off that thread touches a widget.
"""

from __future__ import annotations

import html
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyqtgraph as pg
from PyQt5.QtCore import QTimer, QUrl, Qt, pyqtSignal
from PyQt5.QtGui import QDesktopServices, QFont, QGuiApplication
from PyQt5.QtWidgets import (QComboBox, QDialog, QDoubleSpinBox, QFormLayout, QGridLayout,
                             QGroupBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton,
                             QSpinBox, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from core.errors import BiopsiaError, DatasetError
from core.tiling import TileSpec
from core.train import ProgressEvent, TrainResult
from gui.icons import icon
from gui.worker import Cancelled, Worker

ROLES = ("Train", "Test")
DEVICES = ("auto", "cpu", "gpu:0")
MODELS_DIR = "models"
REDRAW_MS = 100  # batch reports are drawn at most this often; epoch ends at once
INK, ACCENT, BLUE, GREEN, ORANGE, GREY = "#37474f", "#c2185b", "#1565c0", "#2e7d32", "#ef6c00", "#b0bec5"
ERROR_STYLE = "color: #b71c1c; background: #ffebee; border: 1px solid #ef9a9a; border-radius: 3px; padding: 6px"
COLUMNS = ("Use", "Slide", "Role", "Fully\nannotated", "Marks", "Tiles T / N")
TILES_TIP = "Tumour / non-tumour tiles found on the slide when training starts"
USE, NAME, ROLE, FULL, MARKS, TILES = range(len(COLUMNS))


# -- the job (no widgets: runs on a worker thread) ---------------------------------------------------
@dataclass
class TrainingJob:
    """Everything one run needs, fixed when Start is pressed."""

    project: object  # core.project.Project
    slide_ids: list[str]
    test_ids: list[str]
    spec: TileSpec
    out_dir: Path
    arch: str = "cnn"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    device: str = "auto"
    mpp_overrides: dict = field(default_factory=dict)  # slide id -> (x, y) µm/px the user entered


@dataclass
class Stage:
    """A step before training: ``text`` with ``done`` of ``total``."""

    text: str
    done: int
    total: int


@dataclass
class Planned:
    """The labelled tiles: ``counts`` as `DatasetPlan.counts`, ``per_slide`` {slide id: (tumour, non-tumour)}."""

    counts: dict
    per_slide: dict


def check_counts(counts: dict) -> None:
    """Raise DatasetError, saying what to mark, when a split lacks a class."""
    for split, who in (("train", "training"), ("test", "test")):
        if counts[split]["Tumour"] == 0:
            raise DatasetError(f"The {who} slides have no Tumour tiles: mark tumour regions on them with the "
                               "Tumour class, or choose other slides")
        if counts[split]["Non-tumour"] == 0:
            raise DatasetError(f"The {who} slides have no Non-tumour tiles: mark Benign regions or tick "
                               "fully annotated")


def run_job(job: TrainingJob, partial, should_stop) -> TrainResult:
    """Plan, read and train; reports through ``partial``. Raises Cancelled when stopped before training."""
    from core.dataset import load_tiles, plan_dataset, sources_from_project
    from core.train import train

    sources = sources_from_project(job.project, job.slide_ids)
    for slide_id, source in zip(job.slide_ids, sources):
        if source.mpp is None and job.mpp_overrides.get(slide_id):
            source.mpp = tuple(job.mpp_overrides[slide_id])
    names = dict(zip(job.slide_ids, (s.name for s in sources)))
    partial(Stage("Finding tissue and labelling tiles", 0, len(sources)))
    plan = plan_dataset(sources, job.spec, "by-slide", test_slides=[names[i] for i in job.test_ids],
                        progress=lambda d, t: partial(Stage("Finding tissue and labelling tiles", d, t)))
    per_slide = {slide_id: tuple(int(((plan.slide == n) & (plan.label == c)).sum()) for c in (1, 0))
                 for n, slide_id in enumerate(job.slide_ids)}
    partial(Planned(plan.counts(), per_slide))
    check_counts(plan.counts())
    total = int(plan.label.size)
    tiles = {}
    for split, offset in (("train", 0), ("test", int(plan.select("train").size))):
        tiles[split] = load_tiles(plan, split, should_stop=should_stop,
                                  progress=lambda d, _t, o=offset: partial(Stage("Reading tiles", o + d, total)))
        if tiles[split] is None:
            raise Cancelled()
    partial(Stage("Starting training", 0, 0))
    result = train(tiles["train"], tiles["test"], job.out_dir, arch=job.arch, epochs=job.epochs,
                   batch_size=job.batch_size, lr=job.lr, device=job.device, progress=partial,
                   should_stop=should_stop, mpp=job.spec.mpp)
    if result.bundle is None and {p.name for p in job.out_dir.iterdir()} <= {"history.json"}:
        shutil.rmtree(job.out_dir, ignore_errors=True)  # cancelled before any epoch: nothing worth keeping
    partial(result)  # a cancelled Worker reports no result: hand it over first
    return result


def describe(device: str) -> str:
    """Words for the context ``device`` resolves to (asked on the model thread)."""
    from core.models.engine import describe_device, engine, parse_device

    return engine().run(lambda: describe_device(parse_device(device)))


def default_model_name(models: Path) -> str:
    """``model-YYYYmmdd-HHMM``, with a suffix when that folder is taken."""
    base = datetime.now().strftime("model-%Y%m%d-%H%M")
    name, n = base, 2
    while (models / name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


# -- the panel -------------------------------------------------------------------------------------
class TrainingPanel(QDialog):
    """Non-modal "Train a model" window of a `MainWindow` (or any parent with ``project``).

    ``run_ended(state)`` says a run ended: ``"finished"``, ``"cancelled"`` or ``"failed"``.
    """

    run_ended = pyqtSignal(str)

    def __init__(self, window=None):
        super().__init__(window)
        self.main_window = window
        self.setWindowTitle("Train a model")
        self.setWindowIcon(icon("train"))
        self.setModal(False)
        self.resize(1280, 780)
        self.project = None
        self.worker: Worker | None = None
        self.job: TrainingJob | None = None
        self.result: TrainResult | None = None
        self.best_metrics: dict | None = None
        self.error: str | None = None
        self.history: list[dict] = []
        self._batch_x: list[float] = []
        self._batch_y: list[float] = []
        self._last_event: ProgressEvent | None = None
        self._redraw = QTimer(self, singleShot=True, interval=REDRAW_MS, timeout=self._draw_batches)
        self._device_worker: Worker | None = None
        self._started = 0.0

        splitter = QSplitter(Qt.Horizontal, self)
        splitter.addWidget(self._build_setup())
        splitter.addWidget(self._build_monitor())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([600, 680])
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        outer.addWidget(splitter)
        if hasattr(window, "slide_opened"):  # slides opened join the project: list them
            window.slide_opened.connect(self._on_slide_opened)
        app = QGuiApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.cancel)
        self._set_running(False)
        self._resolve_device()

    # -- building ------------------------------------------------------------------------------
    def _build_setup(self) -> QWidget:
        self.slides_box = QGroupBox("Slides")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionMode(QTableWidget.NoSelection)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(QHeaderView.ResizeToContents)
        head.setSectionResizeMode(NAME, QHeaderView.Stretch)
        head.setMinimumSectionSize(48)
        self.table.horizontalHeaderItem(TILES).setToolTip(TILES_TIP)
        self.table.verticalHeader().setDefaultSectionSize(30)
        self.table.itemChanged.connect(self._on_item_changed)
        hint = QLabel("Test slides validate the model after every epoch (a split by slide); the epoch with "
                      "the best test AUC is kept.", wordWrap=True)
        hint.setStyleSheet("color: #607d8b")
        box = QVBoxLayout(self.slides_box)
        box.addWidget(self.table)
        box.addWidget(hint)

        from core.models.zoo import ARCHS

        self.arch = QComboBox()
        self.arch.addItems(list(ARCHS))
        self.arch.setToolTip("cnn: a compact network, quick on a CPU; resnet18: deeper, wants a GPU")
        self.epochs = QSpinBox(minimum=1, maximum=1000, value=10)
        self.batch_size = QSpinBox(minimum=1, maximum=4096, value=64)
        self.lr = QDoubleSpinBox(decimals=5, minimum=0.00001, maximum=1.0, singleStep=0.0001, value=0.001)
        self.lr.setToolTip("Initial learning rate (Adam), decayed on a cosine schedule")
        self.tile_px = QSpinBox(minimum=16, maximum=1024, value=128, singleStep=16, suffix=" px")
        self.tile_mpp = QDoubleSpinBox(decimals=3, minimum=0.05, maximum=50.0, singleStep=0.25, value=1.0,
                                       suffix=" µm/px")
        self.tile_mpp.setToolTip("Resolution tiles are cut at (1 µm/px ≈ 10x)")
        tiles_row = QHBoxLayout()
        tiles_row.addWidget(self.tile_px)
        tiles_row.addWidget(QLabel("at"))
        tiles_row.addWidget(self.tile_mpp, 1)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.currentTextChanged.connect(lambda _t: self._resolve_device())
        self.device_label = QLabel(wordWrap=True)
        self.device_label.setStyleSheet("color: #607d8b")
        self.name = QLineEdit()
        self.name.setToolTip("The model is saved in the project's models folder under this name")
        settings = QGroupBox("Settings")
        form = QFormLayout(settings)
        form.addRow("Architecture", self.arch)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Learning rate", self.lr)
        form.addRow("Tiles", tiles_row)
        form.addRow("Device", self.device)
        form.addRow("", self.device_label)
        form.addRow("Model name", self.name)

        self.start_button = QPushButton(icon("train"), "Start training")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current batch; the best epoch so far is kept")
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.start_button)

        widget = QWidget()
        layout = QVBoxLayout(widget)
        layout.setContentsMargins(0, 0, 4, 0)
        layout.addWidget(self.slides_box, 1)
        layout.addWidget(settings)
        layout.addLayout(buttons)
        return widget

    def _build_monitor(self) -> QWidget:
        self.status = QLabel("Choose slides and settings, then start.")
        font = QFont(self.status.font())
        font.setBold(True)
        self.status.setFont(font)
        self.progress = QProgressBar(textVisible=False, maximumHeight=8)
        self.error_label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.error_label.hide()

        pg.setConfigOptions(antialias=True)
        self.loss_plot = _plot("Loss", "cross-entropy")
        self.metric_plot = _plot("Validation on the test slides", "score", legend_offset=(-10, -30))
        self.metric_plot.setYRange(-0.06, 1.06, padding=0)
        self.metric_plot.getAxis("left").setTicks([[(v / 5, f"{v / 5:.1f}") for v in range(6)]])
        self.batch_curve = self.loss_plot.plot(name="training (running, per batch)", pen=pg.mkPen(GREY, width=1))
        self.train_curve = self.loss_plot.plot(name="training", pen=pg.mkPen(INK, width=2), symbol="o",
                                               symbolSize=6, symbolBrush=INK, symbolPen=None)
        self.val_curve = self.loss_plot.plot(name="validation", pen=pg.mkPen(ACCENT, width=2), symbol="o",
                                             symbolSize=6, symbolBrush=ACCENT, symbolPen=None)
        self.metric_curves = {}
        for key, name, colour, style in (("auc", "AUC", ACCENT, Qt.SolidLine),
                                         ("accuracy", "accuracy", BLUE, Qt.SolidLine),
                                         ("sensitivity", "sensitivity", GREEN, Qt.DashLine),
                                         ("specificity", "specificity", ORANGE, Qt.DashLine)):
            solid = style == Qt.SolidLine
            self.metric_curves[key] = self.metric_plot.plot(
                name=name, pen=pg.mkPen(colour, width=2 if solid else 1.5, style=style),
                symbol="o" if solid else None, symbolSize=6, symbolBrush=colour, symbolPen=None)

        result_box = QGroupBox("Best epoch")
        grid = QGridLayout(result_box)
        self.metric_labels = {}
        for col, (key, text, colour) in enumerate((("auc", "AUC", ACCENT), ("sensitivity", "Sensitivity", GREEN),
                                                   ("specificity", "Specificity", ORANGE),
                                                   ("accuracy", "Accuracy", BLUE))):
            caption = QLabel(text, alignment=Qt.AlignCenter)
            caption.setStyleSheet("color: #607d8b")
            value = QLabel("—", alignment=Qt.AlignCenter)
            value.setStyleSheet(f"font-size: 18pt; font-weight: bold; color: {colour}")
            grid.addWidget(value, 0, col)
            grid.addWidget(caption, 1, col)
            self.metric_labels[key] = value
        self.best_label = QLabel(wordWrap=True)
        self.path_edit = QLineEdit(readOnly=True, placeholderText="The model is saved here when an epoch ends")
        self.open_button = QPushButton(icon("open"), "Open folder")
        self.open_button.clicked.connect(self.open_folder)
        self.copy_button = QPushButton("Copy path")
        self.copy_button.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.path_edit.text()))
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.copy_button)
        path_row.addWidget(self.open_button)
        grid.addWidget(self.best_label, 2, 0, 1, 4)
        grid.addLayout(path_row, 3, 0, 1, 4)

        widget = QWidget()
        layout = QVBoxLayout(widget)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        layout.addWidget(self.error_label)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.metric_plot, 1)
        layout.addWidget(result_box)
        return widget

    # -- the project's slides --------------------------------------------------------------------
    def set_project(self, project) -> None:
        """Show ``project``'s slides (keeping the choices made for slides already listed)."""
        if self.running:
            return
        kept = {} if project is not self.project else self._choices()
        self.project = project
        self.slides_box.setTitle(f"Slides of project “{project.name}”")
        entries = project.slides
        self.table.blockSignals(True)
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            default_role = "Test" if len(entries) > 1 and row == len(entries) - 1 else "Train"
            use, role = kept.get(entry.id, (True, default_role))
            check = QTableWidgetItem()
            check.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
            check.setCheckState(Qt.Checked if use else Qt.Unchecked)
            check.setData(Qt.UserRole, entry.id)
            self.table.setItem(row, USE, check)
            name = QTableWidgetItem(entry.name)
            name.setToolTip(str(entry.path))
            self.table.setItem(row, NAME, name)
            combo = QComboBox()
            combo.addItems(ROLES)
            combo.setCurrentText(role)
            self.table.setCellWidget(row, ROLE, combo)
            full = QTableWidgetItem()
            full.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
            full.setCheckState(Qt.Checked if entry.settings.get("fully_annotated") else Qt.Unchecked)
            full.setToolTip("Every tumour is marked, so unmarked tissue counts as non-tumour (saved in the project)")
            self.table.setItem(row, FULL, full)
            self.table.setItem(row, MARKS, QTableWidgetItem(self._marks_text(entry.id)))
            tiles = QTableWidgetItem("—")
            tiles.setToolTip(TILES_TIP)
            self.table.setItem(row, TILES, tiles)
        self.table.blockSignals(False)
        if not entries:
            self.status.setText("This project has no slides yet: open slides (they join the project) "
                                "or open a project.")
        models = Path(project.folder) / MODELS_DIR
        if not self.name.text() or (models / self.name.text()).exists():
            self.name.setText(default_model_name(models))

    def _on_slide_opened(self, _view) -> None:
        project = getattr(self.main_window, "project", None)
        if self.isVisible() and project is not None:
            self.set_project(project)

    def _marks_text(self, slide_id: str) -> str:
        try:
            marks = self.project.load_annotations(slide_id).annotations()
        except (BiopsiaError, OSError) as err:
            return f"unreadable: {err}"
        counts = {}
        for mark in marks:
            counts[mark.class_name] = counts.get(mark.class_name, 0) + 1
        return ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "none"

    def _choices(self) -> dict[str, tuple[bool, str]]:
        """{slide id: (use, role)} as the table shows them."""
        out = {}
        for row in range(self.table.rowCount()):
            item = self.table.item(row, USE)
            out[item.data(Qt.UserRole)] = (item.checkState() == Qt.Checked,
                                           self.table.cellWidget(row, ROLE).currentText())
        return out

    def set_slide_choice(self, slide_id: str, use: bool = True, role: str | None = None) -> None:
        """Tick or untick a slide and set its role, as a user would in the table."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, USE).data(Qt.UserRole) == slide_id:
                self.table.item(row, USE).setCheckState(Qt.Checked if use else Qt.Unchecked)
                if role is not None:
                    self.table.cellWidget(row, ROLE).setCurrentText(role)
                return
        raise KeyError(slide_id)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != FULL or self.project is None:
            return
        slide_id = self.table.item(item.row(), USE).data(Qt.UserRole)
        try:
            self.project.update_settings(slide_id, fully_annotated=item.checkState() == Qt.Checked)
        except (BiopsiaError, OSError) as err:
            self._show_error("Could not save the setting", str(err))

    # -- device ------------------------------------------------------------------------------------
    def _resolve_device(self) -> None:
        if self.running:
            return
        device = self.device.currentText()
        self.device_label.setText(f"Checking what “{device}” means here…")
        worker = Worker(describe, device)
        worker.finished.connect(lambda words, d=device: self._device_resolved(d, words, None))
        worker.failed.connect(lambda err, d=device: self._device_resolved(d, None, err))
        self._device_worker = worker.start()

    def _device_resolved(self, device: str, words: str | None, err) -> None:
        if device != self.device.currentText():
            return
        if err is None:
            self.device_label.setText(f"Trains on: {words}")
            self.device_label.setStyleSheet("color: #607d8b")
        else:
            self.device_label.setText(f"Not available: {err}")
            self.device_label.setStyleSheet("color: #b71c1c")

    # -- running -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def make_job(self) -> TrainingJob:
        """The job the table and settings describe. Raises DatasetError when they do not make one."""
        if self.project is None:
            raise DatasetError("No project: open a slide or a project first")
        choices = self._choices()
        ids = [i for i, (use, _) in choices.items() if use]
        test_ids = [i for i in ids if choices[i][1] == "Test"]
        if not ids:
            raise DatasetError("Tick the slides to use")
        if not test_ids or len(test_ids) == len(ids):
            raise DatasetError("Give at least one slide the role Train and one the role Test: the model "
                               "learns on the Train slides and is validated on the Test slides")
        name = self.name.text().strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ -]*", name):
            raise DatasetError(f"Model name {name!r}: use letters, digits, '-', '_' and '.'")
        out_dir = Path(self.project.folder) / MODELS_DIR / name
        if out_dir.exists():
            raise DatasetError(f"{out_dir}: a model of that name exists in this project; choose another name")
        overrides = {}
        store = getattr(self.main_window, "slide_settings", None)
        if store is not None:
            for slide_id in ids:
                override = store.get_mpp_override(self.project.slide(slide_id).path)
                if override:
                    overrides[slide_id] = tuple(override)
        return TrainingJob(self.project, ids, test_ids, TileSpec(self.tile_px.value(), self.tile_mpp.value()),
                           out_dir, self.arch.currentText(), self.epochs.value(), self.batch_size.value(),
                           self.lr.value(), self.device.currentText(), overrides)

    def start(self) -> Worker | None:
        """Start training with the current choices; problems are shown in the panel."""
        if self.running:
            return None
        self._clear()
        try:
            job = self.make_job()
            self._flush_marks(job.slide_ids)
        except BiopsiaError as err:
            self._fail(err)
            return None
        self.job = job
        self._started = time.monotonic()
        self.worker = Worker(run_job, job)
        self.worker.partial.connect(self._on_report)
        self.worker.finished.connect(lambda result: self._ended("finished", result))
        self.worker.cancelled.connect(lambda: self._ended("cancelled", self.result))
        self.worker.failed.connect(self._fail)
        self._set_running(True)
        self.status.setText("Starting…")
        self.progress.setRange(0, 0)
        step = max(1, -(-job.epochs // 10))  # whole epochs, at most about ten labels
        for plot in (self.loss_plot, self.metric_plot):
            plot.setXRange(0, job.epochs, padding=0.04)
            plot.getAxis("bottom").setTickSpacing(step, step)
        return self.worker.start()

    def _flush_marks(self, slide_ids) -> None:
        """Marks being edited reach their files before the tiles are labelled from them."""
        views = self.main_window.views() if hasattr(self.main_window, "views") else []
        for view in views:
            session = getattr(view, "session", None)
            if session is None or session.saver is None or session.entry.id not in slide_ids:
                continue
            if not session.saver.flush(5.0):
                raise DatasetError(f"The marks of {view.reader.display_name} are not saved yet "
                                   f"({session.saver.last_error or 'still writing'}); try again")

    def cancel(self) -> None:
        """Stop after the current batch (or tile chunk); the best epoch so far is kept."""
        if self.worker is not None and not self.worker.is_cancelled:
            self.worker.cancel()
            self.status.setText("Cancelling: stopping after this batch…")
            self.cancel_button.setEnabled(False)

    def _set_running(self, on: bool) -> None:
        for widget in (self.table, self.arch, self.epochs, self.batch_size, self.lr, self.tile_px,
                       self.tile_mpp, self.device, self.name, self.start_button):
            widget.setEnabled(not on)
        self.cancel_button.setEnabled(on)

    def _clear(self) -> None:
        self.result = self.best_metrics = self.error = self._last_event = None
        self.history, self._batch_x, self._batch_y = [], [], []
        for curve in (self.batch_curve, self.train_curve, self.val_curve, *self.metric_curves.values()):
            curve.setData([], [])
        for label in self.metric_labels.values():
            label.setText("—")
        self.best_label.setText("")
        self.path_edit.setText("")
        self.error_label.hide()
        for row in range(self.table.rowCount()):
            self.table.item(row, TILES).setText("—")

    # -- reports from the worker (GUI thread) ----------------------------------------------------
    def _on_report(self, report) -> None:
        if isinstance(report, ProgressEvent):
            self._on_progress(report)
        elif isinstance(report, Stage):
            if self.worker is not None and self.worker.is_cancelled:
                return  # keep saying "Cancelling"
            self.status.setText(f"{report.text} {report.done:,}/{report.total:,}" if report.total else
                                f"{report.text}…")
            self.progress.setRange(0, report.total)  # 0: busy
            self.progress.setValue(report.done)
        elif isinstance(report, Planned):
            self._show_tiles(report)
        elif isinstance(report, TrainResult):
            self.result = report

    def _show_tiles(self, planned: Planned) -> None:
        for row in range(self.table.rowCount()):
            counts = planned.per_slide.get(self.table.item(row, USE).data(Qt.UserRole))
            self.table.item(row, TILES).setText(f"{counts[0]:,} / {counts[1]:,}" if counts else "—")
        train, test = planned.counts["train"], planned.counts["test"]
        self.best_label.setText(f"Tiles: train {train['Tumour']:,} tumour / {train['Non-tumour']:,} non-tumour; "
                                f"test {test['Tumour']:,} / {test['Non-tumour']:,}")

    def _on_progress(self, event: ProgressEvent) -> None:
        self._last_event = event
        if event.metrics is None:
            self._batch_x.append(event.epoch + event.batch / event.batches)
            self._batch_y.append(event.loss)
            if not self._redraw.isActive():
                self._redraw.start()
            return
        self.history.append(dict(event.metrics))
        self._draw_batches()
        x = [h["epoch"] + 1 for h in self.history]
        self.train_curve.setData(x, [h["train_loss"] for h in self.history])
        self.val_curve.setData(x, [h["loss"] for h in self.history])
        for key, curve in self.metric_curves.items():
            pairs = [(xi, h[key]) for xi, h in zip(x, self.history) if h.get(key) is not None]
            curve.setData([p[0] for p in pairs], [p[1] for p in pairs])
        best = max(self.history, key=lambda h: h["auc"] if h.get("auc") is not None else h["accuracy"])
        self._show_best(best)

    def _draw_batches(self) -> None:
        self.batch_curve.setData(self._batch_x, self._batch_y)
        event = self._last_event
        if event is None or self.worker is None or self.worker.is_cancelled:
            return
        text = f"Epoch {event.epoch + 1}/{event.epochs}, batch {event.batch}/{event.batches}, loss {event.loss:.3f}"
        if self.history:
            last = self.history[-1]
            auc = last.get("auc")
            text += f"   ·   last validation: AUC {auc:.3f}" if auc is not None else ""
        self.status.setText(text)
        self.progress.setRange(0, event.epochs * event.batches)
        self.progress.setValue(event.epoch * event.batches + event.batch)

    def _show_best(self, metrics: dict) -> None:
        self.best_metrics = metrics
        for key, label in self.metric_labels.items():
            value = metrics.get(key)
            label.setText("—" if value is None else f"{value:.3f}")
        self.best_label.setText(f"Epoch {metrics['epoch'] + 1} of {len(self.history)} so far "
                                f"(validation loss {metrics['loss']:.3f}), saved as:")
        if self.job is not None:
            self._show_path(self.job.out_dir / "best")

    def _ended(self, state: str, result: TrainResult | None) -> None:
        self._redraw.stop()
        self._draw_batches()
        self.worker = None
        self._set_running(False)
        self.result = result
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if state == "finished" else 0)
        if result is not None and result.bundle is not None:
            best = next(h for h in result.history if h["epoch"] == result.best_epoch)
            self._show_best(best)
            ran = f"{result.epochs_run} epoch{'s' if result.epochs_run != 1 else ''} on {result.device}"
            why = (" (cancelled)" if result.cancelled else
                   " (stopped early: no better epoch)" if result.stopped_early else "")
            self.best_label.setText(f"Epoch {best['epoch'] + 1} of {ran}{why}; validation loss {best['loss']:.3f}. "
                                    "The model is saved in the project:")
            self._show_path(result.bundle)
            auc = f" — test AUC {best['auc']:.3f}" if best.get("auc") is not None else ""
            took = _duration(time.monotonic() - self._started)
            self.status.setText(("Cancelled: the best epoch is kept" if state == "cancelled" else f"Done in {took}")
                                + auc)
        else:
            self.status.setText("Cancelled before an epoch ended: no model was saved.")
        if self.project is not None:
            self.name.setText(default_model_name(Path(self.project.folder) / MODELS_DIR))
        self.run_ended.emit(state)

    def _fail(self, err: Exception) -> None:
        message = str(err) if isinstance(err, BiopsiaError) else f"Unexpected error: {err!r}"
        running = self.worker is not None
        self.worker = None
        self._redraw.stop()
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText("Training could not run" if not self.history else "Training stopped by an error")
        self._show_error("Training failed", message, getattr(err, "details", None))
        if running:
            self.run_ended.emit("failed")

    def _show_error(self, title: str, message: str, details: str | None = None) -> None:
        self.error = message
        self.error_label.setText(f"<b>{html.escape(title)}.</b> {html.escape(message)}")
        self.error_label.setToolTip(details or "")
        self.error_label.show()
        if hasattr(self.main_window, "show_error"):
            self.main_window.show_error(title, message)

    def _show_path(self, path: Path) -> None:
        self.path_edit.setText(str(path))
        self.path_edit.setToolTip(str(path))

    def open_folder(self) -> None:
        path = Path(self.path_edit.text())
        if self.path_edit.text() and path.exists():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


def _duration(seconds: float) -> str:
    """``"48 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _plot(title: str, y_label: str, legend_offset=(-10, 10)) -> pg.PlotWidget:
    plot = pg.PlotWidget(background="w")
    plot.setTitle(title, color=INK, size="11pt")
    plot.setLabel("bottom", "epoch", color=INK)
    if y_label:
        plot.setLabel("left", y_label, color=INK)
    for side in ("left", "bottom"):
        axis = plot.getAxis(side)
        axis.setPen(pg.mkPen(INK))
        axis.setTextPen(pg.mkPen(INK))
    plot.getAxis("left").setWidth(58)  # the same in both plots, so their epochs line up
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.addLegend(offset=legend_offset, labelTextColor=INK, brush=pg.mkBrush(255, 255, 255, 220))
    plot.setMenuEnabled(False)
    plot.setMinimumHeight(160)
    return plot
