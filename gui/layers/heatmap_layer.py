"""The network's tumour probabilities over the slide: one pixel per grid cell, coloured, scaled up.

Frames: grid cells ``(row, col)`` as in `core.inference.predict.ProbabilityGrid`; *cell units* ``(u, v)`` put cell
``(r, c)`` at ``[c, c + 1) x [r, r + 1)``, and map to level 0 through the grid's `cell_rect` geometry.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PyQt5.QtCore import QLineF, QPointF, QRectF, Qt
from PyQt5.QtGui import QColor, QImage, QPainter, QPen, QPolygonF, QTransform

from core.inference.predict import PartialResult, ProbabilityGrid
from core.view.viewport import Viewport
from gui.layers.base import Layer, begin_legend_card


def _lut(anchors: str) -> np.ndarray:
    """A 256-entry RGB table interpolated from evenly spaced ``rrggbb`` anchors."""
    rgb = np.array([[int(anchors[i + k:i + k + 2], 16) for k in (0, 2, 4)] for i in range(0, len(anchors), 6)], float)
    x = np.linspace(0.0, 1.0, len(rgb))
    return np.stack([np.interp(np.linspace(0.0, 1.0, 256), x, rgb[:, k]) for k in range(3)], 1).round().astype(np.uint8)


# 33 anchors each, from the matplotlib maps (CC0) shipped with pyqtgraph; linear interpolation is within 2/255
# of the originals (5/255 for cividis).
_ANCHORS = {
    "viridis": "440154470d6048186a482374472d7b4536814240863f49893b528b375a8d33638d2f6a8e2c728e297a8e26818e23898e21908c"
               "1f988b1f9f8821a68528ae8031b57b3ebc744cc26c5dc9636ece5882d34c96d83fabdc32c0df24d5e21aeae51afde725",
    "magma": "0000040303110a0822130d331d114628115a36106a430f7650127c5d177f691c817621818226818f2a819c2e7fa9327db63779c3"
             "3b75cf4170db486ae65163ee5c5ef5695cf9785dfb8761fd9668fea571feb47bfec387fed194fde0a2fceeb0fcfdbf",
    "cividis": "00204d00265a002c6800306f05366e1e3c6d2c426c37476b414d6b4a536b52596c595e6d61646f686a716f70737576767c7b78"
               "8482798c8879948e789c9477a49b76aca174b4a872bdaf6fc5b66ccebd68d7c463e0cb5ee9d358f2da50fbe248ffea46",
    "turbo": "30123b392a734040a14456c7466be3467ff64293ff37a7fa29bbec1dcdd818dcc31ee8b031f2994cf97e6bfd648aff4da3fd3cb8"
             "f735cced34dee037edd03af8c03afdae35fe982cfb8022f56817ec520fe04009d23105c02302ac1701950d017a0403",
}
#: Colour maps by name: 256 x RGB tables. The first three are perceptually uniform; turbo is the "jet" look.
COLORMAPS: dict[str, np.ndarray] = {name: _lut(anchors) for name, anchors in _ANCHORS.items()}
COLORMAP_LABELS = {"viridis": "Viridis (uniform)", "magma": "Magma (uniform)", "cividis": "Cividis (colour-blind safe)",
                   "turbo": "Turbo (rainbow, not uniform)"}
DEFAULT_COLORMAP = "viridis"
MODES = ("tiles", "smooth")
DEFAULT_OPACITY = 0.5
#: The smooth map is upsampled to about this many pixels on its longest side (then scaled by Qt, bilinear).
SMOOTH_SIDE = 1200
SMOOTH_MAX_FACTOR = 16
#: Above this many visible outline vertices the dark halo under the white line is left out (speed).
MAX_OUTLINE_POINTS = 20000
OUTLINE_COLOUR = QColor(255, 255, 255)
OUTLINE_HALO = QColor(0, 0, 0, 150)


def _packed(lut: np.ndarray) -> np.ndarray:
    """The table as opaque ARGB32 words (BGRA bytes in memory, as QImage reads them)."""
    r, g, b = (lut[:, k].astype(np.uint32) for k in range(3))
    return (np.uint32(255) << 24) | (r << 16) | (g << 8) | b


_PACKED = {name: _packed(lut) for name, lut in COLORMAPS.items()}


def colour_at(name: str, probability: float) -> tuple[int, int, int]:
    """RGB of ``probability`` in colour map ``name`` (as the layer draws it)."""
    return tuple(int(v) for v in COLORMAPS[name][int(np.clip(probability, 0.0, 1.0) * 255)])


def _bgra(rgb: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """Premultiplied BGRA pixels: colour where ``shown``, transparent elsewhere."""
    out = np.zeros(shown.shape + (4,), np.uint8)
    out[shown, :3] = rgb[shown][:, ::-1]
    out[shown, 3] = 255
    return out


def _qimage(bgra: np.ndarray) -> QImage:
    h, w = bgra.shape[:2]
    return QImage(bgra.data, w, h, w * 4, QImage.Format_ARGB32_Premultiplied)


def cell_transform(grid, viewport: Viewport) -> QTransform:
    """Cell units to screen pixels."""
    x00, y00, _, _ = grid.cell_rect(0, 0)
    sx, sy = viewport.l0_to_screen(x00, y00)
    side = grid.stride * viewport.scale
    return QTransform(side, 0, 0, side, sx, sy)


def visible_cells(grid, viewport: Viewport, margin: int = 0) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` of the cells that meet the view (ends exclusive), widened by ``margin``."""
    rows, cols = grid.shape
    x00, y00, _, _ = grid.cell_rect(0, 0)
    l0_x, l0_y, l0_w, l0_h = viewport.visible_l0_rect()
    col0 = int(np.clip(math.floor((l0_x - x00) / grid.stride) - margin, 0, cols))
    col1 = int(np.clip(math.ceil((l0_x + l0_w - x00) / grid.stride) + margin, 0, cols))
    row0 = int(np.clip(math.floor((l0_y - y00) / grid.stride) - margin, 0, rows))
    row1 = int(np.clip(math.ceil((l0_y + l0_h - y00) / grid.stride) + margin, 0, rows))
    return row0, row1, col0, col1


