"""The Prediction dock offscreen: a real model over a synthetic slide, the GUI kept responsive, runs kept.

The model is conftest's ``small_model`` (trained on ``slide_pair[1]``); predictions run on ``slide_pair[0]``,
a slide it never saw, whose tumour is known from its synthetic ground truth.
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import numpy as np
import pytest
from PyQt5.QtCore import Qt, QTimer

from core.annotations.formats import read_annotations
from core.demo import DEMO_MODEL
from core.evaluation.compare import truth_for_grid
from core.inference import run
from core.inference.predict import PartialResult, ProbabilityGrid, prediction_path, saved_predictions
from core.project.document import PredictionState
from projects import marked_project

TIMEOUT = 120_000


class Heartbeat:
    """A 10 ms timer on the GUI thread recording the gaps between its ticks (event-loop latency)."""

    def __init__(self):
        self.gaps: list[float] = []
        self._last = time.perf_counter()
        self.timer = QTimer(interval=10, timeout=self._tick)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self._last)
        self._last = now

    def stop(self) -> "Heartbeat":
        self.timer.stop()
        return self

    def p99_ms(self) -> float:
        return float(np.percentile(self.gaps, 99)) * 1000


class Gate:
    """Holds a run on the model thread after its first batch until the test lets it go.

    What the window shows in the middle of a run is then checked at a moment that exists on any
    machine, however fast: the first batch is in, the rest is not. ``threads`` records where the
    batches were reported from (never the GUI thread).
    """

    def __init__(self, monkeypatch):
        self.reached, self.released = threading.Event(), threading.Event()
        self.threads: set[int] = set()
        real = run.predict_slide

        def gated(*args, partial, **kwargs):
            def report(result):
                partial(result)
                if isinstance(result, PartialResult):
                    self.threads.add(threading.get_ident())
                    if result.done < result.total and not self.released.is_set():
                        self.reached.set()
                        if not self.released.wait(60):
                            raise RuntimeError("the test never released the run")
            return real(*args, partial=report, **kwargs)
        monkeypatch.setattr(run, "predict_slide", gated)

    def wait_held(self, qtbot, dock) -> tuple[int, int]:
        """Wait until the run is held and its first batch is on the heatmap; returns that update's (done, total)."""
        qtbot.waitUntil(lambda: self.reached.is_set() and len(dock.updates) > 0, timeout=TIMEOUT)
        return dock.updates[-1]

    def release(self) -> None:
        self.released.set()


def assert_updates_in_order(updates, grid) -> None:
    """Heatmap updates come in order, each a batch boundary of the same run, and the last is the whole grid."""
    done = [d for d, _ in updates]
    assert done == sorted(set(done)) and {t for _, t in updates} == {int(grid.predicted.sum())}
    assert done[-1] == int(grid.done.sum()) == int(grid.predicted.sum())


def make_project(folder, synth, model=None, fully_annotated=True):
    """A project holding the slide with its tumour marks, and ``model`` copied to models/<name>/best."""
    project, (slide_id,) = marked_project(folder, [synth], "Prediction test", fully_annotated=fully_annotated)
    if model is not None:
        shutil.copytree(model, folder / "models" / "small" / "best")
    return project, slide_id


def open_for_prediction(qtbot, window, project, path):
    window.use_project(project, open_slides=False)
    with qtbot.waitSignal(window.slide_opened, timeout=TIMEOUT) as opened:
        window.open_slide(path)
    view = opened.args[0]
    window.actions["predict"].trigger()  # Model ▸ Predict… raises the dock
    dock = window.prediction_dock
    qtbot.waitUntil(lambda: view.document.prediction.state != PredictionState.LOADING, timeout=TIMEOUT)
    return view, dock


def start(qtbot, dock, batch_size=16):
    dock.device.setCurrentText("cpu")
    dock.batch_size = batch_size
    assert dock.start_button.isEnabled()
    qtbot.mouseClick(dock.start_button, Qt.LeftButton)
    assert dock.running and dock.cancel_button.isEnabled() and not dock.start_button.isEnabled()


