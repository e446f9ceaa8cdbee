"""core.models.training_job on a patch folder, without Qt: real MXNet runs on tiny folders made here, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import DatasetError
from core.models.bundle import read_info
from core.models.train import ProgressEvent, TrainResult
from core.models.training_job import (NO_SCALE, PatchesSplit, PatchJob, Stage, class_folders, new_patch_job,
                                      run_patch_job)
from core.project.layout import MODELS_DIR
from core.tiles.grid import TileSpec

SPEC = TileSpec(32, 1.0)  # 64 px patches at 0.5 µm/px: one 32 px tile each
COLOURS = {"tumour": (120, 40, 140), "normal": (230, 180, 200)}


class Project:
    """What the jobs use of a project: its folder."""

    def __init__(self, folder: Path):
        self.folder = folder


def patch_folder(folder: Path, mpp: float | None = 0.5, n: int = 12, side: int = 64, classes=COLOURS,
                 mapping: bool = True) -> Path:
    """One subfolder per class of ``n`` noisy patches of the class's colour, and a dataset.json."""
    rng = np.random.default_rng(0)
    for name, base in classes.items():
        sub = folder / name
        sub.mkdir(parents=True)
        for i in range(n if isinstance(n, int) else n[name]):
            noise = rng.integers(-25, 25, (side, side, 3))
            cv2.imwrite(str(sub / f"{i}.png"), np.clip(np.array(base)[::-1] + noise, 0, 255).astype(np.uint8))
    doc = {}
    if mapping:
        doc["classes"] = {name: {"tumour": "Tumour", "normal": "Non-tumour"}.get(name, name) for name in classes}
    if mpp is not None:
        doc["mpp"] = mpp
    if doc:
        (folder / "dataset.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


def job(tmp_path, folder, **settings) -> PatchJob:
    settings = {"epochs": 1, "batch_size": 8, "device": "cpu", **settings}
    return new_patch_job(Project(tmp_path / "project"), folder, "tiny", settings.pop("spec", SPEC), **settings)


def run(patch_job, should_stop=lambda: False):
    reports = []
    return run_patch_job(patch_job, reports.append, should_stop), reports


def test_a_scaled_patch_folder_trains_a_model_that_records_the_tiles_scale(tmp_path):
    folder = patch_folder(tmp_path / "patches", mpp=0.5)
    result, reports = run(job(tmp_path, folder))

    assert isinstance(result, TrainResult) and reports[-1] is result and result.epochs_run == 1
    info = read_info(result.bundle)
    assert (info.mpp, info.tile_px, list(info.classes)) == (1.0, 32, ["Non-tumour", "Tumour"])
    kinds = [type(r) for r in reports]
    assert kinds[0] is Stage and kinds.count(PatchesSplit) == 1 and ProgressEvent in kinds
    assert kinds.index(PatchesSplit) < kinds.index(ProgressEvent)
    split = next(r for r in reports if isinstance(r, PatchesSplit))
    assert split.warnings == []
    assert split.text.startswith("24 patches → 24 tiles of 32 px at 1 µm/px (patch scale from dataset.json); ")
    train_part, val_part = split.text.split("; ")[-1].split(", validation ")
    assert "Non-tumour" in val_part and "Tumour" in val_part and val_part.endswith("(whole groups)")
    n_val = sum(int(w) for w in val_part.replace(",", " ").split() if w.isdigit())
    n_train = sum(int(w) for w in train_part.replace(",", " ").split() if w.isdigit())
    assert n_train + n_val == 24 and 2 <= n_val <= 8  # about 20 % of the groups, at least one of each class


def test_a_scale_typed_wins_over_dataset_json_and_cuts_more_tiles(tmp_path):
    folder = patch_folder(tmp_path / "patches", mpp=0.5)
    patch_job = job(tmp_path, folder, patch_mpp=1.0, json_mpp=0.5)  # 64 px at 1 µm/px: four 32 px tiles
    assert patch_job.patch_mpp == 1.0
    result, reports = run(patch_job)
    split = next(r for r in reports if isinstance(r, PatchesSplit))
    assert "24 patches → 96 tiles of 32 px at 1 µm/px (patch scale from --patch-mpp)" in split.text
    assert read_info(result.bundle).mpp == 1.0


def test_an_unscaled_folder_trains_at_the_patches_size_and_warns_the_model_cannot_predict_slides(tmp_path):
    folder = patch_folder(tmp_path / "patches", mpp=None, side=32)
    result, reports = run(job(tmp_path, folder))
    split = next(r for r in reports if isinstance(r, PatchesSplit))
    assert split.warnings == [NO_SCALE] and "at no µm/px" in split.text
    assert read_info(result.bundle).mpp is None


def test_stopping_before_the_first_epoch_leaves_no_model_folder(tmp_path):
    folder = patch_folder(tmp_path / "patches")
    patch_job = job(tmp_path, folder)
    reports = []
    result = run_patch_job(patch_job, reports.append, lambda: any(isinstance(r, PatchesSplit) for r in reports))
    assert result.bundle is None and result.epochs_run == 0
    assert not patch_job.out_dir.exists()


def test_class_folders_counts_the_images_the_reader_reads(tmp_path):
    folder = patch_folder(tmp_path / "patches", n=3)
    (folder / "tumour" / "notes.txt").write_text("not a patch")
    (folder / "tumour" / "old.bmp").write_bytes(b"BM")  # not a suffix read_patch_folder reads
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.png").write_bytes(b"")
    (folder / "empty").mkdir()
    assert class_folders(folder) == {"normal": 3, "tumour": 3}


# -- bad input ------------------------------------------------------------------------------------
def test_an_empty_folder_is_refused_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=f"{empty}: expected one subfolder per class"):
        run(job(tmp_path, empty))
    (empty / "tumour").mkdir()
    (empty / "normal").mkdir()
    with pytest.raises(DatasetError, match=f"{empty}: no PNG/JPEG patches"):
        run(job(tmp_path, empty))
    assert not (tmp_path / "project" / MODELS_DIR / "tiny").exists()


