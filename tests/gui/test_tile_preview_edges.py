"""The Tiles preview draws tiles where the plan lays them: ``plan.stride`` apart, edge tiles shifted inward."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt5.QtGui import QColor, QImage, QPainter

from core.slide import open_slide
from core.tiles.edges import axis_starts
from core.tiles.grid import NON_TUMOUR_TILE, TilePlan, TileSpec, plan_tiles
from core.tiles.tissue import detect_tissue
from core.view.viewport import Viewport
from gui.layers.tile_preview_layer import OUTLINE_MIN_PX, REASON_COLOURS, TilePreviewLayer
from gui.slide_view import SlideView
from gui.tile_loader import TileMemory

SLIDE = (1000, 700)  # level-0 px; 200 px tiles do not divide it: edge tiles are shifted inward
TILE = 200
BACKGROUND = (40, 60, 90)


def hand_plan(stride: int = TILE) -> TilePlan:
    """Every tile non-tumour, laid by core's edge rule (`core.tiles.edges.axis_starts`)."""
    xs, ys = axis_starts(SLIDE[0], TILE, stride), axis_starts(SLIDE[1], TILE, stride)
    gx, gy = np.meshgrid(xs, ys)
    n = gx.size
    return TilePlan(spec=TileSpec(100, 1.0), tile_l0=TILE, level=0, read_px=TILE, l0_x=gx.ravel(), l0_y=gy.ravel(),
                    label=np.zeros(n, np.int8), reason=np.full(n, NON_TUMOUR_TILE, np.int8),
                    tissue_fraction=np.ones(n, np.float32), tumour_fraction=np.zeros(n, np.float32),
                    grid_shape=(ys.size, xs.size), stride=stride, slide_size=SLIDE)


def paint(layer: TilePreviewLayer, viewport: Viewport) -> np.ndarray:
    image = QImage(viewport.screen_w, viewport.screen_h, QImage.Format_ARGB32_Premultiplied)
    image.fill(QColor(*BACKGROUND))
    painter = QPainter(image)
    layer.paint(painter, viewport)
    painter.end()
    image = image.convertToFormat(QImage.Format_RGB32)
    ptr = image.constBits()
    ptr.setsize(image.byteCount())
    bgra = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)[:, :image.width()]
    return bgra[..., [2, 1, 0]].astype(int).copy()


def whole_slide(scale: float, margin: int = 40) -> Viewport:
    """The whole slide at ``scale`` with a ``margin`` of screen pixels around it."""
    w, h = round(SLIDE[0] * scale) + 2 * margin, round(SLIDE[1] * scale) + 2 * margin
    return Viewport(*SLIDE, w, h, SLIDE[0] / 2, SLIDE[1] / 2, scale)


@pytest.mark.parametrize("stride", [TILE, 150])
def test_the_fill_covers_the_slide_to_its_edge_once_and_nothing_past_it(qapp, stride):
    plan = hand_plan(stride)
    assert plan.l0_x[plan.grid_shape[1] - 1] == SLIDE[0] - TILE  # the edge column is shifted inward
    layer = TilePreviewLayer()
    layer.set_plan(plan)
    vp = whole_slide(0.1)  # 20 px tiles: below OUTLINE_MIN_PX, the fill alone
    assert TILE * vp.scale < OUTLINE_MIN_PX
    shot = paint(layer, vp)
    x0, y0 = (round(v) for v in vp.l0_to_screen(0, 0))
    x1, y1 = (round(v) for v in vp.l0_to_screen(*SLIDE))
    inside = shot[y0:y1, x0:x1].reshape(-1, 3)
    r, g, b, a = REASON_COLOURS["non_tumour"]
    once = np.array(BACKGROUND) * (1 - a / 255) + np.array([r, g, b]) * a / 255
    assert np.abs(inside - once).max() <= 2  # every slide pixel filled, overlaps not blended twice
    outside = np.ones(shot.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert (shot[outside] == BACKGROUND).all()  # nothing past the slide's edge


@pytest.mark.parametrize("stride", [TILE, 150])
def test_outlines_sit_where_the_plan_lays_the_tiles_edge_tiles_shifted(qapp, stride):
    plan = hand_plan(stride)
    rows, cols = plan.grid_shape
    layer = TilePreviewLayer()
    layer.set_plan(plan)
    vp = whole_slide(0.5)  # 100 px tiles: outlined
    index, rects = layer.tile_screen_rects(vp)
    assert len(index) == len(plan)
    for i, rect in zip(index.tolist(), rects):
        sx, sy = vp.l0_to_screen(plan.l0_x[i], plan.l0_y[i])
        assert (rect.x(), rect.y(), rect.width()) == (pytest.approx(sx), pytest.approx(sy), TILE * vp.scale)
    shot = paint(layer, vp)
    assert layer.outlined_count == len(plan)
    # the edge column's left outline, inside its neighbour's fill: drawn at the shifted start, not at cols * stride
    edge_x = round(vp.l0_to_screen(SLIDE[0] - TILE, 0)[0] + 0.5)
    fill_x = edge_x - 3
    mid_y = round(vp.l0_to_screen(0, plan.l0_y[0] + TILE / 2)[1])
    r, g, b, _ = REASON_COLOURS["non_tumour"]
    assert np.abs(shot[mid_y, edge_x] - shot[mid_y, fill_x]).max() > 20, (shot[mid_y, edge_x], shot[mid_y, fill_x])
    last_x = round(vp.l0_to_screen(SLIDE[0], 0)[0])
    assert (shot[:, last_x + 1:] == BACKGROUND).all()


def test_a_real_plan_in_a_slide_view_is_drawn_to_the_edge_and_no_further(qtbot, synthetic_slide):
    reader = open_slide(synthetic_slide.slide_path)
    spec = TileSpec(100, 1.0)  # 200 level-0 px over 4096 x 3072: the last column and row shifted inward
    plan = plan_tiles(reader, spec, detect_tissue(reader), fully_annotated=True)
    rows, cols = plan.grid_shape
    assert plan.l0_x[cols - 1] == reader.dimensions[0] - plan.tile_l0 and plan.l0_x[cols - 1] % plan.stride
    view = SlideView(reader, TileMemory(64 * 1024 * 1024))
    qtbot.addWidget(view)
    view.resize(800, 600)
    with qtbot.waitSignal(view.sharp, timeout=15000):
        view.show()
        qtbot.waitExposed(view)
    vp = view.viewport
    view.set_viewport(vp.centred_on(vp.l0_w, vp.l0_h, 0.3))  # the bottom-right corner, tiles 60 px on screen
    qtbot.waitUntil(view.slide_layer.is_sharp, timeout=15000)
    base = view.grab().toImage()
    view.tile_preview_layer.set_plan(plan)
    view.tile_preview_layer.visible = True
    shot = view.grab().toImage()
    assert view.tile_preview_layer.outlined_count > 0
    sx1, sy1 = view.viewport.l0_to_screen(*reader.dimensions)
    changed_past_edge = [(x, y) for y in range(0, shot.height(), 3) for x in range(0, shot.width(), 3)
                         if (x > sx1 + 1 or y > sy1 + 1) and shot.pixel(x, y) != base.pixel(x, y)]
    assert not changed_past_edge[:5]
    index, rects = view.tile_preview_layer.tile_screen_rects(view.viewport)
    corner = rows * cols - 1
    rect = rects[list(index).index(corner)]
    assert (rect.right(), rect.bottom()) == (pytest.approx(sx1), pytest.approx(sy1))  # ends at the slide's corner
    view.close_view()