def test_predicts_progressively_saves_and_shows_again_on_reopening(qtbot, window, slide_pair, small_model, tmp_path,
                                                                  monkeypatch):
    synth = slide_pair[0]
    project, slide_id = make_project(tmp_path / "project", synth, small_model)
    view, dock = open_for_prediction(qtbot, window, project, synth.slide_path)
    assert dock.model.count() == 2 and dock.model.currentText().startswith("small · 64 px at 2 µm/px · AUC ")
    assert view.document.prediction.grid is None and "No prediction" in dock.status.text()

    gate = Gate(monkeypatch)
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        start(qtbot, dock)
        done, total = gate.wait_held(qtbot, dock)  # filled in before the end
        assert 0 < done < total and int(view.document.prediction.grid.done.sum()) == done
        gate.release()

    assert ended.args == ["finished"], dock.status.text()
    grid = view.document.prediction.grid
    assert grid.complete and grid.done.sum() == grid.predicted.sum() > 100
    assert len(dock.updates) >= 2
    assert_updates_in_order(dock.updates, grid)
    assert "tiles/s" in dock.progress_label.text() or "tiles ·" in dock.progress_label.text()
    truth = truth_for_grid(grid, read_annotations(synth.geojson_path).annotations)
    inside, outside = grid.probs[grid.done & (truth == 1)], grid.probs[grid.done & (truth == 0)]
    assert inside.mean() - outside.mean() > 0.3, (inside.mean(), outside.mean())

    saved = prediction_path(project, slide_id, grid.model)
    assert saved_predictions(project, slide_id) == [saved] and "saved in the project" in dock.status.text()
    assert np.array_equal(ProbabilityGrid.load(saved).probs, grid.probs, equal_nan=True)

    # closed and opened again: the saved grid is shown, the model is not run
    monkeypatch.setattr(run, "predict_slide", lambda *a, **k: pytest.fail("predicted again"))
    window.close_tab(window.tabs.indexOf(view))
    view, dock = open_for_prediction(qtbot, window, project, synth.slide_path)
    assert view.document.prediction.state == PredictionState.SAVED and view.document.prediction.path == saved
    assert np.array_equal(view.document.prediction.grid.probs, grid.probs, equal_nan=True)
    assert view.document.prediction.grid.model["name"] == "small" and "Saved prediction" in dock.status.text()
    assert view.heatmap_layer.grid is view.document.prediction.grid


