"""`biopsia dataset / train / test` on patch folders with a scale, run as a user runs them."""

from __future__ import annotations

import json
import shutil

import pytest

from core.inference.predict import check_model
from tests.cli.test_cli import biopsia
from tests.core.tiles.patchfolders import copies_folder


@pytest.fixture(scope="module")
def patch_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("patches")
    copies_folder(root, originals_per_class=4, side=128)
    return root


def test_dataset_from_a_patch_folder_records_its_scale(patch_folder, tmp_path):
    out = tmp_path / "ds"
    result = biopsia("dataset", patch_folder, "--patch-mpp", "0.5", "--tile", "64", "--mpp", "1.0", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "8 groups, split by group" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["mpp"] == 1.0 and manifest["tile_px"] == 64 and manifest["split"]["method"] == "by-group"
    bad = biopsia("dataset", patch_folder, "--patch-mpp", "-1", "--out", tmp_path / "x")
    assert bad.returncode == 2 and "--patch-mpp" in bad.stderr


def test_train_on_a_scaled_patch_folder_records_mpp_and_predict_accepts(patch_folder, tmp_path):
    out = tmp_path / "model"
    result = biopsia("train", patch_folder, "--out", out, "--patch-mpp", "0.5", "--tile", "32", "--mpp", "2.0",
                     "--epochs", "1", "--batch", "8", "--device", "cpu", "--val-ratio", "0.25", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "groups (near-copies found)" in result.stderr and "whole groups" in result.stderr
    assert "will refuse" not in result.stderr
    info = json.loads((out / "best" / "model.json").read_text(encoding="utf-8"))
    assert info["mpp"] == 2.0 and info["tile_px"] == 32
    checked = check_model(out, (0.5, 0.5), "a 0.5 µm/px slide")
    assert checked.info.mpp == 2.0
    tested = biopsia("test", out, patch_folder, "--patch-mpp", "0.5", "--device", "cpu", timeout=300)
    assert tested.returncode == 0, tested.stderr
    assert "(40 tiles" in tested.stdout
    renamed = tmp_path / "renamed"
    for name, new in (("a_class", "benign"), ("b_class", "malignant")):
        shutil.copytree(patch_folder / name, renamed / new)
    refused = biopsia("test", out, renamed, "--patch-mpp", "0.5", "--device", "cpu")
    assert refused.returncode != 0 and "dataset.json" in refused.stderr and "not the model's" in refused.stderr


def test_train_without_a_scale_warns_before_training(tmp_path):
    root = tmp_path / "patches"
    copies_folder(root, originals_per_class=1, side=64)
    result = biopsia("train", root, "--out", tmp_path / "m", "--tile", "32", "--patch-mpp", "nan")
    assert result.returncode == 2 and "--patch-mpp" in result.stderr
    (root / "a_class" / "zz-broken.png").write_bytes(b"not a png")  # training never starts: the warning came first
    result = biopsia("train", root, "--out", tmp_path / "m", "--tile", "32", "--device", "cpu")
    assert result.returncode != 0 and "zz-broken.png" in result.stderr
    assert result.stderr.index("will refuse it on slides") < result.stderr.index("zz-broken.png")
    assert "--patch-mpp" in result.stderr and "model.json" in result.stderr


def training_args(dataset, tmp_path, **given):
    import argparse
    values = dict(dataset=str(dataset), out=str(tmp_path / "model"), val=None, val_ratio=0.25, seed=0,
                  patch_mpp=None, tile=None, mpp=None)
    values.update(given)
    return argparse.Namespace(**values)


def test_validation_of_a_patch_folder_holds_out_whole_groups(patch_folder, tmp_path, capsys):
    from cli.models import load_training_data
    from core.tiles.patches import read_patch_folder
    train, val, mpp = load_training_data(training_args(patch_folder, tmp_path, patch_mpp=0.5, tile=64))
    assert mpp == 0.5 and len(train) + len(val) == 4 * 40 and set(val.labels.tolist()) == {0, 1}
    patches = read_patch_folder(patch_folder, patch_mpp=0.5, tile_px=64)
    key = {tile.tobytes(): g for tile, g in zip(patches.tiles.images, patches.groups)}
    train_groups = {key[t.tobytes()] for t in train.images}
    val_groups = {key[t.tobytes()] for t in val.images}
    assert val_groups and not train_groups & val_groups, "a group of near-copies straddles train and validation"
    assert "8 groups (near-copies found)" in capsys.readouterr().err
    other = tmp_path / "other"
    copies_folder(other, originals_per_class=1, side=96)
    _, val, _ = load_training_data(training_args(patch_folder, tmp_path, patch_mpp=0.5, tile=64, val=str(other)))
    assert val.images.shape[1:3] == (64, 64) and len(val) == 10  # cut at the training tiles' size and scale


def test_patch_options_refused_for_slides_and_dataset_folders(patch_folder, tmp_path, slide):
    from cli.models import load_training_data
    from core.errors import DatasetError
    result = biopsia("dataset", slide, "--patch-mpp", "0.5", "--out", tmp_path / "ds")
    assert result.returncode != 0 and "--patch-mpp applies to one patch folder" in result.stderr
    biopsia("dataset", patch_folder, "--patch-mpp", "0.5", "--out", tmp_path / "ds")
    with pytest.raises(DatasetError, match="apply to a patch folder"):
        load_training_data(training_args(tmp_path / "ds", tmp_path, patch_mpp=0.5))
