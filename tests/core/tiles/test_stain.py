"""core.tiles.stain: HED deconvolution, stain jitter, Reinhard and Macenko normalisation, the "stain" JSON block."""

import json
import math

import numpy as np
import pytest
from skimage.color import rgb2hed

from core.errors import ModelError
from core.models.train import augment
from core.tiles.stain import (RGB_FROM_HED, StainNormaliser, hed_jitter, hed_to_rgb, lab_stats, light_jitter,
                              macenko_stains, rgb_to_hed)

H_VEC = np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])
E_VEC = np.array([0.07, 0.99, 0.11]) / np.linalg.norm([0.07, 0.99, 0.11])


def two_stain_tile(seed: int, size: int = 64, h_vec=H_VEC, e_vec=E_VEC, h_max=1.2, e_max=0.8) -> np.ndarray:
    """A synthetic H&E tile from known stain vectors: pure-H nuclei, pure-E stroma, mixtures, some glass."""
    rng = np.random.default_rng(seed)
    n = size * size
    conc = np.zeros((n, 2))
    kind = rng.integers(0, 4, n)
    conc[kind == 0, 0] = rng.uniform(0.3, h_max, (kind == 0).sum())  # haematoxylin only
    conc[kind == 1, 1] = rng.uniform(0.3, e_max, (kind == 1).sum())  # eosin only
    conc[kind == 2] = rng.uniform(0.2, 1.0, ((kind == 2).sum(), 2)) * [h_max, e_max]
    od = conc @ np.stack([h_vec, e_vec])  # kind 3 stays glass
    rgb = 255.0 * np.exp(-od) - 1.0  # Macenko's optical density: -ln((I + 1) / 255)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(size, size, 3)


class FixedDraws:
    """A stand-in generator whose uniform draws are fixed values, so the jitter is known."""

    def __init__(self, alpha, beta):
        self.values = [np.asarray(alpha, float), np.asarray(beta, float)]

    def uniform(self, low, high, size):
        return np.broadcast_to(self.values.pop(0), size).copy()


def test_hed_round_trip_is_identity_within_one_grey_level():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    every = np.stack(np.meshgrid(*(np.arange(0, 256, 5, dtype=np.uint8),) * 3), -1).reshape(1, -1, 3)
    for images in (pixels, every, two_stain_tile(1)):
        back = hed_to_rgb(rgb_to_hed(images))
        assert back.dtype == np.uint8 and back.shape == images.shape
        assert np.abs(back.astype(int) - images).max() <= 1


def test_deconvolution_is_scikit_images_in_natural_optical_density():
    tile = two_stain_tile(2)
    ours = np.maximum(rgb_to_hed(tile), 0)
    assert np.allclose(ours, rgb2hed(tile) * math.log(1e6), atol=1e-4)
    # a pure haematoxylin pixel has (almost) no eosin or DAB
    pure = hed_to_rgb(np.array([[[1.0, 0.0, 0.0]]]))
    h, e, d = rgb_to_hed(pure)[0, 0]
    assert h > 0.9 and abs(e) < 0.02 and abs(d) < 0.02
    assert np.allclose(RGB_FROM_HED[0], [0.65, 0.70, 0.29])


def test_hed_jitter_scales_and_shifts_the_stains_as_asked():
    tile = two_stain_tile(3)
    before = rgb_to_hed(tile)
    out = hed_jitter(tile, FixedDraws([1.3, 0.8, 1.0], [0.0, 0.0, 0.0]), sigma=0.3, bias=0.0)
    assert out.dtype == np.uint8 and out.shape == tile.shape
    after = rgb_to_hed(out)
    stained = before[..., 0] > 0.3
    assert np.median(after[..., 0][stained] / before[..., 0][stained]) == pytest.approx(1.3, abs=0.03)
    eosin = before[..., 1] > 0.3
    assert np.median(after[..., 1][eosin] / before[..., 1][eosin]) == pytest.approx(0.8, abs=0.03)
    shifted = rgb_to_hed(hed_jitter(tile, FixedDraws([1.0, 1.0, 1.0], [0.1, -0.05, 0.0])))
    assert np.median(shifted[..., 0] - before[..., 0]) == pytest.approx(0.1, abs=0.02)
    assert np.median(shifted[..., 1] - before[..., 1]) == pytest.approx(-0.05, abs=0.02)


