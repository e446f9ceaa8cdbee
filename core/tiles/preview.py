"""The Tiles preview's work: one slide's tissue (unless known) and its labelled grid, off the GUI thread.

The grid is laid and labelled by `core.tiles.grid.plan_tiles`, as for a dataset, so the counts and colours
the window shows are the labels a dataset of the slide gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from core.annotations.model import Annotation
from core.errors import Cancelled
from core.slide.base import SlideReader
from core.tiles.grid import TilePlan, TileSpec, plan_tiles, tile_size_l0
from core.tiles.labels import LabelRules
from core.tiles.tissue import TissueMask, detect_tissue


@dataclass(frozen=True)
class PlanResult:
    """What `compute_plan` hands back: the tissue it used (for the caller to keep) and the plan."""

    tissue: TissueMask
    plan: TilePlan


def compute_plan(reader: SlideReader, mpp, spec: TileSpec, annotations: Iterable[Annotation],
                 tissue: TissueMask | None, fully_annotated: bool, thresholds: dict | LabelRules | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> PlanResult:
    """Tissue (unless given) and the labelled grid of one slide.

    Parameters
    ----------
    reader : SlideReader
    mpp : (float, float) or None
        The slide's µm/px when the user entered one (it wins over the file's).
    spec : TileSpec
    annotations : iterable of Annotation
        The slide's marks, level-0 pixels.
    tissue : TissueMask or None
        A tissue mask found before for this slide and µm/px; None detects it.
    fully_annotated : bool
    thresholds : dict or LabelRules, optional
        Labelling thresholds (`core.tiles.labels.LabelRules` fields); missing ones keep their defaults.
    should_stop : callable
        Checked after tissue detection.

    Returns
    -------
    PlanResult

    Raises
    ------
    BiopsiaError
        When the slide does not say its µm/px (before anything is read).
    Cancelled
        When ``should_stop()`` returned True.
    """
    mpp = tuple(mpp) if mpp else None
    tile_size_l0(reader, spec, mpp)  # says at once when the slide has no µm/px, before reading anything
    if tissue is None:
        tissue = detect_tissue(reader, slide_mpp=mpp)
    if should_stop():
        raise Cancelled(f"{reader.display_name}: laying the tile grid cancelled")
    rules = thresholds.as_dict() if isinstance(thresholds, LabelRules) else dict(thresholds or {})
    plan = plan_tiles(reader, spec, tissue, annotations, fully_annotated=fully_annotated, slide_mpp=mpp, **rules)
    return PlanResult(tissue, plan)
