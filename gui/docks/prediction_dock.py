"""Prediction: run a model over the current slide in the background, watch the heatmap fill in, keep it.

The run (`core.inference.run.run_prediction`) goes on a `gui.worker.Worker` in a pool of its own (one
thread), so it never takes a thread that opening slides or the Tiles dock need. The model thread calls
``partial`` after each batch; the worker's queued ``partial`` signal brings each report to the GUI thread,
where they are gathered and applied at most every ``APPLY_MS`` (one `update_cells` call for many batches).
Each slide keeps its grid and its state in its document (``view.document.prediction``); the view's heatmap
layer draws it, with the settings of `gui.docks.heatmap_settings.HeatmapSettings`.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np
from PyQt5 import sip
from PyQt5.QtCore import Qt, QThreadPool, QTimer, pyqtSignal
from PyQt5.QtWidgets import (QComboBox, QDockWidget, QFileDialog, QFormLayout, QFrame, QGroupBox, QHBoxLayout,
                             QLabel, QProgressBar, QPushButton, QScrollArea, QVBoxLayout, QWidget)

from core.demo import DEMO_MODEL_STATEMENT, is_demo_model
from core.errors import BiopsiaError
from core.inference.predict import PartialResult, ProbabilityGrid, load_latest_prediction
from core.inference.run import EngineChosen, TissueFound, run_prediction
from core.models.folder import model_name
from core.project.layout import MODELS_DIR
from core.project.document import PredictionState
from gui.device_picker import DevicePicker
from gui.docks.heatmap_settings import HeatmapSettings
from gui.icons import icon
from gui.style import MUTED_STYLE, WARNING_BOX_STYLE, error_html
from gui.worker import Worker
from gui.wrap_label import WrapLabel

#: Milliseconds between two heatmap updates while a run reports batches.
APPLY_MS = 100
BROWSE = "__browse__"
#: The Engine choices: words, then `core.inference.engines`' engine and precision. "Automatic" is the CLI's
#: ``--engine auto``: ONNX Runtime on a GPU MXNet has no kernels for (Hopper and newer), else MXNet FP32.
ENGINE_CHOICES = (("Automatic", "auto", "fp32"), ("MXNet · FP32", "mxnet", "fp32"),
                  ("MXNet · INT8 (oneDNN)", "mxnet", "int8"), ("ONNX Runtime · FP32", "onnx", "fp32"))


def engine_availability(bundle: Path | None) -> list[str | None]:
    """Per `ENGINE_CHOICES` entry: None when ``bundle`` can run so, else why not (with the command that adds it)."""
    if bundle is None:
        return [None] * len(ENGINE_CHOICES)
    from core.inference.engines import check_engine
    from core.models import bundle as bundles  # MXNet, as model_label: only once a model is chosen
    try:
        folder = bundles.resolve_bundle(bundle)
        info = bundles.read_info(folder, verify=False)  # listing only: the run verifies every file
    except BiopsiaError as err:
        return [str(err)] * len(ENGINE_CHOICES)
    out = []
    for _words, engine, precision in ENGINE_CHOICES:
        if engine == "auto":  # never refused: it falls back to MXNet FP32, which every model holds
            out.append(None)
            continue
        try:
            check_engine(info, folder, engine, precision)
            out.append(None)
        except BiopsiaError as err:
            out.append(str(err))
    return out


def find_models(project) -> list[Path]:
    """The project's trained models: ``<project>/models/*/best`` folders holding a ``model.json``."""
    if project is None:
        return []
    folder = Path(project.folder) / MODELS_DIR
    return sorted((p for p in folder.glob("*/best") if (p / "model.json").is_file()), key=lambda p: p.parent.name)


def model_label(bundle: Path) -> tuple[str, str]:
    """The picker's text for a bundle (name, tile size, µm/px, validation AUC) and its tooltip."""
    from core.models.bundle import read_info  # it imports MXNet (seconds): not with the window

    name = model_name(bundle)
    try:
        info = read_info(bundle)
    except BiopsiaError as err:
        return f"{name} (unreadable)", str(err)
    mpp = f"{info.mpp:g} µm/px" if info.mpp else "µm/px unknown"
    auc = info.metrics.get("auc")
    auc_text = f" · AUC {auc:.3f}" if isinstance(auc, (int, float)) else ""
    return f"{name} · {info.tile_px} px at {mpp}{auc_text}", f"{bundle}\n{info.architecture}, created {info.created}"


