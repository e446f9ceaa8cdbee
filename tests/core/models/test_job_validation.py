"""core.models.training_job: validation held out of the Train slides; the Test slides test the kept model."""

from __future__ import annotations

import json

import pytest

from core.errors import DatasetError
from core.models.train import TrainResult
from core.models.training_job import Planned, OnTestSlides, Validation, check_counts, new_job, run_job
from core.tiles.grid import TileSpec
from projects import marked_project

SPEC = TileSpec(32, 4.0)  # about 200 labelled tiles a slide: a one-epoch run takes seconds


def counts(train=(10, 10), test=(0, 0)):
    return {split: {"Tumour": t, "Non-tumour": n} for split, (t, n) in (("train", train), ("test", test))}


def test_new_job_needs_a_train_slide_but_no_test_slide(tmp_path):
    class FakeProject:
        folder = tmp_path

    job = new_job(FakeProject, {"a": (True, "Train")}, "one", SPEC)
    assert (job.slide_ids, job.test_ids) == (["a"], [])  # validation is held out of the Train slide
    job = new_job(FakeProject, {"a": (True, "Train"), "b": (True, "Train")}, "two", SPEC)
    assert job.test_ids == []
    with pytest.raises(DatasetError, match="Give at least one slide the role Train"):
        new_job(FakeProject, {"a": (True, "Test"), "b": (False, "Train")}, "m", SPEC)


def test_check_counts_can_leave_the_held_out_validation_to_later():
    check_counts(counts(), ("train",))
    with pytest.raises(DatasetError, match="The test slides have no Tumour tiles"):
        check_counts(counts())
    with pytest.raises(DatasetError, match="The training slides have no Non-tumour tiles"):
        check_counts(counts(train=(5, 0)), ("train",))


def run(project, choices, name):
    job = new_job(project, choices, name, SPEC, epochs=1, batch_size=64, device="cpu")
    reports = []
    result = run_job(job, reports.append, lambda: False)
    return job, result, reports


def test_a_one_slide_project_trains_validating_on_a_share_of_its_tiles(tmp_path, slide_pair):
    project, (a,) = marked_project(tmp_path / "project", slide_pair[:1], "One slide")
    job, result, reports = run(project, {a: (True, "Train")}, "one")

    assert isinstance(result, TrainResult) and result.epochs_run == 1
    (validation,) = [r for r in reports if isinstance(r, Validation)]
    assert not validation.whole
    assert "held out for validation: one slide gave all of the Train slide's tiles" in validation.text
    assert "the model's threshold may be optimistic" in validation.text
    planned = next(r for r in reports if isinstance(r, Planned))
    tiles = planned.counts["train"]["Tumour"] + planned.counts["train"]["Non-tumour"]
    info = json.loads((result.bundle / "model.json").read_text(encoding="utf-8"))
    val = info["training"]["val_tiles"]
    assert val["Tumour"] > 0 and val["Non-tumour"] > 0
    assert sum(val.values()) == validation.tiles == pytest.approx(0.2 * tiles, abs=3)  # a stratified 20 %
    assert sum(info["training"]["train_tiles"].values()) + validation.tiles == tiles


def test_two_train_slides_validate_on_one_of_them_whole(tmp_path, slide_pair):
    project, (a, b) = marked_project(tmp_path / "project", slide_pair, "Two slides")
    job, result, reports = run(project, {a: (True, "Train"), b: (True, "Train")}, "two")

    (validation,) = [r for r in reports if isinstance(r, Validation)]
    assert validation.whole and "of 1 whole slides (of 2) held out of the Train slides' tiles" in validation.text
    assert not [r for r in reports if isinstance(r, OnTestSlides)]  # no Test slide, no test
    planned = next(r for r in reports if isinstance(r, Planned))
    info = json.loads((result.bundle / "model.json").read_text(encoding="utf-8"))
    per_slide = {tuple(reversed(v)) for v in planned.per_slide.values()}  # (non-tumour, tumour) per slide
    assert tuple(info["training"]["val_tiles"][c] for c in ("Non-tumour", "Tumour")) in per_slide


def test_test_slides_never_validate_the_kept_model_is_tested_on_them(tmp_path, slide_pair):
    project, (a, b) = marked_project(tmp_path / "project", slide_pair, "Two slides")
    job, result, reports = run(project, {a: (True, "Train"), b: (True, "Test")}, "given")
    (validation,) = [r for r in reports if isinstance(r, Validation)]
    planned = next(r for r in reports if isinstance(r, Planned))
    train_tiles = sum(planned.counts["train"].values())
    assert validation.tiles == pytest.approx(0.2 * train_tiles, abs=3)  # out of the one Train slide
    info = json.loads((result.bundle / "model.json").read_text(encoding="utf-8"))
    assert sum(info["training"]["val_tiles"].values()) + sum(info["training"]["train_tiles"].values()) == train_tiles
    (tested,) = [r for r in reports if isinstance(r, OnTestSlides)]
    assert reports.index(tested) == len(reports) - 2 and reports[-1] is result  # tested after training
    test = tested.metrics
    assert test["tiles"] == sum(planned.counts["test"].values())
    assert test["counts"] == planned.counts["test"] and test["model"] == str(result.bundle)
    assert test["threshold_source"] == "model" and 0 <= test["auc"] <= 1


def test_a_benign_test_slide_is_tested_not_refused(tmp_path, slide_pair):
    """A Test slide without tumour (a benign slide) gives specificity; it never made the run fail."""
    project, (a, b) = marked_project(tmp_path / "project", slide_pair, "Benign test slide")
    from core.annotations import AnnotationStore

    project.save_annotations(b, AnnotationStore([], project.load_annotations(b).classes))
    project.update_settings(b, fully_annotated=True)
    job = new_job(project, {a: (True, "Train"), b: (True, "Test")}, "benign", SPEC, epochs=1, batch_size=64,
                  device="cpu")
    reports = []
    result = run_job(job, reports.append, lambda: False)
    (tested,) = [r for r in reports if isinstance(r, OnTestSlides)]
    assert tested.metrics["counts"]["Tumour"] == 0 and tested.metrics["specificity"] is not None
    assert result.bundle is not None