def test_the_gui_stays_responsive_while_predicting(qtbot, window, slide_pair, small_model, tmp_path, monkeypatch):
    """While a run fills the heatmap the user keeps panning, and the window answers at once.

    Held after its first batch, the run is mid-way on any machine: the heatmap shows that batch and a pan
    moves the view, so the GUI thread is free while the model works (the batches are reported from
    another thread). Then the run goes on under more panning, and every batch reaches the heatmap in order.
    The event-loop latency is printed (a figure, not a verdict: it depends on the machine).
    """
    synth = slide_pair[0]
    project, slide_id = make_project(tmp_path / "project", synth)
    finer = tmp_path / "at-1um"  # the same network on 1 µm/px tiles: 4x the tiles
    shutil.copytree(small_model, finer)
    meta = json.loads((finer / "model.json").read_text(encoding="utf-8"))
    meta["mpp"] = 1.0
    (finer / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    view, dock = open_for_prediction(qtbot, window, project, synth.slide_path)
    dock.set_model(finer)
    gate = Gate(monkeypatch)
    beat = Heartbeat()
    steps = 0
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        start(qtbot, dock)
        done, total = gate.wait_held(qtbot, dock)
        assert 0 < done < total and int(view.document.prediction.grid.done.sum()) == done
        before = (view.viewport.l0_cx, view.viewport.l0_cy)
        view.pan_by(40, 25)  # the model thread is busy with the run, the window is not
        assert (view.viewport.l0_cx, view.viewport.l0_cy) != before and dock.running
        gate.release()
        while dock.running:  # the user pans back and forth all along
            qtbot.wait(15)
            sign = 1 if steps // 60 % 2 == 0 else -1
            view.pan_by(7 * sign, 3 * sign)
            steps += 1
    beat.stop()
    assert ended.args == ["finished"], dock.status.text()
    grid = view.document.prediction.grid
    assert threading.get_ident() not in gate.threads
    assert grid.done.sum() > 500 and len(dock.updates) >= 2
    assert_updates_in_order(dock.updates, grid)
    gaps = np.array(beat.gaps) * 1000
    print(f"\n{grid.done.sum()} tiles in {grid.seconds:.2f} s, {len(dock.updates)} heatmap updates, {steps} pans; "
          f"event-loop gaps over {gaps.size} ticks: median {np.median(gaps):.1f} ms, p99 {beat.p99_ms():.1f} ms, "
          f"worst {gaps.max():.1f} ms")


def test_cancel_keeps_a_partial_heatmap_and_saves_nothing(qtbot, window, slide_pair, small_model, tmp_path,
                                                          monkeypatch):
    synth = slide_pair[0]
    project, slide_id = make_project(tmp_path / "project", synth, small_model)
    view, dock = open_for_prediction(qtbot, window, project, synth.slide_path)
    gate = Gate(monkeypatch)
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        start(qtbot, dock, batch_size=4)
        gate.wait_held(qtbot, dock)
        qtbot.mouseClick(dock.cancel_button, Qt.LeftButton)
        gate.release()
    assert ended.args == ["cancelled"]
    grid = view.document.prediction.grid
    assert not grid.complete and 0 < grid.done.sum() < dock.updates[-1][1] and dock.updates[-1][0] < dock.updates[-1][1]
    assert view.document.prediction.state == PredictionState.PARTIAL and "partial heatmap" in dock.status.text()
    assert "not saved" in dock.status.text()
    assert saved_predictions(project, slide_id) == []
    assert dock.start_button.isEnabled() and not dock.cancel_button.isEnabled()


def test_closing_the_slide_mid_run_is_safe(qtbot, window, slide_pair, small_model, tmp_path, monkeypatch):
    synth = slide_pair[0]
    project, slide_id = make_project(tmp_path / "project", synth, small_model)
    view, dock = open_for_prediction(qtbot, window, project, synth.slide_path)
    gate = Gate(monkeypatch)
    start(qtbot, dock, batch_size=4)
    worker = dock.worker
    gate.wait_held(qtbot, dock)
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT):
        window.close_tab(window.tabs.indexOf(view))
        assert worker.is_cancelled and dock.run_view is None
        gate.release()
    qtbot.wait(200)  # late reports, if any, find no view
    assert not dock.running and dock.view is None and "No slide open" in dock.status.text()
    assert saved_predictions(project, slide_id) == []
    assert window.errors == []
    # the dock still works: open it again and run to the end
    view, dock = open_for_prediction(qtbot, window, project, synth.slide_path)
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        start(qtbot, dock, batch_size=64)
    assert ended.args == ["finished"] and view.document.prediction.grid.complete


