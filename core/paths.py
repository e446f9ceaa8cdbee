"""Where Biopsia keeps its files (XDG base directories on Linux)."""

from __future__ import annotations

import os
from pathlib import Path

APP = "biopsia"


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def data_dir() -> Path:
    """User data: the default project, per-slide settings (``$XDG_DATA_HOME/biopsia``)."""
    return _xdg("XDG_DATA_HOME", ".local/share") / APP


def cache_dir() -> Path:
    """Regenerable files: the demo slide, benchmark slides (``$XDG_CACHE_HOME/biopsia``)."""
    return _xdg("XDG_CACHE_HOME", ".cache") / APP


def config_dir() -> Path:
    """Preferences such as recent files and cache size (``$XDG_CONFIG_HOME/biopsia``)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / APP
