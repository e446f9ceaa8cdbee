"""Label, macro and thumbnail images: they may show patient names, so only on request."""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QPixmap
from PyQt5.QtWidgets import QDockWidget, QLabel, QScrollArea, QVBoxLayout, QWidget

from core.slide.base import PRIVATE_ASSOCIATED, SlideReader
from gui.tile_loader import TileImage

MAX_SIDE = 320


class AssociatedDock(QDockWidget):
    """Closed by default; images are read only while the dock is shown."""

    def __init__(self, parent=None):
        super().__init__("Label && macro (may show patient data)", parent)
        self.setObjectName("AssociatedDock")
        self._reader: SlideReader | None = None
        self._body = QWidget()
        self._layout = QVBoxLayout(self._body)
        self._layout.setAlignment(Qt.AlignTop)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._body)
        self.setWidget(scroll)
        self.visibilityChanged.connect(lambda _visible: self._refresh())
        self.shown_names: list[str] = []

    def set_reader(self, reader: SlideReader | None) -> None:
        self._reader = reader
        self._refresh()

    def _clear(self) -> None:
        while self._layout.count():
            item = self._layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.shown_names = []

    def _refresh(self) -> None:
        self._clear()
        if not self.isVisible() or self._reader is None or self._reader.closed:
            return
        names = self._reader.associated_image_names
        if not names:
            self._layout.addWidget(QLabel("This slide has no associated images."))
            return
        for name in sorted(names, key=lambda n: (n not in PRIVATE_ASSOCIATED, n)):
            try:
                rgb = self._reader.associated_image(name)
            except Exception as err:  # noqa: BLE001 - show the problem in place of the image
                self._layout.addWidget(QLabel(f"{name}: could not be read ({err})"))
                continue
            title = QLabel(f"<b>{name}</b> ({rgb.shape[1]} x {rgb.shape[0]})")
            image = QLabel()
            pixmap = QPixmap.fromImage(TileImage(np.ascontiguousarray(rgb)).image.copy())
            image.setPixmap(pixmap.scaled(MAX_SIDE, MAX_SIDE, Qt.KeepAspectRatio, Qt.SmoothTransformation))
            self._layout.addWidget(title)
            self._layout.addWidget(image)
            self.shown_names.append(name)
