"""core.models.train on real but tiny data: two textures a CNN must tell apart by shape, not colour."""

import json
import os

import cv2
import numpy as np
import pytest

from core.errors import DatasetError, ModelError
from core.models.loading import load_bundle
from core.models.engine import engine
from core.models.train import augment, train
from core.tiles.arrays import TileArrays

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
    result = train(*data, out, arch="cnn", epochs=6, batch_size=16, lr=2e-3, seed=0, device="cpu",
                   progress=events.append)
    return result, events, out


def test_learns_textures(trained):
    result, events, out = trained
    assert not result.cancelled and result.device.startswith("CPU")
    assert result.best_score > 0.9, result.history
    best = result.history[result.best_epoch]
    assert best["loss"] == min(h["loss"] for h in result.history) and best["auc"] == result.best_score
    epoch_events = [e for e in events if e.metrics is not None]
    assert len(epoch_events) == result.epochs_run and "sensitivity" in epoch_events[-1].metrics
    assert events[0].batch == 1 and events[0].batches == 8
    assert (out / "history.json").is_file()


def test_bundle_reloads_with_identical_predictions(trained, data):
    result, _, out = trained
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


def test_the_threshold_is_chosen_on_the_best_epochs_validation_tiles_and_recorded(trained, data):
    from core.metrics import BinaryMetrics
    from core.models.bundle import default_threshold, read_info
    from core.models.thresholds import choose_thresholds

    result, _, _ = trained
    val = data[1]
    doc = json.loads((result.bundle / "model.json").read_text())
    record = doc["thresholds"]
    assert record["chosen"] == "sensitivity_0.95" and record["target_sensitivity"] == 0.95
    assert record["split"] == "validation" and record["tiles"] == len(val)
    assert doc["threshold"] == record["sensitivity_0.95"] == result.threshold and 0 < result.threshold < 1
    assert 0 < record["youden"] < 1 and result.thresholds == record
    assert default_threshold(read_info(result.bundle)) == (result.threshold, "model")
    best = result.history[result.best_epoch]
    assert best["threshold"] == result.threshold  # the best epoch's, as the history shows per epoch
    # the saved network on the validation tiles gives the figures recorded at each threshold
    probs = engine().run(lambda: load_bundle(result.bundle).predict(val.images))[:, 1]
    assert choose_thresholds(val.labels, probs) == record
    for key in ("sensitivity_0.95", "youden"):
        m = BinaryMetrics(val.labels, probs, record[key])
        assert record["validation"][key] == {"sensitivity": m.sensitivity, "specificity": m.specificity}
    assert record["validation"]["sensitivity_0.95"]["sensitivity"] >= 0.95


def test_the_target_sensitivity_is_checked_and_recorded(data, tmp_path):
    for bad in (0, 1.5, -1):
        with pytest.raises(ModelError, match="target sensitivity"):
            train(*data, tmp_path, epochs=1, target_sensitivity=bad)
    result = train(*data, tmp_path, epochs=1, batch_size=32, device="cpu", target_sensitivity=0.8)
    assert result.thresholds["chosen"] == "sensitivity_0.8" and result.threshold == result.thresholds["sensitivity_0.8"]
    assert result.thresholds["validation"]["sensitivity_0.8"]["sensitivity"] >= 0.8


def test_balanced_order_gives_every_batch_both_classes_in_equal_shares():
    from core.models.train import _balanced_order

    labels = np.r_[np.zeros(12, int), np.ones(60, int)]
    order = _balanced_order(labels, 2, np.random.default_rng(0))
    assert order.size == labels.size
    for start in range(0, order.size, 8):  # any even batch size
        assert np.bincount(labels[order[start:start + 8]], minlength=2).tolist() == [4, 4]
    assert set(order[labels[order] == 0]) == set(range(12))  # every rare tile, three times
    assert len(set(order[labels[order] == 1])) == 36  # 36 different common tiles, none twice
    assert not np.array_equal(order, _balanced_order(labels, 2, np.random.default_rng(1)))


def test_balanced_sampling_and_warm_up_train_and_are_checked(data, tmp_path):
    result = train(*data, tmp_path, epochs=2, batch_size=16, lr=2e-3, device="cpu", sampling="balanced",
                   warmup_epochs=1)
    assert result.epochs_run == 2 and result.history[-1]["auc"] > 0.8, result.history
    settings = json.loads((result.bundle / "model.json").read_text())["training"]["settings"]
    assert settings["sampling"] == "balanced" and settings["warmup_epochs"] == 1
    with pytest.raises(ModelError, match="unknown sampling 'even'"):
        train(*data, tmp_path, epochs=1, sampling="even")
    for bad in (-1, 3, float("nan")):
        with pytest.raises(ModelError, match="warm-up"):
            train(*data, tmp_path, epochs=2, warmup_epochs=bad)


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


