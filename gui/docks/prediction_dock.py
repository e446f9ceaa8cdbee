"""Prediction: run a model over the current slide in the background, watch the heatmap fill in, keep it.

The run (`run_prediction`) goes on a `gui.worker.Worker` in a pool of its own (one thread), so it never
takes a thread that opening slides or the Tiles dock need. `core.inference.predict.predict_slide` hands the
network to the model thread and calls ``partial`` there after each batch; the worker's queued
``partial`` signal brings each report to the GUI thread, where they are gathered and applied at most
every ``APPLY_MS`` (one `update_cells` call for many batches). Each view keeps its grid in
``view.prediction`` (a `SlidePrediction`); the heatmap layer (``view.heatmap_layer``) draws it.
"""

from __future__ import annotations

import html
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PyQt5 import sip
from PyQt5.QtCore import Qt, QThreadPool, QTimer, pyqtSignal
from PyQt5.QtGui import QPixmap
from PyQt5.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDockWidget, QDoubleSpinBox, QFileDialog,
                             QFormLayout, QFrame, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                             QRadioButton, QScrollArea, QSlider, QVBoxLayout, QWidget)

from core.errors import BiopsiaError, Cancelled
from core.inference.predict import (PartialResult, ProbabilityGrid, check_model_for_slide, predict_slide, prediction_path,
                          load_latest_prediction)
from core.models.training_job import MODELS_DIR
from gui.device_picker import DevicePicker
from gui.icons import icon
from gui.style import error_html
from gui.worker import Worker

#: Milliseconds between two heatmap updates while a run reports batches.
APPLY_MS = 100
BROWSE = "__browse__"
#: Niceness of the threads that predict (0 normal, 19 lowest): the GUI thread goes first.
BACKGROUND_NICE = 10


@dataclass
class SlidePrediction:
    """What a view shows of predictions: the grid, where it came from, and a line about it."""

    grid: ProbabilityGrid | None = None
    state: str = ""  # "", "loading", "saved", "running", "done", "partial", "failed"
    message: str = ""
    path: Path | None = None
    looked_up: bool = False  # saved predictions were looked for


@dataclass(frozen=True)
class TissueFound:
    """A report of the run: the tissue mask it computed (the dock keeps it for the next run)."""

    key: tuple
    tissue: object


def grid_of(view) -> ProbabilityGrid | None:
    """The probability grid a view shows (complete, partial or loaded), or None."""
    state = getattr(view, "prediction", None)
    return state.grid if state is not None else None


def project_slide(view) -> tuple[object, str] | tuple[None, None]:
    """(project, slide id) of a view opened within a project, else (None, None)."""
    session = getattr(view, "session", None)
    if session is None or getattr(session, "entry", None) is None:
        return None, None
    return session.project, session.entry.id


def find_models(project) -> list[Path]:
    """The project's trained models: ``<project>/models/*/best`` folders holding a ``model.json``."""
    if project is None:
        return []
    folder = Path(project.folder) / MODELS_DIR
    return sorted((p for p in folder.glob("*/best") if (p / "model.json").is_file()), key=lambda p: p.parent.name)


def model_label(bundle: Path) -> tuple[str, str]:
    """The picker's text for a bundle (name, tile size, µm/px, validation AUC) and its tooltip."""
    from core.models.bundle import read_info

    name = bundle.parent.name if bundle.name in ("best", "last") else bundle.name
    try:
        info = read_info(bundle)
    except BiopsiaError as err:
        return f"{name} (unreadable)", str(err)
    mpp = f"{info.mpp:g} µm/px" if info.mpp else "µm/px unknown"
    auc = info.metrics.get("auc")
    auc_text = f" · AUC {auc:.3f}" if isinstance(auc, (int, float)) else ""
    return f"{name} · {info.tile_px} px at {mpp}{auc_text}", f"{bundle}\n{info.architecture}, created {info.created}"


