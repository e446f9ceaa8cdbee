"""A slide's µm/px in a table cell: shown with where it came from, typed over, checked before it is kept.

What a slide's µm/px is, and where it came from, is `core.project.mpp`'s rule; this file only shows it and
reads what the user types. A value typed here is kept as Slide ▸ Set resolution and ``--slide-mpp`` keep
theirs (`core.project.mpp.remember_mpp`: the slide's project and the user's per-file store).
"""

from __future__ import annotations

import math

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import QLineEdit

from core.errors import BiopsiaError
from core.project.mpp import MppSource, SlideMpp
from core.tiles.grid import MPP_RANGE
from gui.style import MUTED_STYLE

#: Words for where a value came from, as the cell's tooltip says them.
SOURCE_WORDS = {
    MppSource.PROJECT: "entered for this slide (kept in the project)",
    MppSource.USER: "entered for this file (kept in your settings)",
    MppSource.FILE: "recorded in the slide file",
    MppSource.COMMAND_LINE: "given with --slide-mpp",
}


def parse_mpp(text: str, what: str = "µm/px") -> tuple[float, float]:
    """``"0.5"`` or ``"0.5, 0.52"`` (x, y) as micrometres per pixel, within the range tiles and slides allow.

    Raises
    ------
    ValueError
        With a message to show as it is: not a number, not positive, or outside 0.05 to 50 µm/px.
    """
    low, high = MPP_RANGE
    parts = [p.strip() for p in text.replace(";", ",").split(",")]
    if not text.strip() or len(parts) > 2 or not all(parts):
        raise ValueError(f"{what}: type one number (square pixels) or two as X, Y, e.g. 0.25 for a 40x scan; "
                         f"got {text.strip()!r}")
    values = []
    for part in parts:
        try:
            value = float(part.replace("µm/px", "").strip())
        except ValueError:
            raise ValueError(f"{what}: {part!r} is not a number (e.g. 0.5 for a 20x scan)") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{what}: {part} is not a resolution: it must be above 0 (0.25 at 40x, 0.5 at 20x)")
        if not low <= value <= high:
            raise ValueError(f"{what}: {part} µm/px is outside {low:g} to {high:g} µm/px, where slides and tiles "
                             "lie (0.25 at 40x, 0.5 at 20x, 1 at 10x)")
        values.append(value)
    return values[0], values[-1]


def mpp_text(mpp: tuple[float, float] | None) -> str:
    """``"0.5"``, ``"0.5, 0.52"`` or ``""`` (unknown)."""
    if not mpp:
        return ""
    return f"{mpp[0]:g}" if mpp[0] == mpp[1] else f"{mpp[0]:g}, {mpp[1]:g}"


class FieldEdit(QLineEdit):
    """A line edit in a dialog whose Enter finishes the field and goes no further (it starts no default button)."""

    def keyPressEvent(self, event) -> None:
        super().keyPressEvent(event)
        if event.key() in (Qt.Key_Return, Qt.Key_Enter):
            event.accept()


class MppEdit(FieldEdit):
    """One slide's µm/px. ``entered(x, y)`` when a new, valid value is typed (Enter or leaving the cell);
    ``refused(message)`` for text that is not one, and the cell then shows the value it had, so nothing is lost.
    """

    entered = pyqtSignal(float, float)
    refused = pyqtSignal(str)

    def __init__(self, name: str, parent=None):
        super().__init__(parent, placeholderText="unknown")
        self.name = name
        self.current = SlideMpp(None, None)
        self.setFrame(False)
        self.editingFinished.connect(self._on_finished)
        self.show_mpp(self.current)

    def show_mpp(self, found: SlideMpp) -> None:
        """Show ``found`` (a value and its source, from `core.project.mpp.resolve_mpp`)."""
        self.current = found
        self.setText(mpp_text(found.mpp))
        # the file's own value in the caption colour; a value someone entered in the text colour
        self.setStyleSheet(MUTED_STYLE if found.source == MppSource.FILE else "")
        where = SOURCE_WORDS.get(found.source, "")
        self.setToolTip(f"{mpp_text(found.mpp)} µm/px, {where}. Type another value to correct it." if found.mpp
                        else "Unknown: type the µm/px at full resolution (0.25 at 40x, 0.5 at 20x); "
                             "it is kept for this slide, as Slide ▸ Set resolution keeps it")

    def _on_finished(self) -> None:
        text = self.text().strip()
        if text == mpp_text(self.current.mpp):
            return
        try:
            value = parse_mpp(text, f"{self.name}: µm/px")
        except ValueError as err:
            self.show_mpp(self.current)  # the value it had stays, and says so
            self.refused.emit(str(err))
            return
        self.entered.emit(*value)


def file_mpps(paths) -> dict[str, tuple[float, float] | None]:
    """{path: the µm/px each slide file records, or None} (opens each file: run it off the GUI thread)."""
    from core.slide import open_slide

    out = {}
    for path in paths:
        try:
            with open_slide(path) as reader:
                out[str(path)] = reader.mpp
        except (BiopsiaError, OSError):
            out[str(path)] = None  # the table says "unknown"; training reports the slide itself
    return out
