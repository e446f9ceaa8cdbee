"""User preferences (recent files, cache size...) in an INI file under the config folder."""

from __future__ import annotations

import os

from PyQt5.QtCore import QSettings

from core.paths import config_dir
from core.tiles import DEFAULT_CACHE_BYTES

MAX_RECENT = 10


class Preferences:
    """Typed access to ``$XDG_CONFIG_HOME/biopsia/biopsia.ini``."""

    def __init__(self) -> None:
        path = config_dir()
        path.mkdir(parents=True, exist_ok=True)
        self._qs = QSettings(str(path / "biopsia.ini"), QSettings.IniFormat)

    # recent files
    def recent_files(self) -> list[str]:
        value = self._qs.value("recent/files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent_file(self, path: str) -> list[str]:
        path = os.path.abspath(path)
        files = [path] + [p for p in self.recent_files() if p != path]
        self._qs.setValue("recent/files", files[:MAX_RECENT])
        self._qs.sync()
        return files[:MAX_RECENT]

    def clear_recent_files(self) -> None:
        self._qs.setValue("recent/files", [])
        self._qs.sync()

    # tile cache
    @property
    def cache_megabytes(self) -> int:
        return int(self._qs.value("cache/megabytes", DEFAULT_CACHE_BYTES // (1024 * 1024)))

    @cache_megabytes.setter
    def cache_megabytes(self, value: int) -> None:
        self._qs.setValue("cache/megabytes", int(value))
        self._qs.sync()

    @property
    def loader_threads(self) -> int:
        return int(self._qs.value("cache/threads", max(2, min(8, os.cpu_count() or 2))))

    # privacy
    @property
    def screenshots_include_associated(self) -> bool:
        return str(self._qs.value("privacy/screenshotsIncludeLabel", "false")).lower() == "true"

    @screenshots_include_associated.setter
    def screenshots_include_associated(self, value: bool) -> None:
        self._qs.setValue("privacy/screenshotsIncludeLabel", "true" if value else "false")
        self._qs.sync()
