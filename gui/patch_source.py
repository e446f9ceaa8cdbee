"""The training panel's Patch folder box: the folder, its classes and its scale (Qt only).

A patch folder holds one subfolder of images per class, and optionally a ``dataset.json`` beside them
with the patches' µm/px, a folder → class map and a ``groups.csv`` (`core.tiles.patches`). The run itself
(cutting the patches into the model's tiles, holding out whole groups, training) is
`core.models.training_job.run_patch_job`; `PatchFolderBox.job` makes its `PatchJob`.
"""

from __future__ import annotations

import html
from pathlib import Path

from PyQt5.QtCore import pyqtSignal
from PyQt5.QtWidgets import (QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                             QPushButton, QSpinBox)

from core.errors import BiopsiaError, DatasetError
from core.models.training_job import NO_SCALE, PatchJob, class_folders, new_patch_job
from core.tiles.grid import TileSpec
from core.tiles.splits import CLASSES
from gui.slide_mpp_edit import FieldEdit, parse_mpp
from gui.style import MUTED_STYLE, WARNING_BOX_STYLE


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

    def job(self, project, name: str, spec: TileSpec, **settings) -> PatchJob:
        """The run this box describes, its model saved as ``name`` in ``project`` (`new_patch_job`).

        Raises DatasetError for a µm/px that is not one, and for what `new_patch_job` refuses.
        """
        try:
            patch_mpp = self.patch_mpp()
        except ValueError as err:
            raise DatasetError(str(err)) from None
        return new_patch_job(project, self.folder(), name, spec, patch_mpp=patch_mpp, json_mpp=self.json_mpp,
                             val_ratio=self.val_ratio.value() / 100, **settings)
