"""What the brush and the eraser share: a round tip sized in screen pixels, a stroke applied as one edit."""

from __future__ import annotations

import math

from PyQt5.QtCore import QPointF, Qt
from PyQt5.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter, QPainterPath, QPen, QWheelEvent

from core.annotations.geometry import stroke
from core.view.viewport import Viewport
from gui.tools.base import Tool

MIN_RADIUS_PX, MAX_RADIUS_PX = 2.0, 300.0
#: Each `[` / `]` press or Ctrl+wheel notch scales the radius by this.
RADIUS_STEP = 1.2


class StrokeTool(Tool):
    """Drag to sweep a round tip; on release :meth:`apply_stroke` gets the swept area in level-0 pixels."""

    radius_px = 20.0  # shared by every instance of a tool class, so it survives switching tools
    cursor = Qt.BlankCursor

    def __init__(self) -> None:
        super().__init__()
        self.points_l0: list[tuple[float, float]] | None = None
        self.radius_l0 = 0.0  # fixed at the press, so zooming mid-stroke does not change the tip
        self.subtracting = False
        self._hover_screen: tuple[float, float] | None = None

    # -- radius ----------------------------------------------------------------------------
    def set_radius_px(self, radius: float) -> None:
        type(self).radius_px = min(max(radius, MIN_RADIUS_PX), MAX_RADIUS_PX)
        self.repaint()

    def wants_key(self, event: QKeyEvent) -> bool:
        return event.key() in (Qt.Key_BracketLeft, Qt.Key_BracketRight)

    def key_press(self, event: QKeyEvent) -> bool:
        if event.key() == Qt.Key_BracketLeft:
            self.set_radius_px(self.radius_px / RADIUS_STEP)
        elif event.key() == Qt.Key_BracketRight:
            self.set_radius_px(self.radius_px * RADIUS_STEP)
        else:
            return False
        return True

    def wheel(self, event: QWheelEvent) -> bool:
        if not event.modifiers() & Qt.ControlModifier:
            return False
        notches = event.angleDelta().y() / 120.0
        self.set_radius_px(self.radius_px * RADIUS_STEP**notches)
        return True

    # -- stroke ----------------------------------------------------------------------------
    def mouse_press(self, event: QMouseEvent) -> bool:
        if event.button() != Qt.LeftButton:
            return False
        self.points_l0 = [self.l0_pos(event)]
        self.radius_l0 = self.screen_px_to_l0(self.radius_px)
        self.subtracting = bool(event.modifiers() & (Qt.AltModifier | Qt.ControlModifier))
        self.repaint()
        return True

    def mouse_move(self, event: QMouseEvent) -> bool:
        self._hover_screen = (event.localPos().x(), event.localPos().y())
        if self.points_l0 is not None:
            here = self.l0_pos(event)
            # a new point every quarter radius keeps the swept outline round and the point count small
            if math.dist(here, self.points_l0[-1]) >= self.radius_l0 / 4:
                self.points_l0.append(here)
        self.repaint()
        return True

    def mouse_release(self, event: QMouseEvent) -> bool:
        if self.points_l0 is None or event.button() != Qt.LeftButton:
            return False
        here = self.l0_pos(event)
        if here != self.points_l0[-1]:
            self.points_l0.append(here)
        shape = stroke(self.points_l0, self.radius_l0)
        self.points_l0 = None
        if shape is not None:
            self.apply_stroke(shape, self.subtracting)
        self.repaint()
        return True

    def apply_stroke(self, shape, subtracting: bool) -> None:
        raise NotImplementedError

    def stroke_color(self) -> QColor:
        return QColor(255, 200, 0)

    # -- drawing ---------------------------------------------------------------------------
    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        if self.points_l0:
            path = QPainterPath(QPointF(*viewport.l0_to_screen(*self.points_l0[0])))
            for point in self.points_l0[1:]:
                path.lineTo(QPointF(*viewport.l0_to_screen(*point)))
            color = QColor(60, 60, 60) if self.subtracting else self.stroke_color()
            color.setAlpha(110)
            pen = QPen(color, 2 * self.radius_l0 * viewport.scale)
            pen.setCapStyle(Qt.RoundCap)
            pen.setJoinStyle(Qt.RoundJoin)
            painter.setPen(pen)
            painter.setBrush(Qt.NoBrush)
            if len(self.points_l0) == 1:
                path.lineTo(path.currentPosition() + QPointF(0.01, 0))
            painter.drawPath(path)
        if self._hover_screen is not None:
            radius = self.radius_l0 * viewport.scale if self.points_l0 else self.radius_px
            centre = QPointF(*self._hover_screen)
            painter.setBrush(Qt.NoBrush)
            painter.setPen(QPen(QColor(0, 0, 0, 160), 3))
            painter.drawEllipse(centre, radius, radius)
            painter.setPen(QPen(QColor(255, 255, 255), 1))
            painter.drawEllipse(centre, radius, radius)
