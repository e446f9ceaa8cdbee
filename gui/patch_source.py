"""Train from a patch folder in the training panel: the folder, its scale, and the run on a worker.

A patch folder holds one subfolder of images per class, and optionally a ``dataset.json`` beside them
with the patches' µm/px, a folder → class map and a ``groups.csv`` (`core.tiles.patches`, helper P). The
panel cuts the patches into the model's tiles at the model's µm/px (`read_patch_folder`), holds out whole
groups of near-copies for validation (`core.tiles.arrays.split_off` with groups) and trains, as
``biopsia train PATCHFOLDER --patch-mpp X`` does.
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PyQt5.QtCore import pyqtSignal
from PyQt5.QtWidgets import (QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                             QPushButton, QSpinBox)

from core.errors import BiopsiaError, DatasetError
from core.models.training_job import Stage
from core.project.layout import MODELS_DIR
from core.tiles.grid import TileSpec
from core.tiles.splits import CLASSES
from gui.slide_mpp_edit import FieldEdit, parse_mpp
from gui.style import MUTED_STYLE, WARNING_BOX_STYLE

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
NO_SCALE = ("No scale: the patches are used at their own size and the model records no µm/px, so it can be "
            "tested on patches but cannot predict slides. Give the patches' µm/px to train a model for slides.")


@dataclass
class PatchJob:
    """One run on a patch folder, fixed when it starts (the panel's settings; see `run_patch_job`)."""

    folder: Path
    out_dir: Path
    spec: TileSpec
    patch_mpp: float | None
    val_ratio: float = 0.2
    seed: int = 0
    arch: str = "cnn"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    device: str = "auto"


@dataclass
class PatchesSplit:
    """The tiles cut from the patches and how they were split: ``text`` for the panel."""

    text: str
    warnings: list


def class_folders(folder: Path) -> dict[str, int]:
    """{subfolder: number of images} of a patch folder (a quick look for the panel, no image is read)."""
    out = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        count = sum(1 for f in sub.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if count:
            out[sub.name] = count
    return out


def run_patch_job(job: PatchJob, partial: Callable[[object], None], should_stop: Callable[[], bool]):
    """Read and cut the patches, split by group, train: the panel's run on a patch folder (on a worker thread).

    Reports through ``partial``: `Stage` s, a `PatchesSplit`, `core.models.train.ProgressEvent` s, then the
    `core.models.train.TrainResult` (also returned; None when stopped before training began).
    """
    from core.models.train import train  # MXNet: loads when a run starts (see core.models.training_job)
    from core.tiles.arrays import split_off
    from core.tiles.patches import read_patch_folder

    reading = "Reading and cutting patches"
    partial(Stage(reading, 0, 0))
    patches = read_patch_folder(job.folder, patch_mpp=job.patch_mpp, tile_px=job.spec.tile_px,
                                mpp=job.spec.mpp if (job.patch_mpp or _json_mpp(job.folder)) else None,
                                progress=lambda d, t: partial(Stage(reading, d, t)), should_stop=should_stop)
    if patches is None or should_stop():
        return None
    train_tiles, val_tiles = split_off(patches.tiles, job.val_ratio, job.seed, groups=patches.groups)
    scale = (f"{patches.mpp:g} µm/px (patch scale from {patches.source})" if patches.mpp else "no µm/px")
    text = (f"{patches.patches:,} patches → {len(patches.tiles.labels):,} tiles of {job.spec.tile_px} px at {scale}; "
            f"{patches.n_groups:,} groups ({patches.group_source}); train {_counts(train_tiles)}, "
            f"validation {_counts(val_tiles)} (whole groups)")
    partial(PatchesSplit(text, [] if patches.mpp else [NO_SCALE]))
    partial(Stage("Starting training", 0, 0))
    result = train(train_tiles, val_tiles, job.out_dir, arch=job.arch, epochs=job.epochs, batch_size=job.batch_size,
                   lr=job.lr, device=job.device, progress=partial, should_stop=should_stop, mpp=patches.mpp)
    if result.bundle is None and {p.name for p in job.out_dir.iterdir()} <= {"history.json"}:
        shutil.rmtree(job.out_dir, ignore_errors=True)  # cancelled before any epoch: nothing worth keeping
    partial(result)
    return result


def _json_mpp(folder: Path) -> float | None:
    from core.tiles.patches import read_dataset_json

    doc = read_dataset_json(folder)
    return doc.get("mpp") if doc else None


def _counts(tiles) -> str:
    counts = np.bincount(tiles.labels, minlength=len(tiles.classes))
    return ", ".join(f"{n:,} {c}" for c, n in zip(tiles.classes, counts))


class PatchFolderBox(QGroupBox):
    """The patch folder to train from and its µm/px. ``changed()`` when either changes."""

    changed = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__("Patch folder", parent)
        self.json_mpp: float | None = None
        self.folder_edit = FieldEdit(placeholderText="a folder with one subfolder of images per class")
        self.folder_edit.editingFinished.connect(lambda: self.set_folder(self.folder_edit.text()))
        browse = QPushButton("Browse…", autoDefault=False, clicked=self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        self.classes_label = QLabel(wordWrap=True)
        self.classes_label.setStyleSheet(MUTED_STYLE)
        self.mpp_edit = FieldEdit(placeholderText="unknown", toolTip="Micrometres per pixel of the patches as "
                                  "stored (read from dataset.json when it gives one; a value typed here wins)")
        self.mpp_edit.editingFinished.connect(self._on_mpp)
        self.mpp_source = QLabel()
        self.mpp_source.setStyleSheet(MUTED_STYLE)
        mpp_row = QHBoxLayout()
        mpp_row.addWidget(self.mpp_edit, 1)
        mpp_row.addWidget(QLabel("µm/px"))
        mpp_row.addWidget(self.mpp_source, 2)
        self.val_ratio = QSpinBox(minimum=5, maximum=50, singleStep=5, value=20, suffix=" % of the groups",
                                  toolTip="Share of the patch groups held out for validation: near-copies "
                                                "(rotations, flips, rescaled crops) stay on one side")
        self.warning = QLabel(NO_SCALE, wordWrap=True)
        self.warning.setStyleSheet(WARNING_BOX_STYLE)
        hint = QLabel("Patches larger than the model's tile are cut into tiles at the model's µm/px, each labelled "
                      "with its folder's class. Validation holds out whole groups of near-copies.", wordWrap=True)
        hint.setStyleSheet(MUTED_STYLE)
        form = QFormLayout(self)
        form.addRow("Folder", row)
        form.addRow("", self.classes_label)
        form.addRow("Patch scale", mpp_row)
        form.addRow("Validation", self.val_ratio)
        form.addRow(self.warning)
        form.addRow(hint)
        self._show_scale()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a patch folder (one subfolder per class)")
        if folder:
            self.folder_edit.setText(folder)
            self.set_folder(folder)

    def folder(self) -> Path | None:
        text = self.folder_edit.text().strip()
        return Path(text) if text else None

    def set_folder(self, folder) -> None:
        """Show ``folder``'s class subfolders and its dataset.json scale; problems are said in the box."""
        from core.tiles.patches import read_dataset_json  # helper P's reader and checks of dataset.json

        self.folder_edit.setText(str(folder))
        path, self.json_mpp = Path(str(folder).strip()), None
        try:
            if not path.is_dir():
                raise DatasetError(f"{path}: no such folder")
            classes = class_folders(path)
            doc = read_dataset_json(path)
        except (BiopsiaError, OSError) as err:
            self.classes_label.setText(html.escape(str(err)))
            self._show_scale()
            self.changed.emit()
            return
        if doc and doc.get("mpp"):
            self.json_mpp = float(doc["mpp"])
        self.mpp_edit.setText(f"{self.json_mpp:g}" if self.json_mpp else "")
        mapped = (doc or {}).get("classes") or {}
        shown = ", ".join(f"{name} ({n:,})" + (f" → {mapped[name]}" if mapped.get(name) else
                                               " (left out)" if name in mapped else "")
                          for name, n in classes.items())
        tumour_model = set(mapped.values()) - {None} <= set(CLASSES) if mapped else set(classes) <= set(CLASSES)
        advice = ("" if tumour_model or not classes else
                  ". A dataset.json \"classes\" map beside them makes these folders Tumour and Non-tumour "
                  "(else the model learns one class per folder)")
        self.classes_label.setText(f"Classes: {shown}{advice}" if classes else f"{path}: no subfolder of images "
                                   "(one per class)")
        self._show_scale()
        self.changed.emit()

    def patch_mpp(self) -> float | None:
        """The µm/px typed (None: none typed). Raises ValueError with a message for text that is not one."""
        text = self.mpp_edit.text().strip()
        if not text:
            return None
        value = parse_mpp(text, "Patch scale")
        return value[0]

    def _on_mpp(self) -> None:
        if not self.mpp_edit.text().strip() and self.json_mpp:
            self.mpp_edit.setText(f"{self.json_mpp:g}")  # nothing typed: the folder's own scale stands
        self._show_scale()
        self.changed.emit()

    def _show_scale(self) -> None:
        try:
            value = self.patch_mpp()
        except ValueError as err:
            self.mpp_source.setText(str(err))
            self.warning.hide()
            return
        if value is None:
            self.mpp_source.setText("")
        elif self.json_mpp is not None and value == self.json_mpp:
            self.mpp_source.setText("from dataset.json")
        else:
            self.mpp_source.setText("typed here (wins over dataset.json)" if self.json_mpp else "typed here")
        self.warning.setVisible(value is None)


def new_patch_job(project, box: PatchFolderBox, name: str, spec: TileSpec, **settings) -> PatchJob:
    """The run the box describes, its model saved as ``name`` in the project's models folder.

    Raises
    ------
    DatasetError
        No project, no folder, a µm/px that is not one, a bad name, or a model of that name exists.
    """
    if project is None:
        raise DatasetError("No project: open a slide or a project first (the model is saved in it)")
    folder = box.folder()
    if folder is None or not folder.is_dir():
        raise DatasetError(f"{folder}: choose a patch folder (one subfolder of images per class)" if folder else
                           "Choose a patch folder (one subfolder of images per class)")
    try:
        patch_mpp = box.patch_mpp()
    except ValueError as err:
        raise DatasetError(str(err)) from None
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ -]*", name):
        raise DatasetError(f"Model name {name!r}: use letters, digits, '-', '_' and '.'")
    out_dir = Path(project.folder) / MODELS_DIR / name
    if out_dir.exists():
        raise DatasetError(f"{out_dir}: a model of that name exists in this project; choose another name")
    explicit = patch_mpp if patch_mpp is not None and patch_mpp != box.json_mpp else None
    return PatchJob(folder, out_dir, spec, explicit, val_ratio=box.val_ratio.value() / 100, **settings)
