"""User preferences (recent files, cache size...) in a JSON file under the config folder.

Not QSettings: its INI format unpickles ``@Variant(...)`` values, so a crafted preferences file
could run code when the window starts. JSON holds only plain values; anything unexpected in the
file is ignored and the default used.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from pathlib import Path

from core.atomic import atomic_write_bytes
from core.paths import config_dir
from core.threads import background_thread
from core.view.display_cache import DEFAULT_CACHE_BYTES

log = logging.getLogger(__name__)

MAX_RECENT = 10
PREFERENCES_FILE = "preferences.json"
#: A preferences file is a few hundred bytes; anything far larger is not ours.
_MAX_BYTES = 1 << 20


class _Writer:
    """Writes preference files on a thread of its own, the latest value of each only.

    An atomic write fsyncs, which on a busy disk takes long enough to stall the window: `save` returns at
    once. `flush` waits for what is pending (a fresh `Preferences` flushes first, and so does exit).
    """

    def __init__(self) -> None:
        self._pending: dict[Path, bytes] = {}
        self._busy = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def save(self, path: Path, data: bytes) -> None:
        with self._cond:
            self._pending[path] = data
            if self._thread is None:
                self._thread = background_thread(self._loop, name="preferences")
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending)
                path, data = self._pending.popitem()
                self._busy += 1
            try:
                atomic_write_bytes(path, data)
            except OSError as err:  # a preference that cannot be saved is not worth stopping the user for
                log.warning("%s: could not save preferences (%s)", path, err.strerror or err)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()


_writer = _Writer()
atexit.register(_writer.flush)


class Preferences:
    """Typed access to ``$XDG_CONFIG_HOME/biopsia/preferences.json``."""

    def __init__(self) -> None:
        folder = config_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / PREFERENCES_FILE
        _writer.flush()  # what this process saved is on disk before it is read back
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
        _writer.save(self.path, json.dumps(self._values, indent=1).encode("utf-8"))

    @staticmethod
    def flush(timeout: float = 10.0) -> bool:
        """Wait until every saved preference is on disk; False if ``timeout`` passed first."""
        return _writer.flush(timeout)

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

    # cohorts (Model ▸ Predict all slides…)
    @property
    def cohort_scheduler(self) -> str:
        """``tcp://host:port`` of the Dask scheduler that runs all slides; empty: a local cluster."""
        value = self._values.get("cohort_scheduler", "")
        return value.strip() if isinstance(value, str) else ""

    @cohort_scheduler.setter
    def cohort_scheduler(self, value: str) -> None:
        self._set("cohort_scheduler", str(value or "").strip())

    @property
    def cohort_workers(self) -> int:
        """Worker processes of the local cluster (one slide each at a time)."""
        return self._int("cohort_workers", max(1, min(4, (os.cpu_count() or 2) // 2)), 1, 256)

    @cohort_workers.setter
    def cohort_workers(self, value: int) -> None:
        self._set("cohort_workers", int(value))
