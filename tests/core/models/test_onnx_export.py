"""core.models.onnx_export: model.onnx made with mx.onnx.export_model, repaired, checked against MXNet on real
tiles, kept in the bundle with its SHA-256, and refused when it differs or was changed (real MXNet, ONNX Runtime)."""

import json
import shutil

import mxnet as mx
import numpy as np
import onnx
import pytest
from mxnet.gluon import nn

from core.errors import ModelError
from core.inference.engines import load_model
from core.models import onnx_export
from core.models.bundle import META_FILE, ModelInfo, read_info, save_bundle
from core.models.engine import engine
from core.models.loading import load_bundle
from core.models.onnx_export import ONNX_FILE, check_onnx, export_onnx, onnx_session, sample_tiles
from core.demo import DEMO_MODEL


@pytest.fixture
def demo_copy(tmp_path):
    folder = tmp_path / "demo"
    shutil.copytree(DEMO_MODEL, folder)
    return folder


@pytest.fixture(scope="module")
def demo_tiles(synthetic_slide):
    """Tissue tiles of a synthetic slide at the demo model's 128 px and 1 µm/px."""
    tiles, _ = sample_tiles(read_info(DEMO_MODEL), [synthetic_slide.slide_path], count=48)
    assert len(tiles) >= 20
    return tiles


def mxnet_probs(folder, tiles):
    return engine().run(lambda: load_bundle(folder).predict(tiles))


def test_the_demo_model_ships_a_checked_onnx_file(demo_tiles):
    info = read_info(DEMO_MODEL)
    assert info.variant_file("onnx") == ONNX_FILE and ONNX_FILE in info.files
    record = info.variants["onnx"]
    assert record["max_abs_diff"] <= 1e-4 and record["opset"] == 13
    assert (DEMO_MODEL / ONNX_FILE).stat().st_size < 3_000_000
    session = onnx_session((DEMO_MODEL / ONNX_FILE).read_bytes())
    x = engine().run(lambda: load_bundle(DEMO_MODEL).prepare(demo_tiles))
    got = session.run(["probabilities"], {"data": x})[0]
    assert np.abs(got - mxnet_probs(DEMO_MODEL, demo_tiles)).max() <= 1e-4
    assert np.allclose(got.sum(1), 1, atol=1e-5)  # probabilities, not logits


def test_other_tools_can_read_it_opencv_dnn(demo_tiles):
    import cv2

    net = cv2.dnn.readNetFromONNX(str(DEMO_MODEL / ONNX_FILE))
    x = engine().run(lambda: load_bundle(DEMO_MODEL).prepare(demo_tiles[:4]))
    net.setInput(x)
    assert np.abs(net.forward() - mxnet_probs(DEMO_MODEL, demo_tiles[:4])).max() <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(DEMO_MODEL / ONNX_FILE)).metadata_props}
    assert json.loads(meta["classes"]) == ["Non-tumour", "Tumour"] and meta["tile_px"] == "128"
    assert json.loads(meta["mean_rgb"]) == [0.485, 0.456, 0.406]


def test_export_writes_the_file_its_hash_and_the_check(demo_copy, demo_tiles):
    (demo_copy / ONNX_FILE).unlink()
    doc = json.loads((demo_copy / META_FILE).read_text())
    del doc["files"][ONNX_FILE], doc["onnx"]
    (demo_copy / META_FILE).write_text(json.dumps(doc))
    assert read_info(demo_copy).variant_file("onnx") is None
    check = export_onnx(demo_copy, tiles=demo_tiles)
    assert check.tiles == len(demo_tiles) and check.max_abs_diff <= 1e-4 and check.calls_agree == 1.0
    info = read_info(demo_copy)
    assert info.variant_file("onnx") == ONNX_FILE and info.variants["onnx"]["checked_tiles"] == len(demo_tiles)
    assert (demo_copy / "README.md").is_file()  # the folder's other files are kept
    model = onnx.load(str(demo_copy / ONNX_FILE))
    assert [i.name for i in model.graph.input] == ["data"]  # weights are constants, not inputs
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    eps = [a.f for n in model.graph.node if n.op_type == "BatchNormalization" for a in n.attribute
           if a.name == "epsilon"]
    assert len(eps) == 4 and np.allclose(eps, 1e-5)  # Gluon's, not the converter's 1e-3 default


