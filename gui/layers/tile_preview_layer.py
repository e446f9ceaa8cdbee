"""The tile grid a dataset would be cut into, coloured by label, drawn over the slide before exporting."""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import QRectF, Qt
from PyQt5.QtGui import QBrush, QColor, QImage, QPainter, QPen

from core.tiles.grid import REASONS, TilePlan
from core.view.viewport import Viewport
from gui.layers.base import Layer

#: Fill of each tile reason (``core.tiles.grid.REASONS``) as (r, g, b, alpha): kept tiles strong, dropped ones
#: distinct, background barely there so the slide stays readable.
REASON_COLOURS: dict[str, tuple[int, int, int, int]] = {
    "tumour": (220, 20, 60, 150),        # crimson
    "non_tumour": (0, 150, 136, 80),     # teal
    "background": (120, 144, 156, 18),   # faint grey: only shows where the grid lies
    "low_tissue": (255, 160, 0, 120),    # amber
    "excluded": (69, 90, 100, 160),      # slate
    "pen": (121, 85, 72, 160),           # brown
    "ambiguous": (156, 39, 176, 150),    # purple: between tumour and non-tumour coverage
    "unlabelled": (158, 158, 158, 120),  # grey: tissue nobody said anything about
}
#: Names shown in the legend, in ``REASONS`` order.
REASON_NAMES = {"tumour": "Tumour", "non_tumour": "Non-tumour", "background": "Background",
                "low_tissue": "Low tissue", "excluded": "Excluded", "pen": "Pen ink", "ambiguous": "Ambiguous",
                "unlabelled": "Unlabelled"}
#: Reasons for which a tile is dropped from the dataset (hatched when zoomed in).
DROPPED_REASONS = ("low_tissue", "excluded", "pen", "ambiguous", "unlabelled")
#: Tiles at least this many screen pixels wide get outlines; dropped ones a hatch too.
OUTLINE_MIN_PX = 24.0
#: At most this many tiles get outlines in one paint (a guard for tiny tiles on huge screens).
MAX_OUTLINED = 20000

_PALETTE = np.array([REASON_COLOURS[name] for name in REASONS], np.uint16)
_BACKGROUND = REASONS.index("background")
_DROPPED = np.array([REASONS.index(name) for name in DROPPED_REASONS])