def test_one_class_only_is_refused_saying_two_are_needed(tmp_path):
    folder = patch_folder(tmp_path / "patches", classes={"tumour": COLOURS["tumour"]}, mapping=False)
    with pytest.raises(DatasetError, match=f"{folder}: only one class \\(tumour\\).*at least two class subfolders"):
        run(job(tmp_path, folder))


def test_a_class_of_one_group_is_refused_as_too_small_to_validate(tmp_path):
    folder = patch_folder(tmp_path / "patches", n={"tumour": 1, "normal": 8})
    with pytest.raises(DatasetError, match=f"{folder}: no Tumour tiles for validation: the class has too few "
                                           "groups"):
        run(job(tmp_path, folder))


@pytest.mark.parametrize("mpp, said", [(-1, "from 0.05 to 50"), (900, "from 0.05 to 50"),
                                       (float("nan"), "from 0.05 to 50"), (0, "from 0.05 to 50")])
def test_an_absurd_patch_scale_is_refused_naming_the_folder(tmp_path, mpp, said):
    folder = patch_folder(tmp_path / "patches")
    with pytest.raises(DatasetError, match=f"{folder}: patch scale: the patches' µm/px must be a number {said}"):
        job(tmp_path, folder, patch_mpp=mpp)
    with pytest.raises(DatasetError, match=f"{folder}: patch scale"):  # a job made by hand is checked too
        run(PatchJob(folder, tmp_path / "out", SPEC, mpp, epochs=1, device="cpu"))
    assert not (tmp_path / "out").exists()


def test_an_absurd_scale_in_dataset_json_is_refused_naming_the_file(tmp_path):
    folder = patch_folder(tmp_path / "patches", mpp=5000)
    with pytest.raises(DatasetError, match=f"{folder / 'dataset.json'}: 'mpp': the patches' µm/px must be"):
        run(job(tmp_path, folder))


def test_patches_coarser_than_the_tiles_are_refused(tmp_path):
    folder = patch_folder(tmp_path / "patches", mpp=4.0)
    with pytest.raises(DatasetError, match="coarser than the 1 µm/px tiles"):
        run(job(tmp_path, folder))


def test_new_patch_job_needs_a_project_a_folder_a_share_and_a_fresh_plain_name(tmp_path):
    folder = patch_folder(tmp_path / "patches")
    project = Project(tmp_path / "project")
    with pytest.raises(DatasetError, match="No project"):
        new_patch_job(None, folder, "m", SPEC)
    for nothing in (None, "", "  "):
        with pytest.raises(DatasetError, match="Choose a patch folder"):
            new_patch_job(project, nothing, "m", SPEC)
    with pytest.raises(DatasetError, match=f"{tmp_path / 'missing'}: no such folder"):
        new_patch_job(project, tmp_path / "missing", "m", SPEC)
    with pytest.raises(DatasetError, match="validation share must lie between 0 and 1"):
        new_patch_job(project, folder, "m", SPEC, val_ratio=1.0)
    with pytest.raises(DatasetError, match="Model name '../x'"):
        new_patch_job(project, folder, "../x", SPEC)
    (project.folder / MODELS_DIR / "taken").mkdir(parents=True)
    with pytest.raises(DatasetError, match="a model of that name exists"):
        new_patch_job(project, folder, "taken", SPEC)
    made = new_patch_job(project, f" {folder} ", " new ", SPEC, patch_mpp=0.5, json_mpp=0.5, val_ratio=0.3,
                         epochs=3)
    assert (made.folder, made.out_dir) == (folder, project.folder / MODELS_DIR / "new")
    assert made.patch_mpp is None  # the folder's own scale, as shown: dataset.json stays its source
    assert (made.val_ratio, made.epochs) == (0.3, 3)
