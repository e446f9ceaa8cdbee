"""The window's status bar: where the cursor is, magnification, zoom, a missing µm/px, loading."""

from __future__ import annotations

from PyQt5.QtWidgets import QComboBox, QLabel, QStatusBar

from gui.style import ERROR_STYLE


class SlideStatus:
    """The permanent labels of a status bar, showing the current view; ``mag_combo`` follows the magnification."""

    def __init__(self, bar: QStatusBar, mag_combo: QComboBox):
        self.mag_combo = mag_combo
        self.pos_label, self.mag_label, self.zoom_label, self.mpp_label, self.load_label = (QLabel() for _ in range(5))
        self.mpp_label.setStyleSheet(f"{ERROR_STYLE}; font-weight: bold")
        for label in (self.mpp_label, self.load_label, self.pos_label, self.mag_label, self.zoom_label):
            bar.addPermanentWidget(label)

    def clear(self) -> None:
        for label in (self.pos_label, self.mag_label, self.zoom_label, self.mpp_label, self.load_label):
            label.setText("")

    def show_view(self, view) -> None:
        """Magnification, zoom, µm/px warning and loading state of ``view`` (the current one)."""
        mag = view.magnification
        self.mag_label.setText(f"{mag:.1f}x" if mag is not None else "magnification unknown")
        self.zoom_label.setText(f"zoom {view.viewport.scale * 100:.1f}%")
        self.mpp_label.setText("" if view.mpp else "µm/px unknown: Slide ▸ Set resolution…")
        self.load_label.setText("" if view.slide_layer.is_sharp() else "loading…")
        index = self.mag_combo.findData(round(mag, 2) if mag else None)
        # off the presets the first item says the actual magnification ("4.5x"), unknown: "—"
        self.mag_combo.setItemText(0, f"{mag:.1f}x" if mag is not None and index < 0 else "—")
        self.mag_combo.setCurrentIndex(index if index >= 0 else 0)

    def show_cursor(self, view, pos) -> None:
        """The cursor's level-0 position ``pos`` (None: it left the view), in µm when the µm/px is known."""
        if pos is None:
            self.pos_label.setText("")
            return
        l0_x, l0_y = pos
        if view.mpp:
            self.pos_label.setText(f"x {l0_x * view.mpp[0]:,.1f} µm  y {l0_y * view.mpp[1]:,.1f} µm")
        else:
            self.pos_label.setText(f"x {l0_x:,.0f} px  y {l0_y:,.0f} px")
