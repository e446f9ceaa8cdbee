"""One overlay family at a time in a single view: the doctors' marks, the network's heatmap, or where they disagree.

With all three on, the morphology is buried at 10x and a red mark fill over a yellow heatmap reads as the orange
of a false positive. So a single view shows one family in full, and the marks as outlines under the other two:

========================  ==========  =====================  ===========================
overlay (key)             marks       heatmap                disagreement
========================  ==========  =====================  ===========================
``marks`` (K)             filled      hidden                 hidden
``heatmap`` (H)           outlines    shown                  hidden
``disagreement`` (D)      outlines    hidden                 shown
========================  ==========  =====================  ===========================

Shift+F turns the marks' fill on or off over any of them. A view switches to the heatmap when its first grid
arrives (`gui.slide_view.SlideView`); the side-by-side view gives each pane its own content instead.
"""

from __future__ import annotations

OVERLAYS = ("marks", "heatmap", "disagreement")
KEYS = {"marks": "K", "heatmap": "H", "disagreement": "D"}  # A and R accept and reject drafts
FILL_KEY = "Shift+F"
NAMES = {"marks": "Marks", "heatmap": "Heatmap", "disagreement": "Disagreement"}  # as the split view's boxes say


def show_overlay(view, name: str) -> None:
    """Show the ``name`` family on ``view`` (a `SlideView`) as the table above says; remembered as ``view.overlay``."""
    if name not in OVERLAYS:
        raise ValueError(f"unknown overlay {name!r}; choose one of {', '.join(OVERLAYS)}")
    view.overlay = name
    heatmap, disagreement, marks = view.heatmap_layer, view.disagreement_layer, view.annotation_layer
    heatmap.visible = name == "heatmap" and heatmap.grid is not None
    disagreement.visible = name == "disagreement" and disagreement.comparison is not None
    marks.visible = True
    if marks.fill != (name == "marks"):
        marks.set_options(fill=name == "marks")
    view.overlay_changed.emit(name)


def toggle_mark_fill(view) -> bool:
    """Turn the marks' fill on or off on ``view``, whatever the overlay; returns the new setting."""
    marks = view.annotation_layer
    marks.set_options(fill=not marks.fill)
    return marks.fill