def test_hed_jitter_keeps_uint8_range_and_draws_per_tile():
    rng = np.random.default_rng(4)
    batch = np.stack([two_stain_tile(s) for s in range(6)] + [np.zeros((64, 64, 3), np.uint8),
                                                               np.full((64, 64, 3), 255, np.uint8)])
    out = hed_jitter(batch, rng, sigma=0.5, bias=0.5)
    assert out.dtype == np.uint8 and out.shape == batch.shape and out.min() >= 0 and out.max() <= 255
    assert not np.array_equal(out[:6], batch[:6])
    ratios = [np.median(rgb_to_hed(o)[..., 0] / np.maximum(rgb_to_hed(b)[..., 0], 1e-3)) for o, b in zip(out, batch)]
    assert len({round(float(r), 2) for r in ratios[:6]}) > 3  # each tile its own draw
    assert np.array_equal(hed_jitter(batch, np.random.default_rng(9), 0.0, 0.0), hed_to_rgb(rgb_to_hed(batch)))
    with pytest.raises(ValueError, match="uint8"):
        hed_jitter(batch.astype(np.float32), rng)


def test_augment_modes():
    tiles = np.stack([two_stain_tile(s, 32) for s in range(4)])
    plain = augment(tiles, np.random.default_rng(0), stain="none")
    for a, b in zip(plain, tiles):  # flips and rotations only: the same pixels
        assert np.array_equal(np.sort(a.reshape(-1, 3), axis=0), np.sort(b.reshape(-1, 3), axis=0))
    hed = augment(tiles, np.random.default_rng(0), stain="hed")
    assert hed.dtype == np.uint8 and not np.array_equal(hed, plain)
    assert np.abs(hed.astype(int) - plain).mean() < 20  # a jitter, not a new image
    light = augment(tiles, np.random.default_rng(0))  # the default keeps the earlier light jitter
    rng = np.random.default_rng(0)
    first = tiles[0]
    if rng.random() < 0.5:
        first = first[:, ::-1]
    if rng.random() < 0.5:
        first = first[::-1]
    first = np.rot90(first, int(rng.integers(4)))
    assert np.array_equal(light[0], light_jitter(first, rng))
    with pytest.raises(ValueError, match="unknown stain augmentation"):
        augment(tiles, np.random.default_rng(0), stain="strong")


def test_reinhard_maps_a_tiles_lab_mean_and_std_to_the_target():
    target_tiles = np.stack([two_stain_tile(s) for s in range(5)])
    norm = StainNormaliser("reinhard").fit(target_tiles)
    mean, std = lab_stats(target_tiles)
    assert np.allclose(norm.params["target_mean"], mean.mean(0)) and np.allclose(norm.params["target_std"], std.mean(0))
    # another lab: stronger haematoxylin, weaker eosin
    other = hed_jitter(two_stain_tile(7), FixedDraws([1.25, 0.8, 1.0], [0.0, 0.0, 0.0]), 0.3, 0.0)
    before = np.abs(lab_stats(other)[0][0] - norm.params["target_mean"]).max()
    out = norm.apply(other)
    got_mean, got_std = lab_stats(out)
    assert np.abs(got_mean[0] - norm.params["target_mean"]).max() < 1.0 < before
    assert np.abs(got_std[0] - norm.params["target_std"]).max() < 1.0
    assert norm.apply(other[None]).shape == (1, 64, 64, 3)


