"""core.inference.heatmap: colour maps, heatmap images, the blended overview, the tile table and the TIFF overlay."""

import numpy as np
import pytest

from core.inference.heatmap import (COLORMAPS, blended_overview, colormap, colour_cells, heatmap_image, legend_image, tiles_csv,
                          write_overlay_tiff)
from core.inference.predict import ProbabilityGrid
from core.slide import open_slide


def _grid():
    probs = np.full((3, 4), np.nan, np.float32)
    probs[1, 1], probs[1, 2], probs[2, 3] = 0.0, 1.0, 0.5
    return ProbabilityGrid(probs=probs, origin=(0, 0), stride=100, tile_l0=100, tile_px=50, mpp=2.0,
                           slide_size=(400, 300))


def test_colour_maps_match_their_published_ends():
    assert set(COLORMAPS) == {"viridis", "magma", "cividis"}
    viridis = colormap("viridis")
    assert viridis.shape == (256, 3) and tuple(viridis[0]) == (0x44, 0x01, 0x54) and tuple(viridis[-1]) == (0xfd, 0xe7, 0x25)
    lightness = colormap("magma").astype(float) @ [0.299, 0.587, 0.114]
    assert np.all(np.diff(lightness) > -1.0)  # perceptually ordered: never gets darker
    with pytest.raises(ValueError, match="unknown colour map 'jet'; choose one of viridis, magma, cividis"):
        colormap("jet")


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
