"""A cohort's output folder: which slides are done already for this model, and what a killed run left.

The client decides from the files alone (the folder is on the file system the workers share): a slide is
done when ``DIR/<slide>/grid.npz`` is a complete grid made with the same weights (their SHA-256, as
`core.inference.predict.model_identity` records it in ``grid.model``) and the same engine and precision.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np

from core.cohort.outputs import GRID_FILE


def weights_sha256(model_folder) -> str:
    """SHA-256 of a bundle's weights file, as a grid made with it records it."""
    from core.models.bundle import PARAMS_FILE

    digest = hashlib.sha256()
    with open(Path(model_folder) / PARAMS_FILE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def grid_header(folder) -> dict | None:
    """The JSON header of ``folder``'s grid (without reading its arrays), or None when missing or damaged."""
    try:
        with np.load(Path(folder) / GRID_FILE, allow_pickle=False) as data:
            return json.loads(bytes(data["meta"]).decode("utf-8"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, UnicodeDecodeError):
        return None


def done_with(folder, sha256: str, engine: str = "mxnet", precision: str = "fp32") -> bool:
    """True when ``folder`` holds a complete grid made with these weights, engine and precision."""
    meta = grid_header(folder)
    if not meta or not meta.get("complete"):
        return False
    model = meta.get("model") or {}
    return (model.get("sha256") == sha256 and model.get("engine", "mxnet") == engine
            and model.get("precision", "fp32") == precision)


def remove_leftovers(folder) -> list[Path]:
    """Remove the hidden half-written copies a killed worker left beside ``folder``; the ones removed.

    Only call this when no task is writing ``folder`` any more (`core.staging.staged_folder` names them
    ``.<name>.writing-*`` and ``.<name>.old-*``).
    """
    folder = Path(folder)
    found = []
    if folder.parent.is_dir():
        for pattern in (f".{folder.name}.writing-*", f".{folder.name}.old-*"):
            found += sorted(folder.parent.glob(pattern))
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
    return found
