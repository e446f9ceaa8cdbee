"""A model trained with stain normalisation: recorded in model.json, applied the same way by every prediction path,
and a tampered "stain" block refused (real MXNet, small data)."""

import json

import cv2
import numpy as np
import pytest

from core.errors import ModelError
from core.inference.predict import predict_slide
from core.models.bundle import META_FILE, read_info
from core.models.engine import engine
from core.models.loading import load_bundle, normalise, preprocess
from core.models.testing import predict_tiles
from core.models.train import train
from core.tiles.arrays import TileArrays
from core.tiles.stain import StainNormaliser, hed_jitter

TILE = 32


def stained_tiles(n: int, seed: int) -> TileArrays:
    """Tumour tiles dense in haematoxylin, non-tumour ones mostly eosin; every tile its own stain (lab) shift."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    h = np.where(labels[:, None, None] == 1, 0.9, 0.25) * rng.uniform(0.5, 1.0, (n, TILE, TILE))
    e = rng.uniform(0.3, 0.8, (n, TILE, TILE))
    od = h[..., None] * np.array([0.65, 0.70, 0.29]) + e[..., None] * np.array([0.07, 0.99, 0.11])
    tiles = np.clip(255 * np.exp(-od), 0, 255).astype(np.uint8)
    return TileArrays(hed_jitter(tiles, rng, sigma=0.3, bias=0.05), labels)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A compact CNN on 32 px tiles at 1 µm/px with a Reinhard normaliser fitted on its training tiles."""
    out = tmp_path_factory.mktemp("stain-model")
    result = train(stained_tiles(96, 0), stained_tiles(32, 1), out, epochs=2, batch_size=32, device="cpu",
                   early_stopping_patience=None, mpp=1.0, stain_augment="hed", stain_normalise="reinhard")
    assert result.bundle is not None
    return result


@pytest.fixture(scope="module")
def stain_model(trained):
    return trained.bundle


def test_validation_in_training_saw_what_prediction_sees(trained):
    from core.metrics import BinaryMetrics

    val = stained_tiles(32, 1)
    probs, _ = predict_tiles(trained.bundle, val, device="cpu")
    best = trained.history[trained.best_epoch]
    assert BinaryMetrics(val.labels, probs[:, 1]).auc == pytest.approx(best["auc"], abs=1e-9)
    loss = -np.log(probs[np.arange(len(val)), val.labels]).mean()
    assert loss == pytest.approx(best["loss"], abs=1e-4)


def test_the_normaliser_is_recorded(stain_model):
    doc = json.loads((stain_model / META_FILE).read_text())
    assert doc["stain"]["method"] == "reinhard" and doc["stain"]["fitted_on"] == "96 training tiles"
    info = read_info(stain_model)
    assert info.stain == doc["stain"]
    assert info.training["settings"]["stain_augment"] == "hed"
    assert info.training["settings"]["stain_normalise"] == "reinhard"
    expected = StainNormaliser("reinhard").fit(stained_tiles(96, 0).images).to_json()
    assert np.allclose(info.stain["target_mean"], expected["target_mean"])


def test_every_prediction_path_applies_it_identically(stain_model, tmp_path):
    # a 256 x 256 px region of 64 tiles, read back by the whole-slide path at the model's 1 µm/px
    tiles = stained_tiles(64, 2)
    mosaic = tiles.images.reshape(8, 8, TILE, TILE, 3).transpose(0, 2, 1, 3, 4).reshape(8 * TILE, 8 * TILE, 3)
    region = tmp_path / "region.png"
    cv2.imwrite(str(region), cv2.cvtColor(mosaic, cv2.COLOR_RGB2BGR))

    def direct():
        model = load_bundle(stain_model)
        stain = model.stain
        by_hand = model.predict_prepared(preprocess(tiles.images, model._mean, model._std, stain))
        unnormalised = model.predict_prepared(normalise(tiles.images, model._mean, model._std))
        return model.predict(tiles.images), by_hand, unnormalised, stain

    loaded, by_hand, unnormalised, stain = engine().run(direct)
    assert stain is not None and stain.method == "reinhard"
    tested, _ = predict_tiles(stain_model, tiles, device="cpu", batch_size=7)
    grid = predict_slide(region, stain_model, device="cpu", batch_size=5, slide_mpp=(1.0, 1.0), tissue_min=0.0)
    done = grid.predicted
    assert done.sum() > 32
    slide_probs = grid.probs.reshape(-1)[done.reshape(-1)]
    np.testing.assert_allclose(tested, loaded, atol=1e-5)
    np.testing.assert_allclose(by_hand, loaded, atol=1e-5)
    np.testing.assert_allclose(slide_probs, loaded[done.reshape(-1), 1], atol=1e-5)
    # and the normalisation matters: without it the same network scores these tiles otherwise
    assert np.abs(unnormalised - loaded).max() > 1e-3


@pytest.mark.parametrize("stain, words", [
    ({"method": "vahadane"}, "unknown method"),
    ({"method": "reinhard", "target_mean": [50, 10], "target_std": [10, 10, 10]}, "target_mean"),
    ({"method": "macenko", "stain_matrix": [[1, 0, 0], [0, 1, 0]], "max_conc": [1e400, 1]}, "finite"),
    ("reinhard", "JSON object"),
])
def test_a_tampered_stain_block_is_refused(stain_model, tmp_path, stain, words):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(stain_model, folder)
    doc = json.loads((folder / META_FILE).read_text())
    doc["stain"] = stain
    (folder / META_FILE).write_text(json.dumps(doc))
    for read in (read_info, lambda f: engine().run(load_bundle, f)):
        with pytest.raises(ModelError, match=words) as err:
            read(folder)
        assert str(folder / META_FILE) in str(err.value)
    doc["stain"] = None  # removing the block is a model without normalisation, as older models were
    (folder / META_FILE).write_text(json.dumps(doc))
    assert read_info(folder).stain is None


def test_a_stated_reference_image_sets_the_target(tmp_path):
    from core.errors import DatasetError
    from core.tiles.stain import lab_stats

    reference = stained_tiles(4, 5).images.reshape(4 * TILE, TILE, 3)
    path = tmp_path / "reference.png"
    cv2.imwrite(str(path), cv2.cvtColor(reference, cv2.COLOR_RGB2BGR))
    result = train(stained_tiles(16, 0), stained_tiles(8, 1), tmp_path / "m", epochs=1, batch_size=8, device="cpu",
                   stain_normalise="reinhard", stain_reference=path)
    info = read_info(result.bundle)
    assert info.stain["fitted_on"] == "reference image reference.png"
    mean, std = lab_stats(reference)
    assert np.allclose(info.stain["target_mean"], mean[0]) and np.allclose(info.stain["target_std"], std[0])
    with pytest.raises(DatasetError, match="cannot read the stain reference"):
        train(stained_tiles(16, 0), stained_tiles(8, 1), tmp_path / "n", epochs=1, device="cpu",
              stain_normalise="macenko", stain_reference=tmp_path / "missing.png")
    with pytest.raises(ModelError, match="needs a stain normalisation"):
        train(stained_tiles(16, 0), stained_tiles(8, 1), tmp_path / "o", epochs=1, device="cpu", stain_reference=path)
