"""A word-wrapped label that always gets the height its wrapped text needs.

A wrapped `QLabel` in a form inside a scroll area is laid out at the height of the width it was first measured
at; made narrower (a narrow panel), its last lines are cut off. This one asks for the height of its width
whenever its width changes.
"""

from __future__ import annotations

from PyQt5.QtCore import QEvent
from PyQt5.QtWidgets import QLabel

QWIDGETSIZE_MAX = (1 << 24) - 1

#: Events after which the text's height may differ: the style sheet's font and padding arrive, or it shows.
_REFIT = (QEvent.Polish, QEvent.StyleChange, QEvent.FontChange, QEvent.Show)


class WrapLabel(QLabel):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("wordWrap", True)
        super().__init__(*args, **kwargs)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def event(self, event) -> bool:
        handled = super().event(event)
        if event.type() in _REFIT and self.width() > 1:
            self._fit()
        return handled

    def setText(self, text: str) -> None:
        super().setText(text)
        if self.width() > 1:
            self._fit()

    def _fit(self) -> None:
        # heightForWidth answers within the label's own limits: free them to ask, then fix the answer
        fixed = (self.minimumHeight(), self.maximumHeight())
        self.setMinimumHeight(0)
        self.setMaximumHeight(QWIDGETSIZE_MAX)
        need = self.heightForWidth(self.width())
        if need > 0:
            self.setFixedHeight(need)  # exactly its text's height: neither cut off nor padded with space
        else:
            self.setMinimumHeight(fixed[0])
            self.setMaximumHeight(fixed[1])
