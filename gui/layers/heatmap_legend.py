"""The heatmap's legend card: the colour bar of a core colour map, ticks 0, 0.5, 1 and the threshold marked."""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import QPointF, QRectF, Qt
from PyQt5.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen

from core.inference.colours import colormap
from gui.layers.base import begin_legend_card
from gui.threshold_text import threshold_text

TEXT_COLOUR = QColor(20, 20, 20)
THRESHOLD_COLOUR = QColor(200, 0, 0)


def paint_heatmap_legend(painter: QPainter, rect: QRectF, colormap_name: str, threshold: float) -> None:
    """The legend in ``rect``: a title row when there is room, the bar, ticks under it."""
    begin_legend_card(painter, rect)
    text_h = painter.fontMetrics().height()
    titled = rect.height() >= 2 * text_h + 22
    pad = 8 if titled else 4
    top = rect.top() + pad + (text_h + 2 if titled else 0)
    bar = QRectF(rect.left() + pad, top, rect.width() - 2 * pad, max(4.0, rect.bottom() - pad - text_h - 3 - top))
    painter.setPen(TEXT_COLOUR)
    if titled:
        title = QRectF(rect.left() + pad, rect.top() + pad - 2, rect.width() - 2 * pad, text_h)
        painter.drawText(title, Qt.AlignLeft | Qt.AlignVCenter, "Tumour probability")
        if threshold > 0:
            painter.setPen(THRESHOLD_COLOUR)
            painter.drawText(title, Qt.AlignRight | Qt.AlignVCenter, f"shown ≥ {threshold_text(threshold)}")
    lut = colormap(colormap_name)
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
        painter.setPen(QPen(THRESHOLD_COLOUR, 2))
        painter.drawLine(QPointF(x, bar.top() - 2), QPointF(x, bar.bottom() + 2))
    painter.restore()


def legend_width(painter: QPainter, threshold: float, least: int = 210) -> int:
    """Width of a titled legend card whose title and "shown ≥ T" fit side by side (at least ``least`` px)."""
    font = QFont(painter.font())
    font.setPointSizeF(8)  # begin_legend_card's font
    metrics = QFontMetrics(font)
    need = metrics.horizontalAdvance("Tumour probability") + 16 + 12
    if threshold > 0:
        need += metrics.horizontalAdvance(f"shown ≥ {threshold_text(threshold)}")
    return max(least, need)


def heatmap_legend_image(width: int, height: int, colormap_name: str, threshold: float) -> QImage:
    """`paint_heatmap_legend` on a transparent image of ``width`` x ``height``."""
    image = QImage(width, height, QImage.Format_ARGB32_Premultiplied)
    image.fill(Qt.transparent)
    painter = QPainter(image)
    paint_heatmap_legend(painter, QRectF(0, 0, width, height), colormap_name, threshold)
    painter.end()
    return image
