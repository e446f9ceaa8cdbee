"""An optional measuring grid at round physical spacings."""

from __future__ import annotations

import math

from PyQt5.QtCore import QLineF, QRectF, Qt
from PyQt5.QtGui import QColor, QPainter, QPen

from core.view.viewport import Viewport, format_length_um, nice_length_at_least
from gui.layers.base import Layer, begin_legend_card
from gui.overlays import SCALE_BAR_HEIGHT, SCALE_BAR_MARGIN

#: Grid lines are at least this far apart on screen.
MIN_SPACING_PX = 80


class GridLayer(Layer):
    """Lines every 1-2-5 × 10^k µm (or pixels when µm/px is unknown), thin and translucent."""

    def __init__(self, mpp_x: float | None = None):
        super().__init__("Grid", visible=False, opacity=0.6)
        self.mpp_x = mpp_x

    def spacing_l0(self, viewport: Viewport) -> float:
        unit = self.mpp_x or 1.0  # µm (or px) per level-0 pixel
        spacing_units = nice_length_at_least(MIN_SPACING_PX / viewport.scale * unit)
        return max(spacing_units / unit, 1.0)

    def spacing_text(self, viewport: Viewport) -> str:
        """``"grid 200 µm"`` (or ``"grid 500 px"`` when the µm/px is unknown): what a square of the grid measures."""
        spacing = self.spacing_l0(viewport)
        if self.mpp_x:
            return f"grid {format_length_um(spacing * self.mpp_x)}"
        return f"grid {spacing:,.0f} px"

    def paint_legend_card(self, painter: QPainter, viewport: Viewport) -> None:
        """The grid's spacing, just above the scale bar's corner."""
        text = self.spacing_text(viewport)
        width = painter.fontMetrics().horizontalAdvance(text) + 20
        rect = QRectF(SCALE_BAR_MARGIN, viewport.screen_h - SCALE_BAR_HEIGHT - 10 - 26, width, 20)
        begin_legend_card(painter, rect)
        painter.setPen(QColor(20, 20, 20))
        painter.drawText(rect, Qt.AlignCenter, text)
        painter.restore()

    def paint(self, painter: QPainter, viewport: Viewport) -> None:
        spacing = self.spacing_l0(viewport)
        l0_x, l0_y, l0_w, l0_h = viewport.visible_l0_rect()
        x_start = max(0.0, math.ceil(l0_x / spacing) * spacing)
        y_start = max(0.0, math.ceil(l0_y / spacing) * spacing)
        x_end, y_end = min(l0_x + l0_w, viewport.l0_w), min(l0_y + l0_h, viewport.l0_h)
        painter.setPen(QPen(QColor(30, 30, 30, 160), 1))
        top = viewport.l0_to_screen(0, max(l0_y, 0))[1]
        bottom = viewport.l0_to_screen(0, y_end)[1]
        left = viewport.l0_to_screen(max(l0_x, 0), 0)[0]
        right = viewport.l0_to_screen(x_end, 0)[0]
        x = x_start
        while x <= x_end:
            sx = viewport.l0_to_screen(x, 0)[0]
            painter.drawLine(QLineF(sx, top, sx, bottom))
            x += spacing
        y = y_start
        while y <= y_end:
            sy = viewport.l0_to_screen(0, y)[1]
            painter.drawLine(QLineF(left, sy, right, sy))
            y += spacing
