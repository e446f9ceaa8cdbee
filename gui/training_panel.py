"""Train a model: pick the project's slides and settings, start, watch the curves, cancel, find the bundle.

The job (`core.models.training_job.run_job`) runs on a `gui.worker.Worker`: it plans the tiles, reads them, then
calls `core.models.train.train`, which runs on the model thread. Every report (stages, `ProgressEvent` s, the
result) reaches the panel through the worker's ``partial`` signal, queued to the GUI thread; nothing off
that thread touches a widget. The curves are `gui.training_plots.TrainingCurves`.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from pathlib import Path

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtGui import QFont, QGuiApplication
from PyQt5.QtWidgets import (QComboBox, QDialog, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QHeaderView,
                             QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox, QSplitter, QTableWidget,
                             QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from core.errors import BiopsiaError, DatasetError
from core.project.layout import MODELS_DIR
from core.project.mpp import SlideMpp, remember_mpp, resolve_mpp
from core.tiles.grid import TileSpec
from core.tiles.stain import DEFAULT_STAIN_AUGMENT
from core.models.reports import ARCH_NAMES, ProgressEvent, TrainResult  # no MXNet: the panel opens at once
from core.models.training_job import (OnTestSlides, PatchesSplit, Planned, Stage, TrainingJob, Validation,
                                      best_so_far, default_model_name, new_job, run_job, run_patch_job)
from gui.device_picker import DevicePicker
from gui.icons import icon
from gui.mask_import import MaskImportDialog
from gui.patch_source import PatchFolderBox
from gui.slide_mpp_edit import MppEdit, file_mpps
from gui.style import ERROR_BOX_STYLE, MUTED_STYLE, WARNING_BOX_STYLE
from gui.threshold_text import threshold_text
from gui.training_plots import BestEpochBox, TrainingCurves
from gui.worker import Worker

ROLES = ("Train", "Test")
ROLE_TIP = ("Train: the model learns on it (validation is held out of the Train slides). Test: the kept model "
            "is tested on it after training; it never chooses the best epoch or the threshold.")
COLUMNS = ("Use", "Slide", "Role", "Fully\nannotated", "µm/px", "Marks", "", "Tiles T / N")
TILES_TIP = "Tumour / non-tumour tiles found on the slide when training starts"
MPP_TIP = ("Micrometres per pixel at full resolution: the file's, or the value entered for the slide. Type a value "
           "to set it (kept as Slide ▸ Set resolution and --slide-mpp keep it)")
USE, NAME, ROLE, FULL, MPP, MARKS, MASK, TILES = range(len(COLUMNS))
SLIDES_TAB, PATCHES_TAB = 0, 1
#: The Stain jitter box: words, then `core.tiles.stain`'s name (train's ``stain_augment``; light is its default).
STAIN_AUGMENTS = (("light (mild RGB)", "light"), ("H&E densities (hed)", "hed"), ("none", "none"))
#: The normalisation box: words, then train's ``stain_normalise``.
STAIN_NORMALISERS = (("not", "none"), ("Reinhard", "reinhard"), ("Macenko", "macenko"))


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
        self.tested: dict | None = None  # the kept model on the Test slides (core.models.testing.test_model)
        self.error: str | None = None
        self.history: list[dict] = []
        self.split_text = ""  # how a patch folder's tiles were split (the last run on one)
        self.mask_dialog = None
        self._last_event: ProgressEvent | None = None
        self._started = 0.0

        splitter = QSplitter(Qt.Horizontal, self)
        splitter.addWidget(self._build_setup())
        splitter.addWidget(self._build_monitor())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([720, 560])
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        outer.addWidget(splitter)
        if hasattr(window, "slide_opened"):  # slides opened join the project: list them
            window.slide_opened.connect(self._on_slide_opened)
        app = QGuiApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.cancel)
        self._set_running(False)
        self.device_picker.resolve()

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
        self.table.horizontalHeaderItem(MPP).setToolTip(MPP_TIP)
        head.setSectionResizeMode(MPP, QHeaderView.Interactive)
        self.table.setColumnWidth(MPP, 64)
        head.setSectionResizeMode(MASK, QHeaderView.Fixed)
        self.table.setColumnWidth(MASK, 76)
        self.table.verticalHeader().setDefaultSectionSize(30)
        self.table.itemChanged.connect(self._on_item_changed)
        hint = QLabel("Whole Train slides (with one slide, a share of its tiles) are held out to validate the "
                      "model after every epoch; the epoch with the lowest validation loss is kept, and then "
                      "tested on the Test slides, if any.", wordWrap=True)
        hint.setStyleSheet(MUTED_STYLE)
        box = QVBoxLayout(self.slides_box)
        box.addWidget(self.table)
        box.addWidget(hint)
        self.patch_box = PatchFolderBox()
        self.source_tabs = QTabWidget()
        self.source_tabs.addTab(self.slides_box, "Project slides")
        self.source_tabs.addTab(self.patch_box, "Patch folder")
        self.source_tabs.setTabToolTip(PATCHES_TAB, "Train from a folder of patches, one subfolder per class")
        self.source_tabs.currentChanged.connect(self._on_source_changed)

        self.arch = QComboBox()
        self.arch.addItems(list(ARCH_NAMES))
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
        self.stain_augment = QComboBox(toolTip="How training tiles' colours are jittered: light (mild RGB), hed "
                                               "(haematoxylin, eosin and DAB densities after colour deconvolution: "
                                               "for real slides from more than one lab or scanner), or none")
        for words, value in STAIN_AUGMENTS:
            self.stain_augment.addItem(words, value)
        self.stain_augment.setCurrentIndex(self.stain_augment.findData(DEFAULT_STAIN_AUGMENT))  # train's default
        self.stain_normalise = QComboBox(toolTip="A stain normalisation fitted on the training tiles, recorded in "
                                                 "the model and applied to every tile it predicts: Reinhard "
                                                 "(CIELAB mean and spread) or Macenko (stain vectors)")
        for words, value in STAIN_NORMALISERS:
            self.stain_normalise.addItem(words, value)
        stain_row = QHBoxLayout()
        stain_row.addWidget(self.stain_augment, 1)
        stain_row.addWidget(QLabel("normalised"))
        stain_row.addWidget(self.stain_normalise, 1)
        self.device_picker = DevicePicker("Trains on", can_change=lambda: not self.running)
        self.device, self.device_label = self.device_picker.combo, self.device_picker.label
        self.name = QLineEdit()
        self.name.setToolTip("The model is saved in the project's models folder under this name")
        settings = QGroupBox("Settings")
        form = QFormLayout(settings)
        for label, field in (("Architecture", self.arch), ("Epochs", self.epochs), ("Batch size", self.batch_size),
                             ("Learning rate", self.lr), ("Tiles", tiles_row), ("Stain jitter", stain_row),
                             ("Device", self.device),
                             ("", self.device_label), ("Model name", self.name)):
            form.addRow(label, field)

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
        layout.addWidget(self.source_tabs, 1)
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
        self.error_label.setStyleSheet(ERROR_BOX_STYLE)
        self.error_label.hide()
        self.validation_label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.validation_label.setStyleSheet(MUTED_STYLE)
        self.validation_label.hide()

        self.curves = TrainingCurves()
        self.curves.batches_drawn.connect(self._show_batch_status)
        self.curves.start(self.epochs.value())  # before a run: the epochs it will draw, in whole numbers
        self.epochs.valueChanged.connect(lambda n: None if self.running or self.history else self.curves.start(n))

        self.best_box = BestEpochBox()

        widget = QWidget()
        layout = QVBoxLayout(widget)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        layout.addWidget(self.error_label)
        layout.addWidget(self.validation_label)
        layout.addWidget(self.curves, 1)
        layout.addWidget(self.best_box)
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
            # every slide trains by default: validation is held out of them (core.tiles.arrays.hold_out_sources),
            # so no slide is made a Test slide that may lack a class (a benign slide validates nothing)
            use, role = kept.get(entry.id, (True, "Train"))
            check = QTableWidgetItem()
            check.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
            check.setCheckState(Qt.Checked if use else Qt.Unchecked)
            check.setData(Qt.UserRole, entry.id)
            self.table.setItem(row, USE, check)
            name = QTableWidgetItem(entry.name)
            name.setToolTip(str(entry.path))
            self.table.setItem(row, NAME, name)
            combo = QComboBox(toolTip=ROLE_TIP)
            combo.addItems(ROLES)
            combo.setCurrentText(role)
            self.table.setCellWidget(row, ROLE, combo)
            full = QTableWidgetItem()
            full.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
            full.setCheckState(Qt.Checked if entry.settings.fully_annotated else Qt.Unchecked)
            full.setToolTip("Every tumour is marked, so unmarked tissue counts as non-tumour (saved in the project)")
            self.table.setItem(row, FULL, full)
            mpp = MppEdit(entry.name)
            mpp.show_mpp(resolve_mpp(entry.path, None, entry, self._store()))
            mpp.entered.connect(lambda x, y, i=entry.id: self.set_slide_mpp(i, (x, y)))
            mpp.refused.connect(lambda message: self._show_error("Resolution not changed", message))
            self.table.setCellWidget(row, MPP, mpp)
            self.table.setItem(row, MARKS, QTableWidgetItem(self._marks_text(entry.id)))
            mask = QPushButton("Mask…", autoDefault=False, toolTip="Import a label mask of this slide as marks")
            mask.clicked.connect(lambda _checked=False, i=entry.id: self.import_mask_dialog(i))
            self.table.setCellWidget(row, MASK, mask)
            tiles = QTableWidgetItem("—")
            tiles.setToolTip(TILES_TIP)
            self.table.setItem(row, TILES, tiles)
        self.table.blockSignals(False)
        self._read_file_mpps()
        if not entries:
            self.status.setText("This project has no slides yet: open slides (they join the project) "
                                "or open a project.")
        models = Path(project.folder) / MODELS_DIR
        if not self.name.text() or (models / self.name.text()).exists():
            self.name.setText(default_model_name(models))

    # -- each slide's µm/px ---------------------------------------------------------------------
    def _store(self):
        """The user's per-file settings the window uses (None: the user's own, `core.project.mpp`'s default)."""
        return getattr(self.main_window, "slide_settings", None)

    def mpp_edit(self, slide_id: str) -> MppEdit:
        return self.table.cellWidget(self._row_of(slide_id), MPP)

    def _row_of(self, slide_id: str) -> int:
        for row in range(self.table.rowCount()):
            if self.table.item(row, USE).data(Qt.UserRole) == slide_id:
                return row
        raise KeyError(slide_id)

    def _read_file_mpps(self) -> Worker | None:
        """The slides with no entered µm/px show their file's, read off the GUI thread."""
        paths = [e.path for e in self.project.slides if self.mpp_edit(e.id).current.mpp is None]
        if not paths:
            return None
        worker = Worker(file_mpps, paths)
        worker.finished.connect(self._show_file_mpps)
        self._mpp_worker = worker  # kept until it reports
        return worker.start()

    def _show_file_mpps(self, found: dict) -> None:
        for entry in self.project.slides if self.project is not None else ():
            edit = self.mpp_edit(entry.id)
            if edit.current.mpp is None and str(entry.path) in found:
                edit.show_mpp(resolve_mpp(entry.path, found[str(entry.path)], entry, self._store()))

    def set_slide_mpp(self, slide_id: str, mpp: tuple[float, float]) -> SlideMpp | None:
        """Keep a µm/px typed for a slide where `core.project.mpp` looks (the project and the user's store);
        an open view of the slide takes it at once."""
        entry, view = self.project.slide(slide_id), self._open_view(slide_id)
        try:
            if view is not None and hasattr(self.main_window, "set_slide_mpp"):
                self.main_window.set_slide_mpp(view, mpp)  # the window's Slide ▸ Set resolution
            else:
                remember_mpp(entry.path, mpp, self.project, entry, self._store())
        except (BiopsiaError, ValueError, OSError) as err:
            self._show_error("Could not save the resolution", str(err))
            found = None
        else:
            self.error_label.hide()
            found = resolve_mpp(entry.path, None, self.project.slide(slide_id), self._store())
        self.mpp_edit(slide_id).show_mpp(found or self.mpp_edit(slide_id).current)
        return found

    # -- marks from a mask -------------------------------------------------------------------------
    def import_mask_dialog(self, slide_id: str) -> MaskImportDialog:
        """The "Mask…" button of a slide: import a label mask as its marks (into its open view, else its file)."""
        entry, view = self.project.slide(slide_id), self._open_view(slide_id)
        mpp = self.mpp_edit(slide_id).current.mpp
        dialog = MaskImportDialog(entry.name, entry.path, view.reader.dimensions if view else None, mpp, self,
                                  view=view, project=self.project, slide_id=slide_id)
        dialog.imported.connect(lambda count, d=dialog, i=slide_id: self._mask_imported(d, i, count))
        self.mask_dialog = dialog
        dialog.show()
        return dialog

    def _mask_imported(self, dialog: MaskImportDialog, slide_id: str, count: int) -> None:
        self.table.item(self._row_of(slide_id), MARKS).setText(self._marks_text(slide_id))
        self.status.setText(f"{count:,} mark{'s' * (count != 1)} imported from {Path(dialog.path_edit.text()).name}.")
        if dialog.warnings and hasattr(self.main_window, "show_error"):
            self.main_window.show_error("Imported with warnings", "\n".join(dialog.warnings[:20]))

    def _on_slide_opened(self, _view) -> None:
        project = getattr(self.main_window, "project", None)
        if self.isVisible() and project is not None:
            self.set_project(project)

    def _open_view(self, slide_id: str):
        """The window's view of the slide, or None when it is not open."""
        views = self.main_window.views() if hasattr(self.main_window, "views") else []
        return next((v for v in views if v.document.slide_id == slide_id), None)

    def _marks_text(self, slide_id: str) -> str:
        view = self._open_view(slide_id)  # an open slide's marks may be newer than its file
        try:
            marks = (view.annotations if view is not None else self.project.load_annotations(slide_id)).annotations()
        except (BiopsiaError, OSError) as err:
            return f"unreadable: {err}"
        counts = Counter(mark.class_name for mark in marks)
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

    # -- running -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def make_job(self) -> TrainingJob:
        """The job the table and settings describe. Raises DatasetError when they do not make one."""
        job = new_job(self.project, self._choices(), self.name.text(),
                      TileSpec(self.tile_px.value(), self.tile_mpp.value()), **self._settings())
        return job  # each slide's µm/px: core.project.mpp.resolve_mpp, when the job plans its tiles

    def make_patch_job(self):
        """The run on the Patch folder tab's folder. Raises DatasetError when it does not make one."""
        return self.patch_box.job(self.project, self.name.text(),
                                  TileSpec(self.tile_px.value(), self.tile_mpp.value()), **self._settings())

    def _settings(self) -> dict:
        """The Settings box's values, as `TrainingJob` and `PatchJob` fields."""
        return {"arch": self.arch.currentText(), "epochs": self.epochs.value(), "batch_size": self.batch_size.value(),
                "lr": self.lr.value(), "device": self.device.currentText(),
                "stain_augment": self.stain_augment.currentData(), "stain_normalise": self.stain_normalise.currentData()}

    def _on_source_changed(self, tab: int) -> None:
        if not self.running and self.result is None and self.error is None:
            self.status.setText("Choose a patch folder and settings, then start." if tab == PATCHES_TAB else
                                "Choose slides and settings, then start.")

    def from_patches(self) -> bool:
        """Whether the run trains on the Patch folder tab (else on the project's slides)."""
        return self.source_tabs.currentIndex() == PATCHES_TAB

    def start(self) -> Worker | None:
        """Start training with the current choices; problems are shown in the panel."""
        if self.running:
            return None
        self._clear()
        try:
            if self.from_patches():
                job, run = self.make_patch_job(), run_patch_job
            else:
                job, run = self.make_job(), run_job
                self._flush_marks(job.slide_ids)
        except BiopsiaError as err:
            self._fail(err)
            return None
        self.job = job
        self._started = time.monotonic()
        self.worker = Worker(run, job)
        self.worker.partial.connect(self._on_report)
        self.worker.finished.connect(lambda result: self._ended("finished", result))
        self.worker.cancelled.connect(lambda: self._ended("cancelled", self.result))
        self.worker.failed.connect(self._fail)
        self._set_running(True)
        self.status.setText("Starting…")
        self.progress.setRange(0, 0)
        self.curves.start(job.epochs)
        return self.worker.start()

    def _flush_marks(self, slide_ids) -> None:
        flush_marks(self.main_window.views() if hasattr(self.main_window, "views") else [], slide_ids)

    def cancel(self) -> None:
        """Stop after the current batch (or tile chunk); the best epoch so far is kept."""
        if self.worker is not None and not self.worker.is_cancelled:
            self.worker.cancel()
            self.status.setText("Cancelling: stopping after this batch…")
            self.cancel_button.setEnabled(False)

    def _set_running(self, on: bool) -> None:
        for widget in (self.table, self.patch_box, self.source_tabs.tabBar(), self.arch, self.epochs,
                       self.batch_size, self.lr, self.tile_px, self.tile_mpp, self.device, self.name,
                       self.start_button):
            widget.setEnabled(not on)
        self.cancel_button.setEnabled(on)

    def _clear(self) -> None:
        self.result = self.best_metrics = self.error = self._last_event = self.tested = None
        self.history = []
        self.curves.clear()
        self.best_box.clear()
        self.error_label.hide()
        self.validation_label.hide()
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
        elif isinstance(report, Validation):
            text = report.text[0].upper() + report.text[1:]
            self.validation_label.setText(f"{text}." if not text.endswith(".") else text)
            self.validation_label.setStyleSheet(MUTED_STYLE if report.whole else WARNING_BOX_STYLE)
            self.validation_label.show()
        elif isinstance(report, OnTestSlides):
            self.tested = report.metrics
        elif isinstance(report, PatchesSplit):
            self.split_text = report.text
            self.best_box.best_label.setText(report.text)
            if report.warnings and hasattr(self.main_window, "show_error"):
                self.main_window.show_error("The model will record no µm/px", "\n\n".join(report.warnings))
        elif isinstance(report, TrainResult):
            self.result = report

    def _show_tiles(self, planned: Planned) -> None:
        for row in range(self.table.rowCount()):
            counts = planned.per_slide.get(self.table.item(row, USE).data(Qt.UserRole))
            self.table.item(row, TILES).setText(f"{counts[0]:,} / {counts[1]:,}" if counts else "—")
        self.best_box.show_tiles(planned.counts)
        window = self.parent()
        if planned.warnings and hasattr(window, "show_error"):  # the run goes on; the user should still know
            window.show_error("Check the marks", "\n\n".join(planned.warnings))

    def _on_progress(self, event: ProgressEvent) -> None:
        self._last_event = event
        if event.metrics is None:
            self.curves.add_batch(event.epoch, event.batch, event.batches, event.loss)
            return
        self.history.append(dict(event.metrics))
        self.curves.set_history(self.history)
        self._show_best(best_so_far(self.history))  # the epoch core.models.train keeps: lowest validation loss

    def _show_batch_status(self) -> None:
        event = self._last_event
        if event is None or self.worker is None or self.worker.is_cancelled:
            return
        text = f"Epoch {event.epoch + 1}/{event.epochs}, batch {event.batch}/{event.batches}, loss {event.loss:.3f}"
        if self.history:
            auc = self.history[-1].get("auc")
            text += f"   ·   last validation: AUC {auc:.3f}" if auc is not None else ""
        self.status.setText(text)
        self.progress.setRange(0, event.epochs * event.batches)
        self.progress.setValue(event.epoch * event.batches + event.batch)

    def _show_best(self, metrics: dict) -> None:
        self.best_metrics = metrics
        self.best_box.show_epoch(metrics, len(self.history), self.job.out_dir / "best" if self.job else None)

    def _ended(self, state: str, result: TrainResult | None) -> None:
        self.curves.draw_batches()
        self.curves.stop()
        self.worker = None
        self._set_running(False)
        self.result = result
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if state == "finished" else 0)
        if result is not None and result.bundle is not None:
            best = next(h for h in result.history if h["epoch"] == result.best_epoch)
            self.best_metrics = best
            self.best_box.show_result(best, result)
            auc = f" — validation AUC {best['auc']:.3f}" if best.get("auc") is not None else ""
            auc += _tested_text(self.tested)
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
        self.curves.stop()
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText("Training could not run" if not self.history else "Training stopped by an error")
        self._show_error("Training failed", message, getattr(err, "details", None))
        if running:
            self.run_ended.emit("failed")

    def _show_error(self, title: str, message: str, details: str | None = None) -> None:
        """The panel's banner says it, once: no dialog on top of it (the panel is where the user acted)."""
        self.error = message
        self.error_label.setText(f"<b>{html.escape(title)}.</b> {html.escape(message)}")
        self.error_label.setToolTip(details or "")
        self.error_label.show()


def flush_marks(views, slide_ids) -> None:
    """Marks being edited reach their files before the tiles are labelled from them.

    Raises
    ------
    DatasetError
        When a slide's marks cannot be saved within a few seconds (the message names the slide and why).
    """
    for view in views:
        session = view.document.session
        if session is None or session.saver is None or view.document.slide_id not in slide_ids:
            continue
        if not session.saver.flush(5.0):
            raise DatasetError(f"The marks of {view.reader.display_name} are not saved yet "
                               f"({session.saver.last_error or 'still writing'}); try again")


def _tested_text(tested: dict | None) -> str:
    """``"; Test slides: AUC 0.951, sensitivity 0.930, specificity 0.962 at threshold 0.4371"`` (empty: no test)."""
    if not tested:
        return ""
    parts = [f"{name} {tested[key]:.3f}" for key, name in (("auc", "AUC"), ("sensitivity", "sensitivity"),
                                                          ("specificity", "specificity"))
             if tested.get(key) is not None]
    return f"; Test slides ({tested['tiles']:,} tiles): {', '.join(parts)} at threshold " \
           f"{threshold_text(tested['threshold'])}"


def _duration(seconds: float) -> str:
    """``"48 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


