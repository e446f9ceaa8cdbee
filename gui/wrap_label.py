"""A word-wrapped label that always gets the height its wrapped text needs.

A wrapped `QLabel` in a form inside a scroll area is laid out at the height of the width it was first measured
at; made narrower (a narrow panel), its last lines are cut off. This one asks for the height of its width
whenever its width changes.
"""

from __future__ import annotations

from PyQt5.QtWidgets import QLabel


class WrapLabel(QLabel):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("wordWrap", True)
        super().__init__(*args, **kwargs)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        need = self.heightForWidth(self.width())
        if need > 0 and self.minimumHeight() != need:
            self.setMinimumHeight(need)  # the layout gives it that height on its next pass

    def setText(self, text: str) -> None:
        super().setText(text)
        need = self.heightForWidth(self.width()) if self.width() > 1 else 0
        if need > 0:
            self.setMinimumHeight(need)
