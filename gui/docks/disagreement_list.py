"""Disagreement regions of a comparison, largest first; clicking one takes the view there."""

from __future__ import annotations

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtGui import QColor, QIcon, QPixmap
from PyQt5.QtWidgets import QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from core.evaluation.compare import Region, SlideComparison
from gui.layers.disagreement_layer import FILL_ALPHA, KIND_COLOURS

#: How much room around a region the view leaves when going there (1.0: the region fills the view).
REGION_MARGIN = 2.0


def region_text(region: Region) -> str:
    """``false positive, 12 tiles, mean p 0.83``."""
    return f"{region.kind}, {region.tiles} tile{'s' if region.tiles != 1 else ''}, mean p {region.mean_probability:.2f}"


def _swatch(kind: str, size: int = 12) -> QIcon:
    pixmap = QPixmap(size, size)
    colour = KIND_COLOURS.get(kind, QColor(128, 128, 128))
    pixmap.fill(QColor(colour.red(), colour.green(), colour.blue(), FILL_ALPHA))
    return QIcon(pixmap)


def go_to_region(view, region: Region, margin: float = REGION_MARGIN) -> None:
    """Centre ``view`` on the region and zoom so its bounding box shows with room around it."""
    _x, _y, l0_w, l0_h = region.bbox_l0
    vp = view.viewport
    scale = min(vp.screen_w / max(l0_w * margin, 1.0), vp.screen_h / max(l0_h * margin, 1.0))
    view.set_viewport(vp.centred_on(region.centre_l0[0], region.centre_l0[1], scale))


class DisagreementList(QWidget):
    """The regions where the network and the doctors disagree, sorted by size.

    Emits ``region_activated(Region)`` when a row is clicked (or chosen with the keyboard).
    """

    region_activated = pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.comparison: SlideComparison | None = None
        self.regions: list[Region] = []
        self.summary = QLabel(wordWrap=True)
        self.list = QListWidget()
        self.list.setToolTip("Click a region to go there")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.ElideRight)
        self.list.itemClicked.connect(self._on_item)
        self.list.itemActivated.connect(self._on_item)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.summary)
        layout.addWidget(self.list, 1)
        self.set_comparison(None)

    def set_comparison(self, comparison: SlideComparison | None) -> None:
        self.comparison = comparison
        self.regions = sorted(comparison.regions, key=lambda r: r.tiles, reverse=True) if comparison else []
        self.list.clear()
        for region in self.regions:
            item = QListWidgetItem(_swatch(region.kind), region_text(region))
            item.setData(Qt.UserRole, region)
            self.list.addItem(item)
        if comparison is None:
            self.summary.setText("No comparison with the doctors' marks yet.")
        else:
            fp = sum(r.tiles for r in self.regions if r.kind == "false positive")
            fn = sum(r.tiles for r in self.regions if r.kind == "false negative")
            self.summary.setText(f"<b>{len(self.regions)}</b> disagreement regions: {fp} false-positive and "
                                 f"{fn} false-negative tiles.")

    def _on_item(self, item: QListWidgetItem) -> None:
        self.region_activated.emit(item.data(Qt.UserRole))
