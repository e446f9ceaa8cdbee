"""Tiles in memory: images and labels as numpy arrays, what training and testing a model take.

Made by `core.tiles.reading.load_tiles` (straight from slides), `core.tiles.folder.read_dataset` (a dataset
or patch folder) or `core.tiles.patches.read_patch_folder` (a patch folder cut at a scale, with groups);
`split_off` holds part of them out for validation, by group when given groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import DatasetError
from core.tiles.splits import CLASSES, group_pick, stratified_pick

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


@dataclass
class TileArrays:
    """Tiles in memory: ``images`` uint8 RGB ``(N, H, W, 3)``, ``labels`` int ``(N,)`` indexing ``classes``."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str] = field(default_factory=lambda: list(CLASSES))

    def __post_init__(self):
        self.images = np.asarray(self.images)
        self.labels = np.asarray(self.labels).astype(np.int64).ravel()

    def __len__(self) -> int:
        return int(self.labels.size)

    def check(self, name: str = "dataset", need_all_classes: bool = True) -> None:
        """Raise DatasetError when the arrays cannot be trained on."""
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise DatasetError(f"{name}: tiles must be uint8 RGB shaped (N, H, W, 3), got "
                               f"{self.images.dtype} {self.images.shape}")
        if len(self) == 0 or self.images.shape[0] != len(self):
            raise DatasetError(f"{name}: {self.images.shape[0]} tiles but {len(self)} labels")
        if self.labels.min() < 0 or self.labels.max() >= len(self.classes):
            raise DatasetError(f"{name}: labels must lie in 0..{len(self.classes) - 1} ({self.classes})")
        counts = np.bincount(self.labels, minlength=len(self.classes))
        missing = [c for c, n in zip(self.classes, counts) if n == 0]
        if need_all_classes and missing:
            raise DatasetError(f"{name}: no tiles of class {', '.join(missing)}; a classifier needs examples "
                               f"of every class (counts: {dict(zip(self.classes, counts.tolist()))})")

    @classmethod
    def from_folder(cls, path) -> "TileArrays":
        """Read patches from ``path/<class name>/*.png|jpg`` as they are (classes: the subfolders, sorted, or
        as its ``dataset.json`` maps them); `core.tiles.patches.read_patch_folder` owns the rule.

        Raises
        ------
        DatasetError
            When the folder has no class subfolders, a file is unreadable, or tile sizes differ.
        """
        from core.tiles.patches import read_patch_folder  # patches builds on this module
        return read_patch_folder(path, group=False).tiles


def split_off(tiles: TileArrays, ratio: float, seed: int,
              groups: np.ndarray | None = None) -> tuple[TileArrays, TileArrays]:
    """A stratified random share of ``tiles`` held out for validation, and the rest.

    With ``groups`` (one id per tile, e.g. `core.tiles.patches.PatchSet.groups`), whole groups are held
    out, stratified by class as far as the groups allow (`core.tiles.splits.group_pick`): near-copies
    never straddle the split.

    Parameters
    ----------
    tiles : TileArrays
    ratio : float
        Share of each class held out (at least one tile, or one group, of every class).
    seed : int
        The same tiles and seed give the same split.

    Returns
    -------
    (TileArrays, TileArrays)
        The training tiles and the validation tiles.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        val = stratified_pick(tiles.labels, ratio, rng, at_least=1)
    else:
        groups = np.asarray(groups)
        if groups.shape != (len(tiles),):
            raise DatasetError(f"{groups.size} group ids for {len(tiles)} tiles")
        val = group_pick(tiles.labels, groups, ratio, rng, at_least=1)
    return (TileArrays(tiles.images[~val], tiles.labels[~val], tiles.classes),
            TileArrays(tiles.images[val], tiles.labels[val], tiles.classes))
