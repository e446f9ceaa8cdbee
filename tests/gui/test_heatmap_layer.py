"""The heatmap and disagreement layers: colours, threshold, smooth mode, outlines, progressive filling, and the
window drawing the same pixels as the CLI's heatmap image for every colour map."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PyQt5.QtGui import QColor, QImage, QPainter
from shapely.geometry import Point
from shapely.ops import unary_union

from core.evaluation.compare import FALSE_NEGATIVE, FALSE_POSITIVE, compare
from core.inference.colours import COLORMAPS, blend_over, colormap, colour_at
from core.inference.heatmap import heatmap_image
from core.inference.predict import PartialResult, ProbabilityGrid
from core.slide import open_slide
from core.view.viewport import Viewport
from gui.layers import heatmap_layer
from gui.layers.disagreement_layer import FALSE_NEGATIVE_COLOUR, FALSE_POSITIVE_COLOUR, FILL_ALPHA
from gui.layers.heatmap_layer import HeatmapLayer
from gui.slide_view import SlideView
from gui.tile_loader import TileMemory

TIMEOUT = 15000
STRIDE = 128  # level-0 pixels per cell: 32 x 24 cells over the 4096 x 3072 synthetic slide
TUMOUR_P, BENIGN_P = 0.9, 0.1


def make_grid(synth, stride: int = STRIDE) -> ProbabilityGrid:
    """0.9 on tiles whose centre is in the known tumour, 0.1 on other tissue, NaN off tissue."""
    rows, cols = synth.height // stride, synth.width // stride
    tumour, tissue = unary_union(synth.tumour_polygons), unary_union(synth.tissue_polygons)
    probs = np.full((rows, cols), np.nan, np.float32)
    for r in range(rows):
        for c in range(cols):
            centre = Point((c + 0.5) * stride, (r + 0.5) * stride)
            if tumour.contains(centre):
                probs[r, c] = TUMOUR_P
            elif tissue.contains(centre):
                probs[r, c] = BENIGN_P
    return ProbabilityGrid(probs=probs, origin=(0, 0), stride=stride, tile_l0=stride, tile_px=64, mpp=2.0,
                           slide_size=(synth.width, synth.height), slide=str(synth.slide_path), complete=True)


def interior_cell(grid: ProbabilityGrid, value: float) -> tuple[int, int]:
    """A cell of ``value`` whose eight neighbours share it (no edge effects), nearest the grid's middle."""
    probs = grid.probs
    rows, cols = probs.shape
    best = None
    for r in range(1, rows - 1):
        for c in range(1, cols - 1):
            if np.all(probs[r - 1:r + 2, c - 1:c + 2] == np.float32(value)):
                d = (r - rows / 2) ** 2 + (c - cols / 2) ** 2
                if best is None or d < best[0]:
                    best = (d, (r, c))
    assert best is not None, f"no interior cell of {value}"
    return best[1]


def pixels(image: QImage) -> np.ndarray:
    """RGB array (h, w, 3) of an image."""
    image = image.convertToFormat(QImage.Format_RGB32)
    ptr = image.constBits()
    ptr.setsize(image.byteCount())
    bgra = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)[:, :image.width()]
    return bgra[..., [2, 1, 0]].astype(int).copy()


def cell_centre_px(view, grid, row, col) -> tuple[int, int]:
    x, y, w, h = grid.cell_rect(row, col)
    sx, sy = view.viewport.l0_to_screen(x + w / 2, y + h / 2)
    return int(sx), int(sy)


def blend(base, colour, opacity):
    return np.asarray(base) * (1 - opacity) + np.asarray(colour) * opacity


@pytest.fixture(scope="module")
def grid(synthetic_slide):
    return make_grid(synthetic_slide)


@pytest.fixture
def view(qtbot, synthetic_slide):
    reader = open_slide(synthetic_slide.slide_path)
    v = SlideView(reader, TileMemory(64 * 1024 * 1024))
    qtbot.addWidget(v)
    v.resize(800, 600)
    with qtbot.waitSignal(v.sharp, timeout=TIMEOUT):
        v.show()
        qtbot.waitExposed(v)
    v.heatmap_layer.show_legend = v.disagreement_layer.show_legend = False  # pixel checks anywhere in the view
    yield v
    v.close_view()


