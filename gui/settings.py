"""User preferences (recent files, cache size...) in a JSON file under the config folder.

Not QSettings: its INI format unpickles ``@Variant(...)`` values, so a crafted preferences file
could run code when the window starts. JSON holds only plain values; anything unexpected in the
file is ignored and the default used.
"""

from __future__ import annotations

import json
import logging
import os

from core.atomic import atomic_write_bytes
from core.paths import config_dir
from core.view.display_cache import DEFAULT_CACHE_BYTES

log = logging.getLogger(__name__)

MAX_RECENT = 10
PREFERENCES_FILE = "preferences.json"
#: A preferences file is a few hundred bytes; anything far larger is not ours.
_MAX_BYTES = 1 << 20


class Preferences:
    """Typed access to ``$XDG_CONFIG_HOME/biopsia/preferences.json``."""

    def __init__(self) -> None:
        folder = config_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / PREFERENCES_FILE
        self._values = self._read()

    def _read(self) -> dict:
        try:
            if self.path.stat().st_size > _MAX_BYTES:
                raise ValueError("larger than a preferences file can be")
            values = json.loads(self.path.read_bytes().decode("utf-8"))
            if not isinstance(values, dict):
                raise ValueError("not a JSON object")
            return values
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as err:
            log.warning("%s: preferences ignored, defaults used (%s)", self.path, type(err).__name__)
            return {}

    def _set(self, key: str, value) -> None:
        self._values[key] = value
        try:
            atomic_write_bytes(self.path, json.dumps(self._values, indent=1).encode("utf-8"))
        except OSError as err:  # a preference that cannot be saved is not worth stopping the user for
            log.warning("%s: could not save preferences (%s)", self.path, err.strerror or err)

    def _int(self, key: str, default: int, low: int, high: int) -> int:
        value = self._values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return default
        return value

    # recent files
    def recent_files(self) -> list[str]:
        value = self._values.get("recent_files", [])
        if not isinstance(value, list):
            return []
        return [v for v in value if isinstance(v, str) and v][:MAX_RECENT]

    def add_recent_file(self, path: str) -> list[str]:
        path = os.path.abspath(path)
        files = ([path] + [p for p in self.recent_files() if p != path])[:MAX_RECENT]
        self._set("recent_files", files)
        return files

    def clear_recent_files(self) -> None:
        self._set("recent_files", [])

    # tile cache
    @property
    def cache_megabytes(self) -> int:
        return self._int("cache_megabytes", DEFAULT_CACHE_BYTES // (1024 * 1024), 16, 1 << 20)

    @cache_megabytes.setter
    def cache_megabytes(self, value: int) -> None:
        self._set("cache_megabytes", int(value))

    @property
    def loader_threads(self) -> int:
        return self._int("loader_threads", max(2, min(8, os.cpu_count() or 2)), 1, 64)

    # privacy
    @property
    def screenshots_include_associated(self) -> bool:
        return self._values.get("screenshots_include_associated") is True

    @screenshots_include_associated.setter
    def screenshots_include_associated(self, value: bool) -> None:
        self._set("screenshots_include_associated", bool(value))
