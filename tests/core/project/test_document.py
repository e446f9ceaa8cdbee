"""The per-slide document: one per open tab, read by every dock, dropped on close; nothing hung on the view."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import Cancelled, ModelError
from core.inference import predict, run
from core.inference.predict import PartialResult
from core.project.document import (TISSUE_MASKS_KEPT, PredictionState, SlideDocument, SlidePrediction,
                                   open_marks)
from core.project.model import Project
from core.slide import ArrayReader, open_slide
from core.tiles.tissue import detect_tissue
from gui.docks import prediction_dock
from gui.slide_view import SlideView
from gui.tile_loader import TileMemory

TIMEOUT = 30_000


# -- the document, without Qt -------------------------------------------------------------------------
def test_a_new_document_has_no_prediction_and_its_state_is_the_enum():
    doc = SlideDocument(ArrayReader(np.full((64, 64, 3), 255, np.uint8), mpp=(0.5, 0.5)))
    assert doc.prediction == SlidePrediction() and doc.prediction.state is PredictionState.NONE
    assert doc.slide_id is None and doc.session is None and doc.tile_plan_key is None
    assert all(isinstance(state, PredictionState) for state in PredictionState)
    assert {s.value for s in PredictionState} == {"none", "loading", "saved", "running", "done", "partial", "failed"}


def test_tissue_masks_are_kept_per_resolution_and_bounded(synthetic_slide):
    with open_slide(synthetic_slide.slide_path) as reader:
        doc = SlideDocument(reader, mpp=reader.mpp)
        mask = detect_tissue(reader)
        assert doc.tissue() is None
        doc.keep_tissue(doc.tissue_key(), mask)
        assert doc.tissue() is mask
        doc.set_mpp((9.0, 9.0), "user")
        assert doc.tissue() is None and doc.mpp_source == "user"  # another µm/px: another mask
        keys = [(str(reader.path), (float(i), float(i))) for i in range(TISSUE_MASKS_KEPT + 2)]
        for key in keys:
            doc.keep_tissue(key, mask)
        assert [doc.tissue(key) for key in keys[:2]] == [None, None]
        assert all(doc.tissue(key) is mask for key in keys[2:])


def test_open_marks_are_those_of_the_projects_open_slides(tmp_path, slide_pair):
    project = Project.create(tmp_path / "p", "P")
    other = Project.create(tmp_path / "q", "Q")
    docs = []
    for proj, synth in ((project, slide_pair[0]), (other, slide_pair[1])):
        reader = ArrayReader(np.full((32, 32, 3), 255, np.uint8))
        entry = proj.add_slide(synth.slide_path)
        docs.append(SlideDocument(reader, proj.load_annotations(entry.id), project=proj, entry=entry))
    docs.append(SlideDocument(ArrayReader(np.full((32, 32, 3), 255, np.uint8))))  # in no project
    assert list(open_marks(docs, project)) == [docs[0].entry.id]
    assert list(open_marks(docs, other)) == [docs[1].entry.id]


# -- one resolve-and-check per run ----------------------------------------------------------------------
def test_a_run_checks_its_model_once_before_reading_a_pixel(slide_pair, small_model, monkeypatch):
    checks = []
    real_check = predict.check_model_for_slide
    monkeypatch.setattr(predict, "check_model_for_slide", lambda *a: (checks.append(a), real_check(*a))[1])
    stop = []

    def partial(report):
        if isinstance(report, PartialResult):
            stop.append(True)  # one batch is enough

    with open_slide(slide_pair[0].slide_path) as reader:
        grid, path = run.run_prediction(reader, small_model, "cpu", None, None, ("key",), batch_size=8,
                                        partial=partial, should_stop=lambda: bool(stop))
        assert len(checks) == 1 and path is None and not grid.complete and grid.done.any()

        def no_tissue(*_a, **_k):
            raise AssertionError("tissue was looked for before the model was checked")

        monkeypatch.setattr(run, "detect_tissue", no_tissue)
        with pytest.raises(ModelError, match="µm/px"):  # far too coarse for the model: refused at once
            run.run_prediction(reader, small_model, "cpu", (50.0, 50.0), None, ("key",))
        assert len(checks) == 2



def test_an_automatic_engine_is_made_definite_and_reported_before_any_tile(slide_pair, small_model, monkeypatch):
    reports = []

    def partial(report):
        reports.append(report)
        if isinstance(report, PartialResult):
            stop.append(True)

    stop = []
    with open_slide(slide_pair[0].slide_path) as reader:  # no GPU here: MXNet, and nothing to explain
        grid, _ = run.run_prediction(reader, small_model, "cpu", None, None, ("key",), batch_size=8,
                                     partial=partial, should_stop=lambda: bool(stop), engine="auto")
        assert reports[0] == run.EngineChosen("mxnet", "fp32", None)
        assert "engine" not in grid.model  # MXNet FP32, as a run asked for by name records it
        # where the choice falls on ONNX Runtime, the run computes with it and says why, first of all
        why = "NVIDIA H200 (compute capability 9.0) has no MXNet kernels"
        monkeypatch.setattr(run, "choose_engine", lambda engine, device, info, precision: ("onnx", why))
        reports.clear(), stop.clear()
        grid, _ = run.run_prediction(reader, small_model, "cpu", None, None, ("key",), batch_size=8,
                                     partial=partial, should_stop=lambda: bool(stop), engine="auto")
        assert reports[0] == run.EngineChosen("onnx", "fp32", why)
        assert (grid.model["engine"], grid.model["precision"]) == ("onnx", "fp32") and grid.done.any()

# -- the window: documents owned, read by the docks, dropped on close -------------------------------------
def test_the_docks_read_the_views_document(qtbot, window, open_view, slide_pair):
    view = open_view(window, slide_pair[0].slide_path)
    doc = view.document
    assert window.documents == [doc] and doc.reader is view.reader and doc.store is view.annotations
    assert doc.entry is not None and doc.session is not None and doc.mpp == view.mpp
    for dock in (window.prediction_dock, window.evaluation_dock, window.tiles_dock):
        assert dock.view is view
    qtbot.waitUntil(lambda: doc.prediction.state is not PredictionState.LOADING, timeout=TIMEOUT)
    assert isinstance(doc.prediction.state, PredictionState)
    split = window.set_side_by_side(True)
    assert split.secondary.document is doc and split.secondary.annotations is doc.store


def test_the_tiles_docks_tissue_is_the_one_a_prediction_uses(qtbot, window, open_view, slide_pair, tmp_path,
                                                              monkeypatch):
    view = open_view(window, slide_pair[0].slide_path)
    window.tiles_dock.raise_()  # it computes while someone looks at it
    qtbot.waitUntil(window.tiles_dock.is_current, timeout=TIMEOUT)
    tissue = view.document.tissue()
    assert tissue is not None and view.document.tile_plan is window.tiles_dock.plan
    given = []

    def fake_run(reader, model, device, mpp, tissue, key, *args, partial=None, should_stop=None, **_engine):
        given.append((tissue, key))
        raise Cancelled("stopped by the test")

    monkeypatch.setattr(prediction_dock, "run_prediction", fake_run)
    dock = window.prediction_dock
    dock.set_model(tmp_path)  # no model there: the fake never reads it
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        dock.start()
    assert ended.args == ["cancelled"] and given == [(tissue, view.document.tissue_key())]
    assert view.document.prediction.state is PredictionState.NONE


def test_closing_a_tab_drops_its_document(qtbot, window, open_view, slide_pair):
    first = open_view(window, slide_pair[0].slide_path)
    second = open_view(window, slide_pair[1].slide_path)
    assert window.documents == [first.document, second.document]
    session, closes = first.document.session, []
    close = session.close
    session.close = lambda timeout=10.0: closes.append(timeout) or close(timeout)
    window.close_tab(window.tabs.indexOf(first))
    assert window.documents == [second.document] and window.current_view() is second
    assert len(closes) == 1  # its marks were written and autosaving stopped
    window.close_tab(window.tabs.indexOf(second))
    assert window.documents == []


def test_nothing_is_set_on_a_view_from_outside(qtbot, window, open_view, slide_pair):
    """The window and the docks keep their per-slide state in the document, never as attributes of the view."""
    bare = SlideView(ArrayReader(np.full((64, 64, 3), 255, np.uint8)), TileMemory(16 * 1024 * 1024))
    qtbot.addWidget(bare)
    own = set(vars(bare))
    view = open_view(window, slide_pair[0].slide_path)
    window.tiles_dock.raise_()
    qtbot.waitUntil(window.tiles_dock.is_current, timeout=TIMEOUT)
    window.prediction_dock.raise_()
    window.evaluation_dock.raise_()
    window.set_side_by_side(True)
    window.set_side_by_side(False)
    assert set(vars(view)) - own == set()
    bare.close_view()
