"""Warm start: ``train(..., init_from=MODEL)`` fine-tunes from a parent's weights, refuses a parent
that does not fit the run, and records it in model.json."""

from __future__ import annotations

import json
import os
import shutil

import mxnet as mx
import numpy as np
import pytest

from core.errors import BiopsiaError, ModelError
from core.inference.predict import model_identity
from core.models.bundle import PARAMS_FILE, SYMBOL_FILE, read_info
from core.models.train import train
from core.tiles.arrays import TileArrays
from tests.core.models.test_train import _textures

MPP = 0.5
FAST = dict(batch_size=16, seed=0, device="cpu", early_stopping_patience=None)


@pytest.fixture(scope="module")
def data():
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    return _textures(32, seed=1), _textures(16, seed=2)


@pytest.fixture(scope="module")
def parent(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("parent")
    result = train(*data, out, arch="cnn", epochs=3, lr=2e-3, mpp=MPP, **FAST)
    return out, result


def _weights_in_graph_order(bundle):
    """The bundle's weight arrays in the order of its graph (names differ between network instances)."""
    symbol = mx.sym.load(str(bundle / SYMBOL_FILE))
    stored = mx.nd.load(str(bundle / PARAMS_FILE))
    names = [f"arg:{n}" for n in symbol.list_arguments() if n != "data"]
    names += [f"aux:{n}" for n in symbol.list_auxiliary_states()]
    return [(n.split(":")[0], stored[n].asnumpy()) for n in names]


def test_a_warm_start_begins_from_the_parents_weights_and_records_it(parent, data, tmp_path):
    folder, first = parent
    # a training folder names its best/ bundle; at lr 0 nothing moves but BatchNorm's running statistics
    child = train(*data, tmp_path / "child", arch="cnn", epochs=1, lr=0.0, mpp=MPP, augment=False,
                  init_from=folder, **FAST)
    theirs, ours = _weights_in_graph_order(first.bundle), _weights_in_graph_order(child.bundle)
    assert len(theirs) == len(ours)
    for (kind, a), (_, b) in zip(theirs, ours):
        if kind == "arg":
            np.testing.assert_array_equal(a, b)
    # so the first epoch already separates the classes as the parent does
    assert child.history[0]["auc"] == pytest.approx(first.best_score, abs=0.05)
    record = read_info(child.bundle).training["parent"]
    assert record == {"name": folder.name, "folder": str(first.bundle.resolve()),
                      "sha256": model_identity(first.bundle)["sha256"]}
    doc = json.loads((child.bundle / "model.json").read_text())
    assert doc["training"]["parent"] == record  # as stored, not only as read
    assert "parent" not in read_info(first.bundle).training  # a model trained from scratch has none


def test_a_warm_start_learns_on(parent, data, tmp_path):
    folder, first = parent
    child = train(*data, tmp_path, arch="cnn", epochs=1, lr=5e-4, mpp=MPP, init_from=first.bundle, **FAST)
    assert child.best_score >= first.best_score - 0.05


@pytest.mark.parametrize("change, words", [
    (dict(arch="resnet18"), "its architecture is cnn, this run's is resnet18"),
    (dict(mpp=1.0), "it was trained at 0.5 µm/px, this run is at 1 µm/px"),
    (dict(mpp=None), "this run is at an unknown µm/px"),
    (dict(classes=["Benign", "Tumour"]),
     "its classes are ['Non-tumour', 'Tumour'], this run's are ['Benign', 'Tumour']"),
    (dict(tile=32), "its tiles are 48 px, this run's are 32 px"),
    (dict(stain_normalise="reinhard"), "its stain normalisation is none, this run's is reinhard"),
], ids=["architecture", "mpp", "unknown-mpp", "classes", "tile-size", "stain"])
def test_a_parent_that_does_not_fit_the_run_is_refused(parent, data, tmp_path, change, words):
    folder, first = parent
    train_data, val_data = data
    if "classes" in change:
        classes = change.pop("classes")
        train_data, val_data = (TileArrays(d.images, d.labels, classes) for d in data)
    if "tile" in change:
        side = change.pop("tile")
        train_data, val_data = (TileArrays(np.ascontiguousarray(d.images[:, :side, :side]), d.labels, d.classes)
                                for d in (train_data, val_data))
    kwargs = dict(arch="cnn", epochs=1, lr=1e-3, mpp=MPP, **FAST) | change
    with pytest.raises(ModelError) as info:
        train(train_data, val_data, tmp_path / "out", init_from=folder, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, BiopsiaError) and str(first.bundle) in message and words in message
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_damaged_parent_is_refused(parent, data, tmp_path):
    folder, first = parent
    copy = shutil.copytree(first.bundle, tmp_path / "parent")
    params = copy / PARAMS_FILE
    body = bytearray(params.read_bytes())
    body[-1] ^= 0xFF
    params.write_bytes(bytes(body))
    with pytest.raises(ModelError, match="SHA-256"):
        train(*data, tmp_path / "out", arch="cnn", epochs=1, mpp=MPP, init_from=copy, **FAST)
    with pytest.raises(ModelError, match="does not exist"):
        train(*data, tmp_path / "out", arch="cnn", epochs=1, mpp=MPP, init_from=tmp_path / "nowhere", **FAST)


def test_a_parents_stain_normalisation_is_reused_not_refitted(data, tmp_path):
    train_data, val_data = data
    first = train(train_data, val_data, tmp_path / "parent", arch="cnn", epochs=1, mpp=MPP,
                  stain_normalise="reinhard", **FAST)
    # other tiles would fit other statistics; the parent's weights expect the parent's
    darker = TileArrays((train_data.images // 2).astype(np.uint8), train_data.labels, train_data.classes)
    child = train(darker, val_data, tmp_path / "child", arch="cnn", epochs=1, mpp=MPP, stain_normalise="reinhard",
                  init_from=first.bundle, **FAST)
    parent_stain = read_info(first.bundle).stain
    assert parent_stain["method"] == "reinhard"
    assert read_info(child.bundle).stain == parent_stain
    refitted = train(darker, val_data, tmp_path / "scratch", arch="cnn", epochs=1, mpp=MPP,
                     stain_normalise="reinhard", **FAST)
    assert read_info(refitted.bundle).stain != parent_stain  # so the test above can tell the two apart