def run_prediction(reader, model_dir, device: str, slide_mpp, tissue, tissue_key, project, slide_id,
                   batch_size: int = 64, partial=None, should_stop=lambda: False):
    """The worker's job: check the model, find tissue, predict, save a complete grid. Returns (grid, path)."""
    from core.models.bundle import read_info, resolve_bundle
    from core.models.engine import engine
    from core.tiles.tissue import detect_tissue

    background_priority()  # this thread finds the tissue; the model thread and its readers predict
    engine().run(background_priority)
    model_dir = resolve_bundle(model_dir)
    info = read_info(model_dir)
    mpp = tuple(slide_mpp) if slide_mpp else reader.mpp
    check_model_for_slide(info, mpp, reader.display_name, model_dir)  # before reading a pixel
    if tissue is None:
        tissue = detect_tissue(reader, slide_mpp=mpp)
        partial(TissueFound(tissue_key, tissue))
    if should_stop():
        raise Cancelled()
    grid = predict_slide(reader, model_dir, device=device, batch_size=batch_size, tissue=tissue, slide_mpp=mpp,
                         partial=partial, should_stop=should_stop, started=partial)
    path = None
    if grid.complete and not should_stop() and project is not None:
        path = grid.save(prediction_path(project, slide_id, grid.model))
    return grid, path


