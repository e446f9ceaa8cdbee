"""Icons drawn for Biopsia (``icons/*.svg``), loaded by name."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import sys

from PyQt5.QtGui import QIcon

# In a checkout the icons sit beside gui/; `pip install .` puts them in <prefix>/share/biopsia/icons.
_CANDIDATES = (Path(__file__).resolve().parent.parent / "icons", Path(sys.prefix) / "share" / "biopsia" / "icons")
ICON_DIR = next((d for d in _CANDIDATES if d.is_dir()), _CANDIDATES[0])


@lru_cache(maxsize=None)
def icon(name: str) -> QIcon:
    path = ICON_DIR / f"{name}.svg"
    return QIcon(str(path)) if path.exists() else QIcon()
