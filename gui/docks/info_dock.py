"""Slide information: dimensions, levels, resolution, vendor, every property."""

from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QDockWidget, QHeaderView, QTableWidget, QTableWidgetItem

from core.slide.base import SlideInfo


def summary_rows(info: SlideInfo, mpp: tuple[float, float] | None, mpp_source: str | None) -> list[tuple[str, str]]:
    """The human summary shown above the raw properties."""
    if mpp:
        where = {"file": "from the file", "user": "entered by you",
                 "project": "entered by you (kept in the project)"}.get(mpp_source or "", "")
        mpp_text = f"{mpp[0]:.4f} x {mpp[1]:.4f} µm/px {where}".strip()
    else:
        mpp_text = "unknown: set it in Slide ▸ Set resolution…"
    levels = ", ".join(f"{w}x{h} (÷{ds:g})" for (w, h), ds in zip(info.level_dimensions, info.level_downsamples))
    return [
        ("File", info.path),
        ("Format", f"{info.vendor} (read by {info.backend})"),
        ("Size", f"{info.dimensions[0]} x {info.dimensions[1]} px"),
        ("Resolution", mpp_text),
        ("Objective", f"{info.objective_power:g}x" if info.objective_power else "unknown"),
        ("Levels", levels),
        ("Associated images", ", ".join(info.associated_images) or "none"),
        ("Colour profile", "embedded ICC profile" if info.has_icc_profile else "none (sRGB assumed)"),
    ]


class InfoDock(QDockWidget):
    def __init__(self, parent=None):
        super().__init__("Slide info", parent)
        self.setObjectName("InfoDock")
        self.table = QTableWidget(0, 2, self)
        self.table.setHorizontalHeaderLabels(["Property", "Value"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(0, 130)
        # a narrow panel wraps words onto more lines (rows grow to fit) and cuts a path in its middle, so that
        # the resolution, the levels and the file's name stay readable; every value's tooltip is whole
        self.table.setTextElideMode(Qt.ElideMiddle)
        self.table.setWordWrap(True)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.setWidget(self.table)

    def show_info(self, info: SlideInfo | None, mpp=None, mpp_source=None) -> None:
        rows: list[tuple[str, str]] = []
        if info is not None:
            rows = summary_rows(info, mpp, mpp_source) + sorted(info.properties.items())
        self.table.setRowCount(len(rows))
        for r, (key, value) in enumerate(rows):
            key_item = QTableWidgetItem(key)
            if r < 8 and info is not None:
                font = key_item.font()
                font.setBold(True)
                key_item.setFont(font)
            self.table.setItem(r, 0, key_item)
            value_item = QTableWidgetItem(str(value))
            value_item.setToolTip(str(value))
            self.table.setItem(r, 1, value_item)
        self.table.scrollToTop()

    def value_of(self, key: str) -> str | None:
        """The displayed value of a row (tests, accessibility)."""
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() == key:
                return self.table.item(r, 1).text()
        return None