def test_macenko_recovers_known_stain_vectors():
    h_vec = np.array([0.55, 0.78, 0.30])
    e_vec = np.array([0.10, 0.95, 0.30])
    h_vec, e_vec = h_vec / np.linalg.norm(h_vec), e_vec / np.linalg.norm(e_vec)
    tile = two_stain_tile(5, 96, h_vec, e_vec)
    stains, max_conc = macenko_stains(tile.reshape(-1, 3))
    assert stains[0] @ h_vec > 0.995 and stains[1] @ e_vec > 0.995
    assert max_conc[0] == pytest.approx(1.2, rel=0.1) and max_conc[1] == pytest.approx(0.8, rel=0.1)
    # normalising a tile of other stain vectors onto this one gives this one's colours
    norm = StainNormaliser("macenko").fit(tile)
    moved = norm.apply(two_stain_tile(5, 96))
    assert np.abs(moved.astype(int) - tile).mean() < 4 < np.abs(two_stain_tile(5, 96).astype(int) - tile).mean()
    glass = np.full((32, 32, 3), 250, np.uint8)
    assert np.array_equal(norm.apply(glass), glass)  # nothing stained: left as it is
    with pytest.raises(ValueError, match="too few stained"):
        StainNormaliser("macenko").fit(glass)


@pytest.mark.parametrize("method", ["reinhard", "macenko"])
def test_normaliser_json_round_trip(method):
    tiles = np.stack([two_stain_tile(s) for s in range(3)])
    norm = StainNormaliser(method).fit(tiles, "3 test tiles")
    doc = json.loads(json.dumps(norm.to_json()))
    assert doc["method"] == method and doc["fitted_on"] == "3 test tiles"
    again = StainNormaliser.from_json(doc, "m/model.json")
    shifted = hed_jitter(tiles, np.random.default_rng(1), 0.2, 0.05)
    assert np.array_equal(again.apply(shifted), norm.apply(shifted))
    assert again.to_json() == norm.to_json()


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(method="vahadane"), "unknown method"),
    (lambda d: d.pop("method"), "unknown method"),
    (lambda d: d.update(target_mean=[50.0, float("nan"), 1.0]), "finite"),
    (lambda d: d.update(target_mean=[50.0, float("inf"), 1.0]), "finite"),
    (lambda d: d.update(target_mean=[50.0, 1.0]), "3 finite numbers"),
    (lambda d: d.update(target_std=[1.0, True, 1.0]), "finite"),
    (lambda d: d.update(target_std=[1.0, 0.0, 1.0]), "must lie"),
    (lambda d: d.update(target_std="12"), "finite"),
    (lambda d: d.update(fitted_on=5), "fitted_on"),
])
def test_a_tampered_reinhard_block_is_refused_naming_the_file(change, words):
    doc = StainNormaliser("reinhard").fit(two_stain_tile(0)).to_json()
    change(doc)
    with pytest.raises(ModelError, match=words) as err:
        StainNormaliser.from_json(doc, "some/model.json")
    assert "some/model.json" in str(err.value) and "stain" in str(err.value)


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(stain_matrix=[[1.0, 0.0, 0.0]]), "2 x 3"),
    (lambda d: d.update(stain_matrix=[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), "must lie"),
    (lambda d: d.update(stain_matrix=[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]), "unit vectors"),
    (lambda d: d.update(stain_matrix=[[1.0, 0.0], [0.0, 1.0, 0.0]]), "2 x 3"),
    (lambda d: d.update(max_conc=[1.0, -1.0]), "must lie"),
])
def test_a_tampered_macenko_block_is_refused(change, words):
    doc = StainNormaliser("macenko").fit(two_stain_tile(0)).to_json()
    change(doc)
    with pytest.raises(ModelError, match=words):
        StainNormaliser.from_json(doc, "some/model.json")
    with pytest.raises(ModelError, match="JSON object"):
        StainNormaliser.from_json([doc], "some/model.json")


def test_a_fit_that_could_not_be_loaded_again_is_refused(monkeypatch):
    import core.tiles.stain as stain

    # a second stain without concentration (an image of one stain): no model may record it
    monkeypatch.setattr(stain, "macenko_stains", lambda pixels: (np.stack([H_VEC, E_VEC]), np.array([1.0, 0.0])))
    norm = StainNormaliser("macenko")
    with pytest.raises(ValueError, match="out of range.*max_conc"):
        norm.fit(two_stain_tile(6))
    assert norm.params is None
