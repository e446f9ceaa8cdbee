"""The one labelling rule set: how a square of the slide becomes Tumour, Non-tumour or dropped from the marks.

Datasets and the Tiles preview (through :func:`core.tiles.grid.plan_tiles`) and the comparison of a
prediction with the marks (:func:`core.evaluation.compare.truth_for_grid`) all label tiles here.

Frames: tile corners and sizes are level-0 pixels (``l0_x``, ``tile_l0``); marks are rasterised at
``tile_l0 / SUBPIXELS`` level-0 pixels per raster pixel (never finer than level 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

from core.annotations.masks import rasterise
from core.annotations.model import BENIGN, EXCLUDE, TUMOUR, Annotation
from core.annotations.proposals import is_draft
from core.tiles.edges import shift_inside
from core.tiles.tissue import AreaSum

#: Labels of kept tiles; dropped tiles have ``DROPPED``.
TUMOUR_LABEL, NON_TUMOUR_LABEL, DROPPED = 1, 0, -1
#: Why each tile got its label (``TilePlan.reason``), and the names ``TilePlan.counts`` uses.
REASONS = ("tumour", "non_tumour", "background", "low_tissue", "excluded", "pen", "ambiguous", "unlabelled")
(TUMOUR_TILE, NON_TUMOUR_TILE, BACKGROUND, LOW_TISSUE, EXCLUDED, PEN, AMBIGUOUS, UNLABELLED) = range(len(REASONS))
#: Mark sub-pixels per tile side when marks are rasterised for coverage.
SUBPIXELS = 8


@dataclass(frozen=True)
class LabelRules:
    """The thresholds that turn coverages into a tile's label.

    Attributes
    ----------
    tumour_min : float
        Tumour coverage from which a tile is Tumour.
    normal_max : float
        Tumour coverage up to which a tile is Non-tumour; tiles in between are ambiguous.
    tissue_min : float
        Tissue fraction a tile needs to be kept.
    benign_min : float
        Benign coverage that puts a tile inside Benign marks (Non-tumour on a slide that is not fully annotated).
    exclude_max, pen_max : float
        Tiles where Exclude marks, or pen ink, cover more than this are dropped.
    background_max : float
        Tiles with at most this tissue fraction are background (reported apart from low tissue).
    """

    tumour_min: float = 0.5
    normal_max: float = 0.05
    tissue_min: float = 0.5
    benign_min: float = 0.5
    exclude_max: float = 0.01
    pen_max: float = 0.05
    background_max: float = 0.05

    def as_dict(self) -> dict[str, float]:
        """The thresholds by name (keyword arguments of `core.tiles.grid.plan_tiles`)."""
        return asdict(self)


@dataclass(frozen=True)
class TileLabels:
    """Labels of a set of tiles.

    Attributes
    ----------
    label : ndarray of int8
        ``TUMOUR_LABEL``, ``NON_TUMOUR_LABEL`` or ``DROPPED``.
    reason : ndarray of int8
        Index into ``REASONS``.
    tumour_fraction : ndarray of float32
        Share of each tile that Tumour marks cover.
    """

    label: np.ndarray
    reason: np.ndarray
    tumour_fraction: np.ndarray


class MarkCoverage:
    """Share of level-0 squares covered by each class's marks, from one raster per class (made on first use).

    Parameters
    ----------
    marks : iterable of Annotation
        In level-0 pixels.
    l0_w, l0_h : int
        Level-0 size of the slide.
    tile_l0 : int
        Side of the squares asked about; the raster has ``SUBPIXELS`` pixels per side of one.
    """

    def __init__(self, marks: Iterable[Annotation], l0_w: int, l0_h: int, tile_l0: int):
        self.marks, self.l0_w, self.l0_h = list(marks), int(l0_w), int(l0_h)
        self.downsample = max(1.0, tile_l0 / SUBPIXELS)  # finer than level 0 adds memory, not accuracy
        self._sums: dict[str, AreaSum | None] = {}

    def fraction(self, class_name: str, l0_x: np.ndarray, l0_y: np.ndarray, tile_l0: int) -> np.ndarray:
        """Share of each ``tile_l0`` square at (``l0_x``, ``l0_y``) covered by ``class_name`` marks (float64)."""
        if class_name not in self._sums:
            wanted = [m for m in self.marks if m.class_name == class_name]
            raster = rasterise(wanted, class_name, self.l0_w, self.l0_h, self.downsample) if wanted else None
            self._sums[class_name] = AreaSum(raster) if raster is not None else None
        area_sum = self._sums[class_name]
        if area_sum is None:
            return np.zeros(len(l0_x), np.float64)
        x0, y0 = np.asarray(l0_x) / self.downsample, np.asarray(l0_y) / self.downsample
        size = tile_l0 / self.downsample
        # the raster is ceil(l0 / downsample) wide; tiles are shifted inside the slide by label_tiles, and the
        # mean is over the part inside the raster, so a tile larger than the slide is judged by its part on it
        return np.asarray(area_sum.mean(x0, y0, x0 + size, y0 + size), np.float64).reshape(-1)


def reviewed_as_benign(reviewed) -> list[Annotation]:
    """Benign marks standing for reviewed regions (a shapely geometry or sequence of them, level-0 pixels).

    A region the doctor reviewed and left without a Tumour mark was looked at and found not tumour, so on
    a slide that is not fully annotated its tissue is Non-tumour, as inside a Benign mark; Tumour marks
    inside it still win (the tumour rule comes first in `label_tiles`).
    """
    if reviewed is None:
        return []
    shapes = [reviewed] if hasattr(reviewed, "geom_type") else list(reviewed)
    out = []
    for shape in shapes:
        parts = getattr(shape, "geoms", [shape])
        out.extend(Annotation(part, BENIGN.name) for part in parts
                   if part.geom_type == "Polygon" and not part.is_empty)
    return out


def label_tiles(marks: Iterable[Annotation], l0_x, l0_y, tile_l0: int, slide_size: tuple[int, int],
                fully_annotated: bool, rules: LabelRules = LabelRules(), tissue_fraction=None,
                pen_fraction=None) -> TileLabels:
    """Label level-0 squares from the marks (and, when given, the tissue under them).

    The first rule that applies wins, in this order: background (tissue ≤ ``background_max``),
    excluded (Exclude marks cover more than ``exclude_max``), pen (ink > ``pen_max``), low tissue
    (< ``tissue_min``), tumour (Tumour coverage ≥ ``tumour_min``), non-tumour (Tumour coverage ≤
    ``normal_max`` on a fully annotated slide or inside Benign marks), unlabelled (≤ ``normal_max``
    otherwise), ambiguous (the rest). Without ``tissue_fraction`` and ``pen_fraction`` the tissue
    rules are skipped: what the marks alone say (the comparison's truth).

    Parameters
    ----------
    marks : iterable of Annotation
        In level-0 pixels; classes Tumour, Benign and Exclude are used. Drafts the network proposed and
        no doctor accepted (`core.annotations.proposals.is_draft`) count for nothing.
    l0_x, l0_y : ndarray of int
        Top-left corners of the tiles in level-0 pixels (shifted inside the slide when they cross its edge).
    tile_l0 : int
        Tile side in level-0 pixels.
    slide_size : (int, int)
        Level-0 width and height of the slide.
    fully_annotated : bool
        Every tumour on the slide is marked, so unmarked tissue is non-tumour; when False only tissue
        inside Benign marks is.
    rules : LabelRules
    tissue_fraction, pen_fraction : ndarray of float, optional
        Share of each tile that is tissue, and pen ink (`core.tiles.tissue.TissueMask.fraction_in`).

    Returns
    -------
    TileLabels
    """
    l0_x = shift_inside(np.asarray(l0_x, np.int64).reshape(-1), tile_l0, slide_size[0])
    l0_y = shift_inside(np.asarray(l0_y, np.int64).reshape(-1), tile_l0, slide_size[1])
    marks = [m for m in marks if not is_draft(m)]  # the network's proposals are not the doctors' word
    coverage = MarkCoverage(marks, slide_size[0], slide_size[1], tile_l0)
    tumour = coverage.fraction(TUMOUR.name, l0_x, l0_y, tile_l0)
    benign = coverage.fraction(BENIGN.name, l0_x, l0_y, tile_l0)
    exclude = coverage.fraction(EXCLUDE.name, l0_x, l0_y, tile_l0)
    never = np.zeros(l0_x.size, bool)
    if tissue_fraction is not None:
        tissue_fraction = np.asarray(tissue_fraction).reshape(-1)
    if pen_fraction is not None:
        pen_fraction = np.asarray(pen_fraction).reshape(-1)
    rules_in_order = [
        (never if tissue_fraction is None else tissue_fraction <= rules.background_max, BACKGROUND),
        (exclude > rules.exclude_max, EXCLUDED),
        (never if pen_fraction is None else pen_fraction > rules.pen_max, PEN),
        (never if tissue_fraction is None else tissue_fraction < rules.tissue_min, LOW_TISSUE),
        (tumour >= rules.tumour_min, TUMOUR_TILE),
        ((tumour <= rules.normal_max) & (bool(fully_annotated) | (benign >= rules.benign_min)), NON_TUMOUR_TILE),
        (tumour <= rules.normal_max, UNLABELLED),
    ]
    reason = np.full(l0_x.size, AMBIGUOUS, np.int8)
    undecided = np.ones(l0_x.size, bool)
    for condition, code in rules_in_order:
        hit = undecided & condition
        reason[hit] = code
        undecided &= ~hit
    label = np.full(l0_x.size, DROPPED, np.int8)
    label[reason == TUMOUR_TILE] = TUMOUR_LABEL
    label[reason == NON_TUMOUR_TILE] = NON_TUMOUR_LABEL
    return TileLabels(label, reason, tumour.astype(np.float32))