def zoom_to(qtbot, view, l0_point, scale) -> None:
    """Centre on a level-0 point at ``scale`` and wait for the sharp tiles (cells 64 px wide at 0.5)."""
    view.set_viewport(view.viewport.centred_on(l0_point[0], l0_point[1], scale))
    qtbot.waitUntil(view.slide_layer.is_sharp, timeout=TIMEOUT)


def grab(view) -> np.ndarray:
    return pixels(view.grab().toImage())


def test_tile_colours_are_the_colour_map_blended_at_the_opacity(view, grid):
    layer = view.heatmap_layer
    assert not layer.visible and view.layers.index(layer) == 1  # right over the slide, hidden without a grid
    base = grab(view)
    layer.set_grid(grid)
    layer.set_opacity(0.5)
    assert layer.visible and layer.colormap == "viridis"
    shot = grab(view)
    for value in (TUMOUR_P, BENIGN_P):
        x, y = cell_centre_px(view, grid, *interior_cell(grid, value))
        expected = blend(base[y, x], colour_at("viridis", value), 0.5)
        assert np.abs(shot[y, x] - expected).max() <= 4, (value, shot[y, x], expected)
    off = np.argwhere(np.isnan(grid.probs))[0]  # no tissue: the slide untouched
    x, y = cell_centre_px(view, grid, *off)
    assert np.abs(shot[y, x] - base[y, x]).max() <= 2

    layer.set_colormap("magma")
    shot = grab(view)
    x, y = cell_centre_px(view, grid, *interior_cell(grid, TUMOUR_P))
    assert np.abs(shot[y, x] - blend(base[y, x], colour_at("magma", TUMOUR_P), 0.5)).max() <= 4
    assert set(COLORMAPS) >= {"viridis", "magma", "cividis", "turbo"}
    with pytest.raises(ValueError):
        layer.set_colormap("rainbow-unknown")


DRIFT_SLIDE = (1000, 800)
DRIFT_BACKGROUND = (90, 140, 200)


def drift_grid() -> ProbabilityGrid:
    """7 x 9 cells off the slide's corner (an origin, tiles overlapping by 20 px), values on and beside every
    rounding and threshold edge, some without a probability."""
    rng = np.random.default_rng(3)
    probs = rng.random((7, 9)).astype(np.float32)
    probs.flat[:9] = [0.0, 1.0, 0.5, 0.3, np.nextafter(np.float32(0.3), np.float32(0)), 127.5 / 255, 2 / 255,
                      254.5 / 255, 0.999]
    probs[rng.random((7, 9)) < 0.2] = np.nan
    probs[0, 0] = np.nan
    return ProbabilityGrid(probs=probs, origin=(20, 30), stride=100, tile_l0=120, tile_px=60, mpp=1.0,
                           slide_size=DRIFT_SLIDE)


def paint_layer(layer: HeatmapLayer, scale: float, opacity: float) -> np.ndarray:
    """RGB of the layer painted over the whole slide at ``scale`` (a plain background), as a view paints it."""
    width, height = round(DRIFT_SLIDE[0] * scale), round(DRIFT_SLIDE[1] * scale)
    image = QImage(width, height, QImage.Format_ARGB32_Premultiplied)
    image.fill(QColor(*DRIFT_BACKGROUND))
    painter = QPainter(image)
    painter.setOpacity(opacity)  # as SlideView.paintEvent sets it per layer
    layer.paint(painter, Viewport(*DRIFT_SLIDE, width, height, DRIFT_SLIDE[0] / 2, DRIFT_SLIDE[1] / 2, scale))
    painter.end()
    return pixels(image)


def cli_pixels(grid: ProbabilityGrid, scale: float, name: str, threshold: float, opacity: float) -> np.ndarray:
    """What the CLI's heatmap image (``heatmap.png``) shows over the same background at ``opacity``."""
    width, height = round(DRIFT_SLIDE[0] * scale), round(DRIFT_SLIDE[1] * scale)
    base = np.full((height, width, 3), DRIFT_BACKGROUND, np.uint8)
    return blend_over(base, heatmap_image(grid, width, height, name, threshold), opacity).astype(int)


