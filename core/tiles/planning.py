"""Planning a dataset: every slide's tissue and labelled tile grid, then the kept tiles split into train and test.

Nothing is read beyond what tissue detection needs; `core.tiles.reading` reads the tiles of a plan and
`core.tiles.export` writes them as a dataset folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from shapely.geometry import box

from core.annotations.model import TUMOUR
from core.errors import BiopsiaError, DatasetError
from core.slide import open_slide
from core.tiles.grid import TilePlan, TileSpec, plan_tiles
from core.tiles.sources import SlideSource
from core.tiles.splits import CLASSES, SPLITS, pick_test_slides, split_code, stratified_pick
from core.tiles.tissue import detect_tissue


@dataclass
class DatasetPlan:
    """Every kept tile of every slide, with its label and split.

    Attributes
    ----------
    spec : TileSpec
    sources : list of SlideSource
    plans : list of TilePlan
        One per source (all tiles, dropped ones included; for previews and counts).
    slide, index : ndarray of int
        Per kept tile: its source and its index in that source's plan.
    label : ndarray of int8
        0 non-tumour, 1 tumour (indexes `CLASSES`).
    split : ndarray of int8
        0 train, 1 test (indexes `SPLITS`).
    settings : dict
        Split method, ratio, seed and labelling thresholds (recorded in the manifest).
    warnings : list of str
        Things the user should know about the labels (marks that miss their slide, slides with no marks),
        each naming the slide.
    """

    spec: TileSpec
    sources: list[SlideSource]
    plans: list[TilePlan]
    slide: np.ndarray
    index: np.ndarray
    label: np.ndarray
    split: np.ndarray
    settings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: n}}`` for both splits and both classes."""
        return {name: {cls: int(np.sum((self.split == s) & (self.label == c))) for c, cls in enumerate(CLASSES)}
                for s, name in enumerate(SPLITS)}

    def select(self, split: str | None) -> np.ndarray:
        """Positions (into ``slide``/``index``/...) of the tiles of ``split`` (all when None)."""
        if split is None:
            return np.arange(self.label.size)
        return np.flatnonzero(self.split == split_code(split))

    def slide_splits(self) -> dict[str, str]:
        """``{slide name: "train" | "test" | "both" | "none"}``."""
        out = {}
        for i, source in enumerate(self.sources):
            found = set(self.split[self.slide == i].tolist())
            out[source.name] = ("none" if not found else "both" if len(found) > 1 else SPLITS[found.pop()])
        return out


