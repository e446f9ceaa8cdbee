"""core.inference.heatmap: colour maps, heatmap images, the blended overview, the tile table and the TIFF overlay."""

import numpy as np
import pytest

from core.inference.heatmap import (COLORMAP_LABELS, COLORMAPS, blend_over, blended_overview, colormap, colour_at,
                                    colour_cells, colour_index, colour_probabilities, heatmap_image, legend_image,
                                    tiles_csv, write_overlay_tiff)
from core.inference.predict import ProbabilityGrid
from core.slide import open_slide


def _grid():
    probs = np.full((3, 4), np.nan, np.float32)
    probs[1, 1], probs[1, 2], probs[2, 3] = 0.0, 1.0, 0.5
    return ProbabilityGrid(probs=probs, origin=(0, 0), stride=100, tile_l0=100, tile_px=50, mpp=2.0,
                           slide_size=(400, 300))


#: Entries 0, 128 and 255 of the published tables (matplotlib's ``_cm_listed.py``; Google's turbo), to 8 bits.
PUBLISHED = {
    "viridis": [(0.267004, 0.004874, 0.329415), (0.127568, 0.566949, 0.550556), (0.993248, 0.906157, 0.143936)],
    "magma": [(0.001462, 0.000466, 0.013866), (0.716387, 0.214982, 0.475290), (0.987053, 0.991438, 0.749504)],
    "cividis": [(0.000000, 0.135112, 0.304751), (0.488697, 0.485318, 0.471008), (0.995737, 0.909344, 0.217772)],
    "turbo": [(0.18995, 0.07176, 0.23217), (0.64362, 0.98999, 0.23356), (0.47960, 0.01583, 0.01055)],
}


def test_colour_maps_match_the_published_tables():
    assert COLORMAPS == ("viridis", "magma", "cividis", "turbo") and set(COLORMAP_LABELS) == set(COLORMAPS)
    for name, entries in PUBLISHED.items():
        table = colormap(name)
        assert table.shape == (256, 3) and table.dtype == np.uint8 and not table.flags.writeable
        for index, rgb in zip((0, 128, 255), entries):
            assert tuple(table[index]) == tuple(round(255 * v) for v in rgb), (name, index)
        steps = np.abs(np.diff(table.astype(int), axis=0)).max()
        assert steps <= 8, (name, steps)  # a smooth table: no entry copied out of place
    for name in ("viridis", "magma", "cividis"):
        lightness = colormap(name).astype(float) @ [0.299, 0.587, 0.114]
        assert np.all(np.diff(lightness) > -1.0), name  # perceptually ordered: never gets darker
    with pytest.raises(ValueError, match="unknown colour map 'jet'; choose one of viridis, magma, cividis, turbo"):
        colormap("jet")


def test_the_probability_to_pixel_rule():
    probs = np.array([0.0, 1.0, np.nan, 0.5, -1.0, 2.0, 0.3, 0.2999], np.float32)
    assert colour_index(probs).tolist() == [0, 255, 0, 128, 0, 255, 76, 76]
    steps = np.arange(256) / 255
    values = np.concatenate([steps, steps + 0.5 / 255, np.random.default_rng(0).random(10000)]).astype(np.float32)
    expected = np.rint(np.clip(values, 0, 1) * np.float32(255)).astype(np.uint8)  # ties to even, in float32
    assert np.array_equal(colour_index(values), expected)
    assert np.array_equal(colour_index(values.reshape(-1, 8)), expected.reshape(-1, 8))  # any shape, one rule
    assert colour_index(np.float32(0.5)) == 128 and colour_index(np.zeros((0, 3))).shape == (0, 3)
    rgba = colour_probabilities(probs, "magma", threshold=0.3)
    shown = [False, True, False, True, False, True, True, False]  # NaN and below the threshold: hidden
    assert (rgba[:, 3] == 255).tolist() == shown and (rgba[:, 3] == 0).tolist() == [not s for s in shown]
    assert not rgba[~np.array(shown)].any()  # hidden pixels are all zero (valid premultiplied)
    assert tuple(rgba[1, :3]) == colour_at("magma", 1.0) == tuple(colormap("magma")[255])
    base = np.full((8, 3), 200, np.uint8)
    out = blend_over(base, rgba, 0.5)
    assert tuple(out[2]) == (200, 200, 200)
    assert np.array_equal(out[1], np.round(200 * 0.5 + colormap("magma")[255] * 0.5).astype(np.uint8))
    assert np.array_equal(blend_over(base, rgba, 1.0)[shown], rgba[shown, :3])