@pytest.mark.parametrize("name", COLORMAPS)
def test_the_window_draws_the_pixels_the_cli_writes(qapp, name):
    grid = drift_grid()
    layer = HeatmapLayer()
    layer.show_legend = False
    layer.set_grid(grid)
    layer.set_colormap(name)  # every core colour map works in the window
    empty = ProbabilityGrid(probs=np.full(grid.shape, np.nan, np.float32), origin=grid.origin, stride=grid.stride,
                            tile_l0=grid.tile_l0, tile_px=grid.tile_px, mpp=grid.mpp, slide_size=grid.slide_size)
    filled = HeatmapLayer()  # the same map arriving batch by batch, as during a prediction
    filled.show_legend = False
    filled.set_colormap(name)
    filled.set_grid(empty)
    for cells in np.array_split(np.argwhere(grid.done), 3):
        filled.update_cells(PartialResult(cells[:, 0], cells[:, 1], grid.probs[cells[:, 0], cells[:, 1]], 0, 1, 1.0))
    for threshold in (0.0, 0.3):
        layer.set_threshold(threshold)
        filled.set_threshold(threshold)
        for scale in (0.1, 0.2):  # cells of 10 and 20 screen pixels, edges on whole pixels
            expected = cli_pixels(grid, scale, name, threshold, 1.0)
            for which in (layer, filled):
                shot = paint_layer(which, scale, 1.0)
                wrong = np.argwhere(np.any(shot != expected, axis=2))
                assert len(wrong) == 0, (name, threshold, scale, which is filled, wrong[:3].tolist())
        half = paint_layer(layer, 0.1, 0.5)  # and blended the same way (Qt rounds in 8 bits)
        assert np.abs(half - cli_pixels(grid, 0.1, name, threshold, 0.5)).max() <= 1, (name, threshold)


@pytest.mark.parametrize("name", COLORMAPS)
def test_smooth_mode_draws_only_the_core_colours(qapp, name):
    layer = HeatmapLayer()
    layer.set_grid(drift_grid())
    layer.set_colormap(name)
    layer.set_threshold(0.3)
    image, factor, mask = layer.state.smooth()
    assert factor > 1 and mask.any() and not mask.all()
    rgb = pixels(image)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    table = colormap(name).astype(int)
    assert np.isin(code[mask], (table[:, 0] << 16) | (table[:, 1] << 8) | table[:, 2]).all()
    assert not code[~mask].any()  # hidden: transparent


def test_threshold_hides_lower_cells(view, grid):
    base = grab(view)
    layer = view.heatmap_layer
    layer.set_grid(grid)
    layer.set_opacity(0.6)
    layer.set_threshold(0.5)
    shot = grab(view)
    x, y = cell_centre_px(view, grid, *interior_cell(grid, BENIGN_P))
    assert np.abs(shot[y, x] - base[y, x]).max() <= 2
    x, y = cell_centre_px(view, grid, *interior_cell(grid, TUMOUR_P))
    assert np.abs(shot[y, x] - blend(base[y, x], colour_at("viridis", TUMOUR_P), 0.6)).max() <= 4


def _row_across_boundary(grid):
    """(row, col) of a tumour cell whose right neighbour is benign, with a tumour cell left of it."""
    probs = grid.probs
    for r, c in np.argwhere(probs == np.float32(TUMOUR_P)):
        if 0 < c < probs.shape[1] - 1 and probs[r, c - 1] == np.float32(TUMOUR_P) and \
                probs[r, c + 1] == np.float32(BENIGN_P):
            return int(r), int(c)
    raise AssertionError("no tumour/benign boundary")


