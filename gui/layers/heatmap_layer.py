"""The network's tumour probabilities over the slide: one pixel per grid cell, coloured, scaled up.

Colours, and which cells are drawn, come from `core.inference.colours` (the table and rule the CLI's images use);
this module only packs them for ``QImage`` and draws them. Frames as in `gui.layers.cell_geometry`.
"""

from __future__ import annotations

import cv2
import numpy as np
from PyQt5.QtCore import QRectF, Qt
from PyQt5.QtGui import QColor, QImage, QPainter, QPen

from core.inference.colours import (COLORMAPS, DEFAULT_COLORMAP, colormap, colour_at, colour_index,
                                    colour_probabilities, shown_cells)
from core.inference.predict import PartialResult, ProbabilityGrid
from core.view.viewport import Viewport
from gui.layers.base import Layer
from gui.layers.cell_geometry import (bgra_qimage, cell_transform, contour_polygons, mask_edges, slide_clip,
                                     visible_cells)
from gui.layers.heatmap_legend import heatmap_legend_image, legend_width, paint_heatmap_legend
from gui.overlays import SCALE_BAR_HEIGHT, scale_bar_reach

__all__ = ["COLORMAPS", "DEFAULT_COLORMAP", "DEFAULT_OPACITY", "MODES", "HeatmapLayer", "HeatmapState", "colour_at"]

MODES = ("tiles", "smooth")
DEFAULT_OPACITY = 0.5
#: The smooth map is upsampled to about this many pixels on its longest side (then scaled by Qt, bilinear).
SMOOTH_SIDE = 1200
SMOOTH_MAX_FACTOR = 16
#: Above this many visible outline vertices the dark halo under the white line is left out (speed).
MAX_OUTLINE_POINTS = 20000
OUTLINE_COLOUR = QColor(255, 255, 255)
OUTLINE_HALO = QColor(0, 0, 0, 150)
#: RGBA channel order to QImage's ARGB32 bytes in memory (B, G, R, A on little-endian machines).
BGRA = [2, 1, 0, 3]


def _packed(lut: np.ndarray) -> np.ndarray:
    """A core colour table as opaque ARGB32 words, for QImage."""
    r, g, b = (lut[:, k].astype(np.uint32) for k in range(3))
    return (np.uint32(255) << 24) | (r << 16) | (g << 8) | b


_PACKED = {name: _packed(colormap(name)) for name in COLORMAPS}


