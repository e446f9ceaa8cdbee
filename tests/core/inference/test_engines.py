"""core.inference.engines and predict_slide's engine choice: ONNX Runtime against MXNet on a synthetic slide,
the same preprocessing for both (stain normalisation included), and models without the variant asked for."""

import shutil

import numpy as np
import pytest

from core.demo import DEMO_MODEL
from core.errors import ModelError
from core.inference.engines import check_names, load_model
from core.inference.predict import predict_slide
from core.models.bundle import add_bundle_files, read_info
from core.models.engine import engine
from core.tiles.stain import StainNormaliser


@pytest.fixture(scope="module")
def grids(slide_pair):
    """The demo model's grids over a synthetic slide it never saw, by MXNet and by ONNX Runtime."""
    path = slide_pair[0].slide_path
    return {name: predict_slide(path, DEMO_MODEL, device="cpu", engine=name) for name in ("mxnet", "onnx")}


def test_onnx_runtime_gives_the_mxnet_grid(grids):
    mx_grid, onnx_grid = grids["mxnet"], grids["onnx"]
    assert onnx_grid.complete and np.array_equal(mx_grid.done, onnx_grid.done) and mx_grid.done.sum() > 150
    a, b = mx_grid.probs[mx_grid.done], onnx_grid.probs[onnx_grid.done]
    assert np.abs(a - b).max() <= 1e-3
    assert np.mean((a >= 0.5) == (b >= 0.5)) >= 0.99
    assert onnx_grid.model["engine"] == "onnx" and "engine" not in mx_grid.model
    assert onnx_grid.model["sha256"] == mx_grid.model["sha256"]


def test_both_engines_see_the_same_stain_normalised_input(tmp_path):
    folder = tmp_path / "stained"
    shutil.copytree(DEMO_MODEL, folder)
    rng = np.random.default_rng(0)
    reference = rng.integers(60, 230, (8, 128, 128, 3), dtype=np.uint8)
    add_bundle_files(folder, {}, {"stain": StainNormaliser("reinhard").fit(reference).to_json()})
    assert read_info(folder).stain is not None
    tiles = rng.integers(0, 256, (6, 128, 128, 3), dtype=np.uint8)

    def run():
        mxnet_model, onnx_model = load_model(folder, "cpu"), load_model(folder, "cpu", engine="onnx")
        assert mxnet_model.stain is not None and onnx_model.stain is not None
        assert np.array_equal(mxnet_model.prepare(tiles), onnx_model.prepare(tiles))
        return mxnet_model.predict(tiles), onnx_model.predict(tiles), onnx_model.describe()

    a, b, words = engine().run(run)
    assert np.abs(a - b).max() <= 1e-4 and words.startswith("ONNX Runtime on CPU")


def test_a_model_without_onnx_is_refused_before_any_work(tmp_path, slide_pair):
    folder = tmp_path / "plain"
    shutil.copytree(DEMO_MODEL, folder)
    add_bundle_files(folder, {}, {"onnx": None})
    assert not (folder / "model.onnx").exists() and read_info(folder).variant_file("onnx") is None
    with pytest.raises(ModelError, match=r"plain: the model has no model\.onnx .* 'biopsia export-onnx"):
        predict_slide(slide_pair[0].slide_path, folder, device="cpu", engine="onnx")
    with pytest.raises(ModelError, match=r"no INT8 variant .* 'biopsia quantize"):
        predict_slide(slide_pair[0].slide_path, folder, device="cpu", precision="int8")


def test_engine_and_precision_names_are_checked():
    with pytest.raises(ModelError, match="engine 'tensorrt' not understood"):
        check_names("tensorrt", "fp32")
    with pytest.raises(ModelError, match="precision 'fp16' not understood"):
        check_names("mxnet", "fp16")
    with pytest.raises(ModelError, match="ONNX engine runs the FP32 network only"):
        check_names("onnx", "int8")


def test_testing_a_model_on_tiles_with_onnx_runtime_gives_the_mxnet_metrics(synthetic_slide):
    from core.models.onnx_export import sample_tiles
    from core.models.testing import test_model
    from core.tiles.arrays import TileArrays

    images, _ = sample_tiles(read_info(DEMO_MODEL), [synthetic_slide.slide_path], count=40)
    labels = np.arange(len(images)) % 2  # any labels: the two engines must score them alike
    tiles = TileArrays(images, labels, ["Non-tumour", "Tumour"])
    a = test_model(DEMO_MODEL, tiles, "cpu", 0.5)
    b = test_model(DEMO_MODEL, tiles, "cpu", 0.5, engine="onnx")
    assert b["device"].startswith("ONNX Runtime on CPU") and a["device"].startswith("CPU (")
    assert a["confusion_matrix"] == b["confusion_matrix"] and abs(a["auc"] - b["auc"]) < 1e-6