def test_smooth_mode_interpolates_across_boundaries(qtbot, view, grid):
    layer = view.heatmap_layer
    layer.set_grid(grid)
    layer.set_opacity(1.0)
    r, c = _row_across_boundary(grid)
    zoom_to(qtbot, view, grid.cell_rect(r, c + 1)[:2], 0.5)  # cells 64 px wide
    x0, y = cell_centre_px(view, grid, r, c)
    x1, _ = cell_centre_px(view, grid, r, c + 1)
    hi, lo, mid = (np.array(colour_at("viridis", p)) for p in (TUMOUR_P, BENIGN_P, 0.5))

    def near_middle(shot):
        line = shot[y, x0:x1 + 1]
        far = [px for px in line if min(np.abs(px - hi).max(), np.abs(px - lo).max()) > 25]
        return len(far), min(np.abs(px - mid).max() for px in line)

    assert near_middle(grab(view))[0] == 0  # tiles: two colours, a sharp step
    layer.set_mode("smooth")
    count, closest = near_middle(grab(view))
    assert count >= 10 and closest <= 12  # a ramp through the colour map's middle
    with pytest.raises(ValueError):
        layer.set_mode("blurry")


def test_outlines_follow_the_cells_above_threshold(qtbot, view, grid):
    layer = view.heatmap_layer
    layer.set_grid(grid)
    layer.set_opacity(0.01)  # the fill all but gone: the outlines stay at full strength
    layer.set_threshold(0.5)
    r, c = _row_across_boundary(grid)
    zoom_to(qtbot, view, grid.cell_rect(r, c + 1)[:2], 0.5)
    x, y = cell_centre_px(view, grid, r, c)
    edge_x = round(view.viewport.l0_to_screen(grid.cell_rect(r, c + 1)[0], 0)[0])
    before = grab(view)
    layer.set_outlines(True)
    shot = grab(view)
    white = np.all(shot[y - 5:y + 6, edge_x - 2:edge_x + 3] >= 250, axis=2)
    assert white.sum() >= 8  # a crisp white line along the cell edge
    assert np.abs(shot[y, x] - before[y, x]).max() <= 1  # inside a cell: untouched


