"""Where the network and the doctors disagree: false positives and false negatives, per grid cell."""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import QRectF, Qt
from PyQt5.QtGui import QColor, QImage, QPainter, QPen

from core.evaluation.compare import AGREE_NEGATIVE, AGREE_POSITIVE, FALSE_NEGATIVE, FALSE_POSITIVE, SlideComparison
from core.view.viewport import Viewport
from gui.layers.base import Layer, begin_legend_card
from gui.layers.cell_geometry import bgra_qimage, cell_transform, mask_edges, slide_clip, visible_cells

#: Colour-blind safe pair (Okabe-Ito orange and blue): the network says tumour, the doctors did not; and the reverse.
FALSE_POSITIVE_COLOUR = QColor(230, 159, 0)
FALSE_NEGATIVE_COLOUR = QColor(0, 114, 178)
#: Fill alpha of disagreeing cells; agreements get ``AGREEMENT_ALPHA`` (0: not drawn).
FILL_ALPHA = 150
AGREEMENT_ALPHA = 0
KIND_COLOURS = {"false positive": FALSE_POSITIVE_COLOUR, "false negative": FALSE_NEGATIVE_COLOUR}
KIND_NAMES = {"false positive": "False positive (network only)", "false negative": "False negative (doctors only)"}


def _premultiplied(colour: QColor, alpha: int) -> list[int]:
    return [colour.blue() * alpha // 255, colour.green() * alpha // 255, colour.red() * alpha // 255, alpha]


class DisagreementLayer(Layer):
    """Draws a `core.evaluation.compare.SlideComparison`: false positives and false negatives filled in two colours with
    outlines; agreements not drawn (faintly with ``show_agreement``). Hidden until a comparison is set."""

    def __init__(self, grid_source=None):
        super().__init__("Disagreement", visible=False, opacity=1.0)
        self.comparison: SlideComparison | None = None
        self._grid = None
        # where the cells' geometry comes from when the comparison is set without its grid (the view's heatmap)
        self.grid_source = grid_source
        self.show_legend = True
        self.show_agreement = False
        self._image: QImage | None = None
        self._buffer: np.ndarray | None = None
        self._edges: dict[int, list] = {}
        self._source: DisagreementLayer | None = None

    def set_comparison(self, comparison: SlideComparison | None, grid=None) -> None:
        """Hold ``comparison`` (shown when the layer is switched on: Layers dock, or the Disagreement pane of
        the side-by-side view); ``grid`` (the `ProbabilityGrid` compared) gives the cells' geometry.

        Without ``grid``: ``comparison.grid`` when it has one, else ``grid_source()`` (the view's heatmap grid).
        The layer never switches itself on: it would cover the heatmap after every prediction.
        """
        self.comparison = comparison
        self._grid = grid if grid is not None else getattr(comparison, "grid", None)
        self._rebuild()
        if comparison is None:
            self.visible = False
        self.changed.emit()

    @property
    def grid(self):
        """The grid giving the cells' geometry, or None when no grid of the comparison's shape is known."""
        grid = self._grid
        if grid is None and self.grid_source is not None:
            grid = self.grid_source()
        if grid is None or self.comparison is None or tuple(grid.shape) != self.comparison.disagreement.shape:
            return None
        return grid

    def set_show_agreement(self, on: bool) -> None:
        self.show_agreement = bool(on)
        self._rebuild()
        self.changed.emit()

    def _rebuild(self) -> None:
        self._edges = {}
        if self.comparison is None:
            self._image = self._buffer = None
            return
        codes = self.comparison.disagreement
        palette = np.zeros((5, 4), np.uint8)  # index: code + 1 (NOT_COMPARED is -1)
        palette[FALSE_POSITIVE + 1] = _premultiplied(FALSE_POSITIVE_COLOUR, FILL_ALPHA)
        palette[FALSE_NEGATIVE + 1] = _premultiplied(FALSE_NEGATIVE_COLOUR, FILL_ALPHA)
        if self.show_agreement:
            palette[AGREE_POSITIVE + 1] = _premultiplied(QColor(120, 120, 120), 60)
            palette[AGREE_NEGATIVE + 1] = _premultiplied(QColor(255, 255, 255), 40)
        elif AGREEMENT_ALPHA:
            palette[AGREE_POSITIVE + 1] = _premultiplied(QColor(120, 120, 120), AGREEMENT_ALPHA)
        self._buffer = np.ascontiguousarray(palette[codes.astype(np.intp) + 1])
        self._image = bgra_qimage(self._buffer)
        self._edges = {code: mask_edges(codes == code) for code in (FALSE_POSITIVE, FALSE_NEGATIVE)}

    # -- mirrors (the other pane of a split view) -------------------------------------------------
    def mirror(self, source: "DisagreementLayer") -> None:
        self.unmirror()
        self._source = source
        source.changed.connect(self._on_source_changed)
        self._on_source_changed()

    def _on_source_changed(self) -> None:
        src = self._source
        if src.comparison is not self.comparison or src.show_agreement != self.show_agreement:
            self.comparison, self._grid, self.show_agreement = src.comparison, src.grid, src.show_agreement
            self._image, self._buffer, self._edges = src._image, src._buffer, src._edges
        self.opacity = src.opacity
        self.changed.emit()

    def dispose(self) -> None:
        self.unmirror()
        self._image = self._buffer = None

    # -- drawing ----------------------------------------------------------------------------------
    def paint(self, painter: QPainter, viewport: Viewport) -> None:
        grid = self.grid
        if self._image is None or grid is None:
            return
        row0, row1, col0, col1 = visible_cells(grid, viewport)
        if row0 < row1 and col0 < col1:
            painter.save()
            painter.setClipRect(slide_clip(grid, viewport))  # edge cells stop at the slide's edge
            painter.setTransform(cell_transform(grid, viewport))
            painter.setRenderHint(QPainter.SmoothPixmapTransform, False)
            source = QRectF(col0, row0, col1 - col0, row1 - row0)
            painter.drawImage(source, self._image, source)
            painter.setRenderHint(QPainter.Antialiasing, False)
            for code, colour in ((FALSE_POSITIVE, FALSE_POSITIVE_COLOUR), (FALSE_NEGATIVE, FALSE_NEGATIVE_COLOUR)):
                if self._edges.get(code):
                    pen = QPen(colour.darker(130), 2, Qt.SolidLine, Qt.SquareCap)
                    pen.setCosmetic(True)
                    painter.setPen(pen)
                    painter.drawLines(self._edges[code])
            painter.restore()

    def paint_legend_card(self, painter: QPainter, viewport: Viewport) -> None:
        """The two colours and their meaning, top left (drawn by the view above every layer)."""
        if self.show_legend and self._image is not None and self.grid is not None:
            paint_legend(painter, QRectF(12, 12, 220, 50))


def paint_legend(painter: QPainter, rect: QRectF) -> None:
    """The two colours and what they mean, on a white card."""
    begin_legend_card(painter, rect)
    row_h = (rect.height() - 12) / 2
    for i, kind in enumerate(("false positive", "false negative")):
        top = rect.top() + 6 + i * row_h
        colour = KIND_COLOURS[kind]
        swatch = QRectF(rect.left() + 8, top + (row_h - 12) / 2, 12, 12)
        painter.setPen(QPen(colour.darker(130), 1.5))
        painter.setBrush(QColor(colour.red(), colour.green(), colour.blue(), FILL_ALPHA))
        painter.drawRect(swatch)
        painter.setPen(QColor(20, 20, 20))
        painter.drawText(QRectF(swatch.right() + 6, top, rect.width() - 34, row_h), Qt.AlignLeft | Qt.AlignVCenter,
                         KIND_NAMES[kind])
    painter.restore()
