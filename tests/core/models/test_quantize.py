"""core.models.quantize: the INT8 variant made with mx.contrib.quantization (oneDNN), calibrated on a synthetic
slide, against FP32 on another (calls agree on at least 99 % of tiles), kept with its hash, and refused when it
changes too many calls, was changed, or uses foreign operators (real MXNet on small data)."""

import json
import shutil

import numpy as np
import pytest

from core.demo import DEMO_MODEL
from core.errors import ModelError
from core.inference.predict import predict_slide
from core.models.bundle import META_FILE, read_info
from core.models.engine import engine
from core.models.quantize import INT8_PARAMS, INT8_SYMBOL, check_int8_graph, load_int8, quantize_bundle


@pytest.fixture(scope="module")
def int8_model(slide_pair, tmp_path_factory):
    """A copy of the demo model with an INT8 variant calibrated on one synthetic slide (head chosen by speed)."""
    folder = tmp_path_factory.mktemp("int8") / "demo"
    shutil.copytree(DEMO_MODEL, folder)
    summary = quantize_bundle(folder, [slide_pair[1].slide_path], calib_tiles=100, check_tiles=100)
    return folder, summary


def test_the_variant_is_kept_with_its_calibration_summary(int8_model):
    folder, summary = int8_model
    info = read_info(folder)
    assert info.variant_file("int8", "symbol") == INT8_SYMBOL and info.variant_file("int8", "params") == INT8_PARAMS
    block = info.variants["int8"]
    assert block["calib_mode"] == "naive" and block["calibration_tiles"] == 100
    assert block["check"]["tiles"] >= 50 and block["check"]["calls_agree"] >= 0.99
    assert set(block["head_tiles_per_s"]) == {"fp32", "int8"}
    assert info.variant_file("onnx") == "model.onnx"  # the other variant is kept
    graph = json.loads((folder / INT8_SYMBOL).read_text())
    assert any(n["op"] == "_sg_mkldnn_conv" and n.get("attrs", {}).get("quantized") == "true" for n in graph["nodes"])


def test_int8_calls_agree_with_fp32_on_an_unseen_slide(int8_model, slide_pair):
    folder, _ = int8_model
    path = slide_pair[0].slide_path
    fp32 = predict_slide(path, folder, device="cpu")
    int8 = predict_slide(path, folder, device="cpu", precision="int8")
    assert np.array_equal(fp32.done, int8.done) and fp32.done.sum() > 150
    a, b = fp32.probs[fp32.done], int8.probs[int8.done]
    assert np.mean((a >= 0.5) == (b >= 0.5)) >= 0.99
    assert np.abs(a - b).max() < 0.2 and int8.model["precision"] == "int8"


def test_a_quantised_head_is_stored_as_float32_and_cast_back(tmp_path, slide_pair):
    folder = tmp_path / "demo"
    shutil.copytree(DEMO_MODEL, folder)
    summary = quantize_bundle(folder, [slide_pair[1].slide_path], calib_tiles=60, check_tiles=60, head="int8",
                              calib_mode="entropy", min_agreement=0.9)  # this test is about storing, not accuracy
    assert summary["quantize_head"] and set(summary["casts"].values()) == {"int8"}
    tiles = np.random.default_rng(0).integers(0, 256, (4, 128, 128, 3), dtype=np.uint8)
    probs = engine().run(lambda: load_int8(folder).predict(tiles))
    assert probs.shape == (4, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_a_variant_that_changes_too_many_calls_is_refused(tmp_path, slide_pair):
    folder = tmp_path / "demo"
    shutil.copytree(DEMO_MODEL, folder)
    before = (folder / META_FILE).read_bytes()
    with pytest.raises(ModelError, match=r"demo: the INT8 network changes the call of .* more than the"):
        quantize_bundle(folder, [slide_pair[1].slide_path], calib_tiles=40, check_tiles=40, head="fp32",
                        min_agreement=1.01)
    assert (folder / META_FILE).read_bytes() == before and not (folder / INT8_SYMBOL).exists()


def test_a_changed_int8_file_is_refused(int8_model, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(int8_model[0], folder)
    data = bytearray((folder / INT8_PARAMS).read_bytes())
    data[-3] ^= 0x10
    (folder / INT8_PARAMS).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"model-int8-0000\.params.*SHA-256"):
        engine().run(lambda: load_int8(folder))


def test_foreign_operators_in_an_int8_graph_are_refused(tmp_path):
    doc = {"nodes": [{"op": "null", "name": "data", "inputs": []},
                     {"op": "_sg_mkldnn_conv", "name": "c", "inputs": [[0, 0, 0]],
                      "subgraphs": [{"nodes": [{"op": "_contrib_ifelse", "name": "x", "inputs": []}]}]}],
           "heads": [[1, 0, 0]]}
    with pytest.raises(ModelError, match=r"q\.json: the INT8 graph uses an operator"):
        check_int8_graph(tmp_path / "q.json", doc)


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ModelError, match="calibration mode 'best' not understood"):
        quantize_bundle(tmp_path, calib_mode="best")
    with pytest.raises(ModelError, match="head 'fp16' not understood"):
        quantize_bundle(tmp_path, head="fp16")


def test_training_can_end_with_a_checked_int8_variant_or_say_why_not(tmp_path, monkeypatch):
    from core.models import quantize
    from core.models.train import train
    from tests.core.models.test_train import _textures

    data = _textures(48, seed=1), _textures(24, seed=2)
    fast = dict(arch="cnn", epochs=1, batch_size=16, device="cpu", early_stopping_patience=None, mpp=0.5,
                onnx=False)
    real = quantize.quantize_bundle
    # this test is about where the tiles go, not accuracy (a 1-epoch network's threshold sits among its calls;
    # the demo model's INT8 accuracy is checked above): any agreement is kept here
    monkeypatch.setattr(quantize, "quantize_bundle", lambda *a, **k: real(*a, **k, min_agreement=0.0))
    result = train(*data, tmp_path / "with", int8=True, **fast)
    # calibrated on the training tiles alone, checked on every validation tile
    assert result.int8["calibration_tiles"] == len(data[0]) and result.int8["check"]["tiles"] == len(data[1])
    assert read_info(result.bundle).variant_file("int8", "symbol") == INT8_SYMBOL  # hash-checked with the bundle
    probs = engine().run(lambda: load_int8(result.bundle).predict(data[1].images))
    assert probs.shape == (len(data[1]), 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert train(*data, tmp_path / "without", **fast).int8 is None

    # a variant that must agree on more than every tile: refused, FP32 kept
    monkeypatch.setattr(quantize, "quantize_bundle", lambda *a, **k: real(*a, **k, min_agreement=1.01))
    refused = train(*data, tmp_path / "refused", int8=True, **fast)
    assert refused.bundle is not None and "error" in refused.int8
    assert read_info(refused.bundle).variant_file("int8", "symbol") is None
