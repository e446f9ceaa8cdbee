"""core.train on real but tiny data: two textures a CNN must tell apart by shape, not colour."""

import os
import time

import cv2
import numpy as np
import pytest

from core.errors import DatasetError
from core.models.bundle import load_bundle
from core.models.engine import engine
from core.train import TileArrays, augment, train

TILE = 48


def _textures(n_per_class: int, seed: int) -> TileArrays:
    """Class 0: a few large pale blobs; class 1 (tumour): many small dark nuclei. Same palette."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in (0, 1):
        for _ in range(n_per_class):
            tile = np.full((TILE, TILE, 3), (235, 190, 215), np.uint8)
            tile = np.clip(tile + rng.normal(0, 6, tile.shape), 0, 255).astype(np.uint8)
            count, radius = ((3, (6, 9)) if label == 0 else (28, (1, 3)))
            for _ in range(rng.integers(count - 1, count + 2)):
                centre = tuple(int(v) for v in rng.integers(0, TILE, 2))
                colour = tuple(int(v) for v in rng.integers(90, 140, 3))
                cv2.circle(tile, centre, int(rng.integers(*radius)), colour, -1)
            images.append(tile)
            labels.append(label)
    return TileArrays(np.stack(images), np.asarray(labels), ["Non-tumour", "Tumour"])


@pytest.fixture(scope="module")
def data():
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    return _textures(64, seed=1), _textures(24, seed=2)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    events = []
    started = time.perf_counter()
    result = train(*data, out, arch="cnn", epochs=6, batch_size=16, lr=2e-3, seed=0, device="cpu",
                   progress=events.append)
    return result, events, out, time.perf_counter() - started


def test_learns_textures(trained):
    result, events, out, seconds = trained
    assert seconds < 60
    assert not result.cancelled and result.device.startswith("CPU")
    assert result.best_score > 0.9, result.history
    best = result.history[result.best_epoch]
    assert best["loss"] == min(h["loss"] for h in result.history) and best["auc"] == result.best_score
    epoch_events = [e for e in events if e.metrics is not None]
    assert len(epoch_events) == result.epochs_run and "sensitivity" in epoch_events[-1].metrics
    assert events[0].batch == 1 and events[0].batches == 8
    assert (out / "history.json").is_file()


def test_bundle_reloads_with_identical_predictions(trained, data):
    result, _, out, _ = trained
    val = data[1]

    def predict_twice():
        a = load_bundle(result.bundle).predict(val.images)
        b = load_bundle(result.bundle).predict(val.images)
        return a, b

    a, b = engine().run(predict_twice)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (len(val), 2)
    from core.metrics import BinaryMetrics

    assert BinaryMetrics(val.labels, a[:, 1]).auc == pytest.approx(result.best_score, abs=1e-6)


def test_resume_continues_from_last_checkpoint(data, tmp_path):
    first = train(*data, tmp_path, epochs=1, batch_size=32, seed=0, device="cpu")
    assert first.epochs_run == 1
    second = train(*data, tmp_path, epochs=2, batch_size=32, seed=0, device="cpu", resume=True)
    assert second.epochs_run == 2 and [h["epoch"] for h in second.history] == [0, 1]


def test_cancel_after_first_batch(data, tmp_path):
    events = []
    result = train(*data, tmp_path, epochs=3, batch_size=16, device="cpu", progress=events.append,
                   should_stop=lambda: len(events) >= 1)
    assert result.cancelled and result.epochs_run == 0 and result.bundle is None
    assert len(events) == 1


def test_one_class_only_is_a_dataset_error(data, tmp_path):
    train_data, val_data = data
    only = TileArrays(train_data.images[train_data.labels == 0], train_data.labels[train_data.labels == 0])
    with pytest.raises(DatasetError, match="no tiles of class Tumour"):
        train(only, val_data, tmp_path, epochs=1)


def test_from_folder_and_augment(tmp_path):
    tiles = _textures(2, seed=5)
    for i, (img, label) in enumerate(zip(tiles.images, tiles.labels)):
        folder = tmp_path / tiles.classes[label]
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    loaded = TileArrays.from_folder(tmp_path)
    assert loaded.classes == ["Non-tumour", "Tumour"]
    np.testing.assert_array_equal(loaded.images, tiles.images)
    out = augment(loaded.images, np.random.default_rng(0))
    assert out.shape == loaded.images.shape and out.dtype == np.uint8
    with pytest.raises(DatasetError, match="does not exist"):
        TileArrays.from_folder(tmp_path / "nowhere")
