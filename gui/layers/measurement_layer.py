"""The doctor's ruler measurements drawn over the slide, each with its length beside its last point."""

from __future__ import annotations

from PyQt5.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt5.QtGui import QColor, QFontMetricsF, QPainter, QPen, QPolygonF

from core.view.viewport import Viewport
from gui.layers.base import Layer, begin_legend_card
from gui.measurements import Measurement, length_text

#: Ruler lines: cyan over a dark halo, a colour no mark class, heatmap or disagreement uses.
RULER_COLOR = QColor(0, 200, 230)


class MeasurementLayer(Layer):
    """Holds a slide's measurements (`gui.measurements.Measurement`); ``edited`` after add, remove or load."""

    edited = pyqtSignal()

    def __init__(self, mpp_source=lambda: None):
        super().__init__("Measurements")
        self.measurements: list[Measurement] = []
        self._mpp = mpp_source

    def set_measurements(self, measurements) -> None:
        self.measurements = list(measurements)
        self.changed.emit()

    def add(self, measurement: Measurement) -> None:
        self.measurements.append(measurement)
        self.changed.emit()
        self.edited.emit()

    def remove(self, measurement_id: str) -> bool:
        kept = [m for m in self.measurements if m.id != measurement_id]
        if len(kept) == len(self.measurements):
            return False
        self.measurements = kept
        self.changed.emit()
        self.edited.emit()
        return True

    def clear(self) -> None:
        if self.measurements:
            self.measurements = []
            self.changed.emit()
            self.edited.emit()

    def paint(self, painter: QPainter, viewport: Viewport) -> None:
        for m in self.measurements:
            paint_ruler(painter, [viewport.l0_to_screen(x, y) for x, y in m.points_l0],
                        length_text(m.length_um(self._mpp()), l0_length(m.points_l0)))


def _pen(width: float, color: QColor) -> QPen:
    pen = QPen(color, width)
    pen.setCapStyle(Qt.RoundCap)
    pen.setJoinStyle(Qt.RoundJoin)
    return pen


def l0_length(points) -> float:
    """A polyline's length in level-0 pixels (shown when the slide has no µm/px)."""
    return sum(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 for (x0, y0), (x1, y1) in zip(points, points[1:]))


def paint_ruler(painter: QPainter, screen_points, text: str) -> None:
    """A polyline with end ticks and its length on a small white card by its last point (screen pixels)."""
    if len(screen_points) < 2:
        return
    painter.save()
    painter.setRenderHint(QPainter.Antialiasing, True)
    line = QPolygonF([QPointF(x, y) for x, y in screen_points])
    for pen in (_pen(4, QColor(0, 0, 0, 150)), _pen(2, RULER_COLOR)):
        painter.setPen(pen)
        painter.drawPolyline(line)
    painter.setPen(_pen(1, QColor(20, 20, 20)))
    painter.setBrush(RULER_COLOR)
    for x, y in screen_points:
        painter.drawEllipse(QPointF(x, y), 3, 3)
    painter.restore()
    x, y = screen_points[-1]
    begin_legend_card(painter, QRectF())  # sets the font
    metrics = QFontMetricsF(painter.font())
    rect = QRectF(x + 8, y - metrics.height() - 6, metrics.horizontalAdvance(text) + 10, metrics.height() + 4)
    painter.setPen(Qt.NoPen)
    painter.setBrush(QColor(255, 255, 255, 240))
    painter.drawRoundedRect(rect, 3, 3)
    painter.setPen(QColor(20, 20, 20))
    painter.drawText(rect, Qt.AlignCenter, text)
    painter.restore()