def fixed_gamma_bundle(folder):
    """A small network whose BatchNorm fixes gamma (MXNet ignores the stored gamma of 3) and uses eps 1e-2."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, use_bias=False), nn.BatchNorm(scale=False, epsilon=1e-2),
            nn.Activation("relu"), nn.GlobalAvgPool2D(), nn.Dense(2))
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))
    for name, param in net.collect_params().items():
        if name.endswith("gamma"):
            param.set_data(mx.nd.full(param.shape, 3.0))
        if name.endswith("running_var"):
            param.set_data(mx.nd.full(param.shape, 0.02))
    net.hybridize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    info = ModelInfo(architecture="cnn", classes=["Non-tumour", "Tumour"], tile_px=32, mpp=1.0)
    return save_bundle(folder, net, info)


def test_batchnorm_fix_gamma_and_eps_are_honoured(tmp_path):
    folder = engine().run(lambda: fixed_gamma_bundle(tmp_path / "m"))
    tiles = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    check = export_onnx(folder, tiles=tiles)
    assert check.max_abs_diff <= 1e-4


def test_an_export_that_differs_from_mxnet_is_refused_and_nothing_written(tmp_path, monkeypatch):
    folder = engine().run(lambda: fixed_gamma_bundle(tmp_path / "m"))
    before = (folder / META_FILE).read_bytes()
    monkeypatch.setattr(onnx_export, "_fix_batchnorm", lambda *a: None)  # the converter's own BatchNorm
    tiles = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ModelError, match=r"model\.onnx: the ONNX export differs from MXNet by up to"):
        export_onnx(folder, tiles=tiles)
    assert not (folder / ONNX_FILE).exists() and (folder / META_FILE).read_bytes() == before


def test_a_changed_onnx_file_is_refused(demo_copy):
    data = bytearray((demo_copy / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (demo_copy / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"model\.onnx.*SHA-256"):
        read_info(demo_copy)
    with pytest.raises(ModelError, match=r"model\.onnx"):
        engine().run(lambda: load_model(demo_copy, "cpu", engine="onnx"))


def test_an_onnx_block_naming_an_unhashed_file_is_refused(demo_copy):
    doc = json.loads((demo_copy / META_FILE).read_text())
    doc["onnx"]["file"] = "other.onnx"
    (demo_copy / META_FILE).write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"model\.json: onnx\.file .* not a file whose SHA-256"):
        read_info(demo_copy)


def test_foreign_onnx_graphs_are_refused(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Sin", ["data"], ["probabilities"])], "g",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 2])])
    data = helper.make_model(graph).SerializeToString()
    with pytest.raises(ModelError, match=r"x\.onnx: the ONNX graph uses operators .* \(Sin\)"):
        check_onnx(tmp_path / "x.onnx", data)
    with pytest.raises(ModelError, match=r"x\.onnx: not an ONNX model"):
        check_onnx(tmp_path / "x.onnx", b"\x08\x07garbage" * 10)


def test_a_network_the_converter_cannot_translate_says_why(tmp_path, monkeypatch):
    folder = tmp_path / "demo"
    shutil.copytree(DEMO_MODEL, folder)

    def broken(*args, **kwargs):
        raise NotImplementedError("operator X has no ONNX translation")

    import mxnet.onnx

    monkeypatch.setattr(mxnet.onnx, "export_model", broken)
    with pytest.raises(ModelError, match=r"model-symbol\.json: MXNet's ONNX converter cannot translate this network "
                                         r"\(NotImplementedError: operator X"):
        export_onnx(folder, tiles=np.zeros((4, 128, 128, 3), np.uint8))


def test_resnet18_exports_too(tmp_path):
    from core.models.zoo import build

    def make():
        net = build("resnet18", 2)
        net.initialize(mx.init.Xavier())
        net.hybridize()
        net(mx.nd.zeros((1, 3, 32, 32)))
        return save_bundle(tmp_path / "rn", net, ModelInfo("resnet18", ["Non-tumour", "Tumour"], 32, 2.0))

    folder = engine().run(make)
    tiles = np.random.default_rng(1).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    assert export_onnx(folder, tiles=tiles).max_abs_diff <= 1e-4
    ops = {n.op_type for n in onnx.load(str(folder / ONNX_FILE)).graph.node}
    assert "Add" in ops and ops <= onnx_export.OPERATORS


def test_training_ends_with_a_checked_model_onnx_or_says_why_not(tmp_path, monkeypatch):
    from core.models.train import train
    from tests.core.models.test_train import _textures

    data = _textures(32, seed=1), _textures(16, seed=2)
    fast = dict(arch="cnn", epochs=1, batch_size=16, device="cpu", early_stopping_patience=None, mpp=0.5)
    result = train(*data, tmp_path / "with", **fast)
    assert result.onnx["max_abs_diff"] <= onnx_export.TOLERANCE and result.onnx["checked_tiles"] == min(len(data[1]), 64)
    info = read_info(result.bundle)  # hash-checked: model.onnx is one of the bundle's files
    assert info.variant_file("onnx") == ONNX_FILE
    prepared = engine().run(lambda: load_bundle(result.bundle).prepare(data[1].images))
    probs = onnx_session((result.bundle / ONNX_FILE).read_bytes()).run(None, {"data": prepared})[0]
    np.testing.assert_allclose(probs, mxnet_probs(result.bundle, data[1].images), atol=1e-4)

    assert train(*data, tmp_path / "without", onnx=False, **fast).onnx is None
    assert not (tmp_path / "without" / "best" / ONNX_FILE).exists()

    real = onnx_export.verify_onnx  # an export that differs from MXNet (a tolerance nothing meets): not kept
    monkeypatch.setattr(onnx_export, "verify_onnx", lambda *a, **k: real(*a[:5], tolerance=-1.0))
    refused = train(*data, tmp_path / "refused", **fast)
    assert refused.bundle is not None and "differs from MXNet" in refused.onnx["error"]
    assert str(refused.bundle / ONNX_FILE) in refused.onnx["error"]
    assert not (refused.bundle / ONNX_FILE).exists() and read_info(refused.bundle).variant_file("onnx") is None
