"""core.models.training_job without Qt: the checks that say what to fix, and one tiny real run on the slide pair."""

from __future__ import annotations

import pytest

from core.errors import DatasetError
from core.project.layout import MODELS_DIR
from core.tiles.grid import TileSpec
from core.models.train import ProgressEvent, TrainResult
from core.models.training_job import Planned, Stage, best_so_far, check_counts, new_job, run_job
from projects import marked_project

SPEC = TileSpec(32, 4.0)  # about 200 labelled tiles a slide: a one-epoch run takes seconds


@pytest.fixture
def project(tmp_path, slide_pair):
    """Both slides of the pair, fully annotated, their tumour marks from the synthetic ground truth."""
    project, _ = marked_project(tmp_path / "project", slide_pair, "Job test")
    return project


def counts(train=(10, 10), test=(10, 10)):
    return {split: {"Tumour": t, "Non-tumour": n} for split, (t, n) in (("train", train), ("test", test))}


@pytest.mark.parametrize("bad, message", [
    (dict(train=(0, 5)), "The training slides have no Tumour tiles: mark tumour regions on them"),
    (dict(train=(5, 0)), "The training slides have no Non-tumour tiles: mark Benign regions or tick fully annotated"),
    (dict(test=(0, 5)), "The test slides have no Tumour tiles"),
    (dict(test=(5, 0)), "The test slides have no Non-tumour tiles"),
])
def test_check_counts_says_which_split_lacks_which_class(bad, message):
    check_counts(counts())
    with pytest.raises(DatasetError, match=message):
        check_counts(counts(**bad))


def test_new_job_needs_a_project_a_train_slide_and_a_fresh_plain_name(tmp_path):
    class FakeProject:
        folder = tmp_path

    both = {"a": (True, "Train"), "b": (True, "Test")}
    with pytest.raises(DatasetError, match="No project"):
        new_job(None, both, "m", SPEC)
    with pytest.raises(DatasetError, match="Tick the slides"):
        new_job(FakeProject, {"a": (False, "Train")}, "m", SPEC)
    with pytest.raises(DatasetError, match="the role Train"):
        new_job(FakeProject, {"a": (True, "Test"), "b": (False, "Train")}, "m", SPEC)
    # one slide trains (validation is held out of it); Test slides are optional
    one = new_job(FakeProject, {"a": (True, "Train"), "c": (False, "Test")}, "one", SPEC)
    assert (one.slide_ids, one.test_ids) == (["a"], [])
    with pytest.raises(DatasetError, match="Model name '../x'"):
        new_job(FakeProject, both, "../x", SPEC)
    (tmp_path / MODELS_DIR / "taken").mkdir(parents=True)
    with pytest.raises(DatasetError, match="a model of that name exists"):
        new_job(FakeProject, both, "taken", SPEC)
    job = new_job(FakeProject, both, " new model ", SPEC, epochs=3, device="cpu")
    assert (job.slide_ids, job.test_ids, job.out_dir) == (["a", "b"], ["b"], tmp_path / MODELS_DIR / "new model")
    assert (job.epochs, job.device) == (3, "cpu")


def test_the_best_epoch_is_the_lowest_validation_loss_the_first_of_equals():
    history = [{"epoch": 0, "loss": 0.5, "auc": 0.99}, {"epoch": 1, "loss": 0.3, "auc": 0.90},
               {"epoch": 2, "loss": 0.3, "auc": 0.95}]
    assert best_so_far(history) is history[1]
    assert best_so_far([]) is None


def test_a_job_plans_reads_and_trains_reporting_each_step(project):
    a, b = (e.id for e in project.slides)
    job = new_job(project, {a: (True, "Train"), b: (True, "Test")}, "tiny", SPEC, epochs=1, batch_size=64,
                  device="cpu")
    reports = []

    result = run_job(job, reports.append, lambda: False)

    assert isinstance(result, TrainResult) and reports[-1] is result
    assert result.bundle == job.out_dir / "best" and (result.bundle / "model.json").is_file()
    assert result.best_epoch == 0 and result.epochs_run == 1
    planned = next(r for r in reports if isinstance(r, Planned))
    for split, slide_id in (("train", a), ("test", b)):
        assert planned.per_slide[slide_id] == (planned.counts[split]["Tumour"], planned.counts[split]["Non-tumour"])
    stages = [r.text for r in reports if isinstance(r, Stage)]
    assert stages[0] == "Finding tissue and labelling tiles" and stages[-1] == "Starting training"
    assert "Reading tiles" in stages
    epochs = [r for r in reports if isinstance(r, ProgressEvent) and r.metrics is not None]
    assert [e.metrics for e in epochs] == result.history


def test_a_job_stopped_before_training_writes_nothing(project):
    a, b = (e.id for e in project.slides)
    job = new_job(project, {a: (True, "Train"), b: (True, "Test")}, "stopped", SPEC, epochs=1, device="cpu")
    reports = []

    assert run_job(job, reports.append, lambda: True) is None
    assert not job.out_dir.exists()
    assert all(isinstance(r, Stage) for r in reports)