class _RunsCode:
    """A pickle that creates a folder when unpickled: what a crafted ``trainer.states`` can do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_resume_never_unpickles_a_trainer_states_file(data, tmp_path):
    import pickle

    first = train(*data, tmp_path / "run", epochs=1, batch_size=32, seed=0, device="cpu")
    last = tmp_path / "run" / "last"
    assert first.epochs_run == 1
    assert {"optimizer.npz", "optimizer.json", "train.params", "state.json"} <= {p.name for p in last.iterdir()}
    assert not (last / "trainer.states").exists()
    marker = tmp_path / "code-ran"
    (last / "trainer.states").write_bytes(pickle.dumps(_RunsCode(marker)))
    before = {p.name: p.read_bytes() for p in (tmp_path / "run" / "best").iterdir()}
    with pytest.raises(ModelError, match=r"last/trainer\.states: this optimizer state is a Python pickle .* "
                                         "Biopsia does not read pickles"):
        train(*data, tmp_path / "run", epochs=2, batch_size=32, seed=0, device="cpu", resume=True)
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "run" / "best").iterdir()} == before


def test_a_checkpoint_with_a_changed_file_is_refused(data, tmp_path):
    train(*data, tmp_path, epochs=1, batch_size=32, seed=0, device="cpu")
    state = tmp_path / "last" / "state.json"
    state.write_text(state.read_text().replace('"epoch": 0', '"epoch": 5', 1))
    with pytest.raises(ModelError, match=r"last/state\.json: file state\.json is unreadable: its contents do not "
                                         "match the SHA-256"):
        train(*data, tmp_path, epochs=2, batch_size=32, seed=0, device="cpu", resume=True)


def test_optimizer_state_round_trips_without_pickle(tmp_path):
    """Two trainers, one restored from the other's saved state, take the same next step to the bit."""
    from core.models import optimizer_state
    from core.models.zoo import build

    def job():
        import mxnet as mx
        from mxnet import autograd, gluon

        x = mx.nd.array(np.random.default_rng(0).normal(size=(8, 3, 16, 16)).astype(np.float32))
        y = mx.nd.array(np.arange(8) % 2)
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

        def make(optimizer, args):
            mx.random.seed(1)
            net = build("cnn")
            net.initialize(mx.init.Xavier())
            net(x)
            params = [p for _, p in sorted(net._collect_params_with_prefix().items())]
            return net, gluon.Trainer(params, optimizer, dict(args))

        def step(net, trainer):
            mx.random.seed(7)  # the same dropout masks for both networks
            with autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(8)

        results = []
        for optimizer, args in (("adam", {"learning_rate": 1e-3}), ("sgd", {"learning_rate": 0.1, "momentum": 0.9})):
            a, trainer_a = make(optimizer, args)
            for _ in range(3):
                step(a, trainer_a)
            folder = tmp_path / optimizer
            folder.mkdir()
            optimizer_state.save_trainer_state(trainer_a, folder)
            b, trainer_b = make(optimizer, args)
            b_params = b._collect_params_with_prefix()
            for name, p in a._collect_params_with_prefix().items():
                b_params[name].set_data(p.data())
            optimizer_state.load_trainer_state(trainer_b, folder, (folder / "optimizer.npz").read_bytes(),
                                               (folder / "optimizer.json").read_bytes())
            assert trainer_b._optimizer.num_update == trainer_a._optimizer.num_update == 3
            step(a, trainer_a)
            step(b, trainer_b)
            results.append(all(np.array_equal(p.data().asnumpy(), b_params[name].data().asnumpy())
                               for name, p in a._collect_params_with_prefix().items()))
        with np.load(tmp_path / "adam" / "optimizer.npz", allow_pickle=False) as arrays:
            assert all(arrays[k].dtype == np.float32 for k in arrays.files)
        return results

    assert engine().run(job) == [True, True]


def test_damaged_optimizer_arrays_are_refused(tmp_path):
    import io
    import json as json_mod

    from core.models import optimizer_state

    def job():
        import mxnet as mx
        from mxnet import gluon

        net = build_net()
        params = [p for _, p in sorted(net._collect_params_with_prefix().items())]
        trainer = gluon.Trainer(params, "sgd", {"learning_rate": 0.1, "momentum": 0.9})
        index = 0
        shape = params[index].shape
        meta = {"format": "biopsia-optimizer-state", "format_version": 1, "optimizer": "sgd", "num_update": 1,
                "update_counts": {"0": 1}, "states": {"0": "s0"}}
        errors = []
        for arrays in ({"s0": np.zeros(shape, np.float64)}, {"s0": np.zeros((1,) + shape, np.float32)},
                       {"s0": np.full(shape, np.nan, np.float32)}, {"other": np.zeros(shape, np.float32)},
                       {"s0": np.array([{"x": 1}], dtype=object)}):
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            try:
                optimizer_state.load_trainer_state(trainer, tmp_path, buffer.getvalue(),
                                                   json_mod.dumps(meta).encode())
            except ModelError as err:
                errors.append(str(err))
        for bad_meta in ({**meta, "optimizer": "adam"}, {**meta, "states": {"99": "s0"}}, [1]):
            try:
                optimizer_state.load_trainer_state(trainer, tmp_path, b"", json_mod.dumps(bad_meta).encode())
            except ModelError as err:
                errors.append(str(err))
        mx.nd.waitall()
        return errors

    def build_net():
        import mxnet as mx

        from core.models.zoo import build

        net = build("cnn")
        net.initialize()
        net(mx.nd.zeros((1, 3, 16, 16)))
        return net

    errors = engine().run(job)
    assert len(errors) == 8, errors
    assert all("optimizer" in e for e in errors)
