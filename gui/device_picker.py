"""Choosing where MXNet runs: a combo box (auto / cpu / gpu:0) and a line saying what the choice means here.

Asking MXNet starts it, so it is done on a worker thread, and only when `resolve` is first called (a
panel calls it when it is shown).
"""

from __future__ import annotations

from PyQt5 import sip
from PyQt5.QtWidgets import QComboBox, QLabel

from core.models.training_job import describe
from gui.style import ERROR_STYLE, MUTED_STYLE
from gui.worker import Worker

DEVICES = ("auto", "cpu", "gpu:0")


class DevicePicker:
    """``combo`` and ``label`` to place in a form; ``verb`` starts the label ("Trains on", "Runs on").

    Parameters
    ----------
    verb : str
    can_change : callable, optional
        Checked before asking again when the choice changes (e.g. not while a job runs).
    """

    def __init__(self, verb: str, can_change=lambda: True):
        self.verb, self.can_change = verb, can_change
        self.combo = QComboBox(toolTip="auto: the GPU when MXNet finds one, else the CPU")
        self.combo.addItems(DEVICES)
        self.label = QLabel(wordWrap=True, styleSheet=MUTED_STYLE)
        self.label.setMinimumWidth(120)  # wraps in a narrow panel instead of widening it
        self.asked = False
        self._worker: Worker | None = None
        self.combo.currentTextChanged.connect(lambda _t: self.resolve() if self.asked else None)

    def text(self) -> str:
        return self.combo.currentText()

    def resolve(self) -> None:
        """Find out, off the GUI thread, what the current choice resolves to, and say it."""
        if not self.can_change():
            return
        self.asked = True
        device = self.combo.currentText()
        self.label.setText(f"Checking what “{device}” means here…")
        worker = Worker(describe, device)
        worker.finished.connect(lambda words, d=device: self._resolved(d, words, None))
        worker.failed.connect(lambda err, d=device: self._resolved(d, None, err))
        self._worker = worker.start()

    def _resolved(self, device: str, words: str | None, err) -> None:
        if sip.isdeleted(self.label) or device != self.combo.currentText():
            return  # the panel closed, or the choice changed meanwhile
        text = f"{self.verb}: {words}" if err is None else f"Not available: {err}"
        self.label.setText(text.replace("=", "=\u200b"))  # OMP_NUM_THREADS=unset may break after "=" when narrow
        self.label.setStyleSheet(MUTED_STYLE if err is None else ERROR_STYLE)