def background_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: per thread; threads it starts inherit it).

    On a machine with few cores the reading threads and MXNet would otherwise take the CPU from the GUI
    thread, which must paint while the user pans during a run.
    """
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < BACKGROUND_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
    except OSError:  # not permitted here: run at the normal priority
        pass


class PredictionDock(QDockWidget):
    """Model, device, Start/Cancel and progress; the heatmap's display settings.

    Signals: ``grid_changed(view)`` (a view's grid was replaced: started, finished, cancelled, loaded),
    ``threshold_changed(float)``, ``run_ended(str)`` (``"finished"``, ``"cancelled"``, ``"failed"``).
    """

    grid_changed = pyqtSignal(object)
    threshold_changed = pyqtSignal(float)
    run_ended = pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__("Prediction", parent)
        self.setObjectName("PredictionDock")
        self.view = None
        self.worker: Worker | None = None
        self.run_view = None
        self.batch_size = 64
        self.updates: list[tuple[int, int]] = []  # (done, total) of each heatmap update of the last run
        self._pending: list[PartialResult] = []
        self._last_apply = 0.0
        self._apply_timer = QTimer(self, singleShot=True, timeout=self._apply_pending)
        self._tissue: dict = {}
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._extra_models: list[Path] = []

        self.model = QComboBox(toolTip="The project's trained models (models/*/best), or any model folder")
        self.model.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model.activated.connect(self._on_model_activated)
        self.device_picker = DevicePicker("Runs on")
        self.device, self.device_label = self.device_picker.combo, self.device_picker.label
        self.start_button = QPushButton(icon("predict"), "Predict slide", clicked=self.start)
        self.cancel_button = QPushButton("Cancel", clicked=self.cancel,
                                         toolTip="Stop after the current batch; the partial heatmap stays, unsaved")
        self.progress = QProgressBar(textVisible=False, maximumHeight=8)
        self.progress_label = QLabel()
        self.status = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)

        defaults = _layer_defaults()
        self.opacity = QSlider(Qt.Horizontal, minimum=0, maximum=100, value=round(defaults["opacity"] * 100),
                               toolTip="Heatmap opacity")
        self.opacity.valueChanged.connect(lambda v: self._layer_call("set_opacity", v / 100))
        self.colormap = QComboBox(toolTip="Colours of the probabilities")
        self.colormap.addItems(_colormaps())
        self.colormap.setCurrentText(defaults["colormap"])
        self.colormap.currentTextChanged.connect(self._on_colormap)
        self.legend = QLabel(alignment=Qt.AlignCenter)
        self.threshold_slider = QSlider(Qt.Horizontal, minimum=0, maximum=1000, value=500)
        self.threshold_box = QDoubleSpinBox(decimals=3, minimum=0.0, maximum=1.0, singleStep=0.01, value=0.5,
                                            toolTip="Tiles at or above it are called tumour (heatmap and comparison)")
        self.threshold_slider.valueChanged.connect(lambda v: self.threshold_box.setValue(v / 1000))
        self.threshold_box.valueChanged.connect(self._on_threshold)
        self.tiles_mode, self.smooth_mode = QRadioButton("Tiles", checked=True), QRadioButton("Smooth")
        modes = QButtonGroup(self)
        for button in (self.tiles_mode, self.smooth_mode):
            modes.addButton(button)
        self.tiles_mode.toggled.connect(lambda on: self._layer_call("set_mode", "tiles" if on else "smooth"))
        self.outlines = QCheckBox("Outline tumour calls", toolTip="Outline the tiles at or above the threshold")
        self.outlines.toggled.connect(lambda on: self._layer_call("set_outlines", on))
        self.setWidget(self._layout())
        self._set_running(False)
        self.visibilityChanged.connect(self._on_visibility)
        self.set_view(None)

    def _layout(self) -> QWidget:
        run_box = QGroupBox("Run")
        form = QFormLayout(run_box)
        form.addRow("Model", self.model)
        form.addRow("Device", self.device)
        form.addRow("", self.device_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.start_button, 1)
        form.addRow(buttons)
        form.addRow(self.progress)
        form.addRow(self.progress_label)
        show_box = QGroupBox("Heatmap")
        show = QFormLayout(show_box)
        show.addRow("Opacity", self.opacity)
        show.addRow("Colours", self.colormap)
        show.addRow("", self.legend)
        threshold = QHBoxLayout()
        threshold.addWidget(self.threshold_slider, 1)
        threshold.addWidget(self.threshold_box)
        show.addRow("Threshold", threshold)
        mode = QHBoxLayout()
        mode.addWidget(self.tiles_mode)
        mode.addWidget(self.smooth_mode)
        mode.addStretch(1)
        show.addRow("Draw", mode)
        show.addRow("", self.outlines)
        body = QWidget()
        outer = QVBoxLayout(body)
        outer.setAlignment(Qt.AlignTop)
        outer.addWidget(self.status)
        outer.addWidget(run_box)
        outer.addWidget(show_box)
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
        scroll.setWidget(body)
        return scroll

    # -- the current view ---------------------------------------------------------------
    def set_view(self, view) -> None:
        """The current tab changed: show its grid, loading the newest saved one the first time."""
        self.view = view
        self.refresh_models()
        if view is None:
            self.status.setText("No slide open.")
            self._show_running_state()
            return
        if getattr(view, "prediction", None) is None:
            view.prediction = SlidePrediction()
        self._apply_settings(view)
        if not view.prediction.looked_up:
            self.load_saved(view)
        self._show_state(view)
        self._show_running_state()

    def load_saved(self, view) -> Worker | None:
        """Look for the slide's saved predictions off the GUI thread; the newest is shown."""
        project, slide_id = project_slide(view)
        view.prediction.looked_up = True
        if project is None or view.prediction.grid is not None:
            return None
        view.prediction.state, view.prediction.message = "loading", "Looking for saved predictions…"
        worker = Worker(load_latest_prediction, project, slide_id)
        worker.finished.connect(lambda found, v=view: self._on_loaded(v, found))
        worker.failed.connect(lambda err, v=view: self._on_loaded(v, None))
        return worker.start()

    def _on_loaded(self, view, found) -> None:
        if sip.isdeleted(self) or sip.isdeleted(view) or view.prediction.state != "loading":
            return  # the view closed, or a run started meanwhile
        if found is None:
            view.prediction.state, view.prediction.message = "", ""
        else:
            grid, path = found
            view.prediction.grid, view.prediction.path, view.prediction.state = grid, path, "saved"
            view.prediction.message = (f"Saved prediction of model “{grid.model.get('name', '?')}”, "
                                       f"{int(np.isfinite(grid.probs).sum()):,} tiles, kept in the project.")
            self._layer_call("set_grid", grid, view=view)
        if view is self.view:
            self._show_state(view)
        self.grid_changed.emit(view)

    def view_closing(self, view) -> None:
        """The tab of ``view`` is closing: cancel its run; nothing is applied to it afterwards."""
        if view is self.run_view and self.worker is not None:
            self.worker.cancel()
            self.run_view = None
            self._pending.clear()
            self._set_running(False)
            self.progress_label.setText("Cancelled: the slide was closed.")

    # -- models and device --------------------------------------------------------------
    def refresh_models(self) -> None:
        """List the project's models (and folders browsed to), keeping the choice."""
        chosen = self.model_path()
        project, _ = project_slide(self.view)
        if project is None:
            project = getattr(self.parent(), "project", None)
        bundles = find_models(project) + [p for p in self._extra_models]
        self.model.blockSignals(True)
        self.model.clear()
        for bundle in dict.fromkeys(bundles):
            text, tip = model_label(bundle)
            self.model.addItem(text, str(bundle))
            self.model.setItemData(self.model.count() - 1, tip, Qt.ToolTipRole)
        self.model.addItem("Browse…", BROWSE)
        index = self.model.findData(str(chosen)) if chosen else -1
        self.model.setCurrentIndex(index if index >= 0 else (0 if self.model.count() > 1 else -1))
        self.model.blockSignals(False)
        self._show_running_state()

    def model_path(self) -> Path | None:
        data = self.model.currentData()
        return Path(data) if data and data != BROWSE else None

    def set_model(self, path) -> None:
        """Choose a model folder (a bundle or a training folder), as Browse… does."""
        path = Path(path)
        if path not in self._extra_models:
            self._extra_models.append(path)
        self.refresh_models()
        self.model.setCurrentIndex(self.model.findData(str(path)))
        self._show_running_state()

    def _on_model_activated(self, index: int) -> None:
        if self.model.itemData(index) != BROWSE:
            return
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder")
        if folder:
            self.set_model(folder)
        else:
            self.refresh_models()

    def _on_visibility(self, visible: bool) -> None:
        if visible:
            self.refresh_models()
            if not self.device_picker.asked:  # MXNet starts when the dock is first shown, not with the window
                self.device_picker.resolve()

    # -- running ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self) -> Worker | None:
        """Predict the current slide with the chosen model; problems are shown in the dock."""
        view, model = self.view, self.model_path()
        if view is None or model is None or self.running:
            return None
        project, slide_id = project_slide(view)
        key = (str(view.reader.path), tuple(view.mpp) if view.mpp else None)
        tissue = self._tissue.get(key) or _tiles_dock_tissue(self.parent(), key)
        worker = Worker(run_prediction, view.reader, model, self.device.currentText(), view.mpp, tissue, key,
                        project, slide_id, self.batch_size, pool=self._pool)
        worker.partial.connect(lambda report, w=worker, v=view: self._on_report(w, v, report))
        worker.finished.connect(lambda result, w=worker, v=view: self._on_finished(w, v, result))
        worker.cancelled.connect(lambda w=worker, v=view: self._on_cancelled(w, v))
        worker.failed.connect(lambda err, w=worker, v=view: self._on_failed(w, v, err))
        worker.done.connect(lambda w=worker: self._on_done(w))
        view.destroyed.connect(worker.cancel)  # however the view goes, its run stops
        self.worker, self.run_view, self.updates, self._pending = worker, view, [], []
        view.prediction.state, view.prediction.message = "running", f"Predicting with “{model_label(model)[0]}”…"
        self.progress.setRange(0, 0)
        self.progress_label.setText("Finding tissue and reading the model…")
        self._set_running(True)
        self._show_state(view)
        return worker.start()

    def cancel(self) -> None:
        """Stop the run after the current batch (the partial heatmap stays, unsaved)."""
        if self.worker is not None:
            self.worker.cancel()
            self.progress_label.setText("Cancelling after the current batch…")

    def _current(self, worker, view) -> bool:
        return not sip.isdeleted(self) and worker is self.worker and view is self.run_view

    def _on_report(self, worker, view, report) -> None:
        if isinstance(report, TissueFound):
            if not sip.isdeleted(self):
                self._tissue[report.key] = report.tissue
            return
        if not self._current(worker, view):
            return
        if isinstance(report, ProbabilityGrid):  # the empty grid: cells fill in as batches come
            view.prediction.grid, view.prediction.path = report, None
            self._layer_call("set_grid", report, view=view)
            self.grid_changed.emit(view)
        elif isinstance(report, PartialResult):
            self._pending.append(report)
            wait = APPLY_MS / 1000 - (time.perf_counter() - self._last_apply)
            if not self._apply_timer.isActive():
                self._apply_timer.start(max(0, int(wait * 1000)))

    def _apply_pending(self) -> None:
        """Write the batches gathered since the last update into the grid and the heatmap, as one update."""
        parts, self._pending = self._pending, []
        view = self.run_view
        if not parts or view is None or sip.isdeleted(view) or view.prediction.grid is None:
            return
        self._last_apply = time.perf_counter()
        last = parts[-1]
        merged = PartialResult(np.concatenate([p.rows for p in parts]), np.concatenate([p.cols for p in parts]),
                               np.concatenate([p.probs for p in parts]), last.done, last.total, last.tiles_per_s)
        view.prediction.grid.probs[merged.rows, merged.cols] = merged.probs
        view.prediction.grid.predicted[merged.rows, merged.cols] = True
        self._layer_call("update_cells", merged, view=view)
        self.updates.append((last.done, last.total))
        _set_progress(self.progress, last.done, max(last.total, 1))
        left = (last.total - last.done) / last.tiles_per_s if last.tiles_per_s > 0 else 0
        self.progress_label.setText(f"{last.done:,} / {last.total:,} tiles · {last.tiles_per_s:,.0f} tiles/s · "
                                    f"{_clock(left)} left")

    def _on_finished(self, worker, view, result) -> None:
        if not self._current(worker, view):
            return
        self._apply_timer.stop()
        self._apply_pending()
        grid, path = result
        state = view.prediction
        state.grid, state.path, state.state = grid, path, "done"
        where = f"saved in the project ({path.name})" if path else "not saved (the slide is in no project)"
        state.message = f"Done: {int(grid.done.sum()):,} tiles in {_clock(grid.seconds)}, {where}."
        self._layer_call("set_grid", grid, view=view)
        _set_progress(self.progress, 1, 1)
        self.progress_label.setText(f"{int(grid.done.sum()):,} tiles · {_clock(grid.seconds)}")
        self._ended(view, "finished")

    def _on_cancelled(self, worker, view) -> None:
        if not self._current(worker, view):
            return
        self._apply_timer.stop()
        self._apply_pending()
        state = view.prediction
        if state.grid is not None:
            state.grid.complete = False
            done = int(state.grid.done.sum())
            state.state = "partial"
            state.message = f"Cancelled: a partial heatmap ({done:,} tiles), not saved."
        else:
            state.state, state.message = "", "Cancelled before any tile was predicted."
        _set_progress(self.progress, 0, 1)
        self._ended(view, "cancelled")

    def _on_failed(self, worker, view, err: Exception) -> None:
        if not self._current(worker, view):
            return
        self._apply_timer.stop()
        self._pending.clear()
        message = str(err) if isinstance(err, BiopsiaError) else f"Unexpected error while predicting: {err!r}"
        state = view.prediction
        if state.grid is not None and state.state == "running":
            state.grid.complete = False
        state.state, state.message = "failed", message
        _set_progress(self.progress, 0, 1)
        self.progress_label.setText("")
        self._ended(view, "failed")

    def _ended(self, view, how: str) -> None:
        self.worker = self.run_view = None
        self._set_running(False)
        if view is self.view:
            self._show_state(view)
        self.grid_changed.emit(view)
        self.run_ended.emit(how)

    def _on_done(self, worker) -> None:
        if not sip.isdeleted(self) and worker is self.worker:  # the run's view was closed
            self.worker = self.run_view = None
            self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self.device.setEnabled(not running)  # asking the model thread now would wait for the run
        self._show_running_state()

    def _show_running_state(self) -> None:
        self.start_button.setEnabled(not self.running and self.view is not None and self.model_path() is not None)
        self.model.setEnabled(not self.running)

    def _show_state(self, view) -> None:
        state = view.prediction
        if view is self.view:
            failed = state.state == "failed"
            text = html.escape(state.message or "No prediction for this slide yet: choose a model and start.")
            self.status.setText(error_html(text) if failed else text)

    # -- display settings, bound to the view's heatmap layer -----------------------------------
    def threshold(self) -> float:
        return self.threshold_box.value()

    def set_threshold(self, value: float) -> None:
        """Use ``value`` as the heatmap's and the comparison's threshold (rounded down to 0.001)."""
        self.threshold_box.setValue(np.floor(float(value) * 1000 + 1e-6) / 1000)

    def _on_threshold(self, value: float) -> None:
        self.threshold_slider.blockSignals(True)
        self.threshold_slider.setValue(round(value * 1000))
        self.threshold_slider.blockSignals(False)
        self._layer_call("set_threshold", value)
        self.threshold_changed.emit(value)

    def _on_colormap(self, name: str) -> None:
        if name:
            self._layer_call("set_colormap", name)
        self._show_legend()

    def _show_legend(self) -> None:
        layer = getattr(self.view, "heatmap_layer", None)
        if layer is None or not hasattr(layer, "legend_image"):
            self.legend.clear()
            return
        self.legend.setPixmap(QPixmap.fromImage(layer.legend_image(220, 34)))

    def _apply_settings(self, view) -> None:
        """Give a view's heatmap layer the dock's settings and the view's grid."""
        for name, value in (("set_opacity", self.opacity.value() / 100), ("set_colormap", self.colormap.currentText()),
                            ("set_threshold", self.threshold()), ("set_outlines", self.outlines.isChecked()),
                            ("set_mode", "tiles" if self.tiles_mode.isChecked() else "smooth")):
            if value != "":
                self._layer_call(name, value, view=view)
        self._show_legend()

    def _layer_call(self, method: str, *args, view=None) -> None:
        view = self.view if view is None else view
        layer = getattr(view, "heatmap_layer", None) if view is not None and not sip.isdeleted(view) else None
        if layer is not None and hasattr(layer, method):
            getattr(layer, method)(*args)


def _set_progress(bar: QProgressBar, value: int, maximum: int) -> None:
    """Move a progress bar with a queued repaint (``setValue`` repaints at once, ~10 ms on the GUI thread)."""
    bar.setUpdatesEnabled(False)
    bar.setRange(0, maximum)
    bar.setValue(value)
    bar.setUpdatesEnabled(True)
    bar.update()


def _layer_defaults() -> dict:
    try:
        from gui.layers.heatmap_layer import DEFAULT_COLORMAP, DEFAULT_OPACITY
    except ImportError:
        return {"opacity": 0.5, "colormap": ""}
    return {"opacity": DEFAULT_OPACITY, "colormap": DEFAULT_COLORMAP}


def _colormaps() -> list[str]:
    try:
        from gui.layers.heatmap_layer import COLORMAPS
    except ImportError:  # the heatmap layer is not there yet
        return []
    return list(COLORMAPS)


def _tiles_dock_tissue(window, key):
    """The tissue mask the Tiles dock computed for this slide and µm/px, if any."""
    cache = getattr(getattr(window, "tiles_dock", None), "_tissue", None)
    return cache.get(key) if cache is not None else None


def _clock(seconds: float) -> str:
    """``"0:27"``, ``"12:05"``, ``"1:02:05"``."""
    seconds = int(round(max(seconds, 0)))
    h, m, s = seconds // 3600, seconds % 3600 // 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