def test_a_model_finer_than_the_slide_or_unreadable_is_refused(qtbot, window, slide_pair, small_model, tmp_path):
    synth = slide_pair[0]  # 0.5 µm/px
    project, slide_id = make_project(tmp_path / "project", synth)
    fine, broken = tmp_path / "fine", tmp_path / "broken"
    shutil.copytree(small_model, fine)
    meta = json.loads((fine / "model.json").read_text(encoding="utf-8"))
    meta["mpp"] = 0.25
    (fine / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    shutil.copytree(small_model, broken)
    (broken / "model.json").write_text("{not json", encoding="utf-8")
    view, dock = open_for_prediction(qtbot, window, project, synth.slide_path)
    assert dock.model.count() == 1  # only Browse…: the project has no model yet

    dock.set_model(fine)
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        start(qtbot, dock)
    assert ended.args == ["failed"]
    text = dock.status.text()
    assert "0.5 µm/px" in text and "0.25 µm/px tiles, finer than this scan" in text and "b71c1c" in text
    assert view.document.prediction.grid is None and saved_predictions(project, slide_id) == []

    dock.set_model(broken)
    assert "(unreadable)" in dock.model.currentText()
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        start(qtbot, dock)
    assert ended.args == ["failed"] and "model description is unreadable" in dock.status.text()
    assert dock.start_button.isEnabled()


def test_the_demo_model_agrees_with_the_doctors_in_the_window(qtbot, window, slide_pair, tmp_path):
    """The demo model's promise, from the window: on a slide the model never saw, the Evaluation panel shows
    sensitivity and specificity of at least 0.9."""
    synth = slide_pair[0]
    project, _ = make_project(tmp_path / "project", synth, None)
    view, dock = open_for_prediction(qtbot, window, project, synth.slide_path)
    dock.set_model(DEMO_MODEL)
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        start(qtbot, dock, batch_size=64)
    assert ended.args == ["finished"], dock.status.text()
    evaluation = window.evaluation_dock
    with qtbot.waitSignal(evaluation.evaluated, timeout=TIMEOUT, check_params_cb=lambda c: c is not None):
        window.actions["evaluate"].trigger()
    metrics = evaluation.comparison.metrics
    assert metrics.counts.total > 150 and metrics.counts.tp + metrics.counts.fn > 25
    assert metrics.sensitivity >= 0.9 and metrics.specificity >= 0.9, metrics.as_dict()
    shown = {name: item.text() for name, item in evaluation.cells.items()}
    assert str(metrics.counts.tp) in shown.values() and str(metrics.counts.tn) in shown.values()


def test_the_engine_box_offers_what_the_model_holds_and_onnx_runtime_predicts(qtbot, window, slide_pair,
                                                                              small_model, tmp_path, monkeypatch):
    synth = slide_pair[0]
    project, _ = make_project(tmp_path / "project", synth, small_model)  # trained: model.onnx made at the end
    view, dock = open_for_prediction(qtbot, window, project, synth.slide_path)
    items = dock.engine.model()
    offered = {dock.engine.itemText(i): items.item(i).isEnabled() for i in range(dock.engine.count())}
    assert offered == {"Automatic": True, "MXNet · FP32": True, "MXNet · INT8 (oneDNN)": False,
                       "ONNX Runtime · FP32": True}
    assert dock.engine_choice() == ("auto", "fp32")  # the CLI's --engine auto is the window's default too
    assert "biopsia quantize" in items.item(2).toolTip()  # says how to add what is missing
    dock.engine.setCurrentIndex(3)
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        start(qtbot, dock)
    assert ended.args == ["finished"], dock.status.text()
    grid = view.document.prediction.grid
    assert grid.complete and (grid.model["engine"], grid.model["precision"]) == ("onnx", "fp32")
    # Automatic, where it finds a GPU MXNet has no kernels for: ONNX Runtime computes, and the panel says why,
    # under the Engine box before the run (the device line speaks for MXNet) and in the run's last line
    from core.inference import engines

    why = "NVIDIA H200 (compute capability 9.0) has no MXNet kernels: predicting with ONNX Runtime on it"
    assert not dock.engine_label.isVisible()  # no GPU here: Automatic is MXNet, nothing to add
    monkeypatch.setattr(run, "choose_engine", lambda engine, device, info, precision: ("onnx", why))
    monkeypatch.setattr(engines, "choose_engine", lambda engine, device, info, precision="fp32": ("onnx", why))
    dock.engine.setCurrentIndex(0)
    assert dock.engine_label.isVisible() and dock.engine_label.text() == f"Automatic: {why}"
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        start(qtbot, dock)
    assert ended.args == ["finished"], dock.status.text()
    assert view.document.prediction.grid.model["engine"] == "onnx"
    assert why in dock.status.text() and "MXNet · FP32 in Engine" in dock.status.text()
    dock.engine.setCurrentIndex(1)  # MXNet by name: nothing to say under the box
    assert not dock.engine_label.isVisible()
    monkeypatch.undo()
    # a model without model.onnx: ONNX Runtime cannot be chosen, and the box falls back to MXNet FP32
    bare = tmp_path / "bare"
    shutil.copytree(small_model, bare)
    doc = json.loads((bare / "model.json").read_text())
    doc["files"].pop("model.onnx")
    doc.pop("onnx", None)
    (bare / "model.json").write_text(json.dumps(doc))
    (bare / "model.onnx").unlink()
    dock.set_model(bare)
    dock.engine.setCurrentIndex(3)
    dock.set_model(bare)
    assert not items.item(3).isEnabled() and "biopsia export-onnx" in items.item(3).toolTip()
    assert dock.engine_choice() == ("auto", "fp32")  # falls back to Automatic: MXNet FP32 at worst
