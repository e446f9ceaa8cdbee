"""Things drawn on top of a view in screen space: the scale bar and the overview minimap."""

from __future__ import annotations

from PyQt5.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt5.QtGui import QColor, QFont, QMouseEvent, QPainter, QPaintEvent, QPen
from PyQt5.QtWidgets import QWidget

from core.view.viewport import Viewport, format_length_um, nice_length_um

#: Longest the scale bar may be on screen.
SCALE_BAR_MAX_PX = 160


#: The scale bar's card: this far from the bottom-left corner, this tall (screen px).
SCALE_BAR_MARGIN, SCALE_BAR_HEIGHT = 12, 32


def scale_bar_reach(viewport: Viewport) -> float:
    """How far right of the view's left edge the scale bar's card can reach (screen px): legends keep clear of it."""
    return SCALE_BAR_MARGIN + SCALE_BAR_MAX_PX + 16


def paint_scale_bar(painter: QPainter, viewport: Viewport, mpp_x: float | None) -> None:
    """A 1-2-5 scale bar in the bottom-left corner; nothing when µm/px is unknown."""
    if not mpp_x:
        return
    um_per_screen_px = mpp_x / viewport.scale
    length_um = nice_length_um(SCALE_BAR_MAX_PX * um_per_screen_px)
    if length_um <= 0:
        return
    bar_px = length_um / um_per_screen_px
    text = format_length_um(length_um)
    font = QFont(painter.font())
    font.setPointSizeF(9)
    painter.setFont(font)
    text_w = painter.fontMetrics().horizontalAdvance(text)
    box = QRectF(SCALE_BAR_MARGIN, viewport.screen_h - SCALE_BAR_HEIGHT - 10, max(bar_px, text_w) + 16,
                 SCALE_BAR_HEIGHT)
    painter.setRenderHint(QPainter.Antialiasing, True)
    painter.setPen(Qt.NoPen)
    painter.setBrush(QColor(255, 255, 255, 200))
    painter.drawRoundedRect(box, 4, 4)
    x0, y = box.left() + 8, box.bottom() - 8
    painter.setPen(QPen(QColor(20, 20, 20), 3, Qt.SolidLine, Qt.FlatCap))
    painter.drawLine(QPointF(x0, y), QPointF(x0 + bar_px, y))
    painter.setPen(QColor(20, 20, 20))
    painter.drawText(QRectF(x0, box.top() + 2, box.width() - 16, 16), Qt.AlignLeft | Qt.AlignVCenter, text)


class Minimap(QWidget):
    """The whole slide in miniature with the viewport outlined; click or drag to move there.

    Emits ``move_requested(l0_x, l0_y)``.
    """

    move_requested = pyqtSignal(float, float)
    MAX_SIDE = 220
    #: At most this share of the view's width or height: in a narrow pane the overview must not cover the slide.
    MAX_SHARE = 0.3

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self._image = None
        self._viewport: Viewport | None = None
        self.setCursor(Qt.PointingHandCursor)
        self.setToolTip("Overview: click or drag to move the view")
        self.hide()

    def set_image(self, image) -> None:
        self._image = image
        self.fit_to(self.parentWidget().width(), self.parentWidget().height())
        self.show()
        self.update()

    def fit_to(self, view_w: int, view_h: int) -> None:
        """Size the overview for a view of ``view_w`` x ``view_h`` px: `MAX_SIDE`, or less in a small view."""
        if self._image is None:
            return
        w, h = self._image.width(), self._image.height()
        side = min(self.MAX_SIDE, max(48, self.MAX_SHARE * min(view_w, view_h)))
        f = side / max(w, h)
        self.setFixedSize(max(1, round(w * f)) + 4, max(1, round(h * f)) + 4)

    def set_viewport(self, viewport: Viewport) -> None:
        self._viewport = viewport
        self.update()

    def _image_rect(self) -> QRectF:
        return QRectF(2, 2, self.width() - 4, self.height() - 4)

    def paintEvent(self, event: QPaintEvent) -> None:
        if self._image is None:
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.SmoothPixmapTransform, True)
        painter.fillRect(self.rect(), QColor(40, 40, 40, 220))
        target = self._image_rect()
        painter.drawImage(target, self._image)
        vp = self._viewport
        if vp is not None:
            sx, sy = target.width() / vp.l0_w, target.height() / vp.l0_h
            l0_x, l0_y, l0_w, l0_h = vp.visible_l0_rect()
            rect = QRectF(target.left() + l0_x * sx, target.top() + l0_y * sy, l0_w * sx, l0_h * sy)
            whole = rect.contains(target)
            rect = rect.intersected(target)
            painter.setPen(QPen(QColor(0, 120, 255), 2))
            painter.setBrush(Qt.NoBrush if whole else QColor(0, 120, 255, 40))
            if rect.width() < 3:  # deep zoom: a marker that stays visible
                rect = QRectF(rect.center() - QPointF(2, 2), rect.center() + QPointF(2, 2))
            painter.drawRect(rect)
        painter.end()

    def _emit_move(self, event: QMouseEvent) -> None:
        if self._viewport is None:
            return
        target = self._image_rect()
        fx = min(max((event.pos().x() - target.left()) / target.width(), 0.0), 1.0)
        fy = min(max((event.pos().y() - target.top()) / target.height(), 0.0), 1.0)
        self.move_requested.emit(fx * self._viewport.l0_w, fy * self._viewport.l0_h)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.LeftButton:
            self._emit_move(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.LeftButton:
            self._emit_move(event)