def mask_edges(mask: np.ndarray) -> list[QLineF]:
    """Cell-edge segments (cell units) between ``mask`` cells and the rest, runs along a line merged."""
    padded = np.pad(mask.astype(bool), 1)
    lines: list[QLineF] = []
    # vertical edges: between column c-1 and c (padded indices), running along rows
    v = padded[1:-1, 1:] != padded[1:-1, :-1]  # (rows, cols + 1): edge at x = c
    for x, y0, y1 in _runs(v.T):
        lines.append(QLineF(x, y0, x, y1))
    h = padded[1:, 1:-1] != padded[:-1, 1:-1]  # (rows + 1, cols): edge at y = r
    for y, x0, x1 in _runs(h):
        lines.append(QLineF(x0, y, x1, y))
    return lines


def _runs(edges: np.ndarray):
    """``(line, start, end)`` of each run of True along axis 1 of ``edges``."""
    padded = np.pad(edges, ((0, 0), (1, 1)))
    diff = np.diff(padded.astype(np.int8), axis=1)
    line_s, start = np.nonzero(diff == 1)
    _, end = np.nonzero(diff == -1)  # both sorted row-major, so they pair up
    return zip(line_s.tolist(), start.tolist(), end.tolist())


def contour_polygons(mask: np.ndarray, factor: float) -> list[tuple[tuple[float, float, float, float], QPolygonF]]:
    """Outlines of ``mask`` (an upsampled cell mask, ``factor`` pixels per cell) in cell units, each with its
    bounding box ``(u0, v0, u1, v1)`` so a paint can skip those out of view."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for contour in contours:
        if len(contour) > 8:
            contour = cv2.approxPolyDP(contour, max(0.7, factor / 8), True)
        points = (contour[:, 0, :].astype(float) + 0.5) / factor
        if len(points) < 2:
            continue
        (u0, v0), (u1, v1) = points.min(0), points.max(0)
        out.append(((float(u0), float(v0), float(u1), float(v1)),
                    QPolygonF([QPointF(x, y) for x, y in points.tolist()])))
    return out


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
        with np.errstate(invalid="ignore"):
            return np.isfinite(probs) & (probs >= self.threshold)

    def rebuild(self) -> None:
        grid = self.grid
        if grid is None:
            self.bgra = self.image = None
        else:
            self.bgra = _bgra(self._colours(grid.probs), self.shown(grid.probs))
            self.image = _qimage(self.bgra)
        self.touch()

    def _colours(self, probs: np.ndarray) -> np.ndarray:
        index = (np.nan_to_num(np.clip(probs, 0.0, 1.0), nan=0.0) * 255).astype(np.uint8)
        return COLORMAPS[self.colormap][index]

    def update(self, rows: np.ndarray, cols: np.ndarray, probs: np.ndarray) -> None:
        if self.bgra is None:
            return
        probs = np.asarray(probs, np.float32)
        self.grid.probs[rows, cols] = probs
        shown = self.shown(probs)
        colours = self._colours(probs)
        self.bgra[rows, cols, :3] = np.where(shown[:, None], colours[:, ::-1], 0)
        self.bgra[rows, cols, 3] = np.where(shown, 255, 0)
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
        mask = (weight >= 0.5) & (fine >= self.threshold)
        words = _PACKED[self.colormap][cv2.convertScaleAbs(np.clip(fine, 0.0, 1.0), alpha=255)]
        words *= mask  # transparent where hidden
        bgra = words.view(np.uint8).reshape(mask.shape + (4,))
        image = _qimage(bgra)
        self._smooth = (self.revision, factor, image, bgra, mask)
        return image, factor, mask

    def edges(self) -> list[QLineF]:
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
        if name not in COLORMAPS:
            raise ValueError(f"unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)}")
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
        if self.show_legend:
            opacity = painter.opacity()
            painter.setOpacity(1.0)
            width, height = 210, 58
            self.paint_legend(painter, QRectF(viewport.screen_w - width - 12, viewport.screen_h - height - 12,
                                              width, height))
            painter.setOpacity(opacity)

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
        image = QImage(width, height, QImage.Format_ARGB32_Premultiplied)
        image.fill(Qt.transparent)
        painter = QPainter(image)
        self.paint_legend(painter, QRectF(0, 0, width, height))
        painter.end()
        return image

    def paint_legend(self, painter: QPainter, rect: QRectF) -> None:
        """The legend in ``rect``: a title row when there is room, the bar, ticks under it."""
        begin_legend_card(painter, rect)
        text_h = painter.fontMetrics().height()
        titled = rect.height() >= 2 * text_h + 22
        pad = 8 if titled else 4
        top = rect.top() + pad + (text_h + 2 if titled else 0)
        bar = QRectF(rect.left() + pad, top, rect.width() - 2 * pad, max(4.0, rect.bottom() - pad - text_h - 3 - top))
        threshold = self.state.threshold
        painter.setPen(QColor(20, 20, 20))
        if titled:
            title = QRectF(rect.left() + pad, rect.top() + pad - 2, rect.width() - 2 * pad, text_h)
            painter.drawText(title, Qt.AlignLeft | Qt.AlignVCenter, "Tumour probability")
            if threshold > 0:
                painter.setPen(QColor(200, 0, 0))
                painter.drawText(title, Qt.AlignRight | Qt.AlignVCenter, f"shown ≥ {threshold:.2f}")
        lut = COLORMAPS[self.state.colormap]
        strip = np.ascontiguousarray(np.concatenate([lut[:, ::-1], np.full((256, 1), 255, np.uint8)], 1)[None])
        painter.setRenderHint(QPainter.SmoothPixmapTransform, True)
        painter.drawImage(bar, QImage(strip.data, 256, 1, 256 * 4, QImage.Format_ARGB32_Premultiplied))
        if threshold > 0:  # the hidden part of the scale, washed out
            painter.fillRect(QRectF(bar.left(), bar.top(), bar.width() * threshold, bar.height()),
                             QColor(255, 255, 255, 170))
        painter.setPen(QPen(QColor(60, 60, 60), 1))
        painter.setBrush(Qt.NoBrush)
        painter.drawRect(bar)
        for value, label in ((0.0, "0"), (0.5, "0.5"), (1.0, "1")):
            x = bar.left() + value * bar.width()
            painter.drawLine(QPointF(x, bar.bottom()), QPointF(x, bar.bottom() + 3))
            align = Qt.AlignLeft if value == 0 else Qt.AlignRight if value == 1 else Qt.AlignHCenter
            box = QRectF(x - (0 if value == 0 else 40 if value == 1 else 20), bar.bottom() + 3, 40, text_h)
            painter.drawText(box, align | Qt.AlignTop, label)
        if threshold > 0:
            x = bar.left() + threshold * bar.width()
            painter.setPen(QPen(QColor(200, 0, 0), 2))
            painter.drawLine(QPointF(x, bar.top() - 2), QPointF(x, bar.bottom() + 2))
        painter.restore()
