"""The window's ways in: File ▸ Open, the recent files, new and open project (dialogs only)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PyQt5.QtWidgets import QFileDialog, QMenu

from core.errors import BiopsiaError
from core.project.model import Project
from core.slide import supported_extensions
from gui.settings import Preferences


def open_dialog(window) -> None:
    """File ▸ Open: choose slides, each opens in a tab."""
    patterns = " ".join(f"*.{ext}" for ext in supported_extensions())
    paths, _ = QFileDialog.getOpenFileNames(window, "Open slides", "",
                                            f"Slides and images ({patterns});;All files (*)")
    window.open_paths(paths)


def open_project_dialog(window) -> None:
    folder = QFileDialog.getExistingDirectory(window, "Open project folder")
    if folder:
        window.open_project(folder)


def new_project_dialog(window) -> None:
    folder = QFileDialog.getExistingDirectory(window, "Choose an empty folder for the new project")
    if folder:
        try:
            window.use_project(Project.create(folder, Path(folder).name))
        except (BiopsiaError, OSError) as err:
            window.show_error("Could not create project", str(err))


def fill_recent_menu(menu: QMenu, prefs: Preferences, open_slide: Callable[[str], object]) -> None:
    """The recent files, newest first, each opening its slide; "Clear list" empties it."""
    menu.clear()
    files = prefs.recent_files()
    for path in files:
        act = menu.addAction(Path(path).name)
        act.setToolTip(path)
        act.triggered.connect(lambda _c=False, p=path: open_slide(p))
    if files:
        menu.addSeparator()
        menu.addAction("Clear list", lambda: (prefs.clear_recent_files(), fill_recent_menu(menu, prefs, open_slide)))
    menu.setEnabled(bool(files))
