"""The layer contract: anything a slide view draws over the slide plugs in here."""

from __future__ import annotations

from PyQt5.QtCore import QObject, Qt, pyqtSignal
from PyQt5.QtGui import QColor, QFont, QPainter

from core.view.viewport import Viewport


class Layer(QObject):
    """A named, toggleable, semi-transparent drawing over a slide view.

    Subclasses implement :meth:`paint`; they call :meth:`request_repaint`
    when their content changes. ``paint`` runs on the GUI thread and must
    not do I/O.
    """

    changed = pyqtSignal()  # content, visibility or opacity changed: repaint
    _source = None  # the layer this one follows (a pane of the side-by-side view), see ``unmirror``

    def __init__(self, name: str, visible: bool = True, opacity: float = 1.0):
        super().__init__()
        self.name = name
        self._visible = visible
        self._opacity = opacity

    @property
    def visible(self) -> bool:
        return self._visible

    @visible.setter
    def visible(self, value: bool) -> None:
        if value != self._visible:
            self._visible = bool(value)
            self.changed.emit()

    @property
    def opacity(self) -> float:
        return self._opacity

    @opacity.setter
    def opacity(self, value: float) -> None:
        value = min(max(float(value), 0.0), 1.0)
        if value != self._opacity:
            self._opacity = value
            self.changed.emit()

    def paint(self, painter: QPainter, viewport: Viewport) -> None:
        raise NotImplementedError

    def paint_legend_card(self, painter: QPainter, viewport: Viewport) -> None:
        """Draw the layer's legend card, if any: the view calls this after every layer is painted, so a card
        sits above the marks' fills (never tinted by them), at full opacity."""

    def viewport_changed(self, viewport: Viewport) -> None:
        """The view moved: start loading whatever the new view needs (never block)."""

    def request_repaint(self) -> None:
        self.changed.emit()

    def dispose(self) -> None:
        """The view is closing: stop background work."""

    def unmirror(self) -> None:
        """Stop following the layer a ``mirror(source)`` call made this one copy (side-by-side panes)."""
        if self._source is not None:
            try:
                self._source.changed.disconnect(self._on_source_changed)
            except (TypeError, RuntimeError):  # already disconnected, or the source is gone
                pass
            self._source = None


def begin_legend_card(painter, rect) -> None:
    """Save the painter, draw a legend's white rounded card in ``rect`` and set its 8-point font.

    The caller draws the legend's content, then calls ``painter.restore()``.
    """
    painter.save()
    painter.setRenderHint(QPainter.Antialiasing, True)
    painter.setPen(Qt.NoPen)
    painter.setBrush(QColor(255, 255, 255, 248))  # all but opaque: the card reads the same over any colour
    painter.drawRoundedRect(rect, 4, 4)
    font = QFont(painter.font())
    font.setPointSizeF(8)
    painter.setFont(font)
