"""An optional measuring grid at round physical spacings."""

from __future__ import annotations

import math

from PyQt5.QtCore import QLineF
from PyQt5.QtGui import QColor, QPainter, QPen

from core.view.viewport import Viewport, nice_length_at_least
from gui.layers.base import Layer

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
