"""File ▸ Export view and Save window screenshot: PNG files written atomically, failures told to the user."""

from __future__ import annotations

from pathlib import Path

from PyQt5.QtWidgets import QFileDialog

from core.errors import BiopsiaError
from gui.image_files import save_image


def export_view_dialog(window) -> None:
    """Save the current view as it is drawn."""
    view = window.current_view()
    if view is None:
        return
    path, _ = QFileDialog.getSaveFileName(window, "Export view", f"{Path(view.reader.display_name).stem}.png",
                                          "PNG image (*.png)")
    if path:
        save_or_tell(window, view.grab(), path, "Export failed")


def screenshot_dialog(window) -> None:
    """Save the whole window (label and macro only when the preferences allow)."""
    path, _ = QFileDialog.getSaveFileName(window, "Save window screenshot", "biopsia.png", "PNG image (*.png)")
    if path:
        save_or_tell(window, window.grab_window(), path, "Screenshot failed")


def save_or_tell(window, image, path: str, title: str) -> None:
    """Write ``image`` as PNG; a failure is shown with ``window.show_error`` (the earlier file, if any, stays)."""
    try:
        save_image(image, path, "PNG")
    except BiopsiaError as err:
        window.show_error(title, str(err))
    except OSError as err:  # a full disk or a folder that cannot be written
        window.show_error(title, f"{err.filename or path}: could not write the image: {err.strerror or err}")