def model_threshold(bundle: Path) -> tuple[float, str]:
    """The threshold a model's heatmap starts at, and a line saying where it comes from.

    `core.models.bundle.default_threshold`: the model's recorded operating threshold, else 0.5 (and then the
    line says that the model records none).
    """
    from core.models import bundle as bundles  # MXNet: see model_label

    try:
        info = bundles.read_info(bundles.resolve_bundle(bundle))
    except BiopsiaError as err:
        return 0.5, f"0.5: the model cannot be read ({err})"
    value, _source = bundles.default_threshold(info)
    return value, bundles.describe_threshold(info, how_to_choose="drag the slider or type one to choose")


class PredictionDock(QDockWidget):
    """Model, device, Start/Cancel and progress; the heatmap's display settings.

    Signals: ``grid_changed(view)`` (a view's grid was replaced: started, finished, cancelled, loaded),
    ``threshold_changed(float)``, ``run_ended(str)`` (``"finished"``, ``"cancelled"``, ``"failed"``).
    """

    grid_changed = pyqtSignal(object)
    threshold_changed = pyqtSignal(float)
    run_ended = pyqtSignal(str)

    def __init__(self, parent=None, project_source=lambda: None):
        """``project_source()``: the window's project, whose models are listed while no slide is open."""
        super().__init__("Prediction", parent)
        self.setObjectName("PredictionDock")
        self.project_source = project_source
        self.view = None
        self.worker: Worker | None = None
        self.run_view = None
        self.batch_size = 64
        self.updates: list[tuple[int, int]] = []  # (done, total) of each heatmap update of the last run
        self._pending: list[PartialResult] = []
        # a run over a slide that shows a heatmap fills its grid here, off screen: the previous heatmap stays
        # until the new one is complete (no blank slide mid-run; a cancelled or failed run leaves it as it was)
        self._offscreen: ProbabilityGrid | None = None
        self._before: tuple | None = None  # (state, message) of the previous heatmap while it stays
        self._last_apply = 0.0
        self._apply_timer = QTimer(self, singleShot=True, timeout=self._apply_pending)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._extra_models: list[Path] = []

        self.model = QComboBox(toolTip="The project's trained models (models/*/best), or any model folder")
        self.model.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model.activated.connect(self._on_model_activated)
        self.device_picker = DevicePicker("Runs on")
        self.device, self.device_label = self.device_picker.combo, self.device_picker.label
        self.engine = QComboBox(toolTip="How the network is computed: Automatic (ONNX Runtime on a GPU that MXNet "
                                        "has no kernels for, else MXNet FP32), MXNet in FP32, MXNet in INT8 (the "
                                        "model's quantized variant, biopsia quantize), or ONNX Runtime (its "
                                        "model.onnx)")
        for words, engine, precision in ENGINE_CHOICES:
            self.engine.addItem(words, (engine, precision))
        self.engine.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)  # the list shows all
        self.engine.setMinimumContentsLength(12)  # its longest entry made a narrow panel scroll sideways
        # what Automatic takes here, when it is not MXNet: the device line above speaks for MXNet only
        self.engine_label = WrapLabel(styleSheet=MUTED_STYLE)
        self.engine_label.hide()
        self.engine.currentIndexChanged.connect(lambda _i: self._show_automatic())
        self.device.currentTextChanged.connect(lambda _t: self._show_automatic())
        self.start_button = QPushButton(icon("predict"), "Predict slide", clicked=self.start)
        self.cancel_button = QPushButton("Cancel", clicked=self.cancel,
                                         toolTip="Stop after the current batch; the partial heatmap stays, unsaved")
        self.progress = QProgressBar(textVisible=False, maximumHeight=8)
        self.progress_label = QLabel()
        self.status = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.model_note = WrapLabel(textInteractionFlags=Qt.TextSelectableByMouse)
        self.model_note.setStyleSheet(WARNING_BOX_STYLE)
        self.model_note.setText(DEMO_MODEL_STATEMENT)  # core.demo's: the card, CLI and window say one text
        self.model_note.hide()
        self._threshold_model: Path | None = None  # the model whose threshold the heatmap settings started at
        self._engine_note: str | None = None  # why Automatic took ONNX Runtime in the current run

        self.heatmap = HeatmapSettings()
        self.heatmap.threshold_changed.connect(self.threshold_changed)
        self.setWidget(self._layout())
        self._set_running(False)
        self.visibilityChanged.connect(self._on_visibility)
        self.set_view(None)

    def _layout(self) -> QWidget:
        run_box = QGroupBox("Run")
        form = QFormLayout(run_box)
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)  # a narrow panel puts labels above their fields
        form.addRow("Model", self.model)
        form.addRow(self.model_note)
        form.addRow("Device", self.device)
        form.addRow(self.device_label)  # the whole row: "OMP_NUM_THREADS=" alone is wider than the field column
        form.addRow("Engine", self.engine)
        form.addRow(self.engine_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.start_button, 1)
        form.addRow(buttons)
        form.addRow(self.progress)
        form.addRow(self.progress_label)
        body = QWidget()
        # no AlignTop: an aligned layout takes its size hint and ignores height-for-width, which laid the Device
        # row over the demo model note's last lines
        outer = QVBoxLayout(body)
        outer.addWidget(self.status)
        outer.addWidget(run_box)
        outer.addWidget(self.heatmap)
        outer.addStretch(1)  # the spare height goes below the panels
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
        scroll.setWidget(body)
        return scroll

    # -- the current view ---------------------------------------------------------------
    def set_view(self, view) -> None:
        """The current tab changed: show its grid, loading the newest saved one the first time."""
        self.view = view
        self.refresh_models()
        self.heatmap.set_view(view)
        if view is None:
            self.status.setText("No slide open.")
            self._show_running_state()
            return
        if not view.document.prediction.looked_up:
            self.load_saved(view)
        self._show_state(view)
        self._show_running_state()

    def load_saved(self, view) -> Worker | None:
        """Look for the slide's saved predictions off the GUI thread; the newest is shown."""
        doc, state = view.document, view.document.prediction
        state.looked_up = True
        if doc.slide_id is None or state.grid is not None:
            return None
        state.state, state.message = PredictionState.LOADING, "Looking for saved predictions…"
        worker = Worker(load_latest_prediction, doc.project, doc.slide_id)
        worker.finished.connect(lambda found, v=view: self._on_loaded(v, found))
        worker.failed.connect(lambda err, v=view: self._on_loaded(v, None))
        return worker.start()

    def _on_loaded(self, view, found) -> None:
        if sip.isdeleted(self) or sip.isdeleted(view) or view.document.prediction.state != PredictionState.LOADING:
            return  # the view closed, or a run started meanwhile
        state = view.document.prediction
        if found is None:
            state.state, state.message = PredictionState.NONE, ""
        else:
            grid, path = found
            state.grid, state.path, state.state = grid, path, PredictionState.SAVED
            state.message = (f"Saved prediction of model “{grid.model.get('name', '?')}”, "
                             f"{int(np.isfinite(grid.probs).sum()):,} tiles, kept in the project.")
            view.heatmap_layer.set_grid(grid)
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
        project = self.view.document.project if self.view is not None else None
        project = project or self.project_source()
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
        self._show_model()
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
        self._show_model()  # its threshold and note (setCurrentIndex is not a user's choice: no signal is handled)
        self._show_running_state()

    def engine_choice(self) -> tuple[str, str]:
        """The Engine box's ``(engine, precision)``."""
        return tuple(self.engine.currentData() or ("auto", "fp32"))

    def _show_engines(self, path: Path | None) -> None:
        """Only the engines the model holds a variant for can be chosen; the others say how to add one."""
        items = self.engine.model()
        for row, why in enumerate(engine_availability(path)):
            item = items.item(row)
            item.setEnabled(why is None)
            item.setToolTip(why or "")
        if not items.item(self.engine.currentIndex()).isEnabled():
            self.engine.setCurrentIndex(0)  # Automatic: MXNet FP32 at worst, which every model has
        self._show_automatic()

    def _show_automatic(self) -> None:
        """Under the Engine box, what Automatic takes for this model and device when it is ONNX Runtime."""
        why = None
        path = self.model_path()
        if self.engine_choice()[0] == "auto" and path is not None:
            from core.inference.engines import choose_engine
            from core.models import bundle as bundles  # MXNet, as model_label: only once a model is chosen
            try:
                info = bundles.read_info(bundles.resolve_bundle(path), verify=False)
            except BiopsiaError:
                info = None
            if info is not None:
                _engine, why = choose_engine("auto", self.device.currentText(), info)
        self.engine_label.setText(f"Automatic: {why}" if why else "")
        self.engine_label.setVisible(bool(why))

    def _show_model(self) -> None:
        """A newly chosen model: the threshold starts at the one it records, and the demo model says what it is."""
        path = self.model_path()
        self._show_engines(path)
        self.model_note.setVisible(is_demo_model(path))
        if path is None or path == self._threshold_model:
            return  # the same model: a threshold the user chose stays
        self._threshold_model = path
        value, source = model_threshold(path)
        self.heatmap.set_threshold(value, source)

    def _on_model_activated(self, index: int) -> None:
        if self.model.itemData(index) != BROWSE:
            self._show_model()
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
        doc = view.document
        key = doc.tissue_key()
        engine, precision = self.engine_choice()
        worker = Worker(run_prediction, view.reader, model, self.device.currentText(), doc.mpp, doc.tissue(key), key,
                        doc.project, doc.slide_id, self.batch_size, engine=engine, precision=precision,
                        pool=self._pool)
        worker.partial.connect(lambda report, w=worker, v=view: self._on_report(w, v, report))
        worker.finished.connect(lambda result, w=worker, v=view: self._on_finished(w, v, result))
        worker.cancelled.connect(lambda w=worker, v=view: self._on_cancelled(w, v))
        worker.failed.connect(lambda err, w=worker, v=view: self._on_failed(w, v, err))
        worker.done.connect(lambda w=worker: self._on_done(w))
        view.destroyed.connect(worker.cancel)  # however the view goes, its run stops
        self.worker, self.run_view, self.updates, self._pending = worker, view, [], []
        self._offscreen = self._engine_note = None
        shown = doc.prediction.grid is not None and doc.prediction.grid.done.any()
        self._before = (doc.prediction.state, doc.prediction.message) if shown else None
        doc.prediction.state = PredictionState.RUNNING
        doc.prediction.message = (f"Predicting with “{model_label(model)[0]}”…"
                                  + (" The heatmap shown is the previous one until this run ends." if shown else ""))
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
        if isinstance(report, EngineChosen):
            if self._current(worker, view):
                self._engine_note = report.why
                if report.why:
                    self.progress_label.setText(report.why)
            return
        if isinstance(report, TissueFound):
            if not sip.isdeleted(view):
                view.document.keep_tissue(report.key, report.tissue)
            return
        if not self._current(worker, view):
            return
        if isinstance(report, ProbabilityGrid):  # the empty grid: cells fill in as batches come
            if self._before is not None:
                self._offscreen = report  # the previous heatmap stays on screen until this one is complete
                return
            view.document.prediction.grid, view.document.prediction.path = report, None
            view.heatmap_layer.set_grid(report)
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
        grid = self._offscreen if self._offscreen is not None else (
            view.document.prediction.grid if view is not None and not sip.isdeleted(view) else None)
        if not parts or view is None or sip.isdeleted(view) or grid is None:
            return
        self._last_apply = time.perf_counter()
        last = parts[-1]
        merged = PartialResult(np.concatenate([p.rows for p in parts]), np.concatenate([p.cols for p in parts]),
                               np.concatenate([p.probs for p in parts]), last.done, last.total, last.tiles_per_s)
        grid.probs[merged.rows, merged.cols] = merged.probs
        grid.predicted[merged.rows, merged.cols] = True
        if self._offscreen is None:
            view.heatmap_layer.update_cells(merged)
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
        state = view.document.prediction
        state.grid, state.path, state.state = grid, path, PredictionState.DONE
        where = f"saved in the project ({path.name})" if path else "not saved (the slide is in no project)"
        state.message = f"Done: {int(grid.done.sum()):,} tiles in {_clock(grid.seconds)}, {where}."
        if self._engine_note:  # Automatic took ONNX Runtime: say why (MXNet FP32 in Engine insists on MXNet)
            state.message += f" {self._engine_note}; choose MXNet · FP32 in Engine to insist on MXNet."
        view.heatmap_layer.set_grid(grid)
        _set_progress(self.progress, 1, 1)
        self.progress_label.setText(f"{int(grid.done.sum()):,} tiles · {_clock(grid.seconds)}")
        self._ended(view, "finished")

    def _on_cancelled(self, worker, view) -> None:
        if not self._current(worker, view):
            return
        self._apply_timer.stop()
        self._apply_pending()
        state = view.document.prediction
        if self._before is not None:  # the previous heatmap never left the screen: it stays, as it was
            state.state, message = self._before
            done = int(self._offscreen.done.sum()) if self._offscreen is not None else 0
            state.message = f"Cancelled after {done:,} tiles: the previous heatmap is kept. {message or ''}".strip()
        elif state.grid is not None:
            state.grid.complete = False
            done = int(state.grid.done.sum())
            state.state = PredictionState.PARTIAL
            state.message = f"Cancelled: a partial heatmap ({done:,} tiles), not saved."
        else:
            state.state, state.message = PredictionState.NONE, "Cancelled before any tile was predicted."
        _set_progress(self.progress, 0, 1)
        self._ended(view, "cancelled")

    def _on_failed(self, worker, view, err: Exception) -> None:
        if not self._current(worker, view):
            return
        self._apply_timer.stop()
        self._pending.clear()
        message = str(err) if isinstance(err, BiopsiaError) else f"Unexpected error while predicting: {err!r}"
        state = view.document.prediction
        if state.grid is not None and state.state == PredictionState.RUNNING and self._before is None:
            state.grid.complete = False
        if self._before is not None:
            message += " The previous heatmap is kept."
        state.state, state.message = PredictionState.FAILED, message
        _set_progress(self.progress, 0, 1)
        self.progress_label.setText("")
        self._ended(view, "failed")

    def _ended(self, view, how: str) -> None:
        self.worker = self.run_view = self._offscreen = self._before = None
        self._set_running(False)
        if view is self.view:
            self._show_state(view)
        self.grid_changed.emit(view)
        self.run_ended.emit(how)

    def _on_done(self, worker) -> None:
        if not sip.isdeleted(self) and worker is self.worker:  # the run's view was closed
            self.worker = self.run_view = self._offscreen = self._before = None
            self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self.device.setEnabled(not running)  # asking the model thread now would wait for the run
        self._show_running_state()

    def _show_running_state(self) -> None:
        self.start_button.setEnabled(not self.running and self.view is not None and self.model_path() is not None)
        self.model.setEnabled(not self.running)

    def _show_state(self, view) -> None:
        state = view.document.prediction
        if view is self.view:
            failed = state.state == PredictionState.FAILED
            text = html.escape(state.message or "No prediction for this slide yet: choose a model and start.")
            self.status.setText(error_html(text) if failed else text)

    # -- the heatmap's threshold (shared with the comparison) ----------------------------------
    def threshold(self) -> float:
        return self.heatmap.threshold()

    def set_threshold(self, value: float, source: str | None = None) -> None:
        """Use exactly ``value`` as the heatmap's and the comparison's threshold; ``source`` says why."""
        self.heatmap.set_threshold(value, source)


def _set_progress(bar: QProgressBar, value: int, maximum: int) -> None:
    """Move a progress bar with a queued repaint (``setValue`` repaints at once, ~10 ms on the GUI thread)."""
    bar.setUpdatesEnabled(False)
    bar.setRange(0, maximum)
    bar.setValue(value)
    bar.setUpdatesEnabled(True)
    bar.update()


def _clock(seconds: float) -> str:
    """``"0:27"``, ``"12:05"``, ``"1:02:05"``."""
    seconds = int(round(max(seconds, 0)))
    h, m, s = seconds // 3600, seconds % 3600 // 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
