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


@dataclass(frozen=True)
class HoldOut:
    """Training and validation tiles, and how validation was held out (`hold_out_sources`)."""

    train: TileArrays
    val: TileArrays
    column: str  # what the source ids are: "slide", "group"
    sources: int  # sources in the tiles given
    held: int  # sources held out whole for validation; 0 when tiles were held out instead

    @property
    def whole(self) -> bool:
        """Whether validation holds whole sources (no slide or group on both sides)."""
        return self.held > 0

    def describe(self, ratio: float, where: str = "the tiles") -> str:
        """One line for the user: what validates, and what that means for the model's threshold.

        ``where`` names what was split, e.g. ``"DATASET's train split"``.
        """
        if self.whole:
            return (f"validating on {len(self.val)} tiles of {self.held} whole {self.column}s (of {self.sources}) "
                    f"held out of {where}")
        why = (f"one {self.column} gave all of {where}" if self.sources < 2 else
               f"no hold-out of whole {self.column}s keeps every class on both sides")
        return (f"{len(self.val)} tiles ({ratio:.0%} of each class) of {where} held out for validation: {why}, so "
                f"validation shares {self.column}s with training and the model's threshold may be optimistic")


def hold_out_sources(tiles: TileArrays, ids: np.ndarray, ratio: float, seed: int, column: str = "slide") -> HoldOut:
    """Validation tiles from whole sources (slides, near-copy groups), about ``ratio`` of each class.

    The best epoch and the model's threshold are chosen on validation, so validation tiles must not
    come from the slides (or originals) trained on. When the tiles come from one source, or no whole-source
    hold-out leaves every class on both sides, a stratified ``ratio`` of the tiles validates instead
    (`HoldOut.whole` is False and `HoldOut.describe` says what that means).

    Parameters
    ----------
    tiles : TileArrays
    ids : ndarray
        Per tile, the source it came from (any hashable values, e.g. slide names).
    ratio : float
    seed : int
        The same tiles, ids and seed give the same split.
    column : str
        What the ids are, for the message.
    """
    ids = np.asarray(ids)
    if ids.shape != (len(tiles),):
        raise DatasetError(f"{ids.size} {column} ids for {len(tiles)} tiles")
    names, codes = np.unique(ids.astype(str), return_inverse=True)
    if names.size >= 2:
        val = group_pick(tiles.labels, codes, ratio, np.random.default_rng(seed), at_least=1)
        parts = [TileArrays(tiles.images[m], tiles.labels[m], tiles.classes) for m in (~val, val)]
        if all(np.bincount(p.labels, minlength=len(p.classes)).all() for p in parts):
            return HoldOut(parts[0], parts[1], column, int(names.size), int(np.unique(codes[val]).size))
    train, val = split_off(tiles, ratio, seed)
    return HoldOut(train, val, column, int(names.size), 0)
