"""Planning a dataset: every slide's tissue and labelled tile grid, then the kept tiles split into train and test.

Nothing is read beyond what tissue detection needs; `core.tiles.reading` reads the tiles of a plan and
`core.tiles.export` writes them as a dataset folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from shapely.geometry import box

from core.annotations.model import TUMOUR
from core.errors import BiopsiaError, DatasetError
from core.slide import open_slide
from core.tiles.edges import shift_inside
from core.tiles.grid import TilePlan, TileSpec, plan_tiles, tile_size_l0
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
                 should_stop: Callable[[], bool] | None = None, cell_um: float | None = None) -> DatasetPlan | None:
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
    cell_um : float, optional
        Label each tile by the square of this many µm at its centre, its cell, instead of the whole tile:
        the cells tile the slide (one every ``cell_um``), and each tile is its cell with the tissue around
        it (`context_plan`), so the network sees more than what its label describes. Predicting with such a
        model at a stride of one cell gives every cell its own call. None: the whole tile, as without it.

    Raises
    ------
    DatasetError
        No slides, bad split settings, no labelled tiles at all (with the counts per reason), or a slide
        taken as fully annotated without being declared so (`SlideSource.declared`) that has no Tumour
        mark on it: its marks are empty or miss it, and every tile would be Non-tumour. Marks that lie
        partly or wholly outside their slide are reported in `DatasetPlan.warnings`. A ``cell_um`` that is
        not positive and finite, or larger than the tile, is refused.
    """
    check_cell(cell_um, spec)
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
                if cell_um is None:
                    plans.append(plan_tiles(reader, spec, tissue, source.annotations, source.fully_annotated,
                                            slide_mpp=source.mpp, **(labelling or {})))
                else:
                    plans.append(context_plan(reader, spec, cell_um, tissue, source.annotations,
                                              source.fully_annotated, slide_mpp=source.mpp, **(labelling or {})))
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
    if cell_um is not None:
        settings["cell_um"] = float(cell_um)
    return DatasetPlan(spec, list(sources), plans, slide, index, label, codes, settings, warnings)


def check_cell(cell_um: float | None, spec: TileSpec) -> None:
    """Raise DatasetError unless ``cell_um`` is None or a positive, finite side no larger than ``spec``'s tile."""
    if cell_um is None:
        return
    tile_um = spec.tile_px * spec.mpp
    try:
        value = float(cell_um)
    except (TypeError, ValueError):
        raise DatasetError(f"the labelled cell must be a number of µm, got {cell_um!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise DatasetError(f"the labelled cell must be a positive number of µm, got {cell_um}")
    if value > tile_um + 1e-9:
        raise DatasetError(f"the labelled cell ({value:g} µm) is larger than the tile ({spec.tile_px} px at "
                           f"{spec.mpp:g} µm/px = {tile_um:g} µm); a cell is the centre of its tile")


def context_plan(reader, spec: TileSpec, cell_um: float, tissue, annotations=(), fully_annotated: bool = True,
                 slide_mpp: tuple[float, float] | None = None, **labelling) -> TilePlan:
    """A tile grid whose labels describe each tile's centre: cells of ``cell_um`` µm, tiles of ``spec`` around them.

    The cells are laid and labelled exactly as `core.tiles.grid.plan_tiles` lays and labels tiles of
    ``cell_um`` µm (tissue, marks, edge cells shifted inside; ``labelling`` its thresholds). Each cell's tile is
    the ``spec`` square centred on it, shifted inside the slide at the edges as every tile is
    (`core.tiles.edges`: real pixels only, no padding for the network to learn), so an edge cell lies off its
    tile's centre by at most the margin. ``stride`` is the cell: neighbouring tiles overlap.

    Frames: level-0 pixels.

    Raises
    ------
    DatasetError
        A cell larger than the tile.
    BiopsiaError
        When the slide does not say its µm/px.
    """
    check_cell(cell_um, spec)
    # one pixel of cell_um µm: plan_tiles' tile is then the cell, laid and labelled by the one rule
    cells = plan_tiles(reader, TileSpec(1, float(cell_um)), tissue, annotations, fully_annotated,
                       slide_mpp=slide_mpp, **labelling)
    tile_l0 = max(cells.tile_l0, tile_size_l0(reader, spec, slide_mpp))
    margin = (tile_l0 - cells.tile_l0) // 2
    l0_w, l0_h = reader.dimensions
    level = reader.best_level_for_downsample(tile_l0 / spec.tile_px)
    read_px = max(1, round(tile_l0 / reader.level_downsamples[level]))
    return replace(cells, spec=spec, tile_l0=tile_l0, level=level, read_px=read_px,
                   l0_x=shift_inside(cells.l0_x - margin, tile_l0, l0_w),
                   l0_y=shift_inside(cells.l0_y - margin, tile_l0, l0_h), stride=cells.tile_l0)


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
