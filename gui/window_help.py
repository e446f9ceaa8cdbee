"""Help ▸ Mouse and keyboard, Help ▸ About."""

from __future__ import annotations

from PyQt5.QtWidgets import QMessageBox, QWidget

from core import __version__
from gui.annotate import CONTROLS_HTML as ANNOTATE_HTML

CONTROLS_HTML = """
<h3>Mouse</h3>
<ul><li>Wheel: zoom about the cursor</li><li>Left drag (Move tool), middle drag, or Space + drag: pan</li>
<li>Overview (top right of the view, of the left pane side by side): click or drag to move there</li></ul>
<h3>Keyboard</h3>
<ul><li>Arrow keys: pan</li><li>+ / − (or Ctrl+= / Ctrl+−): zoom in / out</li>
<li>0: zoom to fit &nbsp; Ctrl+1: full resolution (1:1)</li>
<li>Alt+1 … Alt+6: 1.25x, 2.5x, 5x, 10x, 20x, 40x</li>
<li>G: grid &nbsp; O: overview &nbsp; S: scale bar &nbsp; F6: side by side</li>
<li>K: marks &nbsp; H: heatmap &nbsp; D: disagreement (one at a time, the marks as outlines under the others)
&nbsp; Shift+F: fill the marks or not</li>
<li>Ctrl+O: open &nbsp; Ctrl+W: close slide &nbsp; Ctrl+E: export view</li></ul>
"""


def show_controls(parent: QWidget) -> None:
    QMessageBox.information(parent, "Mouse and keyboard", CONTROLS_HTML + ANNOTATE_HTML)


def show_about(parent: QWidget) -> None:
    QMessageBox.about(parent, "About Biopsia",
                      f"<h3>Biopsia {__version__}</h3><p>Whole-slide viewing, tumour marking and MXNet "
                      "tumour detection for pathologists.</p>")
