"""Per-slide user settings kept beside Biopsia's data, never in the slide (which may be on read-only media).

Entries are keyed by the slide's absolute path and remembered with its size
and modification time: when the file changes, its old settings no longer apply.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from core import paths
from core.atomic import atomic_write_bytes
from core.project.settings import mpp_pair

_VERSION = 1


def default_settings_path() -> Path:
    """``<data dir>/slide-settings.json``."""
    return paths.data_dir() / "slide-settings.json"


def slide_fingerprint(slide_path: str | Path) -> dict | None:
    """{"size", "mtime_ns"} of a slide file, or None when it cannot be examined."""
    try:
        st = Path(slide_path).stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class SlideSettingsStore:
    """A small JSON file of per-slide settings, such as a user-entered micrometres-per-pixel.

    The file is re-read on every call and rewritten atomically on every change,
    so several Biopsia windows see each other's edits. A corrupt file is kept as
    ``<name>.bak`` and treated as empty.

    Parameters
    ----------
    path : path-like, optional
        The JSON file; defaults to ``default_settings_path()``.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_settings_path()
        self._lock = threading.Lock()

    # -- public API ----------------------------------------------------------
    def get_mpp_override(self, slide_path: str | Path) -> tuple[float, float] | None:
        """The user's micrometres per pixel (x, y) for this slide, or None.

        Parameters
        ----------
        slide_path : path-like

        Returns
        -------
        (float, float) or None
            None also when the slide file changed since the value was entered.
        """
        entry = self._entry(slide_path)
        value = entry.get("mpp_override") if entry else None
        try:
            return mpp_pair(value) if isinstance(value, list) else None
        except ValueError:  # a hand-edited or damaged value: as if none were entered
            return None

    def set_mpp_override(self, slide_path: str | Path, mpp: tuple[float, float] | float | None) -> None:
        """Remember (or, with None, forget) the micrometres per pixel of a slide.

        Parameters
        ----------
        slide_path : path-like
            The slide file; it must exist (its size and time are recorded).
        mpp : (float, float), float or None
            Micrometres per pixel (x, y); a single number means square pixels.

        Raises
        ------
        ValueError
            When ``mpp`` is not positive and finite.
        FileNotFoundError
            When the slide file does not exist.
        OSError
            When the settings file cannot be written.
        """
        pair = mpp_pair(mpp)
        self._update(slide_path, "mpp_override", None if pair is None else list(pair))

    # -- storage ---------------------------------------------------------------
    def _entry(self, slide_path: str | Path) -> dict | None:
        """This slide's settings when its fingerprint still matches."""
        fingerprint = slide_fingerprint(slide_path)
        if fingerprint is None:
            return None
        with self._lock:
            entry = self._load().get(_key(slide_path))
        if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
            return None
        return entry

    def _update(self, slide_path: str | Path, name: str, value) -> None:
        """Set (or delete, for None) one setting of one slide and save."""
        fingerprint = slide_fingerprint(slide_path)
        if fingerprint is None:
            raise FileNotFoundError(f"{slide_path}: slide file not found")
        with self._lock:
            slides = self._load()
            entry = slides.get(_key(slide_path))
            if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
                entry = {"fingerprint": fingerprint}  # settings of an older file no longer apply
            if value is None:
                entry.pop(name, None)
            else:
                entry[name] = value
            if set(entry) == {"fingerprint"}:
                slides.pop(_key(slide_path), None)
            else:
                slides[_key(slide_path)] = entry
            self._save(slides)

    def _load(self) -> dict:
        """The ``slides`` mapping from disk; a corrupt file is moved to ``.bak`` and read as empty."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("slides", {}), dict):
                raise ValueError("unexpected structure")
        except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
            self._keep_corrupt()
            return {}
        return dict(data.get("slides", {}))

    def _keep_corrupt(self) -> None:
        """Move an unreadable settings file aside as ``<name>.bak`` so that nothing is silently lost."""
        try:
            os.replace(self.path, self.path.with_name(self.path.name + ".bak"))
        except OSError:
            pass  # read-only folder: the next save will overwrite it, but reading still works

    def _save(self, slides: dict) -> None:
        """Write atomically: temporary file in the same folder, flush, fsync, rename over."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": _VERSION, "slides": slides}, indent=1, sort_keys=True)
        atomic_write_bytes(self.path, text.encode("utf-8"))


def _key(slide_path: str | Path) -> str:
    """The absolute, normalised path that identifies a slide."""
    return os.path.normpath(os.path.abspath(os.fspath(slide_path)))

