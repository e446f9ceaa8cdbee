"""A table laid out for a side panel about 300 px wide: the panel's text a little smaller, no sideways scroll.

The Evaluation panel's 2x2 table and the per-core tables keep every digit at 1280 x 800 this way; the columns
share the width they are given (each caller chooses how).
"""

from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QFont
from PyQt5.QtWidgets import QTableWidget

#: Points below the panel's font, and the smallest size kept.
SMALLER_PT, SMALLEST_PT = 2.0, 7.0


def narrow_table(table: QTableWidget) -> QFont:
    """Give ``table`` (and its horizontal header) the smaller font and no sideways scroll bar; return the font."""
    font = QFont(table.font())
    font.setPointSizeF(max(SMALLEST_PT, font.pointSizeF() - SMALLER_PT))
    table.setFont(font)
    table.horizontalHeader().setFont(font)
    table.horizontalHeader().setMinimumSectionSize(8)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    return font
