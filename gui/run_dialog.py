"""The small progress dialog of a run that goes on in the background while the window stays usable.

*Predict all slides* and *Retrain with new marks* show one: non-modal, never closing or resetting itself,
its Cancel wired to the run's cancel, its text echoed in the status bar. The dialog may be closed by the
user at any time, so every call first checks it still exists.
"""

from __future__ import annotations

from typing import Callable

from PyQt5 import sip
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QMainWindow, QProgressDialog


def open_run_dialog(win: QMainWindow, title: str, text: str, maximum: int,
                    on_cancel: Callable[[], None]) -> QProgressDialog:
    """Show the dialog (``maximum`` 0: busy, no count yet); Cancel calls ``on_cancel``."""
    dialog = QProgressDialog(text, "Cancel", 0, maximum, win)
    dialog.setWindowTitle(title)
    dialog.setWindowModality(Qt.NonModal)  # the slides stay usable while the run goes on
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.setMinimumDuration(0)
    dialog.setValue(0)
    dialog.canceled.connect(on_cancel)
    dialog.show()
    return dialog


def alive(dialog: QProgressDialog | None) -> QProgressDialog | None:
    """``dialog`` while it still exists, else None."""
    return dialog if dialog is not None and not sip.isdeleted(dialog) else None


def say(win: QMainWindow, dialog: QProgressDialog | None, text: str) -> None:
    """``text`` in the dialog (if it is still there) and in the window's status bar."""
    if alive(dialog) is not None:
        dialog.setLabelText(text)
    win.statusBar().showMessage(text)


def close_run_dialog(dialog: QProgressDialog | None, on_cancel: Callable[[], None]) -> None:
    """Close the dialog at the end of its run; closing it no longer cancels anything."""
    if alive(dialog) is not None:
        dialog.canceled.disconnect(on_cancel)
        dialog.close()
        dialog.deleteLater()
