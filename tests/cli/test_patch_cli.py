"""`biopsia dataset / train / test` on patch folders with a scale, run as a user runs them."""

from __future__ import annotations

import json

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