def plan_dataset(sources: list[SlideSource], spec: TileSpec = TileSpec(), split: str = "by-slide",
                 ratio: float = 0.7, seed: int = 0, test_slides=None, labelling: dict | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> DatasetPlan | None:
    """Detect tissue, lay the tile grid and label every slide, then split the kept tiles.

    Parameters
    ----------
    sources : list of SlideSource
    spec : TileSpec
        Tile size and µm/px.
    split : {"by-slide", "random"}
        ``by-slide``: whole slides go to train or test (about ``ratio`` of the tiles in train; with
        ``test_slides`` naming the test slides explicitly). ``random``: tiles are split at random
        within each class, so both splits keep the class balance.
    ratio : float
        Share of tiles in the training split (0 < ratio ≤ 1; 1 puts everything in train).
    seed : int
        Seeds the split; the same inputs and seed give the same split.
    test_slides : iterable of str, optional
        Names (`SlideSource.name`) of the slides that form the test split (by-slide only).
    labelling : dict, optional
        Keyword arguments for `core.tiles.grid.plan_tiles` (``tumour_min``, ``normal_max``, ``tissue_min``...).
    progress : callable, optional
        ``progress(slides_done, slides)``.
    should_stop : callable, optional
        Checked between slides; when it returns True planning stops and None is returned.

    Raises
    ------
    DatasetError
        No slides, bad split settings, no labelled tiles at all (with the counts per reason), or a slide
        taken as fully annotated without being declared so (`SlideSource.declared`) that has no Tumour
        mark on it: its marks are empty or miss it, and every tile would be Non-tumour. Marks that lie
        partly or wholly outside their slide are reported in `DatasetPlan.warnings`.
    """
    if not sources:
        raise DatasetError("no slides given")
    if split not in ("by-slide", "random"):
        raise DatasetError(f"split {split!r} not understood; use 'by-slide' or 'random'")
    if not 0 < ratio <= 1:
        raise DatasetError(f"the training share must lie in (0, 1], got {ratio}")
    names = [s.name for s in sources]
    test_slides = None if test_slides is None else list(test_slides)
    unknown = [n for n in (test_slides or []) if n not in names]
    if unknown:
        raise DatasetError(f"test slides {unknown} are not among the slides ({names})")
    if test_slides is not None and split != "by-slide":
        raise DatasetError("test slides can only be named with the by-slide split")

    warnings: list[str] = []
    for source in sources:  # every slide's marks before any tissue is looked for: a refusal comes at once
        try:
            with open_slide(source.path) as reader:
                size = reader.dimensions
        except BiopsiaError as err:
            raise DatasetError(str(err)) from err
        warnings += _check_marks(source, *size)
    plans: list[TilePlan] = []
    for i, source in enumerate(sources):
        if should_stop is not None and should_stop():
            return None
        try:
            with open_slide(source.path) as reader:
                tissue = detect_tissue(reader, slide_mpp=source.mpp)
                plans.append(plan_tiles(reader, spec, tissue, source.annotations, source.fully_annotated,
                                        slide_mpp=source.mpp, **(labelling or {})))
        except BiopsiaError as err:
            raise DatasetError(str(err)) from err
        if progress is not None:
            progress(i + 1, len(sources))

    kept = [p.kept for p in plans]
    slide = np.concatenate([np.full(k.size, i, np.int32) for i, k in enumerate(kept)])
    index = np.concatenate(kept).astype(np.int64)
    label = np.concatenate([p.label[k] for p, k in zip(plans, kept)]).astype(np.int8)
    if label.size == 0:
        reasons = {}
        for p in plans:
            for name, n in p.counts.items():
                reasons[name] = reasons.get(name, 0) + n
        raise DatasetError(f"no labelled tiles on {', '.join(names)} (tiles per reason: {reasons}); mark "
                           "Tumour or Benign regions, or set the slides as fully annotated")
    rng = np.random.default_rng(seed)
    if split == "random":
        codes = np.where(stratified_pick(label, ratio, rng), 0, 1).astype(np.int8)
    else:
        codes = np.zeros(label.size, np.int8)
        if test_slides is not None:
            chosen = {names.index(n) for n in test_slides}
        else:
            chosen = pick_test_slides([k.size for k in kept], ratio, rng)
        codes[np.isin(slide, list(chosen))] = 1
    settings = {"split": split, "ratio": ratio, "seed": seed, "labelling": dict(labelling or {}),
                "test_slides": [names[i] for i in sorted(set(slide[codes == 1].tolist()))]}
    return DatasetPlan(spec, list(sources), plans, slide, index, label, codes, settings, warnings)


def _check_marks(source: SlideSource, l0_w: int, l0_h: int) -> list[str]:
    """Warnings about marks that miss the slide; DatasetError when an undeclared slide would be all Non-tumour."""
    frame = None
    partly = outside = tumour_on = 0
    for mark in source.annotations:
        x0, y0, x1, y1 = mark.bounds
        if x0 >= 0 and y0 >= 0 and x1 <= l0_w and y1 <= l0_h:
            on = True
        elif x1 <= 0 or y1 <= 0 or x0 >= l0_w or y0 >= l0_h:
            on = False
        else:
            frame = frame or box(0, 0, l0_w, l0_h)
            on = bool(mark.geometry.intersects(frame))
            partly += on
        outside += not on
        tumour_on += on and mark.class_name == TUMOUR.name
    warnings = []
    size = f"{l0_w} x {l0_h} px"
    if outside:
        warnings.append(f"{source.path}: {outside} of {len(source.annotations)} marks lie entirely outside the "
                        f"slide ({size}) and are ignored; were they drawn on another slide or scan?")
    if partly:
        warnings.append(f"{source.path}: {partly} marks reach beyond the slide's edge ({size}); only their part "
                        "on the slide counts")
    if source.fully_annotated and not tumour_on and not source.declared:
        found = ("its marks are empty" if not source.annotations else
                 f"none of its {len(source.annotations)} marks is a Tumour region on the slide")
        raise DatasetError(f"{source.path}: {found}, so every tile would be labelled Non-tumour; mark the "
                           "tumour, or if the slide is benign say so (--fully-annotated, or tick Fully annotated "
                           "for it in the project)")
    if not source.fully_annotated and outside == len(source.annotations):
        warnings.append(f"{source.path}: no marks on the slide, and it is not fully annotated, so it gives no tiles")
    return warnings