def test_update_cells_fills_in_progressively(view, grid):
    layer = view.heatmap_layer
    base = grab(view)
    empty = ProbabilityGrid(probs=np.full(grid.shape, np.nan, np.float32), origin=grid.origin, stride=grid.stride,
                            tile_l0=grid.tile_l0, tile_px=grid.tile_px, mpp=grid.mpp, slide_size=grid.slide_size,
                            predicted=grid.done)
    layer.set_grid(empty)
    layer.set_opacity(0.5)
    cells = np.argwhere(grid.done)
    batches = np.array_split(cells, 3)
    probe = [tuple(b[len(b) // 2]) for b in batches]
    for i, batch in enumerate(batches):
        layer.update_cells(PartialResult(batch[:, 0], batch[:, 1], grid.probs[batch[:, 0], batch[:, 1]],
                                         sum(len(b) for b in batches[:i + 1]), len(cells), 100.0))
        shot = grab(view)
        for j, (r, c) in enumerate(probe):
            x, y = cell_centre_px(view, grid, r, c)
            coloured = np.abs(shot[y, x] - base[y, x]).max() > 6
            assert coloured == (j <= i), (i, j)
    assert np.array_equal(np.isfinite(empty.probs), grid.done)


def test_legend_shows_the_colour_bar_and_threshold(view, grid):
    layer = view.heatmap_layer
    layer.set_grid(grid)
    layer.set_threshold(0.3)
    legend = pixels(layer.legend_image(220, 60))
    assert legend.shape == (60, 220, 3)
    row = legend[30]
    right = np.array(colour_at("viridis", 0.97))
    assert np.abs(row[200:211] - right).max(axis=1).min() <= 10  # the top of the map on the right
    assert np.any(np.all(np.abs(row - (200, 0, 0)) <= 40, axis=1))  # the threshold marked in red
    small = pixels(layer.legend_image(220, 34))  # the size the prediction dock uses
    assert np.abs(small[small.shape[0] // 3, 200:211] - right).max(axis=1).min() <= 10
    layer.show_legend = True  # and in the view's bottom-right corner
    shot = grab(view)
    corner = shot[-60:, -200:].reshape(-1, 3)
    assert np.any(np.abs(corner - right).max(axis=1) <= 10)


def test_a_pan_repaints_from_the_caches_and_draws_only_what_is_in_view(qtbot, monkeypatch):
    """What keeps painting fast at any speed: after a partial result the smooth map and the outlines are
    computed once, a pan recomputes neither, and only outlines near the view are drawn. (The time itself
    is a benchmark: bench/heatmap_paint.py.)"""
    # a slide-like map: smooth probabilities with blobs of tumour, no tissue outside a disc
    rng = np.random.default_rng(0)
    probs = cv2.GaussianBlur(rng.random((300, 300)).astype(np.float32), (0, 0), 6)
    probs = (probs - probs.min()) / (probs.max() - probs.min())
    ys, xs = np.mgrid[0:300, 0:300]
    probs[(ys - 150) ** 2 + (xs - 150) ** 2 > 140 ** 2] = np.nan
    grid = ProbabilityGrid(probs=probs, origin=(0, 0), stride=256, tile_l0=256, tile_px=256, mpp=0.5,
                           slide_size=(76800, 76800))
    built = {"edges": 0, "contours": 0}
    for name, key in (("mask_edges", "edges"), ("contour_polygons", "contours")):
        real = getattr(heatmap_layer, name)
        monkeypatch.setattr(heatmap_layer, name,
                            lambda *a, _real=real, _key=key: built.__setitem__(_key, built[_key] + 1) or _real(*a))
    drawn = []
    monkeypatch.setattr(QPainter, "drawPolygon", lambda self, polygon, *a: drawn.append(polygon.size()))
    layer = HeatmapLayer()
    layer.set_grid(grid)
    layer.set_threshold(0.4)
    layer.set_outlines(True)
    target = QImage(1600, 1000, QImage.Format_ARGB32_Premultiplied)

    def paint(vp) -> None:
        painter = QPainter(target)
        layer.paint(painter, vp)
        painter.end()

    for mode in ("tiles", "smooth"):
        layer.set_mode(mode)
        for scale in (0.012, 0.1, 1.0):
            layer.state.touch()  # as after a partial result: nothing cached
            before = dict(built)
            paint(Viewport(76800, 76800, 1600, 1000, 30000.5, 40000.5, scale))  # builds the caches
            cached = (layer.state._smooth, layer.state._edges, layer.state._contours)
            first_drawn, drawn[:] = list(drawn), []
            paint(Viewport(76800, 76800, 1600, 1000, 30100.5, 40100.5, scale))  # a pan: the screen image redrawn
            assert (layer.state._smooth, layer.state._edges, layer.state._contours) == cached, (mode, scale)
            assert sum(built.values()) - sum(before.values()) == 1, (mode, scale, built)  # one outline build
            if mode == "smooth":
                assert drawn and len(drawn) == len(first_drawn)
                everything = len(layer.state.contours())
                if scale == 1.0:  # the view shows 6 x 4 of 300 x 300 cells: a few outlines (two passes each)
                    assert len(drawn) / 2 < everything / 4, (len(drawn), everything)
            drawn[:] = []
    assert built["edges"] == 3 and built["contours"] == 3


def test_disagreement_colours_at_planted_errors(view, grid):
    probs = grid.probs.copy()
    truth = np.where(np.isnan(probs), -1, (probs > 0.5).astype(np.int8)).astype(np.int8)
    fn_cell, fp_cell = interior_cell(grid, TUMOUR_P), interior_cell(grid, BENIGN_P)
    probs[fn_cell] = 0.2  # the network misses a tumour tile
    probs[fp_cell] = 0.8  # and calls a benign tile tumour
    planted = ProbabilityGrid(probs=probs, origin=grid.origin, stride=grid.stride, tile_l0=grid.tile_l0,
                              tile_px=grid.tile_px, mpp=grid.mpp, slide_size=grid.slide_size)
    comparison = compare(planted, truth, 0.5)
    assert comparison.disagreement[fp_cell] == FALSE_POSITIVE and comparison.disagreement[fn_cell] == FALSE_NEGATIVE
    base = grab(view)
    view.heatmap_layer.set_grid(planted)
    view.heatmap_layer.visible = False  # the disagreement layer alone; the grid gives it the cells' geometry
    layer = view.disagreement_layer
    assert not layer.visible
    layer.set_comparison(comparison)
    assert not layer.visible  # it never covers the heatmap by itself
    layer.visible = True
    shot = grab(view)
    alpha = FILL_ALPHA / 255
    for cell, colour in ((fp_cell, FALSE_POSITIVE_COLOUR), (fn_cell, FALSE_NEGATIVE_COLOUR)):
        x, y = cell_centre_px(view, planted, *cell)
        expected = blend(base[y, x], (colour.red(), colour.green(), colour.blue()), alpha)
        assert np.abs(shot[y, x] - expected).max() <= 5, (cell, shot[y, x], expected)
    agree = (fn_cell[0], fn_cell[1] + 1)  # a tumour tile both call tumour
    x, y = cell_centre_px(view, planted, *agree)
    assert np.abs(shot[y, x] - base[y, x]).max() <= 2  # agreements are not drawn
    layer.set_comparison(None)
    assert not layer.visible


def overhanging_grid(synth, stride: int = 300) -> ProbabilityGrid:
    """Ceil-sized cells of 0.9 over the whole slide: the last column and row reach past its right and bottom edges."""
    rows, cols = -(-synth.height // stride), -(-synth.width // stride)
    assert cols * stride > synth.width and rows * stride > synth.height
    return ProbabilityGrid(probs=np.full((rows, cols), TUMOUR_P, np.float32), origin=(0, 0), stride=stride,
                           tile_l0=stride, tile_px=64, mpp=2.0, slide_size=(synth.width, synth.height),
                           slide=str(synth.slide_path), complete=True)


def painted_box(base: np.ndarray, shot: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` (ends inclusive) of the pixels that changed."""
    ys, xs = np.nonzero(np.any(np.abs(shot - base) > 2, axis=2))
    assert xs.size, "nothing was painted"
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def slide_box(view, grid) -> tuple[float, float, float, float]:
    x0, y0 = view.viewport.l0_to_screen(0, 0)
    x1, y1 = view.viewport.l0_to_screen(*grid.slide_size)
    return x0, y0, x1, y1


@pytest.mark.parametrize("mode, outlines", [("tiles", False), ("tiles", True), ("smooth", True)])
def test_the_heatmap_paints_nothing_past_the_slides_edge(qtbot, view, synthetic_slide, mode, outlines):
    grid = overhanging_grid(synthetic_slide)
    vp = view.viewport
    view.set_viewport(vp.centred_on(vp.l0_w / 2, vp.l0_h / 2, vp.fit_scale() * 0.6))  # a wide margin around it
    qtbot.waitUntil(view.slide_layer.is_sharp, timeout=TIMEOUT)
    base = grab(view)
    layer = view.heatmap_layer
    layer.set_grid(grid)
    layer.set_opacity(1.0)
    layer.set_mode(mode)
    layer.set_outlines(outlines)
    x0, y0, x1, y1 = painted_box(base, grab(view))
    sx0, sy0, sx1, sy1 = slide_box(view, grid)
    assert sx0 - 1 <= x0 and sy0 - 1 <= y0 and x1 <= sx1 + 1 and y1 <= sy1 + 1, ((x0, y0, x1, y1), (sx0, sy0, sx1, sy1))
    assert x1 >= sx1 - 3 and y1 >= sy1 - 3  # the clipped edge cells are still drawn, up to the edge


def test_the_disagreement_layer_paints_nothing_past_the_slides_edge(qtbot, view, synthetic_slide):
    grid = overhanging_grid(synthetic_slide)
    comparison = compare(grid, np.zeros(grid.shape, np.int8), 0.5)  # every cell a false positive
    vp = view.viewport
    view.set_viewport(vp.centred_on(vp.l0_w / 2, vp.l0_h / 2, vp.fit_scale() * 0.6))
    qtbot.waitUntil(view.slide_layer.is_sharp, timeout=TIMEOUT)
    base = grab(view)
    layer = view.disagreement_layer
    layer.set_comparison(comparison, grid)
    layer.visible = True
    x0, y0, x1, y1 = painted_box(base, grab(view))
    sx0, sy0, sx1, sy1 = slide_box(view, grid)
    assert sx0 - 1 <= x0 and sy0 - 1 <= y0 and x1 <= sx1 + 1 and y1 <= sy1 + 1, ((x0, y0, x1, y1), (sx0, sy0, sx1, sy1))
    assert x1 >= sx1 - 3 and y1 >= sy1 - 3