@pytest.mark.parametrize("name", COLORMAPS)
def test_every_colour_map_makes_every_picture(name):
    grid = _grid()
    thumb = np.full((30, 40, 3), 200, np.uint8)
    image = heatmap_image(grid, 40, 30, name)
    assert tuple(image[15, 25, :3]) == colour_at(name, 1.0) and image[15, 25, 3] == 255
    assert blended_overview(thumb, grid, cmap=name).shape == (30, 40, 3)
    assert tuple(legend_image(200, 40, name)[5, 0]) == colour_at(name, 0.0)


def test_cells_and_images():
    grid = _grid()
    cells = colour_cells(grid)
    assert cells[0, 0, 3] == 0 and cells[1, 1, 3] == 255 and tuple(cells[1, 2, :3]) == (0xfd, 0xe7, 0x25)
    assert colour_cells(grid, threshold=0.6)[1, 1, 3] == 0
    image = heatmap_image(grid, 40, 30)  # 10 image pixels per cell
    assert image.shape == (30, 40, 4)
    assert tuple(image[15, 25]) == tuple(cells[1, 2]) and image[5, 5, 3] == 0


def test_blended_overview_blends_and_outlines():
    grid = _grid()
    thumb = np.full((300, 400, 3), 200, np.uint8)
    out = blended_overview(thumb, grid, opacity=0.5, threshold=0.75)
    expected = np.round(200 * 0.5 + colormap()[0].astype(float) * 0.5)
    assert np.abs(out[150, 150].astype(float) - expected).max() <= 1  # the p=0 tile, blended
    assert tuple(out[50, 50]) == (200, 200, 200)  # no tissue: untouched
    assert tuple(out[100, 250]) == (255, 255, 255)  # the outline of the p=1 tile's top edge
    assert tuple(out[250, 350]) != (255, 255, 255)  # p=0.5 is under the threshold: no outline


def test_legend_and_table():
    legend = legend_image(200, 40, threshold=0.3)
    assert legend.shape == (40, 200, 3) and tuple(legend[5, 0]) == tuple(colormap()[0])
    rows = tiles_csv(_grid(), 0.5, truth=np.array([[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1]], np.int8)).splitlines()
    assert rows[0] == "row,col,x,y,size,probability,tumour,marked_tumour"
    assert rows[1:] == ["1,1,100,100,100,0.0000,0,0", "1,2,200,100,100,1.0000,1,1", "2,3,300,200,100,0.5000,1,"]


def test_overlay_tiff_is_a_pyramid_openslide_reads(tmp_path):
    probs = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    probs[:5] = np.nan
    grid = ProbabilityGrid(probs=probs, origin=(0, 0), stride=64, tile_l0=64, tile_px=32, mpp=1.0,
                           slide_size=(2600, 1950))
    path = write_overlay_tiff(grid, tmp_path / "overlay.tif", (0.5, 0.5), tile=256)
    with open_slide(path) as overlay:
        assert overlay.dimensions == (2600, 1950) and overlay.level_count == 3
        assert overlay.mpp == pytest.approx((0.5, 0.5))
        region = overlay.read_region(0, 0, 0, 2600, 1950)[..., 0]
    assert region[10, 10] == 0  # row 0: not predicted
    assert region[6 * 64 + 3, 7 * 64 + 3] == 1 + round(254 * float(probs[6, 7]))
    assert region[1930:, :].max() == 0  # below the grid