def reason_image(plan: TilePlan) -> tuple[QImage, np.ndarray]:
    """One premultiplied ARGB pixel per tile (row-major like the grid), and the buffer it lives in."""
    rows, cols = plan.grid_shape
    rgba = _PALETTE[plan.reason.astype(np.intp)].reshape(rows, cols, 4)
    alpha = rgba[..., 3:4]
    premultiplied = np.concatenate([(rgba[..., :3] * alpha + 127) // 255, alpha], axis=2).astype(np.uint8)
    bgra = np.ascontiguousarray(premultiplied[..., [2, 1, 0, 3]])
    image = QImage(bgra.data, cols, rows, cols * 4, QImage.Format_ARGB32_Premultiplied)
    return image, bgra


class TilePreviewLayer(Layer):
    """Draws a :class:`core.tiles.grid.TilePlan`: one filled square per tile, coloured by its reason.

    At any zoom the fill is one image with a pixel per tile, scaled without smoothing, so tens of
    thousands of tiles cost one ``drawImage``; once tiles are large on screen the visible ones also
    get outlines, and dropped ones a hatch.
    """

    def __init__(self):
        super().__init__("Tile grid", visible=False, opacity=1.0)
        self.plan: TilePlan | None = None
        self._image: QImage | None = None
        self._buffer: np.ndarray | None = None  # keeps the image's pixels alive
        self.outlined_count = 0  # tiles outlined by the last paint (tests)
        self._screen: QImage | None = None
        self._screen_key = None
        self._axes_cache = None

    def set_plan(self, plan: TilePlan | None) -> None:
        self.plan = plan
        if plan is None or len(plan) == 0:
            self._image = self._buffer = None
        else:
            self._image, self._buffer = reason_image(plan)
        self._screen_key = None
        self.changed.emit()

    def dispose(self) -> None:
        self.plan = self._image = self._buffer = self._screen = self._screen_key = None

    def _axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per column and per row: the tiles' level-0 starts, and the fill's bounds (one more than the tiles).

        The starts are the plan's own (``plan.stride`` apart, the last shifted inward to end at the slide's edge,
        `core.tiles.edges`). The fill gives each tile the band from its regular start ``k * stride`` to the next
        one, and the edge tile the band from its regular start to the slide's edge: the bands tile the slide
        without overlap, so overlapping tiles are not blended twice.
        """
        if self._axes_cache is not None and self._axes_cache[0] is self.plan:
            return self._axes_cache[1]
        plan = self.plan
        rows, cols = plan.grid_shape
        xs = np.asarray(plan.l0_x[:cols], np.float64)
        ys = np.asarray(plan.l0_y[::cols], np.float64)
        axes = []
        for starts in (xs, ys):
            stride = float(plan.stride) if plan.stride else (
                float(starts[1] - starts[0]) if starts.size > 2 else float(plan.tile_l0))
            bounds = np.append(starts[0] + np.arange(starts.size) * stride, starts[-1] + plan.tile_l0)
            axes.append(bounds)
        result = (xs, ys, axes[0], axes[1])
        self._axes_cache = (plan, result)
        return result

    def visible_range(self, viewport: Viewport) -> tuple[int, int, int, int]:
        """Grid rows and columns ``(row0, row1, col0, col1)`` (ends exclusive) whose tiles meet the view."""
        xs, ys, _, _ = self._axes()
        tile_l0 = self.plan.tile_l0
        l0_x, l0_y, l0_w, l0_h = viewport.visible_l0_rect()
        col0, col1 = int(np.searchsorted(xs + tile_l0, l0_x, "right")), int(np.searchsorted(xs, l0_x + l0_w, "left"))
        row0, row1 = int(np.searchsorted(ys + tile_l0, l0_y, "right")), int(np.searchsorted(ys, l0_y + l0_h, "left"))
        return row0, row1, col0, col1

    def tile_screen_rects(self, viewport: Viewport) -> tuple[np.ndarray, list[QRectF]]:
        """Indices of the tiles in view and their screen rectangles, where the tiles lie (edge tiles shifted)."""
        row0, row1, col0, col1 = self.visible_range(viewport)
        xs, ys, _, _ = self._axes()
        cols = self.plan.grid_shape[1]
        rr, cc = np.meshgrid(np.arange(row0, row1), np.arange(col0, col1), indexing="ij")
        rr, cc = rr.ravel(), cc.ravel()
        sx, sy = viewport.l0_to_screen(xs[cc], ys[rr])  # arrays: the same arithmetic, vectorised
        side = [self.plan.tile_l0 * viewport.scale] * rr.size
        return rr * cols + cc, list(map(QRectF, sx.tolist(), sy.tolist(), side, side))

    def paint(self, painter: QPainter, viewport: Viewport) -> None:
        if self._image is None:
            self.outlined_count = 0
            return
        # drawn once per view position into a screen-sized image: tiles arriving repaint the view often
        ratio = painter.device().devicePixelRatioF() if painter.device() is not None else 1.0
        key = (viewport, ratio, id(self.plan))
        if key != self._screen_key:
            self._screen = QImage(round(viewport.screen_w * ratio), round(viewport.screen_h * ratio),
                                  QImage.Format_ARGB32_Premultiplied)
            self._screen.setDevicePixelRatio(ratio)
            self._screen.fill(Qt.transparent)
            screen_painter = QPainter(self._screen)
            self._paint_tiles(screen_painter, viewport)
            screen_painter.end()
            self._screen_key = key
        painter.drawImage(0, 0, self._screen)

    def _paint_tiles(self, painter: QPainter, viewport: Viewport) -> None:
        self.outlined_count = 0
        row0, row1, col0, col1 = self.visible_range(viewport)
        if row0 >= row1 or col0 >= col1:
            return
        rows, cols = self.plan.grid_shape
        _, _, x_bounds, y_bounds = self._axes()
        painter.setRenderHint(QPainter.SmoothPixmapTransform, False)
        # one drawImage per evenly spaced block: the regular tiles, then the edge column, row and corner
        for c0, c1 in _blocks(col0, col1, cols):
            for r0, r1 in _blocks(row0, row1, rows):
                sx0, sy0 = viewport.l0_to_screen(x_bounds[c0], y_bounds[r0])
                sx1, sy1 = viewport.l0_to_screen(x_bounds[c1], y_bounds[r1])
                painter.drawImage(QRectF(sx0, sy0, sx1 - sx0, sy1 - sy0), self._image, QRectF(c0, r0, c1 - c0, r1 - r0))
        tile_screen = self.plan.tile_l0 * viewport.scale
        if tile_screen >= OUTLINE_MIN_PX and (row1 - row0) * (col1 - col0) <= MAX_OUTLINED:
            self._paint_outlines(painter, viewport)

    def _paint_outlines(self, painter: QPainter, viewport: Viewport) -> None:
        index, rects = self.tile_screen_rects(viewport)
        codes = self.plan.reason[index]
        keep = np.flatnonzero(codes != _BACKGROUND)
        if not len(keep):
            return
        rects = [rects[k].adjusted(0.5, 0.5, -0.5, -0.5) for k in keep.tolist()]
        codes = codes[keep]
        painter.setRenderHint(QPainter.Antialiasing, False)
        dropped = np.flatnonzero(np.isin(codes, _DROPPED))
        if len(dropped):  # a hatch says "left out" apart from the colour
            painter.setPen(Qt.NoPen)
            painter.setBrush(QBrush(QColor(55, 71, 79, 110), Qt.BDiagPattern))
            painter.drawRects([rects[k] for k in dropped.tolist()])
        painter.setBrush(Qt.NoBrush)
        for code in np.unique(codes).tolist():
            r, g, b, _ = REASON_COLOURS[REASONS[code]]
            pen = QPen(QColor(r, g, b, 180), 1)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.drawRects([rects[k] for k in np.flatnonzero(codes == code).tolist()])
        self.outlined_count = len(rects)


def _blocks(lo: int, hi: int, n: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` of ``n`` tiles split into the evenly spaced ones and the last (edge) one."""
    return [(a, b) for a, b in ((lo, min(hi, n - 1)), (max(lo, n - 1), hi)) if a < b]
