"""core.models: architectures, the one model thread, bundles."""

import json
import threading

import numpy as np
import pytest

from core.errors import ModelError
from core.models.bundle import ModelInfo, save_bundle
from core.models.engine import ModelThread, describe_device, engine, parse_device
from core.models.loading import load_bundle, normalise
from core.models.zoo import ARCHS, build


@pytest.fixture(scope="module")
def model_thread():
    thread = ModelThread(name="test-model")
    yield thread
    thread.shutdown()


def test_jobs_run_on_one_thread_in_order(model_thread):
    idents = [model_thread.submit(threading.get_ident).result(5) for _ in range(5)]
    assert len(set(idents)) == 1 and idents[0] == model_thread.ident != threading.get_ident()
    order = []
    futures = [model_thread.submit(order.append, i) for i in range(20)]
    [f.result(5) for f in futures]
    assert order == list(range(20))


def test_exceptions_propagate_through_future(model_thread):
    def boom():
        raise ValueError("bad tile")

    with pytest.raises(ValueError, match="bad tile"):
        model_thread.submit(boom).result(5)
    assert model_thread.submit(lambda x, y=1: x + y, 2, y=3).result(5) == 5  # still alive


def test_shutdown_refuses_new_jobs():
    thread = ModelThread()
    thread.shutdown()
    with pytest.raises(ModelError):
        thread.submit(print)


def test_singleton_engine():
    assert engine() is engine()


def test_devices():
    import mxnet as mx

    ctx = parse_device("auto")
    assert ctx == (mx.gpu(0) if mx.context.num_gpus() > 0 else mx.cpu())
    assert parse_device("cpu") == mx.cpu()
    assert describe_device(mx.cpu()).startswith("CPU (")
    assert describe_device(mx.gpu(0)) == "GPU 0"
    with pytest.raises(ModelError, match="not available"):
        parse_device("gpu:7")
    with pytest.raises(ModelError, match="not understood"):
        parse_device("tpu")


def test_auto_leaves_a_gpu_mxnet_has_no_kernels_for(monkeypatch):
    """MXNet 1.9.1 has kernels for sm_50 to sm_86 only: on a Hopper GPU ``auto`` takes the CPU, an A100 the GPU."""
    import mxnet as mx

    import core.inference.gpu_check as gpu_check
    import core.models.engine as engine_module

    monkeypatch.setattr(engine_module, "_gpu_count", lambda: 1)
    hopper = gpu_check.Gpu(0, "NVIDIA H200", (9, 0), 143_000)
    monkeypatch.setattr(gpu_check, "driver_gpus", lambda: ([hopper], None))
    assert parse_device("auto") == mx.cpu()
    ampere = gpu_check.Gpu(0, "NVIDIA A100", (8, 0), 40_000)
    monkeypatch.setattr(gpu_check, "driver_gpus", lambda: ([ampere], None))
    assert parse_device("auto") == mx.gpu(0)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_architectures_give_class_scores(model_thread, arch):
    def job():
        import mxnet as mx

        net = build(arch, classes=3)
        net.initialize(mx.init.Xavier())
        return net(mx.nd.zeros((2, 3, 64, 64))).shape

    assert model_thread.run(job) == (2, 3)


def test_unknown_architecture_lists_choices():
    with pytest.raises(ModelError, match="cnn, resnet18"):
        build("vgg99")


def _saved_bundle(folder, tile_px=32):
    import mxnet as mx

    net = build("cnn")
    net.initialize(mx.init.Xavier())
    net.hybridize()
    info = ModelInfo("cnn", ["Non-tumour", "Tumour"], tile_px, mpp=0.5, metrics={"auc": 0.9})
    tiles = np.random.default_rng(0).integers(0, 256, (4, tile_px, tile_px, 3), dtype=np.uint8)
    mean = np.asarray(info.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(info.std, np.float32).reshape(1, 3, 1, 1)
    before = mx.nd.softmax(net(mx.nd.array(normalise(tiles, mean, std))), axis=1).asnumpy()
    save_bundle(folder, net, info)
    return tiles, before


def test_bundle_round_trip_identical(model_thread, tmp_path):
    tiles, before = model_thread.run(_saved_bundle, tmp_path)
    doc = json.loads((tmp_path / "model.json").read_text())
    assert doc["classes"] == ["Non-tumour", "Tumour"] and doc["input"]["layout"] == "NCHW"
    assert set(doc["software"]) == {"biopsia", "mxnet", "numpy", "python"}
    loaded = model_thread.run(load_bundle, tmp_path)
    after = model_thread.run(loaded.predict, tiles)
    np.testing.assert_array_equal(after, before)
    assert loaded.info.mpp == 0.5 and loaded.info.metrics == {"auc": 0.9}


def test_truncated_params_names_file(model_thread, tmp_path):
    model_thread.run(_saved_bundle, tmp_path)
    params = tmp_path / "model-0000.params"
    params.write_bytes(params.read_bytes()[:1000])
    with pytest.raises(ModelError, match="model-0000.params.*re-export"):
        model_thread.run(load_bundle, tmp_path)


def test_missing_symbol_names_file(model_thread, tmp_path):
    model_thread.run(_saved_bundle, tmp_path)
    (tmp_path / "model-symbol.json").unlink()
    with pytest.raises(ModelError, match="model-symbol.json.*missing"):
        model_thread.run(load_bundle, tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tile_px": "128"}, "tile_px"),
        ({"format_version": 99}, "newer"),
        ({"architecture": "alexnet"}, "architecture"),
    ],
)
def test_bad_model_json_names_file(model_thread, tmp_path, change, message):
    model_thread.run(_saved_bundle, tmp_path)
    path = tmp_path / "model.json"
    doc = json.loads(path.read_text())
    doc.update(change)
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=f"model.json.*{message}"):
        model_thread.run(load_bundle, tmp_path)