class HeatmapState:
    """What a heatmap layer and its mirrors (the other pane of a split view) share."""

    def __init__(self):
        self.grid: ProbabilityGrid | None = None
        self.colormap = DEFAULT_COLORMAP
        self.threshold = 0.0
        self.mode = "tiles"
        self.outlines = False
        self.revision = 0
        self.bgra: np.ndarray | None = None  # (rows, cols, 4), one premultiplied pixel per cell
        self.image: QImage | None = None
        self._smooth = None  # (revision, factor, image, buffer, mask)
        self._edges = None  # (revision, lines)
        self._contours = None  # (revision, [(bbox, polygon)])

    def touch(self) -> None:
        self.revision += 1

    def shown(self, probs: np.ndarray) -> np.ndarray:
        return shown_cells(probs, self.threshold)

    def cell_pixels(self, probs: np.ndarray) -> np.ndarray:
        """Premultiplied BGRA of probabilities: core's `colour_probabilities`, reordered for QImage."""
        return colour_probabilities(probs, self.colormap, self.threshold)[..., BGRA]

    def rebuild(self) -> None:
        grid = self.grid
        if grid is None:
            self.bgra = self.image = None
        else:
            self.bgra = np.ascontiguousarray(self.cell_pixels(grid.probs))
            self.image = bgra_qimage(self.bgra)
        self.touch()

    def update(self, rows: np.ndarray, cols: np.ndarray, probs: np.ndarray) -> None:
        if self.bgra is None:
            return
        probs = np.asarray(probs, np.float32)
        self.grid.probs[rows, cols] = probs
        self.bgra[rows, cols] = self.cell_pixels(probs)
        self.touch()

    def smooth(self):
        """``(image, factor, mask)``: the NaN-aware upsampled map, its pixels per cell, its shown mask."""
        if self._smooth is not None and self._smooth[0] == self.revision:
            return self._smooth[2], self._smooth[1], self._smooth[4]
        probs = self.grid.probs
        rows, cols = probs.shape
        factor = int(np.clip(SMOOTH_SIDE // max(rows, cols), 1, SMOOTH_MAX_FACTOR))
        done = np.isfinite(probs)
        weight = cv2.resize(done.astype(np.float32), (cols * factor, rows * factor), interpolation=cv2.INTER_LINEAR)
        values = cv2.resize(np.where(done, probs, 0).astype(np.float32), (cols * factor, rows * factor),
                            interpolation=cv2.INTER_LINEAR)
        # average of the known neighbours only: no-tissue cells neither darken nor shrink the map
        fine = cv2.divide(values, np.maximum(weight, 1e-6))
        mask = (weight >= 0.5) & self.shown(fine)  # covered by known cells, and shown by core's rule
        words = _PACKED[self.colormap][colour_index(fine)]
        words *= mask  # transparent where hidden
        bgra = words.view(np.uint8).reshape(mask.shape + (4,))
        image = bgra_qimage(bgra)
        self._smooth = (self.revision, factor, image, bgra, mask)
        return image, factor, mask

    def edges(self) -> list:
        if self._edges is None or self._edges[0] != self.revision:
            self._edges = (self.revision, mask_edges(self.shown(self.grid.probs)))
        return self._edges[1]

    def contours(self) -> list:
        if self._contours is None or self._contours[0] != self.revision:
            _image, factor, mask = self.smooth()
            self._contours = (self.revision, contour_polygons(mask, factor))
        return self._contours[1]


class HeatmapLayer(Layer):
    """Tumour probabilities of a `ProbabilityGrid`, alpha-blended over the slide.

    One RGBA pixel per cell, drawn nearest-neighbour ("tiles") or from a NaN-aware bilinear upsampling
    ("smooth"); cells below ``threshold`` (and cells without a probability) are transparent; optional
    outlines of the cells above the threshold; a legend in the bottom-right corner. Hidden until a grid
    is set. A *mirror* (:meth:`mirror`) shows another layer's grid and settings in a second view.
    """

    def __init__(self):
        super().__init__("Heatmap", visible=False, opacity=DEFAULT_OPACITY)
        self.state = HeatmapState()
        self.show_legend = True
        self._source: HeatmapLayer | None = None
        self._screen: QImage | None = None
        self._outline_screen: QImage | None = None
        self._screen_key = None

    # -- data --------------------------------------------------------------------------------
    @property
    def grid(self) -> ProbabilityGrid | None:
        return self.state.grid

    def set_grid(self, grid: ProbabilityGrid | None) -> None:
        """Show ``grid`` (None: nothing, hidden); the layer becomes visible when a grid arrives."""
        had = self.state.grid is not None
        self.state.grid = grid
        self.state.rebuild()
        if grid is None:
            self.visible = False
        elif not had:
            self.visible = True
        self.changed.emit()

    def update_cells(self, part: PartialResult) -> None:
        """Cells of one batch got their probabilities: recolour just those and repaint (GUI thread)."""
        if self.state.grid is None or len(part.rows) == 0:
            return
        self.state.update(np.asarray(part.rows), np.asarray(part.cols), part.probs)
        self.changed.emit()

    # -- settings (shared with mirrors) ----------------------------------------------------------
    @property
    def colormap(self) -> str:
        return self.state.colormap

    @property
    def threshold(self) -> float:
        return self.state.threshold

    @property
    def mode(self) -> str:
        return self.state.mode

    @property
    def outlines(self) -> bool:
        return self.state.outlines

    def set_opacity(self, value: float) -> None:
        self.opacity = value

    def set_colormap(self, name: str) -> None:
        colormap(name)  # ValueError naming the choices for an unknown one
        if name != self.state.colormap:
            self.state.colormap = name
            self.state.rebuild()
            self.changed.emit()

    def set_threshold(self, value: float) -> None:
        value = float(np.clip(value, 0.0, 1.0))
        if value != self.state.threshold:
            self.state.threshold = value
            self.state.rebuild()
            self.changed.emit()

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown heatmap mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode != self.state.mode:
            self.state.mode = mode
            self.state.touch()
            self.changed.emit()

    def set_outlines(self, on: bool) -> None:
        if bool(on) != self.state.outlines:
            self.state.outlines = bool(on)
            self.state.touch()
            self.changed.emit()

    # -- mirrors ---------------------------------------------------------------------------------
    def mirror(self, source: "HeatmapLayer") -> None:
        """Show ``source``'s grid and settings (changed through ``source``), keeping our own visibility."""
        self.unmirror()
        self._source = source
        self.state = source.state
        self.opacity = source.opacity
        source.changed.connect(self._on_source_changed)
        self.changed.emit()

    def _on_source_changed(self) -> None:
        self.opacity = self._source.opacity
        self.changed.emit()

    def dispose(self) -> None:
        self.unmirror()
        self._screen = self._outline_screen = self._screen_key = None

    # -- drawing ---------------------------------------------------------------------------------
    def paint(self, painter: QPainter, viewport: Viewport) -> None:
        state = self.state
        if state.grid is None:
            return
        # drawn once per view position and content into a screen-sized image: tiles arriving repaint often
        ratio = painter.device().devicePixelRatioF() if painter.device() is not None else 1.0
        key = (viewport, ratio, id(state), state.revision)
        if key != self._screen_key:
            self._screen = self._render(viewport, ratio, self._paint_map)
            self._outline_screen = self._render(viewport, ratio, self._paint_outlines) if state.outlines else None
            self._screen_key = key
        painter.drawImage(0, 0, self._screen)
        if self._outline_screen is not None:
            opacity = painter.opacity()
            painter.setOpacity(1.0)  # outlines stay crisp and strong whatever the fill's opacity
            painter.drawImage(0, 0, self._outline_screen)
            painter.setOpacity(opacity)

    def paint_legend_card(self, painter: QPainter, viewport: Viewport) -> None:
        """The colour bar in the bottom-right corner (drawn by the view above every layer)."""
        if self.show_legend and self.state.grid is not None:
            self.paint_legend(painter, self.legend_rect(viewport, legend_width(painter, self.state.threshold)))

    @staticmethod
    def legend_rect(viewport: Viewport, width: float, height: float = 58) -> QRectF:
        """Where the legend card goes: bottom right, or above the scale bar's row when the pane is too narrow
        for both side by side (never wider than the pane)."""
        width = min(width, max(120.0, viewport.screen_w - 24))
        x = viewport.screen_w - width - 12
        y = viewport.screen_h - height - 12
        if x < scale_bar_reach(viewport) + 8:
            y -= SCALE_BAR_HEIGHT + 14  # one row up: the scale bar keeps the bottom-left corner
        return QRectF(x, y, width, height)

    @staticmethod
    def _render(viewport: Viewport, ratio: float, paint) -> QImage:
        """A transparent screen-sized image drawn by ``paint(painter, viewport)``."""
        image = QImage(round(viewport.screen_w * ratio), round(viewport.screen_h * ratio),
                       QImage.Format_ARGB32_Premultiplied)
        image.setDevicePixelRatio(ratio)
        image.fill(Qt.transparent)
        painter = QPainter(image)
        paint(painter, viewport)
        painter.end()
        return image

    def _paint_map(self, painter: QPainter, viewport: Viewport) -> None:
        state = self.state
        row0, row1, col0, col1 = visible_cells(state.grid, viewport, margin=1)
        if row0 >= row1 or col0 >= col1:
            return
        painter.setClipRect(slide_clip(state.grid, viewport))  # edge cells stop at the slide's edge
        painter.setTransform(cell_transform(state.grid, viewport))
        target = QRectF(col0, row0, col1 - col0, row1 - row0)
        if state.mode == "smooth":
            image, factor, _ = state.smooth()
            painter.setRenderHint(QPainter.SmoothPixmapTransform, True)
            painter.drawImage(target, image, QRectF(col0 * factor, row0 * factor, (col1 - col0) * factor,
                                                    (row1 - row0) * factor))
        else:
            painter.setRenderHint(QPainter.SmoothPixmapTransform, False)
            painter.drawImage(target, state.image, QRectF(col0, row0, col1 - col0, row1 - row0))

    def _paint_outlines(self, painter: QPainter, viewport: Viewport) -> None:
        state = self.state
        painter.save()
        painter.setClipRect(slide_clip(state.grid, viewport))
        painter.setTransform(cell_transform(state.grid, viewport))
        painter.setBrush(Qt.NoBrush)
        if state.mode == "smooth":
            row0, row1, col0, col1 = visible_cells(state.grid, viewport, margin=1)
            polygons = [poly for (u0, v0, u1, v1), poly in state.contours()
                        if u1 >= col0 and u0 <= col1 and v1 >= row0 and v0 <= row1]
            painter.setRenderHint(QPainter.Antialiasing, True)
            passes = ((OUTLINE_HALO, 3.0), (OUTLINE_COLOUR, 1.5))
            if sum(polygon.size() for polygon in polygons) > MAX_OUTLINE_POINTS:
                passes = passes[1:]  # a speckled map at low zoom: one pass is enough to see it
            for colour, width in passes:
                pen = QPen(colour, width)
                pen.setCosmetic(True)
                painter.setPen(pen)
                for polygon in polygons:
                    painter.drawPolygon(polygon)
        else:
            lines = state.edges()
            painter.setRenderHint(QPainter.Antialiasing, False)
            for colour, width in ((OUTLINE_HALO, 3), (OUTLINE_COLOUR, 1)):
                pen = QPen(colour, width, Qt.SolidLine, Qt.SquareCap)
                pen.setCosmetic(True)
                painter.setPen(pen)
                painter.drawLines(lines)
        painter.restore()

    # -- legend ----------------------------------------------------------------------------------
    def legend_image(self, width: int, height: int) -> QImage:
        """The colour bar with ticks 0, 0.5, 1 and the threshold marked, on a white card."""
        return heatmap_legend_image(width, height, self.state.colormap, self.state.threshold)

    def paint_legend(self, painter: QPainter, rect: QRectF) -> None:
        """The legend in ``rect``: a title row when there is room, the bar, ticks under it."""
        paint_heatmap_legend(painter, rect, self.state.colormap, self.state.threshold)
