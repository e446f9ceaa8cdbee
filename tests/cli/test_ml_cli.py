"""`biopsia dataset / train / test / validate-framework`, run as a user runs them (subprocesses of main.py).

The headline check of training: a network trained on one synthetic slide's tiles finds the tumour on
another slide it never saw (tile-level AUC at least 0.95).
"""

from __future__ import annotations

import json
import shutil

import pytest

from core.models.bundle import read_info

from tests.cli.test_cli import biopsia
from tests.core.models.test_framework_check import _mnist_folder

TILES = ("--tile", "64", "--mpp", "2")


@pytest.fixture(scope="module")
def datasets(slide_pair, tmp_path_factory):
    """A training set from one slide, a test set from the other."""
    root = tmp_path_factory.mktemp("cli-datasets")
    train_slide, test_slide = slide_pair[1].slide_path, slide_pair[0].slide_path
    for name, slide in (("train-set", train_slide), ("test-set", test_slide)):
        done = biopsia("dataset", slide, "--out", root / name, *TILES, "--ratio", "1")
        assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def model(datasets):
    done = biopsia("train", datasets / "train-set", "--out", datasets / "model", "--epochs", "12", "--batch", "16",
                   "--lr", "2e-3", "--device", "cpu", "--patience", "12", "--int8", timeout=600)
    assert done.returncode == 0, done.stderr
    assert "model.onnx kept: checked against MXNet on" in done.stderr  # every trained model gets one
    assert (datasets / "model" / "best" / "model.onnx").is_file()
    # --int8: the variant is kept, or the line says why not and the model is kept without it
    kept = "INT8 variant kept (naive calibration on" in done.stderr
    assert kept or "INT8 variant not made: " in done.stderr, done.stderr
    assert (read_info(datasets / "model" / "best").variant_file("int8", "symbol") is not None) == kept
    return datasets / "model", done


def test_dataset_prints_counts_and_writes_recordio(slide_pair, tmp_path):
    paths = [s.slide_path for s in slide_pair]
    done = biopsia("dataset", *paths, "--out", tmp_path / "set", *TILES, "--test-slide", "pair29")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    counts = manifest["counts"]
    assert f"train {sum(counts['train'].values()):>7} tiles" in done.stdout
    assert "pair29: test" in done.stdout and "pair30: train" in done.stdout
    for split in ("train", "test"):
        for ext in ("rec", "idx", "lst"):
            assert (tmp_path / "set" / f"{split}.{ext}").stat().st_size > 0
    dry = biopsia("dataset", *paths, "--out", tmp_path / "dry", "--mag", "5", "--tile", "64", "--dry-run")
    assert dry.returncode == 0 and not (tmp_path / "dry").exists()
    assert "of 64 px at 2 µm/px" in dry.stdout and dry.stdout.count("tiles (") == 2


def test_a_model_from_one_slide_finds_tumour_on_another(model, datasets):
    folder, training = model
    assert "training cnn on CPU" in training.stderr and "epoch 12/12" in training.stderr
    assert "held out for validation" in training.stderr  # the train set has no test split
    bundle_info = json.loads((folder / "best" / "model.json").read_text())
    assert bundle_info["tile_px"] == 64 and bundle_info["mpp"] == 2.0
    done = biopsia("test", folder, datasets / "test-set", "--split", "train", "--json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["tiles"] == result["tp"] + result["fp"] + result["tn"] + result["fn"] > 100
    assert result["counts"]["Tumour"] > 30
    assert result["auc"] >= 0.95, result
    text = biopsia("test", folder, datasets / "test-set", "--split", "train", "--device", "cpu")
    assert "Screening test  Negative" in text.stdout and "True diagnosis" in text.stdout
    assert f"AUC {result['auc']:.4f}" in text.stdout


def test_wrong_tiles_and_broken_models_are_refused(model, datasets, slide_pair, tmp_path):
    folder, _ = model
    done = biopsia("dataset", slide_pair[0].slide_path, "--out", tmp_path / "big", "--tile", "32", "--mpp", "4",
                   "--ratio", "1")
    assert done.returncode == 0, done.stderr
    wrong = biopsia("test", folder, tmp_path / "big", "--split", "train")
    assert wrong.returncode == 1
    assert "the model takes 64 x 64 px tiles but the tiles are 32 x 32 px; make a dataset with --tile 64" in wrong.stderr
    broken = tmp_path / "broken"
    shutil.copytree(folder / "best", broken)
    params = broken / "model-0000.params"
    params.write_bytes(params.read_bytes()[:1000])
    bad = biopsia("test", broken, datasets / "test-set", "--split", "train")
    assert bad.returncode == 1 and f"{params}: weights are unreadable" in bad.stderr
    assert "Traceback" not in bad.stderr
    nothing = biopsia("test", tmp_path, datasets / "test-set")
    assert nothing.returncode == 1 and "not a model: no model.json" in nothing.stderr


def test_a_class_with_no_tiles_is_a_clear_error(slide_pair, tmp_path):
    benign = tmp_path / "benign.tiff"  # no marks beside it, declared fully annotated: every tile Non-tumour
    shutil.copy(slide_pair[0].slide_path, benign)
    done = biopsia("dataset", benign, "--out", tmp_path / "set", *TILES, "--ratio", "1", "--fully-annotated")
    assert done.returncode == 0, done.stderr
    train = biopsia("train", tmp_path / "set", "--out", tmp_path / "model", "--epochs", "1")
    assert train.returncode == 1
    assert "no tiles of class Tumour" in train.stderr and "Traceback" not in train.stderr
    assert not (tmp_path / "model" / "best").exists()


def test_missing_labels_and_bad_datasets(slide_pair, tmp_path):
    bare = tmp_path / "bare.tiff"
    shutil.copy(slide_pair[0].slide_path, bare)
    done = biopsia("dataset", bare, "--out", tmp_path / "set")
    assert done.returncode == 1 and f"{bare}: no marks found" in done.stderr
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "manifest.json").write_text("[1, 2]")
    train = biopsia("train", tmp_path / "junk", "--out", tmp_path / "model")
    assert train.returncode == 1 and "manifest.json: not a Biopsia dataset manifest" in train.stderr


def test_validate_framework_on_idx_files(tmp_path):
    _mnist_folder(tmp_path, compress=True)
    done = biopsia("validate-framework", "mnist", tmp_path, "--epochs", "3", "--batch", "16", "--device", "cpu",
                   "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["benchmark"] == "mnist" and result["epochs"] == 3
    assert result["test_accuracy"] >= 0.9
    missing = biopsia("validate-framework", "fashion-mnist", tmp_path / "nowhere")
    assert missing.returncode == 1 and "train-images-idx3-ubyte" in missing.stderr