def test_unreadable_model_json(model_thread, tmp_path):
    model_thread.run(_saved_bundle, tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="model.json.*unreadable"):
        model_thread.run(load_bundle, tmp_path)


def test_params_from_another_network_names_file(model_thread, tmp_path):
    model_thread.run(_saved_bundle, tmp_path / "a")

    def other_weights():
        import mxnet as mx

        net = build("cnn", classes=3)  # same graph shape except the head
        net.initialize()
        net.hybridize()
        net(mx.nd.zeros((1, 3, 32, 32)))
        net.export(str(tmp_path / "c" / "model"))

    (tmp_path / "c").mkdir()
    model_thread.run(other_weights)
    params = tmp_path / "a" / "model-0000.params"
    params.write_bytes((tmp_path / "c" / "model-0000.params").read_bytes())
    with pytest.raises(ModelError, match="model-0000.params: weights are unreadable.*changed after Biopsia saved it"):
        model_thread.run(load_bundle, tmp_path / "a")
    _rehash(tmp_path / "a")  # the same swap with the hash forged to match: the graph check still refuses it
    with pytest.raises(ModelError, match="model-0000.params.*do not fit model-symbol.json"):
        model_thread.run(load_bundle, tmp_path / "a")


def _rehash(folder):
    """Record the files' present size and SHA-256 in model.json, as a forger would."""
    import hashlib

    path = folder / "model.json"
    doc = json.loads(path.read_text())
    for name, entry in doc["files"].items():
        data = (folder / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    path.write_text(json.dumps(doc))


# -- a bundle folder is written as one unit; every crash point is recovered on the next open ---------------
def _two_bundles(model_thread, tmp_path):
    """``out/best`` (older) and a complete newer bundle, ready to be arranged as a crash left them."""
    from core.models.bundle import read_info

    model_thread.run(_saved_bundle, tmp_path / "out" / "best")
    model_thread.run(_saved_bundle, tmp_path / "newer")
    old_hash = read_info(tmp_path / "out" / "best").files["model-0000.params"]["sha256"]
    new_hash = read_info(tmp_path / "newer").files["model-0000.params"]["sha256"]
    assert old_hash != new_hash
    return tmp_path / "out", old_hash, new_hash


@pytest.mark.parametrize("left, expect", [
    ({"best": "old", "best.new": "partial"}, "old"),  # killed while filling best.new
    ({"best.old": "old", "best.new": "new"}, "new"),  # killed between the two renames
    ({"best": "new", "best.old": "old"}, "new"),  # killed before removing best.old
    ({"best.old": "old"}, "old"),
    ({"best.old": "old", "best.new": "partial"}, "old"),
    ({"best.new": "new"}, "new"),  # a first save, killed before its rename
    ({"best.new": "partial"}, None),  # a first save, killed while filling
])
def test_every_crash_point_of_a_save_is_recovered(model_thread, tmp_path, left, expect):
    import shutil

    from core.models.bundle import read_info, resolve_bundle

    out, old_hash, new_hash = _two_bundles(model_thread, tmp_path)
    (out / "best").rename(tmp_path / "old")
    for name, kind in left.items():
        shutil.copytree(tmp_path / ("old" if kind == "old" else "newer"), out / name)
        if kind == "partial":
            (out / name / "model-0000.params").write_bytes(b"")  # the 0-byte weights a kill leaves
            (out / name / "model.json").unlink()
    if expect is None:
        with pytest.raises(ModelError, match="not a model"):
            resolve_bundle(out)
    else:
        folder = resolve_bundle(out)
        assert folder == out / "best"
        assert read_info(folder).files["model-0000.params"]["sha256"] == (new_hash if expect == "new" else old_hash)
        model_thread.run(load_bundle, folder)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == (["best"] if expect else [])


def test_a_failing_save_keeps_the_previous_bundle_and_leaves_no_staging(model_thread, tmp_path, monkeypatch):
    import errno
    import os

    from core.models import folder as folder_mod
    from core.models.bundle import read_info

    model_thread.run(_saved_bundle, tmp_path / "best")
    before = {p.name: p.read_bytes() for p in (tmp_path / "best").iterdir()}
    real = folder_mod.fsync_path

    def full(path):
        if path.name == "model.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path)

    monkeypatch.setattr(folder_mod, "fsync_path", full)
    with pytest.raises(ModelError, match=r"best: could not save the model \(No space left on device\); the "
                                         "previous model there is kept"):
        model_thread.run(_saved_bundle, tmp_path / "best")
    assert {p.name: p.read_bytes() for p in (tmp_path / "best").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.lock", "best"]
    assert read_info(tmp_path / "best").verified


THRESHOLDS = {"sensitivity_0.95": 0.33, "youden": 0.5, "chosen": "sensitivity_0.95", "target_sensitivity": 0.95,
              "split": "validation", "tiles": 40,
              "validation": {"sensitivity_0.95": {"sensitivity": 0.95, "specificity": 0.55},
                             "youden": {"sensitivity": 0.8, "specificity": 0.9}}}


def _edit_model_json(folder, **change):
    path = folder / "model.json"
    doc = json.loads(path.read_text())
    doc.update(change)
    for key in [k for k, v in change.items() if v is ...]:
        del doc[key]
    path.write_text(json.dumps(doc))


def test_a_model_without_a_threshold_uses_one_half_and_says_so(model_thread, tmp_path):
    from core.models.bundle import default_threshold, describe_threshold, read_info

    model_thread.run(_saved_bundle, tmp_path)
    _edit_model_json(tmp_path, threshold=..., thresholds=...)  # as bundles written before thresholds
    info = read_info(tmp_path)
    assert info.threshold is None and info.thresholds is None
    assert default_threshold(info) == (0.5, "0.5 (the model records none)")
    assert "threshold 0.5: the model records none" in describe_threshold(info)
    assert describe_threshold(info, 0.25) == "threshold 0.25 (given)"


def test_the_recorded_threshold_is_read_back_exactly_and_described(model_thread, tmp_path):
    from core.models.bundle import default_threshold, describe_threshold, read_info

    model_thread.run(_saved_bundle, tmp_path)
    _edit_model_json(tmp_path, threshold=0.33, thresholds=THRESHOLDS)
    info = model_thread.run(load_bundle, tmp_path).info
    assert info.threshold == 0.33 and info.thresholds == THRESHOLDS
    assert default_threshold(info) == (0.33, "model")
    assert describe_threshold(info) == ("threshold 0.33 from the model (chosen on 40 validation tiles at sensitivity "
                                        "0.95; validation sensitivity 0.950, specificity 0.550)")
    _edit_model_json(tmp_path, threshold=0.4)  # a hand-set threshold is the model's, said so
    info = read_info(tmp_path)
    assert default_threshold(info) == (0.4, "model") and "set in its model.json" in describe_threshold(info)


@pytest.mark.parametrize("change, message", [
    ({"threshold": 1.5}, "threshold must be a tumour probability from 0 to 1"),
    ({"threshold": -0.1}, "threshold must be"),
    ({"threshold": "0.3"}, "threshold must be"),
    ({"threshold": True}, "threshold must be"),
    ({"threshold": 1e309}, "threshold must be"),  # json writes Infinity
    ({"thresholds": [0.3]}, "thresholds must be a JSON object"),
    ({"thresholds": {**THRESHOLDS, "youden": 2}}, "thresholds.youden must be"),
    ({"thresholds": {**THRESHOLDS, "sensitivity_0.95": None}}, "thresholds.sensitivity_0.95 must be"),
    ({"thresholds": {**THRESHOLDS, "chosen": "magic"}}, "thresholds.chosen"),
    ({"thresholds": {**THRESHOLDS, "target_sensitivity": 0}}, "target_sensitivity"),
    ({"thresholds": {**THRESHOLDS, "tiles": -3}}, "thresholds.tiles"),
    ({"thresholds": {**THRESHOLDS, "validation": {"youden": {"sensitivity": 7}}}}, "thresholds.validation"),
])
def test_tampered_thresholds_are_refused_naming_the_file(model_thread, tmp_path, change, message):
    from core.models.bundle import read_info

    model_thread.run(_saved_bundle, tmp_path)
    _edit_model_json(tmp_path, threshold=0.33, thresholds=THRESHOLDS)
    _edit_model_json(tmp_path, **change)
    with pytest.raises(ModelError, match=f"model.json: .*{message}"):
        read_info(tmp_path)
